//! `ocync copy SRC DST`: one tag or digest, with everything it refers to.

use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;

use super::progress::{Progress, human_bytes};
use super::{ConfigArg, Exit};
use crate::config::Config;
use crate::copy::{BlobLedger, Endpoint, ImageCopy, ImageOutcome, Stats, StatsSnapshot};
use crate::oci::{Digest, Reference};

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
    /// Blob transfers in flight at once (default: global.max_concurrent_transfers, or 32).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    concurrency: Option<u16>,
}

/// The `--json` report of a copy.
#[derive(Debug, Serialize)]
struct CopyReport {
    source: String,
    target: String,
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    digest: Option<Digest>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    stats: StatsSnapshot,
    duration_ms: u128,
}

/// Runs the copy and reports it; the exit code says how it went.
pub async fn run(args: CopyArgs) -> Exit {
    let started = Instant::now();
    let (source, destination) = match parse_references(&args.source, &args.destination) {
        Ok(pair) => pair,
        Err(message) => {
            eprintln!("error: {message}");
            return Exit::Config;
        }
    };
    let config = match &args.config.config {
        Some(path) => match Config::load(path) {
            Ok(config) => Some(config),
            Err(error) => {
                eprintln!("error: {error}");
                return Exit::Config;
            }
        },
        None => None,
    };
    let concurrency = args
        .concurrency
        .map(usize::from)
        .or(config.as_ref().map(|c| c.global.max_concurrent_transfers))
        .unwrap_or(32);
    let stats = Arc::new(Stats::default());
    let progress = Progress::start(stats.clone(), !args.json);
    let target_reference = destination.manifest_reference();
    let result = async {
        let source_registry =
            crate::connect::open(&source.registry, source.plain_http, config.as_ref()).await?;
        let target_registry = crate::connect::open(
            &destination.registry,
            destination.plain_http,
            config.as_ref(),
        )
        .await?;
        let copy = ImageCopy {
            source: Endpoint {
                registry: &source_registry,
                repository: &source.repository,
            },
            target: Endpoint {
                registry: &target_registry,
                repository: &destination.repository,
            },
            stats: &stats,
            ledger: &BlobLedger::default(),
            concurrency,
        };
        copy.run(&source, &target_reference).await
    }
    .await;
    drop(progress);

    let snapshot = stats.snapshot();
    let mut report = CopyReport {
        source: source.to_string(),
        target: destination.to_string(),
        status: "copied",
        digest: None,
        reason: None,
        error: None,
        stats: snapshot,
        duration_ms: started.elapsed().as_millis(),
    };
    let exit = match result {
        Ok(ImageOutcome::Copied { digest }) => {
            tracing::info!(%source, target = %destination, %digest, blobs = snapshot.blobs_copied, "image copied");
            report.digest = Some(digest);
            Exit::Success
        }
        Ok(ImageOutcome::Skipped { digest, reason }) => {
            report.status = "skipped";
            report.digest = Some(digest);
            report.reason = Some(reason);
            Exit::Success
        }
        Err(error) => {
            tracing::error!(%source, target = %destination, %error, "copy failed");
            report.status = "failed";
            report.error = Some(error.to_string());
            if error.is_auth() {
                Exit::Auth
            } else {
                Exit::Failed
            }
        }
    };
    if args.json {
        println!(
            "{}",
            serde_json::to_string(&report).expect("report serialises")
        );
    } else {
        println!("{}", summary(&report));
    }
    exit
}

/// Parses both references; a destination without tag or digest takes the source's tag.
fn parse_references(source: &str, destination: &str) -> Result<(Reference, Reference), String> {
    let source: Reference = source.parse().map_err(|e| format!("source: {e}"))?;
    let mut destination =
        Reference::parse_bare(destination).map_err(|e| format!("destination: {e}"))?;
    if destination.tag.is_none() && destination.digest.is_none() {
        destination.tag = source.tag.clone();
        destination.digest = source.digest.clone();
    }
    Ok((source, destination))
}

fn summary(report: &CopyReport) -> String {
    let stats = &report.stats;
    let digest = report
        .digest
        .as_ref()
        .map(|d| format!(" ({d})"))
        .unwrap_or_default();
    let seconds = report.duration_ms as f64 / 1000.0;
    match report.status {
        "failed" => format!(
            "failed {} -> {}: {}",
            report.source,
            report.target,
            report.error.as_deref().unwrap_or("unknown error")
        ),
        "skipped" => format!(
            "up to date {} -> {}{digest} in {seconds:.1}s",
            report.source, report.target
        ),
        _ => format!(
            "copied {} -> {}{digest}: blobs {} copied, {} skipped, {} mounted; {} manifests; {} in {seconds:.1}s",
            report.source,
            report.target,
            stats.blobs_copied,
            stats.blobs_skipped,
            stats.blobs_mounted,
            stats.manifests_pushed,
            human_bytes(stats.bytes)
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::parse_references;

    #[test]
    fn destination_without_tag_takes_the_source_tag() {
        let (_, destination) =
            parse_references("ghcr.io/a/b:1.2", "http://127.0.0.1:5000/b").unwrap();
        assert_eq!(destination.to_string(), "http://127.0.0.1:5000/b:1.2");
    }

    #[test]
    fn bad_references_say_which_side_is_wrong() {
        let error = parse_references("ghcr.io/a/b:1.2", "UPPER/case").unwrap_err();
        assert!(
            error.starts_with("destination: invalid reference \"UPPER/case\""),
            "{error}"
        );
    }
}
