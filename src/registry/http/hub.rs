//! Docker Hub's pull budget. Hub counts manifest GETs (not HEADs) against a per-window limit
//! and reports it in `RateLimit-Limit: 100;w=21600` and `RateLimit-Remaining: 76;w=21600`,
//! and, where it says, when the window resets in `RateLimit-Reset` (seconds from now, as in
//! the IETF RateLimit header draft). ocync reads them on every answer and, once the budget
//! is spent, defers further pulls instead of failing midway, saying when to try again.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use reqwest::header::HeaderMap;

/// Pulls kept in reserve (for the pulls already in flight when the header was read).
const RESERVE: i64 = 1;

/// A `RateLimit-Reset` above this is a Unix time (as GitHub-style `X-RateLimit-Reset` sends),
/// not a number of seconds: no window lasts 30 years.
const EPOCH_THRESHOLD: i64 = 1_000_000_000;

/// A reset further away than this is taken as this far: Hub's window is 6 h, and a reset in
/// the year 292277026596 would overflow the clock (and the HTTP date it is printed as).
const RESET_CAP: i64 = 24 * 3600;

/// What Hub last said about the remaining pulls; each value `-1` while unknown.
#[derive(Debug)]
pub struct PullBudget {
    limit: AtomicI64,
    remaining: AtomicI64,
    window_seconds: AtomicI64,
    /// When the window resets, as Unix seconds.
    reset_at: AtomicI64,
}

impl Default for PullBudget {
    fn default() -> Self {
        PullBudget {
            limit: AtomicI64::new(-1),
            remaining: AtomicI64::new(-1),
            window_seconds: AtomicI64::new(-1),
            reset_at: AtomicI64::new(-1),
        }
    }
}

impl PullBudget {
    /// Reads the `RateLimit-*` headers of an answer, if present.
    pub fn observe(&self, headers: &HeaderMap) {
        self.observe_at(headers, SystemTime::now());
    }

    fn observe_at(&self, headers: &HeaderMap, now: SystemTime) {
        let value = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(parse);
        if let Some((count, window)) = value("ratelimit-remaining") {
            store(&self.remaining, count);
            store(&self.window_seconds, window);
        }
        if let Some((limit, window)) = value("ratelimit-limit") {
            store(&self.limit, limit);
            store(&self.window_seconds, window);
        }
        if let Some((Some(reset), _)) = value("ratelimit-reset")
            && reset >= 0
        {
            let now = unix(now);
            let reset_at = if reset > EPOCH_THRESHOLD { reset } else { now.saturating_add(reset) };
            self.reset_at.store(reset_at.min(now.saturating_add(RESET_CAP)), Ordering::Relaxed);
        }
    }

    /// `Some(reason)` when another pull would exhaust the budget.
    pub fn exhausted(&self) -> Option<String> {
        self.exhausted_at(SystemTime::now())
    }

    fn exhausted_at(&self, now: SystemTime) -> Option<String> {
        let remaining = self.remaining.load(Ordering::Relaxed);
        if !(0..=RESERVE).contains(&remaining) {
            return None;
        }
        let limit = self.limit.load(Ordering::Relaxed);
        let of_limit = if limit > 0 { format!(" of {limit}") } else { String::new() };
        let window = self.window_seconds.load(Ordering::Relaxed);
        let window = if window > 0 { format!("; the window is {window}s") } else { String::new() };
        let reset_at = self.reset_at.load(Ordering::Relaxed);
        let resets = match UNIX_EPOCH.checked_add(Duration::from_secs(reset_at.unsigned_abs())) {
            // Clamped when observed, so the date is printable (httpdate panics past 9999).
            Some(at) if reset_at >= 0 => {
                let wait = reset_at.saturating_sub(unix(now)).max(0);
                format!("; resets in {wait}s, at {}", httpdate::fmt_http_date(at))
            }
            _ => String::new(),
        };
        Some(format!("pull budget exhausted ({remaining}{of_limit} pulls left{window}{resets})"))
    }
}

fn store(slot: &AtomicI64, value: Option<i64>) {
    if let Some(value) = value {
        slot.store(value, Ordering::Relaxed);
    }
}

fn unix(at: SystemTime) -> i64 {
    at.duration_since(UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// `76;w=21600` → (76, 21600); `3600` → (3600, none).
fn parse(value: &str) -> (Option<i64>, Option<i64>) {
    let mut parts = value.split(';');
    let count = parts.next().and_then(|c| c.trim().parse().ok());
    let window = parts.find_map(|p| p.trim().strip_prefix("w=")).and_then(|w| w.trim().parse().ok());
    (count, window)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.insert(*name, value.parse().unwrap());
        }
        headers
    }

    /// 2026-12-01 00:00:00 UTC.
    fn now() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_796_083_200)
    }

    #[test]
    fn reads_the_remaining_pulls_and_defers_at_the_reserve() {
        let budget = PullBudget::default();
        assert_eq!(budget.exhausted(), None, "unknown budget never defers");
        budget.observe(&headers(&[("ratelimit-remaining", "76;w=21600")]));
        assert_eq!(budget.exhausted(), None);
        budget.observe(&headers(&[("ratelimit-remaining", "1;w=21600")]));
        assert_eq!(budget.exhausted().as_deref(), Some("pull budget exhausted (1 pulls left; the window is 21600s)"));
    }

    #[test]
    fn the_reset_time_goes_into_the_reason() {
        let budget = PullBudget::default();
        let answer = headers(&[
            ("ratelimit-limit", "100;w=21600"),
            ("ratelimit-remaining", "0;w=21600"),
            ("ratelimit-reset", "3600"),
        ]);
        budget.observe_at(&answer, now());
        assert_eq!(
            budget.exhausted_at(now() + Duration::from_secs(600)).as_deref(),
            Some(
                "pull budget exhausted (0 of 100 pulls left; the window is 21600s; \
                 resets in 3000s, at Tue, 01 Dec 2026 01:00:00 GMT)"
            )
        );
    }

    #[test]
    fn a_reset_in_the_window_syntax_or_as_a_unix_time_is_understood() {
        for reset in ["3600;w=21600", "1796086800"] {
            let budget = PullBudget::default();
            budget.observe_at(&headers(&[("ratelimit-remaining", "1"), ("ratelimit-reset", reset)]), now());
            let reason = budget.exhausted_at(now()).unwrap();
            assert!(reason.ends_with("resets in 3600s, at Tue, 01 Dec 2026 01:00:00 GMT)"), "{reset}: {reason}");
        }
    }

    #[test]
    fn a_past_reset_says_zero_seconds_and_an_odd_reset_is_ignored() {
        let budget = PullBudget::default();
        budget.observe_at(&headers(&[("ratelimit-remaining", "0"), ("ratelimit-reset", "60")]), now());
        assert!(budget.exhausted_at(now() + Duration::from_secs(120)).unwrap().contains("resets in 0s"));
        let odd = PullBudget::default();
        odd.observe_at(&headers(&[("ratelimit-remaining", "0"), ("ratelimit-reset", "soon")]), now());
        assert_eq!(odd.exhausted_at(now()).as_deref(), Some("pull budget exhausted (0 pulls left)"));
    }

    #[test]
    fn a_reset_at_the_end_of_time_is_clamped_to_a_day_without_overflow() {
        // As a Unix time in the far future, and as 31 years of seconds.
        for reset in ["9223372036854775807", "999999999"] {
            let budget = PullBudget::default();
            budget.observe_at(&headers(&[("ratelimit-remaining", "0"), ("ratelimit-reset", reset)]), now());
            let reason = budget.exhausted_at(now()).unwrap();
            assert!(reason.ends_with("resets in 86400s, at Wed, 02 Dec 2026 00:00:00 GMT)"), "{reset}: {reason}");
        }
        let budget = PullBudget::default();
        budget.observe_at(&headers(&[("ratelimit-remaining", "0"), ("ratelimit-reset", "-5")]), now());
        assert_eq!(budget.exhausted_at(now()).as_deref(), Some("pull budget exhausted (0 pulls left)"));
    }

    #[test]
    fn tolerates_odd_values() {
        assert_eq!(parse("5"), (Some(5), None));
        assert_eq!(parse("x;w=y"), (None, None));
        assert_eq!(parse(" 7 ; w= 60"), (Some(7), Some(60)));
    }
}
