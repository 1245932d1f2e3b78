//! `ocync sync` (and `ocync plan`, the same with `--dry-run`): the arguments, a call to
//! [`sync::run`], and the report or plan printed.

use std::time::Duration;

use super::progress::{Progress, Screen};
use super::{Exit, load_config};
use crate::cancel::Shutdown;
use crate::engine::human_bytes;
use crate::plan::{Action, Plan};
use crate::sync::{self, Clients, RunStatus};

/// Arguments of `ocync sync`.
#[derive(Debug, clap::Args)]
pub struct SyncArgs {
    /// The config: a file path or `s3://bucket/key`.
    #[arg(long, short = 'c', value_name = "FILE")]
    pub(super) config: String,
    /// Plan only: list what would be copied and skipped, write nothing.
    #[arg(long)]
    pub(super) dry_run: bool,
    /// Print one JSON document on stdout (the report, or the plan with --dry-run).
    #[arg(long)]
    pub(super) json: bool,
    /// Only these mappings (0-based positions in `mappings`); repeatable.
    #[arg(long = "mapping", value_name = "INDEX")]
    pub(super) mappings: Vec<usize>,
    /// After SIGINT/SIGTERM, how long transfers in flight may take to finish.
    #[arg(long, value_name = "SECONDS", default_value_t = 30)]
    pub(super) grace_period: u64,
}

/// Runs a sync (with a live view on `screen`) or a dry run (the plan only).
pub async fn run(args: SyncArgs, screen: Screen) -> Exit {
    let config = match load_config(&args.config).await {
        Ok(config) => config,
        Err(exit) => return exit,
    };
    let mappings = match sync::select(&config, &args.mappings) {
        Ok(mappings) => mappings,
        Err(error) => {
            eprintln!("error: --mapping: {error}");
            return Exit::Config;
        }
    };
    let clients = Clients::connect(&config, &mappings).await;
    if args.dry_run {
        return print_plan(&crate::plan::discover(&mappings, &clients, true).await, args.json);
    }

    // After a signal nothing new starts; what is still in flight when the grace period runs
    // out is abandoned and reported as interrupted.
    let shutdown = Shutdown::on_signals(Duration::from_secs(args.grace_period));
    let engine = sync::engine(&config, shutdown.cancel().clone());
    let progress = Progress::start(engine.stats(), screen, !args.json);
    let report = sync::run(&config, &mappings, &clients, &engine, &shutdown).await;
    drop(progress);
    let report = match report {
        Ok(report) => report,
        Err(error) => {
            eprintln!("error: {error}");
            return Exit::Partial;
        }
    };
    if args.json {
        println!("{}", serde_json::to_string(&report).expect("reports serialise"));
    } else {
        println!("{}", report.summary());
    }
    // An interrupted run is incomplete whatever else happened: the next run finishes it.
    if report.interrupted { Exit::Partial } else { exit_for(report.status) }
}

/// The exit code of a run, or of a plan, with this status: an authentication failure of
/// everything is 4 so that scripts can tell "fix the credentials" from "retry later".
fn exit_for(status: RunStatus) -> Exit {
    match status {
        RunStatus::Success => Exit::Success,
        RunStatus::Partial => Exit::Partial,
        RunStatus::Failed => Exit::Failed,
        RunStatus::AuthFailed => Exit::Auth,
    }
}

fn print_plan(plan: &Plan, json: bool) -> Exit {
    if json {
        println!("{}", serde_json::to_string(plan).expect("plans serialise"));
    } else {
        println!("{}", render_plan(plan));
    }
    exit_for(RunStatus::of_plan(plan))
}

/// The plan for people: per mapping the tags kept and dropped, then one line per image.
fn render_plan(plan: &Plan) -> String {
    let mut lines = Vec::new();
    for mapping in &plan.mappings {
        lines.push(format!("{} (mappings[{}], from {})", mapping.key, mapping.index, mapping.source));
        if let Some(error) = &mapping.error {
            lines.push(format!("  FAILED: {error}"));
            continue;
        }
        lines.push(format!("  tags: {} kept, {} dropped", mapping.kept.len(), mapping.dropped.len()));
        if mapping.invalid_tags > 0 {
            lines.push(format!("  {} invalid tags listed by the source (dropped)", mapping.invalid_tags));
        }
        for dropped in &mapping.dropped {
            lines.push(format!("    drop {}: {}", dropped.tag, dropped.reason));
        }
        for image in &mapping.images {
            let digest = image.digest.as_ref().map(ToString::to_string).unwrap_or_default();
            if let Some(error) = &image.error {
                lines.push(format!("  error {}: {error}", image.tag));
                continue;
            }
            let with = |action| image.targets.iter().filter(move |t| t.action == action);
            let (to_copy, up_to_date): (Vec<_>, Vec<_>) =
                (with(Action::Copy).collect(), with(Action::UpToDate).collect());
            let names = |targets: &[&crate::plan::TargetPlan]| {
                targets.iter().map(|t| format!("{} ({})", t.registry, t.repository)).collect::<Vec<_>>().join(", ")
            };
            if !to_copy.is_empty() {
                let size = image.bytes.map(|b| format!(" ({})", human_bytes(b))).unwrap_or_default();
                lines.push(format!("  copy {} {digest} -> {}{size}", image.tag, names(&to_copy)));
            }
            if !up_to_date.is_empty() {
                lines.push(format!("  skip {} {digest}: up to date at {}", image.tag, names(&up_to_date)));
            }
            for target in with(Action::Fail) {
                let reason = target.error.as_ref().map(ToString::to_string).unwrap_or_default();
                lines.push(format!("  FAIL {} -> {} ({}): {reason}", image.tag, target.registry, target.repository));
            }
            if let Some(verify) = &image.verify {
                lines.push(format!("    verify {}: {verify}", image.tag));
            }
            for referrer in &image.referrers {
                lines.push(format!("    referrer {} {} (of {})", referrer.kind, referrer.digest, referrer.subject));
            }
        }
    }
    // Bytes to move count a blob shared by several images once per target repository.
    lines.push(plan.totals.to_string());
    lines.join("\n")
}
