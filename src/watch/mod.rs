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
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub use health::State;
pub use metrics::Metrics;

use crate::cancel::Cancel;
use crate::config::{Config, ConfigLocation, Mapping, S3ConfigCache};
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
    let source = ConfigSource::new(options.config.clone()).await;
    let mut last_good: Option<Arc<Config>> = None;
    let clients = ClientCache::default();

    while !cancel.is_cancelled() {
        match source.load().await {
            Ok(config) => last_good = Some(config),
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

/// Where each cycle reads the config from. For an `s3://` location the S3 client is built
/// once, so its credentials and connections are reused, with an ETag cache of the object.
enum ConfigSource {
    File(PathBuf),
    S3 { bucket: String, key: String, client: aws_sdk_s3::Client, cache: S3ConfigCache },
}

impl ConfigSource {
    async fn new(location: ConfigLocation) -> Self {
        match location {
            ConfigLocation::File(path) => ConfigSource::File(path),
            ConfigLocation::S3 { bucket, key } => ConfigSource::S3 {
                bucket,
                key,
                client: crate::config::s3_client().await,
                cache: S3ConfigCache::default(),
            },
        }
    }

    async fn load(&self) -> Result<Arc<Config>, String> {
        match self {
            ConfigSource::File(path) => Config::load(path).map(Arc::new).map_err(|e| e.to_string()),
            ConfigSource::S3 { bucket, key, client, cache } => {
                cache.load(client, bucket, key).await.map(|loaded| loaded.config).map_err(|e| e.to_string())
            }
        }
    }
}

/// One sync of every mapping; after SIGTERM it gets `grace` to finish what is in flight.
async fn cycle(config: &Config, clients: &Clients<HttpRegistry>, state: &State, cancel: &Cancel, grace: Duration) {
    let started = Instant::now();
    *state.cycle_started.lock().expect("state lock poisoned") = Some(started);
    state.ready.store(true, Ordering::Relaxed);
    let mappings: Vec<&Mapping> = config.mappings.iter().collect();
    let transfers = config.global.max_concurrent_transfers;
    let engine = sync::engine(config, cancel.clone());
    // After SIGTERM nothing new starts; what is still in flight when the grace period runs out
    // is abandoned and reported as interrupted, so the cycle's report and metrics still count
    // what did finish.
    let grace_over = async {
        cancel.cancelled().await;
        tokio::time::sleep(grace).await;
        tracing::warn!(grace_seconds = grace.as_secs(), "transfers did not finish within the grace period; stopping");
    };
    tokio::pin!(grace_over);
    let plan = tokio::select! {
        plan = sync::plan(&mappings, clients, false) => Some(plan),
        () = &mut grace_over => None,
    };
    let report = match plan {
        Some(plan) => Some(sync::execute_until(&plan, &mappings, clients, &engine, transfers, grace_over).await),
        None => None,
    };
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
