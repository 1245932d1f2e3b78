//! `ocync copy SRC DST`: one tag or digest, with everything it refers to.
//!
//! SIGINT/SIGTERM are handled as `sync` handles them: nothing new starts, and a copy still in
//! flight when `--grace-period` runs out is abandoned and reported as interrupted (exit 1).

use std::time::Duration;

use super::progress::{Progress, Screen};
use super::{ConfigArg, Exit};
use crate::cancel::Shutdown;
use crate::engine::{
    Engine, ImageJob, ImageReport, Limits, Outcome, Source, StatsSnapshot, Target, TargetReport, human_bytes, label,
};
use crate::oci::{ArtifactPolicy, Digest, Platform, Reference};
use crate::plan::Failure;
use crate::sync::{INTERRUPTED, contained};

/// Arguments of `ocync copy`.
#[derive(Debug, clap::Args)]
pub struct CopyArgs {
    /// Source reference: `[http://]host[:port]/repository[:tag][@digest]`.
    source: String,
    /// Destination reference; without a tag it takes the source's tag.
    destination: String,
    #[command(flatten)]
    config: ConfigArg,
    /// Print a JSON report on stdout instead of the summary line.
    #[arg(long)]
    json: bool,
    /// Blob transfers in flight at once, fixed (default: adapting to throughput, at most
    /// global.max_concurrent_transfers, or 32).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=1024))]
    concurrency: Option<u16>,
    /// Leave referrers (signatures, SBOMs, attestations) behind; by default they come along.
    #[arg(long)]
    no_referrers: bool,
    /// Keep only this platform of an index (`linux/arm64/v8`); repeatable. The index is rebuilt.
    #[arg(long = "platform", value_name = "OS/ARCH[/VARIANT]", value_parser = clap::value_parser!(Platform))]
    platforms: Vec<Platform>,
    /// After SIGINT/SIGTERM, how long the copy in flight may take to finish.
    #[arg(long, value_name = "SECONDS", default_value_t = 30)]
    grace_period: u64,
}

impl CopyArgs {
    /// Whether stdout carries the JSON report (then no live view is drawn).
    pub(super) fn wants_json(&self) -> bool {
        self.json
    }
}

/// Runs the copy and reports it, with a live view on `screen`; the exit code says how it went.
pub async fn run(args: CopyArgs, screen: Screen) -> Exit {
    let (source, destination) = match parse_references(&args.source, &args.destination) {
        Ok(pair) => pair,
        Err(message) => {
            eprintln!("error: {message}");
            return Exit::Config;
        }
    };
    let config = match args.config.load().await {
        Ok(config) => config,
        Err(exit) => return exit,
    };
    // `--concurrency` is a fixed number; otherwise the config's (or 32) is a ceiling.
    let limits = match args.concurrency.map(usize::from) {
        Some(fixed) => Limits::new(fixed, []),
        None => Limits::adaptive(config.as_deref().map_or(32, |c| c.global.max_concurrent_transfers), []),
    };
    let concurrency = limits.ceiling();
    let shutdown = Shutdown::on_signals(Duration::from_secs(args.grace_period));
    let engine = Engine::new(limits, shutdown.cancel().clone(), concurrency);
    // One image to one target: the view's overall line counts it, its lines show the blobs.
    engine.stats().plan_images(1, 0, 0);
    let progress = Progress::start(engine.stats(), screen, !args.json);
    let opened = async {
        let source_registry = crate::connect::open(&source.registry, source.plain_http, config.as_deref()).await?;
        let target_registry =
            crate::connect::open(&destination.registry, destination.plain_http, config.as_deref()).await?;
        Ok::<_, crate::registry::Error>((source_registry, target_registry))
    }
    .await;
    let policy = ArtifactPolicy::default();
    let report = match &opened {
        Ok((source_registry, target_registry)) => {
            let job = ImageJob {
                source: Source {
                    registry: source_registry,
                    repository: &source.repository,
                    reference: source.manifest_reference(),
                    digest: source.digest.clone(),
                    media_type: None,
                },
                targets: vec![Target {
                    registry: target_registry,
                    repository: &destination.repository,
                    reference: destination.manifest_reference(),
                    current: None,
                }],
                artifacts: (!args.no_referrers).then_some(&policy),
                platforms: &args.platforms,
                verify: None,
            };
            // A panic fails the copy like any other error, with the report printed.
            let copy = contained("copying the image", engine.copy(&job));
            let failed = |failure| {
                let source_label = label(source_registry, &source.repository, &source.manifest_reference());
                let target_label = label(target_registry, &destination.repository, &destination.manifest_reference());
                failed_report(source_label, target_label, source.digest.clone(), failure)
            };
            tokio::select! {
                biased;
                () = shutdown.abandoned() => failed(Failure::new(INTERRUPTED)),
                copied = copy => copied.unwrap_or_else(failed),
            }
        }
        Err(error) => {
            drop(progress);
            eprintln!("error: {error}");
            return setup_exit(error);
        }
    };
    drop(progress);
    finish(&args, report, shutdown.is_stopping())
}

/// The report of a copy that did not come back from the engine (abandoned, or panicked).
fn failed_report(source: String, target: String, digest: Option<Digest>, failure: Failure) -> ImageReport {
    let outcome = Outcome::Failed { error: failure.message, auth: failure.auth };
    let target = TargetReport { target, outcome, stats: StatsSnapshot::default(), duration_ms: 0 };
    ImageReport { source, digest, target_digest: None, signer: None, warnings: Vec::new(), targets: vec![target] }
}

/// Logs and prints the report; the exit code says how it went. A copy that a signal cut
/// short is incomplete (exit 1), as a `sync` would be: the next run finishes it.
fn finish(args: &CopyArgs, report: ImageReport, interrupted: bool) -> Exit {
    let target = report.targets.first().expect("one target per copy");
    report.log();
    let exit = match &target.outcome {
        Outcome::Synced | Outcome::Skipped { .. } => Exit::Success,
        Outcome::Failed { .. } if interrupted => Exit::Partial,
        Outcome::Failed { auth: true, .. } => Exit::Auth,
        Outcome::Failed { .. } => Exit::Failed,
    };
    if args.json {
        // The target's report, with the source and digest beside it.
        let mut json = serde_json::to_value(target).expect("reports serialise");
        json["source"] = serde_json::json!(report.source);
        json["digest"] = serde_json::json!(report.digest);
        json["target_digest"] = serde_json::json!(report.target_digest);
        json["warnings"] = serde_json::json!(report.warnings);
        println!("{json}");
    } else {
        println!("{}", summary(&report.source, report.digest.as_ref(), target));
    }
    exit
}

/// The exit code when a registry client cannot be set up: 4 for credentials that cannot be
/// obtained (a broken GCP credentials file, a failing credential provider), else 3.
fn setup_exit(error: &crate::registry::Error) -> Exit {
    if error.is_auth() { Exit::Auth } else { Exit::Config }
}

/// Parses both references; a destination without tag or digest takes the source's tag.
fn parse_references(source: &str, destination: &str) -> Result<(Reference, Reference), String> {
    let source: Reference = source.parse().map_err(|e| format!("source: {e}"))?;
    let mut destination = Reference::parse_bare(destination).map_err(|e| format!("destination: {e}"))?;
    if destination.tag.is_none() && destination.digest.is_none() {
        destination.tag = source.tag.clone();
        destination.digest = source.digest.clone();
    }
    Ok((source, destination))
}

/// One line: what was copied where, how many blobs and bytes, how long.
pub fn summary(source: &str, digest: Option<&Digest>, target: &TargetReport) -> String {
    let stats = &target.stats;
    let digest = digest.map(|d| format!(" ({d})")).unwrap_or_default();
    let seconds = target.duration_ms as f64 / 1000.0;
    let destination = &target.target;
    match &target.outcome {
        Outcome::Failed { error, .. } => format!("failed {source} -> {destination}: {error}"),
        Outcome::Skipped { .. } => {
            format!("up to date {source} -> {destination}{digest} in {seconds:.1}s")
        }
        Outcome::Synced => format!(
            "copied {source} -> {destination}{digest}: blobs {} copied, {} skipped, {} mounted; {} manifests; {} referrers; {} in {seconds:.1}s",
            stats.blobs_copied,
            stats.blobs_skipped,
            stats.blobs_mounted,
            stats.manifests_pushed,
            stats.referrers_copied,
            human_bytes(stats.bytes)
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::{Exit, parse_references, setup_exit};
    use crate::registry::Error;

    #[test]
    fn a_credentials_problem_at_setup_exits_4_and_other_setup_problems_3() {
        let credentials = Error::Credentials { registry: "us-docker.pkg.dev".into(), detail: "bad key file".into() };
        assert_eq!(setup_exit(&credentials), Exit::Auth);
        let setup = Error::Setup { registry: "r.test".into(), detail: "cannot read ca_file".into() };
        assert_eq!(setup_exit(&setup), Exit::Config);
    }

    #[test]
    fn destination_without_tag_takes_the_source_tag() {
        let (_, destination) = parse_references("ghcr.io/a/b:1.2", "http://127.0.0.1:5000/b").unwrap();
        assert_eq!(destination.to_string(), "http://127.0.0.1:5000/b:1.2");
    }

    #[test]
    fn bad_references_say_which_side_is_wrong() {
        let error = parse_references("ghcr.io/a/b:1.2", "UPPER/case").unwrap_err();
        assert!(error.starts_with("destination: invalid reference \"UPPER/case\""), "{error}");
    }
}
