//! The deadline of one invocation: when new transfers stop, when those in flight are
//! abandoned, and the engine the invocation's records share.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::cancel::Cancel;
use crate::config::Config;
use crate::engine::Engine;
use crate::sync;

/// What the work of one invocation shares: the cancel flag its deadline sets, the later stop
/// at which transfers still in flight are abandoned, and one engine,
/// so `global.max_concurrent_transfers` bounds the whole invocation and the records of a batch
/// read a blob they share from the source once. The deadline timer stops when the invocation
/// ends (the scope is dropped), so it cannot touch a later invocation of a warm container.
pub(super) struct Scope {
    pub(super) cancel: Cancel,
    stop: Cancel,
    timer: tokio::task::JoinHandle<()>,
    engine: OnceLock<Engine>,
}

impl Scope {
    /// Sets the flag once the remaining time falls below `margin`, which is at most a third of
    /// the time this invocation has, so a short function timeout still gets work done; then
    /// sets the stop once it falls below `finish` (at most a tenth of that time), leaving the
    /// handler time to answer before the function is killed.
    pub(super) fn new(deadline: Instant, margin: Duration, finish: Duration) -> Self {
        let (cancel, stop) = (Cancel::default(), Cancel::default());
        let remaining = deadline.saturating_duration_since(Instant::now());
        let cancel_at = deadline.checked_sub(margin.min(remaining / 3)).unwrap_or_else(Instant::now);
        let stop_at = deadline.checked_sub(finish.min(remaining / 10)).unwrap_or_else(Instant::now).max(cancel_at);
        let (trigger, halt) = (cancel.clone(), stop.clone());
        let timer = tokio::spawn(async move {
            tokio::time::sleep_until(cancel_at.into()).await;
            tracing::warn!("invocation deadline near: starting no new transfers");
            trigger.cancel();
            tokio::time::sleep_until(stop_at.into()).await;
            tracing::warn!("invocation deadline nearer: abandoning the transfers still in flight");
            halt.cancel();
        });
        Scope { cancel, stop, timer, engine: OnceLock::new() }
    }

    /// Resolves once transfers still in flight must be abandoned.
    pub(super) async fn stopped(&self) {
        self.stop.cancelled().await;
    }

    pub(super) fn is_cancelled(&self) -> bool {
        self.cancel.is_cancelled()
    }

    /// The invocation's engine, bounded by the limits of the first config a record brings
    /// (the records of a batch come from one fan-out, so from one config).
    pub(super) fn engine(&self, config: &Config) -> &Engine {
        self.engine.get_or_init(|| sync::engine(config, self.cancel.clone()))
    }
}

impl Drop for Scope {
    fn drop(&mut self) {
        self.timer.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_deadline_stops_new_work_at_the_margin() {
        let scope =
            Scope::new(Instant::now() + Duration::from_secs(90), Duration::from_secs(30), Duration::from_secs(3));
        tokio::time::sleep(Duration::from_secs(59)).await;
        assert!(!scope.is_cancelled(), "more than the margin is left");
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert!(scope.is_cancelled(), "less than the margin is left");
        assert!(!scope.stop.is_cancelled(), "in-flight transfers go on until the finish margin");
        tokio::time::sleep(Duration::from_secs(28)).await;
        assert!(scope.stop.is_cancelled(), "less than the finish margin is left: in-flight work is abandoned");
    }

    #[tokio::test(start_paused = true)]
    async fn a_finished_invocation_leaves_no_deadline_timer_behind() {
        let scope =
            Scope::new(Instant::now() + Duration::from_secs(90), Duration::from_secs(30), Duration::from_secs(3));
        let flag = scope.cancel.clone();
        let timer = scope.timer.abort_handle();
        drop(scope);
        tokio::time::sleep(Duration::from_secs(120)).await;
        assert!(timer.is_finished(), "the timer task ended with its invocation");
        assert!(!flag.is_cancelled(), "the timer never fired");
    }
}
