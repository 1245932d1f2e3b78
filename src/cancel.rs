//! Cancellation: one flag with several triggers (SIGINT/SIGTERM, a Lambda deadline, a watch
//! shutdown). Work checks it between steps: nothing new starts once it is set, and what is in
//! flight finishes or fails on its own.

use std::future::Future;
use std::time::Duration;

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

    /// Resolves `grace` after the flag is set: the moment work still in flight is abandoned
    /// (the CLI's `--grace-period` after a signal).
    pub async fn grace_over(&self, grace: Duration) {
        self.cancelled().await;
        tokio::time::sleep(grace).await;
        tracing::warn!(grace_seconds = grace.as_secs(), "transfers did not finish within the grace period; stopping");
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
