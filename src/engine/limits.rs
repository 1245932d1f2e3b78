//! Concurrency bounds: transfers in flight overall and per registry. The overall bound is
//! fixed ([`Limits::new`]) or adapts to throughput under a ceiling ([`Limits::adaptive`],
//! what runs use; see [`climb`](super::climb)).

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::climb::Climb;
use super::stats::Stats;

/// How often the adaptive bound judges throughput.
const WINDOW: Duration = Duration::from_secs(1);

/// Semaphores for the whole run and for registries that set `max_concurrent`.
#[derive(Debug)]
pub struct Limits {
    global: Arc<Semaphore>,
    ceiling: usize,
    per_registry: HashMap<String, Arc<Semaphore>>,
    adaptive: Option<Arc<Adaptive>>,
}

/// The adaptive bound: the global semaphore holds the ceiling's permits and this keeps back
/// those above the current level.
#[derive(Debug)]
struct Adaptive {
    state: Mutex<AdaptiveState>,
    /// Some transfer waited for a global slot in this window.
    waited: AtomicBool,
    /// The judging task is running (it starts at the first wait).
    judging: AtomicBool,
}

#[derive(Debug)]
struct AdaptiveState {
    climb: Climb,
    ceiling: usize,
    /// The permits above the current level, held as one (`None` when there are none).
    withheld: Option<OwnedSemaphorePermit>,
    /// Bytes moved in the run (the engine's counter), and their count at the last window.
    moved: Option<Arc<Stats>>,
    last: u64,
}

impl Limits {
    /// `global` transfers at once; `per_registry` maps registry names to their own bound.
    pub fn new(global: usize, per_registry: impl IntoIterator<Item = (String, usize)>) -> Self {
        Limits {
            global: Arc::new(Semaphore::new(global.max(1))),
            ceiling: global.max(1),
            per_registry: per_registry
                .into_iter()
                .map(|(name, n)| (name, Arc::new(Semaphore::new(n.max(1)))))
                .collect(),
            adaptive: None,
        }
    }

    /// Like [`Limits::new`], with `ceiling` as the most transfers at once: the run starts
    /// with a few and takes more while that raises throughput.
    pub fn adaptive(ceiling: usize, per_registry: impl IntoIterator<Item = (String, usize)>) -> Self {
        let mut limits = Limits::new(ceiling, per_registry);
        let (climb, ceiling) = (Climb::new(ceiling), ceiling.max(1));
        let mut state = AdaptiveState { climb, ceiling, withheld: None, moved: None, last: 0 };
        state.withhold(&limits.global);
        limits.adaptive = Some(Arc::new(Adaptive {
            state: Mutex::new(state),
            waited: AtomicBool::new(false),
            judging: AtomicBool::new(false),
        }));
        limits
    }

    /// Judges throughput by `stats`' bytes moved (the engine's own counter).
    pub(super) fn measure(&self, stats: Arc<Stats>) {
        if let Some(adaptive) = &self.adaptive {
            adaptive.state.lock().expect("limits lock poisoned").moved = Some(stats);
        }
    }

    /// The most transfers the overall bound ever allows at once.
    pub fn ceiling(&self) -> usize {
        self.ceiling
    }

    /// Waits for a global slot and a slot at each named registry. Registries are taken in
    /// name order, so two transfers can never each hold what the other waits for.
    pub async fn acquire<'a>(&self, registries: impl Iterator<Item = &'a str>) -> Vec<OwnedSemaphorePermit> {
        let names: BTreeSet<&str> = registries.collect();
        let global = match self.global.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                if let Some(adaptive) = &self.adaptive {
                    adaptive.waited.store(true, Ordering::Relaxed);
                    if !adaptive.judging.swap(true, Ordering::Relaxed) {
                        tokio::spawn(judge(Arc::downgrade(adaptive), self.global.clone()));
                    }
                }
                self.global.clone().acquire_owned().await.expect("semaphores are never closed")
            }
        };
        let mut permits = vec![global];
        for name in names {
            if let Some(semaphore) = self.per_registry.get(name) {
                permits.push(semaphore.clone().acquire_owned().await.expect("semaphores are never closed"));
            }
        }
        permits
    }
}

/// Once per [`WINDOW`] while the limits live: the window's throughput to the climb, and the
/// withheld permits adjusted to its answer (taken back only as transfers finish).
async fn judge(adaptive: Weak<Adaptive>, global: Arc<Semaphore>) {
    let mut ticks = tokio::time::interval(WINDOW);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticks.tick().await;
    loop {
        ticks.tick().await;
        let Some(adaptive) = adaptive.upgrade() else { return };
        let saturated = adaptive.waited.swap(false, Ordering::Relaxed);
        let mut state = adaptive.state.lock().expect("limits lock poisoned");
        let moved = state.moved.as_ref().map_or(0, |stats| stats.bytes.load(Ordering::Relaxed));
        let throughput = moved.saturating_sub(state.last) as f64 / WINDOW.as_secs_f64();
        state.last = moved;
        let before = state.climb.level();
        let level = state.climb.observe(throughput, saturated);
        if level != before {
            tracing::debug!(
                transfers = level,
                was = before,
                bytes_per_second = throughput as u64,
                "transfers in flight changed"
            );
        }
        state.withhold(&global);
    }
}

impl AdaptiveState {
    /// Keeps back the permits above the current level: gives back those no longer withheld,
    /// and takes what is free of those to withhold (the rest as transfers finish).
    fn withhold(&mut self, global: &Arc<Semaphore>) {
        let keep_back = self.ceiling.saturating_sub(self.climb.level());
        let held = self.withheld.as_ref().map_or(0, OwnedSemaphorePermit::num_permits);
        if held > keep_back {
            let given_back = self.withheld.as_mut().and_then(|permit| permit.split(held - keep_back));
            drop(given_back);
            return;
        }
        let take = (keep_back - held).min(global.available_permits());
        let Ok(take) = u32::try_from(take) else { return };
        if take == 0 {
            return;
        }
        if let Ok(taken) = global.clone().try_acquire_many_owned(take) {
            match self.withheld.as_mut() {
                Some(permit) => permit.merge(taken),
                None => self.withheld = Some(taken),
            }
        }
    }
}
#[cfg(test)]
mod tests {
    use super::*;

    /// Whether a transfer could start within a moment.
    async fn starts(limits: &Limits) -> Option<Vec<OwnedSemaphorePermit>> {
        tokio::time::timeout(Duration::from_millis(10), limits.acquire(std::iter::empty())).await.ok()
    }

    #[tokio::test(start_paused = true)]
    async fn an_adaptive_bound_starts_with_a_few_and_rises_while_throughput_does() {
        let limits = Limits::adaptive(32, []);
        let stats = Arc::new(Stats::default());
        limits.measure(stats.clone());
        let mut held = Vec::new();
        for _ in 0..super::super::climb::START {
            held.push(starts(&limits).await.expect("a slot of the first few"));
        }
        assert!(starts(&limits).await.is_none(), "a fifth transfer waits at first");
        // The first window settles; the second is judged.
        for _ in 0..2 {
            stats.bytes.fetch_add(4_000_000, Ordering::Relaxed);
            assert!(starts(&limits).await.is_none(), "still four");
            tokio::time::sleep(WINDOW).await;
        }
        for _ in 0..4 {
            held.push(starts(&limits).await.expect("the level doubled after a saturated window"));
        }
        assert!(starts(&limits).await.is_none(), "eight now, not more");
        // Twice the transfers moved no more bytes: back to four, taken back as they finish.
        for _ in 0..2 {
            stats.bytes.fetch_add(4_000_000, Ordering::Relaxed);
            assert!(starts(&limits).await.is_none(), "still eight");
            tokio::time::sleep(WINDOW).await;
        }
        held.truncate(2);
        tokio::time::sleep(WINDOW).await;
        assert_eq!(limits.global.available_permits(), 2, "two of the four allowed are free");
    }

    #[tokio::test(start_paused = true)]
    async fn the_permits_above_the_level_are_withheld_as_one() {
        let limits = Limits::adaptive(crate::config::MAX_TRANSFERS, []);
        let adaptive = limits.adaptive.as_ref().expect("adaptive");
        let withheld = adaptive.state.lock().unwrap().withheld.as_ref().map(OwnedSemaphorePermit::num_permits);
        assert_eq!(withheld, Some(crate::config::MAX_TRANSFERS - super::super::climb::START));
        assert_eq!(limits.global.available_permits(), super::super::climb::START);
    }

    #[tokio::test]
    async fn a_registry_bound_limits_transfers_to_it_only() {
        let limits = Limits::new(10, [("slow".to_string(), 1)]);
        let held = limits.acquire(["slow"].into_iter()).await;
        let other =
            tokio::time::timeout(std::time::Duration::from_millis(50), limits.acquire(["fast"].into_iter())).await;
        assert!(other.is_ok(), "another registry is not blocked");
        let blocked =
            tokio::time::timeout(std::time::Duration::from_millis(50), limits.acquire(["slow", "fast"].into_iter()))
                .await;
        assert!(blocked.is_err(), "the bounded registry is full");
        drop(held);
    }
}
