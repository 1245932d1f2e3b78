//! Docker Hub's pull budget. Hub counts manifest GETs (not HEADs) against a per-window limit
//! and reports what is left in `RateLimit-Remaining: 76;w=21600`. ocync reads it on every
//! answer and, once the budget is spent, defers further pulls instead of failing midway.

use std::sync::atomic::{AtomicI64, Ordering};

use reqwest::header::HeaderMap;

/// Pulls kept in reserve (for the pulls already in flight when the header was read).
const RESERVE: i64 = 1;

/// What Hub last said about the remaining pulls; `-1` while unknown.
#[derive(Debug)]
pub struct PullBudget {
    remaining: AtomicI64,
    window_seconds: AtomicI64,
}

impl Default for PullBudget {
    fn default() -> Self {
        PullBudget { remaining: AtomicI64::new(-1), window_seconds: AtomicI64::new(-1) }
    }
}

impl PullBudget {
    /// Reads `RateLimit-Remaining` from an answer, if present.
    pub fn observe(&self, headers: &HeaderMap) {
        let Some(value) = headers.get("ratelimit-remaining").and_then(|v| v.to_str().ok()) else { return };
        let (count, window) = parse(value);
        if let Some(count) = count {
            self.remaining.store(count, Ordering::Relaxed);
        }
        if let Some(window) = window {
            self.window_seconds.store(window, Ordering::Relaxed);
        }
    }

    /// `Some(reason)` when another pull would exhaust the budget.
    pub fn exhausted(&self) -> Option<String> {
        let remaining = self.remaining.load(Ordering::Relaxed);
        if !(0..=RESERVE).contains(&remaining) {
            return None;
        }
        let window = self.window_seconds.load(Ordering::Relaxed);
        let resets = if window > 0 { format!("; the window is {window}s") } else { String::new() };
        Some(format!("pull budget exhausted ({remaining} pulls left{resets})"))
    }
}

/// `76;w=21600` → (76, 21600).
fn parse(value: &str) -> (Option<i64>, Option<i64>) {
    let mut parts = value.split(';');
    let count = parts.next().and_then(|c| c.trim().parse().ok());
    let window = parts.find_map(|p| p.trim().strip_prefix("w=")).and_then(|w| w.parse().ok());
    (count, window)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert("ratelimit-remaining", value.parse().unwrap());
        headers
    }

    #[test]
    fn reads_the_remaining_pulls_and_defers_at_the_reserve() {
        let budget = PullBudget::default();
        assert_eq!(budget.exhausted(), None, "unknown budget never defers");
        budget.observe(&headers("76;w=21600"));
        assert_eq!(budget.exhausted(), None);
        budget.observe(&headers("1;w=21600"));
        assert_eq!(budget.exhausted().as_deref(), Some("pull budget exhausted (1 pulls left; the window is 21600s)"));
    }

    #[test]
    fn tolerates_odd_values() {
        assert_eq!(parse("5"), (Some(5), None));
        assert_eq!(parse("x;w=y"), (None, None));
    }
}
