//! A sync run, the one path every frontend takes (`ocync sync`, watch mode's cycles, the
//! Lambda's workers): plan the selected mappings, execute the plan under a [`Shutdown`], and
//! report.
//!
//! Planning ([`crate::plan`]) costs one tag list per mapping plus one HEAD per kept tag at the
//! source and at each target, so a run where nothing changed stops there. Execution
//! ([`execute`]) hands every image that some target lacks to the [`Engine`], which copies it
//! to all those targets at once; [`report`](SyncReport) assembles what happened. One
//! mapping's failure is recorded in the report and never stops the others.

mod clients;
mod contain;
mod execute;
mod report;

pub use clients::{ClientCache, Clients};
pub use contain::contained;
pub use execute::{INTERRUPTED, execute, execute_until};
pub use report::{ImageResult, MappingReport, RunStatus, SyncReport, Totals};

use crate::cancel::{Cancel, Shutdown};
use crate::config::{Config, Mapping};
use crate::engine::{Engine, Limits};
use crate::registry::Registry;

/// Why a run could not go ahead, or has no report.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// A selected mapping index is not in the config.
    #[error("no mapping {index} in the config: it has {count} mappings")]
    UnknownMapping {
        /// The index asked for (0-based position in `mappings`).
        index: usize,
        /// How many mappings the config has.
        count: usize,
    },
    /// The shutdown abandoned the run while it was still planning: nothing was copied.
    #[error("interrupted while planning: the shutdown came before discovery finished; nothing was copied")]
    Abandoned,
}

/// Images copied at once by a run, whatever the transfer ceiling. Each image in flight holds
/// its checks, connections and buffers; more of them add nothing once the transfers are busy
/// (a cold run into a local registry: peak RSS 32–38 MiB at 32 images, 28–29 MiB at 8, the
/// same wall time), and an image's own blobs and children still run up to the ceiling at once.
pub const IMAGES_AT_ONCE: usize = 8;

/// An engine for one run of `config`: at most `global.max_concurrent_transfers` transfers
/// at once (fewer while more would not raise throughput: [`Limits::adaptive`]), and each
/// registry's `max_concurrent` against it. `cancel` is the run's "start nothing new"
/// flag ([`Shutdown::cancel`]). One engine may serve several runs (the records of a Lambda
/// batch), so the limits bound them together and a blob they share is read once.
pub fn engine(config: &Config, cancel: Cancel) -> Engine {
    let transfers = config.global.max_concurrent_transfers;
    let per_registry = config.registries.values().filter_map(|r| r.max_concurrent.map(|n| (r.host.clone(), n)));
    Engine::new(Limits::adaptive(transfers, per_registry), cancel, transfers)
}

/// The mappings of `config` at `indices` (0-based positions), in config order; every mapping
/// when `indices` is empty.
pub fn select<'c>(config: &'c Config, indices: &[usize]) -> Result<Vec<&'c Mapping>, Error> {
    let count = config.mappings.len();
    if let Some(&index) = indices.iter().find(|&&index| index >= count) {
        return Err(Error::UnknownMapping { index, count });
    }
    Ok(config.mappings.iter().filter(|m| indices.is_empty() || indices.contains(&m.index)).collect())
}

/// One run over `mappings` of `config`: plan, then execute with `engine`, stopping as
/// `shutdown` says. After its stop nothing new starts (discovery requests waiting out
/// throttling give up too); once it abandons, what is still in flight is reported as
/// [`INTERRUPTED`] and the report is marked [`SyncReport::interrupted`]. Abandoned while still
/// planning, the run has no report: [`Error::Abandoned`].
pub async fn run<R: Registry>(
    config: &Config,
    mappings: &[&Mapping],
    clients: &Clients<R>,
    engine: &Engine,
    shutdown: &Shutdown,
) -> Result<SyncReport, Error> {
    let discovery = shutdown.cancel().scope(crate::plan::discover(mappings, clients, false));
    // The stop first: once it has fired, planning is not driven any further.
    let plan = tokio::select! {
        biased;
        () = shutdown.abandoned() => return Err(Error::Abandoned),
        plan = discovery => plan,
    };
    let images_at_once = config.global.max_concurrent_transfers.min(IMAGES_AT_ONCE);
    let mut report = execute_until(&plan, mappings, clients, engine, images_at_once, shutdown.abandoned()).await;
    report.interrupted = shutdown.is_stopping();
    Ok(report)
}

#[cfg(test)]
mod tests;
