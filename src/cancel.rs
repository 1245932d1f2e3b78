//! Cancellation: one flag with several triggers (SIGINT/SIGTERM, a Lambda deadline, a watch
//! shutdown), and the two-phase [`Shutdown`] of a run built on it. Work checks the flag
//! between steps: nothing new starts once it is set, and what is in flight finishes, fails on
//! its own, or is abandoned when the shutdown's grace period or finish margin runs out.

use std::future::Future;
use std::time::{Duration, Instant};

use tokio::sync::watch;

tokio::task_local! {
    /// The flag of the run a task works for, so waits deep in a registry client (a throttled
    /// request waiting for its turn) can end when the run is cancelled.
    static CURRENT: Cancel;
}

/// A cloneable cancellation flag.
#[derive(Debug, Clone)]
pub struct Cancel {
    sender: std::sync::Arc<watch::Sender<bool>>,
    receiver: watch::Receiver<bool>,
}

impl Default for Cancel {
    fn default() -> Self {
        let (sender, receiver) = watch::channel(false);
        Cancel { sender: std::sync::Arc::new(sender), receiver }
    }
}

impl Cancel {
    /// Sets the flag for every clone.
    pub fn cancel(&self) {
        self.sender.send_replace(true);
    }

    /// Whether the flag is set.
    pub fn is_cancelled(&self) -> bool {
        *self.receiver.borrow()
    }

    /// Runs `work` with this flag as [`Cancel::current`].
    pub async fn scope<F: Future>(&self, work: F) -> F::Output {
        CURRENT.scope(self.clone(), work).await
    }

    /// The flag of the run the current task works for, if it runs in a [`Cancel::scope`].
    pub fn current() -> Option<Cancel> {
        CURRENT.try_with(Clone::clone).ok()
    }

    /// Resolves once the flag is set.
    pub async fn cancelled(&self) {
        let mut receiver = self.receiver.clone();
        let _ = receiver.wait_for(|cancelled| *cancelled).await;
    }

    /// Sets the flag on the first SIGINT or SIGTERM.
    pub fn on_signals(&self) {
        let cancel = self.clone();
        tokio::spawn(async move {
            let interrupt = tokio::signal::ctrl_c();
            #[cfg(unix)]
            let terminate = async {
                match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                    Ok(mut signal) => {
                        signal.recv().await;
                    }
                    Err(_) => std::future::pending::<()>().await,
                }
            };
            #[cfg(not(unix))]
            let terminate = std::future::pending::<()>();
            tokio::select! {
                _ = interrupt => {}
                () = terminate => {}
            }
            tracing::warn!("signal received: starting nothing new, finishing transfers in flight");
            cancel.cancel();
        });
    }
}

/// A run's two-phase stop, whatever triggers it: first nothing new starts (the
/// [`Shutdown::cancel`] flag, which the engine and registry clients check), then what is
/// still in flight is abandoned ([`Shutdown::abandoned`]) and reported as interrupted.
/// Abandoning is safe because a tag is pushed only once everything it refers to is confirmed
/// at the target.
///
/// Built from a signal plus grace period (the CLI), a stop flag plus grace period (watch
/// mode), or an invocation deadline with two margins (the Lambda). Its timer task ends when
/// the shutdown is dropped, so it cannot touch a later run (a later invocation of a warm
/// Lambda container, the next watch cycle).
#[derive(Debug)]
pub struct Shutdown {
    /// Set when nothing new may start.
    stopping: Cancel,
    /// Set when work still in flight is abandoned.
    abandon: Cancel,
    timer: Option<tokio::task::JoinHandle<()>>,
}

impl Shutdown {
    /// A shutdown that never comes (tests, runs without a stop).
    pub fn never() -> Shutdown {
        Shutdown { stopping: Cancel::default(), abandon: Cancel::default(), timer: None }
    }

    /// Stops on the first SIGINT or SIGTERM; work in flight then has `grace` to finish.
    pub fn on_signals(grace: Duration) -> Shutdown {
        let signal = Cancel::default();
        signal.on_signals();
        Shutdown::after(signal, grace)
    }

    /// Stops when `stop` is set (watch mode's stop, shared by its cycles); work in flight
    /// then has `grace` to finish.
    pub fn after(stop: Cancel, grace: Duration) -> Shutdown {
        let abandon = Cancel::default();
        let (trigger, halt) = (stop.clone(), abandon.clone());
        let timer = tokio::spawn(async move {
            trigger.cancelled().await;
            tokio::time::sleep(grace).await;
            tracing::warn!(
                grace_seconds = grace.as_secs(),
                "transfers did not finish within the grace period; stopping"
            );
            halt.cancel();
        });
        Shutdown { stopping: stop, abandon, timer: Some(timer) }
    }

    /// Stops before an invocation `deadline`: nothing new starts once the remaining time falls
    /// below `margin`, capped at a third of the time there is, so a short function timeout
    /// still gets work done; what is in flight is abandoned once it falls below `finish`,
    /// capped at a tenth, leaving time to answer before the function is killed.
    pub fn deadline(deadline: Instant, margin: Duration, finish: Duration) -> Shutdown {
        let (stopping, abandon) = (Cancel::default(), Cancel::default());
        let remaining = deadline.saturating_duration_since(Instant::now());
        let stop_at = deadline.checked_sub(margin.min(remaining / 3)).unwrap_or_else(Instant::now);
        let abandon_at = deadline.checked_sub(finish.min(remaining / 10)).unwrap_or_else(Instant::now).max(stop_at);
        let (trigger, halt) = (stopping.clone(), abandon.clone());
        let timer = tokio::spawn(async move {
            tokio::time::sleep_until(stop_at.into()).await;
            tracing::warn!("invocation deadline near: starting no new transfers");
            trigger.cancel();
            tokio::time::sleep_until(abandon_at.into()).await;
            tracing::warn!("invocation deadline nearer: abandoning the transfers still in flight");
            halt.cancel();
        });
        Shutdown { stopping, abandon, timer: Some(timer) }
    }

    /// The "start nothing new" flag, for the engine and the cancel scope of requests.
    pub fn cancel(&self) -> &Cancel {
        &self.stopping
    }

    /// Whether nothing new may start.
    pub fn is_stopping(&self) -> bool {
        self.stopping.is_cancelled()
    }

    /// Whether work still in flight is abandoned.
    pub fn is_abandoned(&self) -> bool {
        self.abandon.is_cancelled()
    }

    /// Resolves once work still in flight must be abandoned.
    pub async fn abandoned(&self) {
        self.abandon.cancelled().await;
    }
}

impl Drop for Shutdown {
    fn drop(&mut self) {
        if let Some(timer) = &self.timer {
            timer.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lambda_deadline() -> Shutdown {
        Shutdown::deadline(Instant::now() + Duration::from_secs(90), Duration::from_secs(30), Duration::from_secs(3))
    }

    #[tokio::test(start_paused = true)]
    async fn the_deadline_stops_new_work_at_the_margin_and_abandons_at_the_finish_margin() {
        let shutdown = lambda_deadline();
        tokio::time::sleep(Duration::from_secs(59)).await;
        assert!(!shutdown.is_stopping(), "more than the margin is left");
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert!(shutdown.is_stopping(), "less than the margin is left");
        assert!(!shutdown.is_abandoned(), "in-flight transfers go on until the finish margin");
        tokio::time::sleep(Duration::from_secs(28)).await;
        assert!(shutdown.is_abandoned(), "less than the finish margin is left: in-flight work is abandoned");
    }

    #[tokio::test(start_paused = true)]
    async fn a_short_invocation_keeps_two_thirds_of_its_time_for_work() {
        // 9 s left: the 30 s margin is capped at 3 s, the 3 s finish margin at 0.9 s.
        let shutdown = Shutdown::deadline(
            Instant::now() + Duration::from_secs(9),
            Duration::from_secs(30),
            Duration::from_secs(3),
        );
        tokio::time::sleep(Duration::from_millis(5_900)).await;
        assert!(!shutdown.is_stopping());
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(shutdown.is_stopping() && !shutdown.is_abandoned());
        tokio::time::sleep(Duration::from_millis(2_100)).await;
        assert!(shutdown.is_abandoned());
    }

    #[tokio::test(start_paused = true)]
    async fn a_finished_run_leaves_no_timer_behind() {
        let shutdown = lambda_deadline();
        let flag = shutdown.cancel().clone();
        let timer = shutdown.timer.as_ref().expect("a deadline has a timer").abort_handle();
        drop(shutdown);
        tokio::time::sleep(Duration::from_secs(120)).await;
        assert!(timer.is_finished(), "the timer task ended with its run");
        assert!(!flag.is_cancelled(), "the timer never fired");
    }

    #[tokio::test(start_paused = true)]
    async fn a_stop_gives_work_in_flight_the_grace_period_then_abandons_it() {
        let stop = Cancel::default();
        let shutdown = Shutdown::after(stop.clone(), Duration::from_secs(30));
        tokio::time::sleep(Duration::from_secs(600)).await;
        assert!(!shutdown.is_stopping() && !shutdown.is_abandoned(), "no stop, no shutdown");
        stop.cancel();
        tokio::time::sleep(Duration::from_secs(29)).await;
        assert!(shutdown.is_stopping() && !shutdown.is_abandoned(), "within the grace period");
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert!(shutdown.is_abandoned(), "the grace period ran out");
        tokio::time::timeout(Duration::from_secs(1), shutdown.abandoned()).await.expect("abandoned resolves");
    }

    #[tokio::test(start_paused = true)]
    async fn a_stop_shared_by_several_runs_starts_each_ones_grace_period() {
        let stop = Cancel::default();
        let (first, second) = (
            Shutdown::after(stop.clone(), Duration::from_secs(5)),
            Shutdown::after(stop.clone(), Duration::from_secs(5)),
        );
        drop(first);
        stop.cancel();
        tokio::time::sleep(Duration::from_secs(6)).await;
        assert!(second.is_abandoned(), "a dropped run's timer does not hold up the next one");
    }

    #[tokio::test(start_paused = true)]
    async fn never_stops() {
        let shutdown = Shutdown::never();
        tokio::time::sleep(Duration::from_secs(86_400)).await;
        assert!(!shutdown.is_stopping() && !shutdown.is_abandoned());
    }
}
