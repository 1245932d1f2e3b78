//! Rate control for one pacing group after a registry throttled it: the pure controller,
//! with the clock and the jitter handed in so tests can drive it.
//!
//! Quotas such as ECR's `PutImage` are per account, shared by every process writing to it, so
//! no single process can know the share it may use. Each one learns it the way TCP flows share
//! a link: multiplicative decrease on a throttle, additive increase on success (AIMD), which
//! converges to a fair share of the quota without any talking. Requests are spaced at the
//! learnt rate, none goes before a `Retry-After` has passed, and the point where a group
//! resumes after a throttle is jittered, so processes throttled by the same burst do not come
//! back in step and burn the next second's quota together.

use std::time::Duration;

use tokio::time::Instant;

/// The slowest a group is paced: one request every five seconds. Throttles from a quota that
/// is shared by many processes can push the rate down this far; lower would stall a run.
pub const MIN_RATE: f64 = 0.2;
/// The fastest pacing, far above any registry's published quota (ECR reads: ~1,000/s).
pub const MAX_RATE: f64 = 10_000.0;
/// What a throttle multiplies the rate by.
pub const DECREASE: f64 = 0.5;
/// After a decrease, the rate grows back linearly to what it was before in about this long
/// (while requests keep succeeding), so a group that backed off too far recovers in seconds,
/// and N processes sharing a quota raise their total slowly enough that few requests are
/// wasted when they reach it.
pub const RECOVERY: Duration = Duration::from_secs(5);
/// The smallest additive increase, in requests per second per second.
const MIN_INCREASE: f64 = 0.05;
/// The widest a resume point is spread after a throttle.
pub const MAX_JITTER_SPAN: Duration = Duration::from_secs(5);
/// A group with no throttle for this long goes back to concurrency control alone.
pub const QUIET: Duration = Duration::from_secs(60);

/// A reserved send time; valid only while no throttle has moved the schedule since.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slot {
    /// When the request may be sent.
    pub at: Instant,
    epoch: u64,
}

/// The learnt rate of one pacing group and its schedule.
#[derive(Debug, Clone)]
pub struct RateController {
    /// Requests per second.
    rate: f64,
    /// Additive increase, in requests per second gained per second of successes.
    increase: f64,
    /// The earliest time not yet handed out.
    next: Instant,
    /// No request before this (the registry's `Retry-After`).
    floor: Instant,
    last_decrease: Instant,
    last_throttle: Instant,
    /// Bumped by every throttle; slots of an older epoch are reserved again.
    epoch: u64,
}

impl RateController {
    /// Rate control starting with a throttle at `now`, for a group that was sending
    /// `observed` requests per second: it goes on at a [`DECREASE`] of that. `jitter` (in
    /// `0..=1`) places the resume point, as in [`RateController::throttled`].
    pub fn start(now: Instant, observed: f64, retry_after: Option<Duration>, jitter: f64) -> Self {
        let rate = (observed * DECREASE).clamp(MIN_RATE, MAX_RATE);
        let mut controller = RateController {
            rate,
            increase: increase_for(rate),
            next: now,
            floor: now,
            last_decrease: now,
            last_throttle: now,
            epoch: 0,
        };
        controller.hold(now, retry_after, jitter);
        controller
    }

    /// Requests per second now.
    pub fn rate(&self) -> f64 {
        self.rate
    }

    /// Time between two requests at the current rate.
    pub fn interval(&self) -> Duration {
        Duration::from_secs_f64(1.0 / self.rate)
    }

    /// No request is sent before this.
    pub fn floor(&self) -> Instant {
        self.floor
    }

    /// A request sent at `sent_at` was throttled at `now`. The rate decreases once per round:
    /// a request sent before the last decrease was sent at the old rate, so its throttle
    /// teaches nothing new (as TCP halves once per window of losses). The schedule restarts
    /// after the floor: `retry_after`, or one interval when the registry gave none, plus
    /// `jitter` (in `0..=1`) of a spread of one interval, or of half the `Retry-After` if
    /// longer (capped at [`MAX_JITTER_SPAN`]): wide enough that processes throttled together
    /// come back apart, narrow enough that the wait stays close to what the registry asked.
    pub fn throttled(&mut self, now: Instant, sent_at: Instant, retry_after: Option<Duration>, jitter: f64) {
        if sent_at >= self.last_decrease {
            self.rate = (self.rate * DECREASE).max(MIN_RATE);
            self.increase = increase_for(self.rate);
            self.last_decrease = now;
        }
        self.hold(now, retry_after, jitter);
    }

    /// A request went through: the rate grows by [`RateController::increase`] per second's
    /// worth of successes (one `increase / rate` per success).
    pub fn succeeded(&mut self) {
        self.rate = (self.rate + self.increase / self.rate).min(MAX_RATE);
    }

    /// Additive increase now, in requests per second per second.
    pub fn increase(&self) -> f64 {
        self.increase
    }

    /// Reserves the next send time: one interval after the previous one, never before the
    /// floor or `now`.
    pub fn reserve(&mut self, now: Instant) -> Slot {
        let at = self.next.max(self.floor).max(now);
        self.next = at + self.interval();
        Slot { at, epoch: self.epoch }
    }

    /// Whether `slot` still holds: no throttle has moved the schedule since it was reserved.
    pub fn holds(&self, slot: Slot) -> bool {
        slot.epoch == self.epoch
    }

    /// Whether the group has gone [`QUIET`] long without a throttle.
    pub fn is_quiet(&self, now: Instant) -> bool {
        now.saturating_duration_since(self.last_throttle) >= QUIET
    }

    fn hold(&mut self, now: Instant, retry_after: Option<Duration>, jitter: f64) {
        let wait = retry_after.unwrap_or_else(|| self.interval());
        let span = self.interval().max(wait / 2).min(MAX_JITTER_SPAN.max(self.interval()));
        self.floor = self.floor.max(now + wait);
        self.next = self.floor + span.mul_f64(jitter.clamp(0.0, 1.0));
        self.last_throttle = now;
        self.epoch += 1;
    }
}

/// The additive increase for a group just decreased to `rate`: back to twice that in about
/// [`RECOVERY`].
fn increase_for(rate: f64) -> f64 {
    (rate / RECOVERY.as_secs_f64()).max(MIN_INCREASE)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    fn started(rate: f64) -> (RateController, Instant) {
        let now = Instant::now();
        (RateController::start(now, rate / DECREASE, Some(Duration::ZERO), 0.0), now)
    }

    #[test]
    fn a_throttle_starts_at_half_the_observed_rate_and_each_later_round_halves_it() {
        let (mut controller, now) = started(8.0);
        assert!((controller.rate() - 8.0).abs() < 1e-9, "{}", controller.rate());
        controller.throttled(now + SECOND, now + SECOND / 2, None, 0.0);
        assert!((controller.rate() - 4.0).abs() < 1e-9, "a request sent after the last decrease halves");
        controller.throttled(now + SECOND * 2, now + SECOND / 2, None, 0.0);
        assert!((controller.rate() - 4.0).abs() < 1e-9, "one sent before it was sent at the old rate");
        for _ in 0..1000 {
            controller.throttled(now + SECOND * 3, now + SECOND * 3, None, 0.0);
        }
        assert!((controller.rate() - MIN_RATE).abs() < 1e-9, "never below the minimum");
    }

    #[test]
    fn successes_raise_the_rate_additively_back_within_the_recovery_time() {
        let (mut controller, _) = started(4.0);
        let increase = controller.increase();
        assert!((increase - 4.0 / RECOVERY.as_secs_f64()).abs() < 1e-9, "{increase}");
        // One second of successes at about the current rate adds about `increase`.
        for _ in 0..4 {
            controller.succeeded();
        }
        // (slightly less: each success adds `increase / rate` at the rate it has grown to)
        let rate = controller.rate();
        assert!(rate > 4.0 + increase * 0.85 && rate <= 4.0 + increase, "{rate}");
        let mut seconds = 1;
        while controller.rate() < 8.0 {
            for _ in 0..controller.rate().ceil() as usize {
                controller.succeeded();
            }
            seconds += 1;
        }
        let recovery = RECOVERY.as_secs();
        assert!(
            (recovery - 1..=recovery + 2).contains(&seconds),
            "back to twice the rate in about {RECOVERY:?}: {seconds}s"
        );
        let (mut fast, _) = started(MAX_RATE);
        fast.succeeded();
        assert!(fast.rate() <= MAX_RATE);
    }

    #[test]
    fn requests_are_spaced_at_the_rate() {
        let (mut controller, now) = started(4.0);
        let slots: Vec<Instant> = (0..4).map(|_| controller.reserve(now).at).collect();
        for pair in slots.windows(2) {
            assert_eq!(pair[1] - pair[0], Duration::from_millis(250));
        }
        // A request that comes later than its turn is not held back for lost time.
        let late = now + SECOND * 10;
        assert_eq!(controller.reserve(late).at, late);
    }

    #[test]
    fn nothing_is_sent_before_retry_after_and_older_slots_are_reserved_again() {
        let (mut controller, now) = started(10.0);
        let before = controller.reserve(now);
        controller.throttled(now, now, Some(Duration::from_secs(3)), 0.0);
        assert!(!controller.holds(before), "a slot reserved before the throttle is void");
        for _ in 0..20 {
            let slot = controller.reserve(now);
            assert!(slot.at >= now + Duration::from_secs(3), "{:?}", slot.at - now);
            assert!(controller.holds(slot));
        }
        // A later throttle with a shorter Retry-After never pulls the floor back.
        controller.throttled(now + SECOND, now + SECOND, Some(Duration::ZERO), 0.0);
        assert!(controller.floor() >= now + Duration::from_secs(3));
    }

    #[test]
    fn the_resume_point_is_jittered_within_one_spread_after_the_floor() {
        let now = Instant::now();
        let retry_after = Some(Duration::from_secs(1));
        let resume = |jitter: f64| {
            let mut controller = RateController::start(now, 20.0, retry_after, jitter);
            let interval = controller.interval();
            (controller.reserve(now).at - now, interval)
        };
        let (earliest, interval) = resume(0.0);
        assert_eq!(earliest, SECOND, "no jitter: exactly at the floor");
        let (latest, _) = resume(1.0);
        assert_eq!(latest, SECOND + (SECOND / 2).max(interval), "full jitter: one spread later");
        let (middle, _) = resume(0.5);
        assert!(middle > earliest && middle < latest);
        // Out-of-range jitter stays within the bounds; a long Retry-After spreads at most the cap.
        assert_eq!(resume(7.0).0, latest);
        let mut long = RateController::start(now, 20.0, Some(Duration::from_secs(60)), 1.0);
        assert_eq!(long.reserve(now).at - now, Duration::from_secs(60) + MAX_JITTER_SPAN);
    }

    #[test]
    fn a_group_is_quiet_after_a_minute_without_throttles() {
        let (controller, now) = started(1.0);
        assert!(!controller.is_quiet(now + SECOND * 59));
        assert!(controller.is_quiet(now + QUIET));
    }
}
