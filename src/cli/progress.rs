//! A progress line on stderr while work runs, shown only when stderr is a terminal.

use std::sync::Arc;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::engine::{Stats, human_bytes};

/// Redraws a spinner from the run's counters until dropped.
pub struct Progress {
    bar: Option<ProgressBar>,
    ticker: Option<tokio::task::JoinHandle<()>>,
}

impl Progress {
    /// Starts the display if stderr is a terminal and `enabled`.
    pub fn start(stats: Arc<Stats>, enabled: bool) -> Self {
        if !enabled || !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
            return Progress { bar: None, ticker: None };
        }
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
        bar.set_style(ProgressStyle::with_template("{spinner} {elapsed} {msg}").expect("static template is valid"));
        let ticking = bar.clone();
        let ticker = tokio::spawn(async move {
            loop {
                let now = stats.snapshot();
                ticking.set_message(format!(
                    "{} transferred, blobs: {} copied, {} skipped, {} mounted",
                    human_bytes(now.bytes),
                    now.blobs_copied,
                    now.blobs_skipped,
                    now.blobs_mounted
                ));
                ticking.tick();
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        Progress { bar: Some(bar), ticker: Some(ticker) }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if let Some(ticker) = self.ticker.take() {
            ticker.abort();
        }
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::engine::human_bytes;

    #[test]
    fn formats_sizes_in_binary_units() {
        assert_eq!(human_bytes(12), "12 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(1 << 30), "1.0 GiB");
    }
}
