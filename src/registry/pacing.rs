//! Adaptive concurrency per registry (and per action group where a registry has separate
//! quotas, like ECR): the number of requests in flight grows slowly while requests succeed and
//! halves when the registry throttles (additive increase, multiplicative decrease).

use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::sync::Notify;

/// Requests in flight a window starts with.
pub const INITIAL_LIMIT: usize = 16;
/// The most a window grows to.
pub const MAX_LIMIT: usize = 256;
/// Throttles closer together than this count as one (they answer the same burst).
const DECREASE_COOLDOWN: Duration = Duration::from_millis(500);

#[derive(Debug)]
struct State {
    limit: f64,
    in_flight: usize,
    last_decrease: Option<Instant>,
    throttles: u64,
}

/// One concurrency window.
#[derive(Debug)]
pub struct Window {
    state: Mutex<State>,
    released: Notify,
}

/// A slot in a window; say how the request went, or drop it to stay neutral.
#[must_use = "a permit holds a slot until dropped"]
pub struct Permit<'w> {
    window: &'w Window,
}

impl Default for Window {
    fn default() -> Self {
        Window::new(INITIAL_LIMIT)
    }
}

impl Window {
    /// A window allowing `initial` requests at first.
    pub fn new(initial: usize) -> Self {
        Window {
            state: Mutex::new(State { limit: initial.max(1) as f64, in_flight: 0, last_decrease: None, throttles: 0 }),
            released: Notify::new(),
        }
    }

    /// Waits for a slot.
    pub async fn acquire(&self) -> Permit<'_> {
        loop {
            let notified = self.released.notified();
            {
                let mut state = self.state.lock().expect("window lock poisoned");
                if (state.in_flight as f64) < state.limit.floor().max(1.0) {
                    state.in_flight += 1;
                    return Permit { window: self };
                }
            }
            notified.await;
        }
    }

    /// The current limit.
    pub fn limit(&self) -> usize {
        self.state.lock().expect("window lock poisoned").limit.floor() as usize
    }

    /// Throttling answers seen so far.
    pub fn throttles(&self) -> u64 {
        self.state.lock().expect("window lock poisoned").throttles
    }
}

impl Permit<'_> {
    /// The request succeeded: grow by about one slot per window's worth of successes.
    pub fn succeeded(self) {
        let mut state = self.window.state.lock().expect("window lock poisoned");
        state.limit = (state.limit + 1.0 / state.limit).min(MAX_LIMIT as f64);
    }

    /// The registry throttled (429, or 503 with Retry-After): halve, once per burst.
    pub fn throttled(self) {
        let mut state = self.window.state.lock().expect("window lock poisoned");
        state.throttles += 1;
        let now = Instant::now();
        if state.last_decrease.is_none_or(|at| now.duration_since(at) >= DECREASE_COOLDOWN) {
            state.limit = (state.limit / 2.0).max(1.0);
            state.last_decrease = Some(now);
        }
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        self.window.state.lock().expect("window lock poisoned").in_flight -= 1;
        self.window.released.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn successes_grow_the_window_and_throttles_halve_it_once_per_burst() {
        let window = Window::new(4);
        for _ in 0..5 {
            window.acquire().await.succeeded();
        }
        assert_eq!(window.limit(), 5, "one slot per window's worth of successes");
        window.acquire().await.throttled();
        window.acquire().await.throttled();
        assert_eq!(window.limit(), 2, "two throttles in one burst halve once");
        assert_eq!(window.throttles(), 2);
    }

    #[tokio::test]
    async fn never_shrinks_below_one_and_blocks_beyond_the_limit() {
        let window = Window::new(1);
        window.acquire().await.throttled();
        assert_eq!(window.limit(), 1);
        let held = window.acquire().await;
        let second = tokio::time::timeout(Duration::from_millis(50), window.acquire()).await;
        assert!(second.is_err(), "the only slot is taken");
        drop(held);
        let third = tokio::time::timeout(Duration::from_millis(50), window.acquire()).await;
        assert!(third.is_ok(), "released slots are handed on");
    }
}
