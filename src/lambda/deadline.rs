//! One invocation's shutdown and the engine its records share.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::cancel::Shutdown;
use crate::config::Config;
use crate::engine::Engine;
use crate::sync;

/// What the work of one invocation shares: the [`Shutdown`] its deadline drives (no new
/// transfer after the deadline margin, in-flight ones abandoned at the finish margin), and one
/// engine, so `global.max_concurrent_transfers` bounds the whole invocation and the records of
/// a batch read a blob they share from the source once. Dropping the scope at the end of the
/// invocation stops the deadline timer, so it cannot touch a later invocation of a warm
/// container.
pub(super) struct Scope {
    pub(super) shutdown: Shutdown,
    engine: OnceLock<Engine>,
}

impl Scope {
    /// A scope for an invocation that must answer by `deadline` (see [`Shutdown::deadline`]).
    pub(super) fn new(deadline: Instant, margin: Duration, finish: Duration) -> Self {
        Scope { shutdown: Shutdown::deadline(deadline, margin, finish), engine: OnceLock::new() }
    }

    /// The invocation's engine, bounded by the limits of the first config a record brings
    /// (the records of a batch come from one fan-out, so from one config).
    pub(super) fn engine(&self, config: &Config) -> &Engine {
        self.engine.get_or_init(|| sync::engine(config, self.shutdown.cancel().clone()))
    }
}
