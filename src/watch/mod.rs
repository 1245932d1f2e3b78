//! Watch mode: sync in a loop for long-running deployments (the Helm chart's default).
//!
//! Each cycle re-reads the config (an invalid new config is logged and the last good one kept);
//! registry clients — tokens, connection pools, pacing windows — live across cycles, each while
//! its registry's entry is unchanged (a registry a new mapping needs gets its client then), and
//! so does the S3 client that reads an `s3://` config. SIGTERM stops new work, lets transfers in flight finish
//! within the grace period (what is still in flight then is abandoned and reported as
//! interrupted, so the last cycle's report and metrics count what finished), and returns.

mod health;
mod metrics;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub use health::State;
pub use metrics::Metrics;

use crate::cancel::{Cancel, Shutdown};
use crate::config::{Config, ConfigLocation, Mapping, Source};
use crate::registry::HttpRegistry;
use crate::sync::{self, ClientCache, Clients};

/// How watch mode runs.
#[derive(Debug, Clone)]
pub struct WatchOptions {
    /// Where the config is read from each cycle.
    pub config: ConfigLocation,
    /// Pause between the end of one cycle and the start of the next.
    pub interval: Duration,
    /// Address of the health and metrics server (`0.0.0.0:8080`, `[::]:8080`).
    pub health: SocketAddr,
    /// After SIGTERM, how long transfers in flight may take.
    pub grace: Duration,
    /// A cycle running longer than this fails liveness.
    pub stuck_after: Duration,
}

/// Runs until `cancel` is set; `Err` only when the health server cannot start.
pub async fn run(options: WatchOptions, cancel: Cancel) -> Result<(), String> {
    let listener = tokio::net::TcpListener::bind(options.health)
        .await
        .map_err(|e| format!("cannot listen on {} for health checks: {e}", options.health))?;
    tracing::info!(address = %options.health, "health and metrics server listening");
    let state = Arc::new(State::new(options.stuck_after));
    let server = tokio::spawn(health::serve(listener, state.clone(), cancel.clone()));
    let source = Source::at(options.config.clone()).await;
    let mut last_good: Option<Arc<Config>> = None;
    let clients = ClientCache::default();

    while !cancel.is_cancelled() {
        match source.load().await {
            Ok(loaded) => last_good = Some(loaded.config),
            Err(error) => {
                state.metrics.lock().expect("state lock poisoned").config_errors += 1;
                match &last_good {
                    Some(_) => tracing::error!(%error, "config reload failed; keeping the last good config"),
                    None => tracing::error!(%error, "no valid config yet"),
                }
            }
        }
        if let Some(config) = last_good.clone() {
            let mappings: Vec<&Mapping> = config.mappings.iter().collect();
            let current = clients.clients(&config, &mappings).await;
            cycle(&config, &current, &state, &cancel, options.grace).await;
        }
        tokio::select! {
            () = tokio::time::sleep(options.interval) => {}
            () = cancel.cancelled() => {}
        }
    }
    tracing::info!("watch stopped");
    let _ = server.await;
    Ok(())
}

/// One sync of every mapping; after SIGTERM (`stop`) it gets `grace` to finish what is in
/// flight, and what is still in flight then is abandoned and reported as interrupted, so the
/// cycle's report and metrics still count what did finish.
async fn cycle(config: &Config, clients: &Clients<HttpRegistry>, state: &State, stop: &Cancel, grace: Duration) {
    let started = Instant::now();
    *state.cycle_started.lock().expect("state lock poisoned") = Some(started);
    state.ready.store(true, Ordering::Relaxed);
    let mappings: Vec<&Mapping> = config.mappings.iter().collect();
    let shutdown = Shutdown::after(stop.clone(), grace);
    let engine = sync::engine(config, shutdown.cancel().clone());
    // Abandoned while still planning, the cycle has no report and the metrics keep the last.
    let report = sync::run(config, &mappings, clients, &engine, &shutdown).await.ok();
    *state.cycle_started.lock().expect("state lock poisoned") = None;
    let mut metrics = state.metrics.lock().expect("state lock poisoned");
    if let Some(report) = report {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64());
        metrics.record_cycle(&report, started.elapsed().as_secs_f64(), now);
        tracing::info!(
            mappings = report.totals.mappings,
            synced = report.totals.synced,
            skipped = report.totals.skipped,
            failed = report.totals.failed + report.totals.mappings_failed,
            bytes = report.totals.stats.bytes,
            duration_ms = started.elapsed().as_millis() as u64,
            "cycle done"
        );
    }
    metrics.record_clients(clients);
}
