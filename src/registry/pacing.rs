//! Adaptive pacing per registry (and per action group where a registry has separate quotas,
//! like ECR). Until a group is throttled it is paced by concurrency alone: the number of
//! requests in flight grows slowly while requests succeed and halves when the registry
//! throttles (additive increase, multiplicative decrease), so a run that is never throttled
//! is never slowed. From its first throttle on, a group is also paced by rate (see
//! [`crate::registry::rate`]): requests are spaced at a learnt rate and none goes before the
//! registry's `Retry-After`, until the group has been quiet for a while.

use std::future::Future;
use std::sync::Mutex;
use std::time::Duration;

use serde::Serialize;
use tokio::sync::Notify;
use tokio::time::Instant;

use super::rate::RateController;

/// A registry's `Retry-After` is honoured up to this long: a lying registry cannot park a
/// group, or overflow the clock, with a delay of years.
pub const RETRY_AFTER_CAP: Duration = Duration::from_secs(60);

/// Requests in flight a window starts with.
pub const INITIAL_LIMIT: usize = 16;
/// The most a window grows to.
pub const MAX_LIMIT: usize = 256;
/// Throttles closer together than this count as one (they answer the same burst).
const DECREASE_COOLDOWN: Duration = Duration::from_millis(500);
/// Requests are counted over periods this long to know the rate a group was sending at when
/// it is first throttled.
const THROUGHPUT_PERIOD: Duration = Duration::from_secs(1);

/// Throttling of one pacing group: for the report and `/metrics`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Throttling {
    /// Registry host.
    pub registry: String,
    /// Pacing group (`registry`, ECR's `put-image`, GAR's `project:<name>`).
    pub group: String,
    /// Throttling answers (429, or 503 with Retry-After).
    pub throttled: u64,
    /// Time requests spent waiting for their turn after throttling, summed over requests.
    pub waited_ms: u64,
}

impl Throttling {
    /// What happened between `before` and `self` (both of the same group).
    pub fn since(&self, before: Option<&Throttling>) -> Throttling {
        let (throttled, waited_ms) = before.map_or((0, 0), |b| (b.throttled, b.waited_ms));
        Throttling {
            throttled: self.throttled.saturating_sub(throttled),
            waited_ms: self.waited_ms.saturating_sub(waited_ms),
            ..self.clone()
        }
    }
}

/// Requests sent over the last complete period and the current one.
#[derive(Debug)]
struct Throughput {
    period_start: Instant,
    count: u64,
    last: f64,
}

impl Throughput {
    fn record(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.period_start);
        if elapsed >= THROUGHPUT_PERIOD {
            self.last = self.count as f64 / elapsed.as_secs_f64();
            self.period_start = now;
            self.count = 0;
        }
        self.count += 1;
    }

    /// Requests per second lately: the last period's, or the current one's if it is higher.
    fn rate(&self, now: Instant) -> f64 {
        let elapsed = now.saturating_duration_since(self.period_start).max(THROUGHPUT_PERIOD / 10);
        self.last.max(self.count as f64 / elapsed.as_secs_f64())
    }
}

#[derive(Debug)]
struct State {
    limit: f64,
    in_flight: usize,
    last_decrease: Option<Instant>,
    throttles: u64,
    /// Rate control, from the group's first throttle until it has been quiet.
    rate: Option<RateController>,
    throughput: Throughput,
    waited: Duration,
}

/// One pacing group's window.
#[derive(Debug)]
pub struct Window {
    state: Mutex<State>,
    released: Notify,
}

/// A slot in a window; say how the request went, or drop it to stay neutral.
#[must_use = "a permit holds a slot until dropped"]
pub struct Permit<'w> {
    window: &'w Window,
    /// When the request was let go, to tell a throttle of this round from one of the last.
    sent_at: Instant,
}

impl Default for Window {
    fn default() -> Self {
        Window::new(INITIAL_LIMIT)
    }
}

impl Window {
    /// A window allowing `initial` requests at first.
    pub fn new(initial: usize) -> Self {
        let now = Instant::now();
        Window {
            state: Mutex::new(State {
                limit: initial.max(1) as f64,
                in_flight: 0,
                last_decrease: None,
                throttles: 0,
                rate: None,
                throughput: Throughput { period_start: now, count: 0, last: 0.0 },
                waited: Duration::ZERO,
            }),
            released: Notify::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("window lock poisoned")
    }

    /// Waits for a slot in flight (concurrency control only).
    pub async fn acquire(&self) -> Permit<'_> {
        loop {
            let notified = self.released.notified();
            {
                let mut state = self.lock();
                if (state.in_flight as f64) < state.limit.floor().max(1.0) {
                    state.in_flight += 1;
                    state.throughput.record(Instant::now());
                    return Permit { window: self, sent_at: Instant::now() };
                }
            }
            notified.await;
        }
    }

    /// Waits for a slot in flight and, once the group is rate controlled, for its turn; `None`
    /// when `give_up` (a cancelled run, a spent throttle budget) resolves first. The time spent
    /// waiting for a turn is counted as time lost to throttling.
    pub async fn acquire_paced(&self, give_up: impl Future<Output = ()>) -> Option<Permit<'_>> {
        let mut permit = self.acquire().await;
        let mut give_up = std::pin::pin!(give_up);
        let started = Instant::now();
        loop {
            let now = Instant::now();
            let slot = {
                let mut state = self.lock();
                match state.rate.as_mut() {
                    Some(rate) if rate.is_quiet(now) => {
                        state.rate = None;
                        None
                    }
                    Some(rate) => Some(rate.reserve(now)),
                    None => None,
                }
            };
            let Some(slot) = slot else { break };
            if slot.at > now {
                tokio::select! {
                    () = tokio::time::sleep_until(slot.at) => {}
                    () = &mut give_up => {
                        self.lock().waited += started.elapsed();
                        return None;
                    }
                }
            }
            // A throttle while this request slept moved the schedule: take a new turn.
            if self.lock().rate.as_ref().is_none_or(|rate| rate.holds(slot)) {
                break;
            }
        }
        let waited = started.elapsed();
        if !waited.is_zero() {
            self.lock().waited += waited;
        }
        permit.sent_at = Instant::now();
        Some(permit)
    }

    /// The current limit.
    pub fn limit(&self) -> usize {
        self.lock().limit.floor() as usize
    }

    /// Throttling answers seen so far.
    pub fn throttles(&self) -> u64 {
        self.lock().throttles
    }

    /// Throttling answers and time spent waiting for a turn, so far.
    pub fn throttling(&self, registry: &str, group: &str) -> Throttling {
        let state = self.lock();
        Throttling {
            registry: registry.to_string(),
            group: group.to_string(),
            throttled: state.throttles,
            waited_ms: state.waited.as_millis() as u64,
        }
    }

    /// Requests per second the group is paced at, `None` while it is not rate controlled.
    pub fn rate(&self) -> Option<f64> {
        self.lock().rate.as_ref().map(RateController::rate)
    }
}

impl Permit<'_> {
    /// The request succeeded: grow by about one slot per window's worth of successes, and
    /// raise the rate additively if the group is rate controlled.
    pub fn succeeded(self) {
        let mut state = self.window.lock();
        state.limit = (state.limit + 1.0 / state.limit).min(MAX_LIMIT as f64);
        if let Some(rate) = state.rate.as_mut() {
            rate.succeeded();
        }
    }

    /// The registry throttled (429, or 503 with Retry-After): halve the window once per
    /// burst, and switch the group to rate control, or lower its rate; nothing more goes to
    /// the group before `retry_after` (at most [`RETRY_AFTER_CAP`]) has passed.
    pub fn throttled(self, retry_after: Option<Duration>) {
        let retry_after = retry_after.map(|after| after.min(RETRY_AFTER_CAP));
        let mut state = self.window.lock();
        state.throttles += 1;
        let now = Instant::now();
        if state.last_decrease.is_none_or(|at| now.duration_since(at) >= DECREASE_COOLDOWN) {
            state.limit = (state.limit / 2.0).max(1.0);
            state.last_decrease = Some(now);
        }
        // Full jitter: a uniform draw, so processes throttled together resume apart.
        let jitter = rand::random::<f64>();
        match state.rate.as_mut() {
            Some(rate) => rate.throttled(now, self.sent_at, retry_after, jitter),
            None => {
                let observed = state.throughput.rate(now);
                let rate = RateController::start(now, observed, retry_after, jitter);
                tracing::debug!(rate = rate.rate(), observed, "throttled: pacing by rate");
                state.rate = Some(rate);
            }
        }
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        self.window.lock().in_flight -= 1;
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
        window.acquire().await.throttled(None);
        window.acquire().await.throttled(None);
        assert_eq!(window.limit(), 2, "two throttles in one burst halve once");
        assert_eq!(window.throttles(), 2);
    }

    #[tokio::test]
    async fn never_shrinks_below_one_and_blocks_beyond_the_limit() {
        let window = Window::new(1);
        window.acquire().await.throttled(None);
        assert_eq!(window.limit(), 1);
        let held = window.acquire().await;
        let second = tokio::time::timeout(Duration::from_millis(50), window.acquire()).await;
        assert!(second.is_err(), "the only slot is taken");
        drop(held);
        let third = tokio::time::timeout(Duration::from_millis(50), window.acquire()).await;
        assert!(third.is_ok(), "released slots are handed on");
    }

    #[tokio::test(start_paused = true)]
    async fn an_unthrottled_group_is_never_paced() {
        let window = Window::new(4);
        let started = Instant::now();
        for _ in 0..1000 {
            window.acquire_paced(std::future::pending()).await.expect("never gives up").succeeded();
        }
        assert_eq!(started.elapsed(), Duration::ZERO, "no waiting without a throttle");
        assert_eq!(window.rate(), None);
        assert_eq!(window.throttling("r", "g").waited_ms, 0);
    }

    #[tokio::test(start_paused = true)]
    async fn after_a_throttle_nothing_goes_before_retry_after_and_then_requests_are_spaced() {
        let window = Window::new(4);
        window.acquire_paced(std::future::pending()).await.unwrap().throttled(Some(Duration::from_secs(2)));
        let rate = window.rate().expect("rate controlled from the first throttle");
        assert_eq!(rate, 5.0, "half of one request in the shortest period measured (a tenth of a second)");
        let throttled_at = Instant::now();
        let (mut sent, mut rates) = (Vec::new(), Vec::new());
        for _ in 0..3 {
            let permit = window.acquire_paced(std::future::pending()).await.unwrap();
            sent.push(Instant::now());
            rates.push(window.rate().unwrap());
            permit.succeeded();
        }
        assert!(sent[0] >= throttled_at + Duration::from_secs(2), "Retry-After is a floor");
        let spread = Duration::from_secs(1).max(Duration::from_secs_f64(1.0 / rate));
        assert!(sent[0] <= throttled_at + Duration::from_secs(2) + spread, "jitter stays within one spread");
        // The next turn is one interval at the rate when this one was taken (successes since
        // raise the rate for the turns after).
        for (pair, rate) in sent.windows(2).zip(&rates) {
            assert!(pair[1] - pair[0] >= Duration::from_secs_f64(0.99 / rate), "spaced at the rate");
            assert!(pair[1] - pair[0] <= Duration::from_secs_f64(1.01 / rate), "and no slower");
        }
        let throttling = window.throttling("r", "g");
        assert_eq!(throttling.throttled, 1);
        assert!(throttling.waited_ms >= 2000, "{throttling:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_retry_after_of_years_holds_the_group_only_for_the_cap() {
        let window = Window::new(4);
        window.acquire_paced(std::future::pending()).await.unwrap().throttled(Some(Duration::MAX));
        let started = Instant::now();
        drop(window.acquire_paced(std::future::pending()).await.unwrap());
        let waited = started.elapsed();
        assert!(waited >= RETRY_AFTER_CAP && waited <= RETRY_AFTER_CAP * 2, "{waited:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_wait_for_a_turn_ends_when_told_to_give_up() {
        let window = Window::new(4);
        window.acquire_paced(std::future::pending()).await.unwrap().throttled(Some(Duration::from_secs(60)));
        let started = Instant::now();
        let give_up = tokio::time::sleep(Duration::from_secs(1));
        assert!(window.acquire_paced(give_up).await.is_none());
        assert_eq!(started.elapsed(), Duration::from_secs(1), "gave up at once, not after Retry-After");
    }

    #[tokio::test(start_paused = true)]
    async fn a_quiet_group_goes_back_to_concurrency_control() {
        let window = Window::new(4);
        window.acquire_paced(std::future::pending()).await.unwrap().throttled(Some(Duration::ZERO));
        assert!(window.rate().is_some());
        tokio::time::advance(crate::registry::rate::QUIET).await;
        window.acquire_paced(std::future::pending()).await.unwrap().succeeded();
        assert_eq!(window.rate(), None);
    }
}
