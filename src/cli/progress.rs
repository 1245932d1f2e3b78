//! The live view of `sync` and `copy` on a terminal: an overall line (image targets done of
//! planned, by outcome; bytes sent of the expected total; rate; elapsed; an estimate of what
//! is left) and a few lines for the blob transfers in flight, redrawn in place on stderr.
//!
//! Log lines go through [`LogWriter`], which lifts the view while a line is written, so logs
//! scroll above it and nothing stale is left behind. Without a terminal, with
//! `--log-format json`, `--json` or `--no-progress` there is no view and stderr is exactly
//! the log lines.

use std::collections::VecDeque;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::engine::{Headway, Stats, Transfer, human_bytes};

/// How often the view is redrawn: often enough to look live, rarely enough to cost nothing.
const TICK: Duration = Duration::from_millis(200);
/// The rate is the bytes sent over this trailing window: long enough to smooth blob-sized
/// bursts, short enough to follow a change of pace.
const RATE_WINDOW: Duration = Duration::from_secs(5);
/// Transfer lines under the overall line; the rest are counted on one more line.
const SHOWN_TRANSFERS: usize = 4;

/// The view on screen, for [`LogWriter`] to lift; at most one at a time.
static ACTIVE: Mutex<Option<ProgressBar>> = Mutex::new(None);

/// What stderr can show, decided once from the terminal, the flags and `NO_COLOR`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Screen {
    /// A live view may be drawn (stderr is a terminal, text logs, no `--no-progress`).
    pub live: bool,
    /// Colours are allowed (a terminal, and `NO_COLOR` unset or empty).
    pub colour: bool,
}

impl Screen {
    /// Reads the terminal and `NO_COLOR` (<https://no-color.org>: any non-empty value).
    pub fn detect(no_progress: bool, text_logs: bool) -> Self {
        let terminal = std::io::IsTerminal::is_terminal(&std::io::stderr());
        let no_colour = std::env::var_os("NO_COLOR").is_some_and(|value| !value.is_empty());
        Screen { live: terminal && text_logs && !no_progress, colour: terminal && !no_colour }
    }
}

/// Redraws the view from the run's counters until dropped.
pub struct Progress {
    bar: Option<ProgressBar>,
    ticker: Option<tokio::task::JoinHandle<()>>,
}

impl Progress {
    /// Starts the view if `screen` allows one and `wanted` (the command prints no JSON).
    pub fn start(stats: Arc<Stats>, screen: Screen, wanted: bool) -> Self {
        if !wanted || !screen.live {
            return Progress { bar: None, ticker: None };
        }
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
        bar.set_style(ProgressStyle::with_template("{msg}").expect("static template is valid"));
        *ACTIVE.lock().expect("view lock poisoned") = Some(bar.clone());
        let drawing = bar.clone();
        let ticker = tokio::spawn(async move {
            let started = Instant::now();
            let mut rate = Rate::default();
            loop {
                let headway = stats.headway();
                let now = Instant::now();
                let view = View {
                    headway,
                    transfers: stats.transfers.oldest(SHOWN_TRANSFERS),
                    in_flight: stats.transfers.count(),
                    elapsed: now - started,
                    rate: rate.update(now, headway.bytes),
                };
                drawing.set_message(view.render(screen.colour));
                tokio::time::sleep(TICK).await;
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
            // Cleared, so the summary printed next is the last thing on screen.
            ACTIVE.lock().expect("view lock poisoned").take();
            bar.finish_and_clear();
        }
    }
}

/// The `tracing` writer for stderr: each log line is written with the view lifted, so it
/// lands above the view; without a view it is a plain stderr write.
#[derive(Debug, Clone, Copy, Default)]
pub struct LogWriter;

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogWriter {
    type Writer = LogWriter;
    fn make_writer(&'a self) -> Self::Writer {
        LogWriter
    }
}

impl Write for LogWriter {
    fn write(&mut self, line: &[u8]) -> std::io::Result<usize> {
        // The bar is cloned out so the lock is not held while drawing.
        let bar = ACTIVE.lock().map(|active| active.clone()).unwrap_or(None);
        let write = || std::io::stderr().write_all(line);
        match bar {
            Some(bar) => bar.suspend(write)?,
            None => write()?,
        }
        Ok(line.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

/// Bytes per second over the trailing [`RATE_WINDOW`].
#[derive(Default)]
struct Rate {
    samples: VecDeque<(Instant, u64)>,
}

impl Rate {
    fn update(&mut self, now: Instant, bytes: u64) -> f64 {
        self.samples.push_back((now, bytes));
        while self.samples.len() > 2 && self.samples.front().is_some_and(|(at, _)| now - *at > RATE_WINDOW) {
            self.samples.pop_front();
        }
        match self.samples.front() {
            Some((at, first)) if now > *at => bytes.saturating_sub(*first) as f64 / (now - *at).as_secs_f64(),
            _ => 0.0,
        }
    }
}

/// One frame of the view.
struct View {
    headway: Headway,
    transfers: Vec<Transfer>,
    in_flight: usize,
    elapsed: Duration,
    rate: f64,
}

impl View {
    fn render(&self, colour: bool) -> String {
        let mut lines = vec![self.overall(colour)];
        for transfer in &self.transfers {
            let digest = transfer.digest.as_str();
            // Algorithm and twelve hex digits, as `docker` shows layer ids.
            let short = &digest[..digest.len().min(digest.find(':').map_or(0, |colon| colon + 13))];
            lines.push(format!(
                "  {}  {short}  {} of {}",
                transfer.image,
                human_bytes(transfer.bytes.min(transfer.size)),
                human_bytes(transfer.size)
            ));
        }
        if self.in_flight > self.transfers.len() {
            lines.push(format!("  ... and {} more transfers", self.in_flight - self.transfers.len()));
        }
        lines.join("\n")
    }

    /// `images 7/12: 5 synced, 1 up to date, 1 failed | 23.4 MiB of ~48.0 MiB | 3.1 MiB/s | 8s elapsed, ~8s left`
    fn overall(&self, colour: bool) -> String {
        let h = &self.headway;
        if h.planned == 0 {
            // Discovery (tag lists, HEADs) comes first; the totals come with the plan.
            return format!("planning | {} elapsed", clock(self.elapsed));
        }
        let paint = |code: &str, text: String| if colour { format!("\x1b[{code}m{text}\x1b[0m") } else { text };
        let failed = format!("{} failed", h.failed);
        let failed = if h.failed > 0 { paint("31", failed) } else { failed };
        let (total, estimated) = self.expected_bytes();
        let total = format!("{}{}", if estimated { "~" } else { "" }, human_bytes(total.max(h.bytes)));
        let left = self.estimate_left().map(|left| format!(", ~{} left", clock(left))).unwrap_or_default();
        format!(
            "images {}/{}: {}, {} up to date, {failed} | {} of {total} | {}/s | {} elapsed{left}",
            h.done(),
            h.planned,
            paint("32", format!("{} synced", h.synced)),
            h.up_to_date,
            human_bytes(h.bytes),
            human_bytes(self.rate as u64),
            clock(self.elapsed),
        )
    }

    /// The bytes the run should send in all, and whether that is an estimate: what the images
    /// started expect, plus, for the image targets not started yet, their average.
    fn expected_bytes(&self) -> (u64, bool) {
        let h = &self.headway;
        let waiting = h.waiting();
        if waiting == 0 || h.started == 0 {
            return (h.bytes_expected, waiting > 0);
        }
        (h.bytes_expected + h.bytes_expected / h.started * waiting, true)
    }

    /// Time left at the current rate, once there is a rate and something is known to be left.
    fn estimate_left(&self) -> Option<Duration> {
        let (total, _) = self.expected_bytes();
        let left = total.saturating_sub(self.headway.bytes);
        (self.rate >= 1.0 && self.headway.done() < self.headway.planned)
            .then(|| Duration::from_secs_f64(left as f64 / self.rate))
    }
}

/// `8s`, `3m05s`, `1h02m`.
fn clock(duration: Duration) -> String {
    let seconds = duration.as_secs();
    match seconds {
        0..60 => format!("{seconds}s"),
        60..3600 => format!("{}m{:02}s", seconds / 60, seconds % 60),
        _ => format!("{}h{:02}m", seconds / 3600, seconds % 3600 / 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn transfer(image: &str, bytes: u64, size: u64) -> Transfer {
        let digest = format!("sha256:{}", "ab".repeat(32)).parse().unwrap();
        Transfer { image: image.into(), digest, bytes, size }
    }

    fn headway() -> Headway {
        Headway {
            planned: 12,
            presettled: 2,
            started: 6,
            synced: 5,
            up_to_date: 1,
            failed: 1,
            bytes: 3 << 20,
            bytes_expected: 6 << 20,
        }
    }

    #[test]
    fn the_overall_line_shows_totals_rate_elapsed_and_what_is_left() {
        let view = View {
            headway: headway(),
            transfers: vec![transfer("team/api:1.0", 512 << 10, 1 << 20)],
            in_flight: 3,
            elapsed: Duration::from_secs(65),
            rate: (1 << 20) as f64,
        };
        // Six started expect 6 MiB; four waiting at the same average make 10 MiB in all.
        assert_eq!(
            view.render(false),
            "images 7/12: 5 synced, 1 up to date, 1 failed | 3.0 MiB of ~10.0 MiB | 1.0 MiB/s | 1m05s elapsed, ~7s left\n  \
             team/api:1.0  sha256:abababababab  512.0 KiB of 1.0 MiB\n  ... and 2 more transfers"
        );
    }

    #[test]
    fn colour_marks_synced_and_failed_only_when_allowed() {
        let view = View { headway: headway(), transfers: vec![], in_flight: 0, elapsed: Duration::ZERO, rate: 0.0 };
        let coloured = view.render(true);
        assert!(coloured.contains("\x1b[32m5 synced\x1b[0m") && coloured.contains("\x1b[31m1 failed\x1b[0m"));
        assert!(!view.render(false).contains('\x1b'));
    }

    #[test]
    fn without_a_rate_or_once_all_is_done_no_estimate_is_shown() {
        let idle = View { headway: headway(), transfers: vec![], in_flight: 0, elapsed: Duration::ZERO, rate: 0.0 };
        assert!(!idle.render(false).contains("left"), "{}", idle.render(false));
        let all_started = Headway { presettled: 2, started: 10, bytes_expected: 4 << 20, ..headway() };
        let exact = View { headway: all_started, transfers: vec![], in_flight: 0, elapsed: Duration::ZERO, rate: 1.0 };
        assert!(exact.render(false).contains("3.0 MiB of 4.0 MiB"), "{}", exact.render(false));
    }

    #[test]
    fn the_rate_covers_the_trailing_window() {
        let mut rate = Rate::default();
        let start = Instant::now();
        assert_eq!(rate.update(start, 0), 0.0);
        assert_eq!(rate.update(start + Duration::from_secs(2), 2000), 1000.0);
        // The samples older than the window leave it, the newest two always stay.
        rate.update(start + Duration::from_secs(8), 2000);
        let late = rate.update(start + Duration::from_secs(10), 6000);
        assert_eq!(late, 2000.0, "over the samples at 8 s and 10 s");
    }

    #[test]
    fn before_the_plan_the_view_says_it_is_planning() {
        let planning = Headway { planned: 0, ..Headway::default() };
        let view =
            View { headway: planning, transfers: vec![], in_flight: 0, elapsed: Duration::from_secs(3), rate: 0.0 };
        assert_eq!(view.render(true), "planning | 3s elapsed");
    }

    #[test]
    fn clock_reads_like_a_person_would_say_it() {
        assert_eq!(clock(Duration::from_secs(8)), "8s");
        assert_eq!(clock(Duration::from_secs(185)), "3m05s");
        assert_eq!(clock(Duration::from_secs(3720)), "1h02m");
    }

    #[test]
    fn formats_sizes_in_binary_units() {
        assert_eq!(human_bytes(12), "12 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(1 << 30), "1.0 GiB");
    }
}
