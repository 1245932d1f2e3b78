//! How many blob transfers to run at once, found by climbing: start with a few, double while
//! doubling pays (throughput up by at least [`GAIN`]), step back to the last level that paid
//! when it does not, hold there a while, then try again. The first window at each level is
//! not judged: it holds the change itself (slots freed or taken back as transfers finish,
//! and at the start the run's first requests). Far registries whose throughput
//! grows with parallel connections get many transfers; a machine whose CPUs (or registries)
//! are already saturated keeps few, and with them little memory in flight. Pure: fed one
//! throughput figure per window, it answers the level for the next.

/// The least gain in throughput that justifies a higher level: doubling the transfers to a
/// far registry nearly doubles throughput, while on a busy machine blobs of mixed sizes make
/// windows differ by 10–20% at the same level.
pub const GAIN: f64 = 1.25;
/// Windows spent at a level that paid before trying a higher one again.
pub const HOLD_WINDOWS: u32 = 10;
/// The level a run starts at (or the ceiling, if lower).
pub const START: usize = 4;

/// The controller's state.
#[derive(Debug, Clone, PartialEq)]
pub struct Climb {
    level: usize,
    ceiling: usize,
    /// The level before the last rise and its throughput, while the rise is being judged.
    before: Option<(usize, f64)>,
    hold: u32,
    /// The next saturated window is the first at this level: skipped.
    settling: bool,
}

impl Climb {
    /// A controller between [`START`] and `ceiling` transfers.
    pub fn new(ceiling: usize) -> Self {
        let ceiling = ceiling.max(1);
        Climb { level: START.min(ceiling), ceiling, before: None, hold: 0, settling: true }
    }

    /// Transfers allowed now.
    pub fn level(&self) -> usize {
        self.level
    }

    /// One window's throughput (bytes per second) and whether transfers waited for a slot in
    /// it; returns the level for the next window. A window in which nothing waited says
    /// nothing about the level (the run had less to do than it allowed) and changes nothing.
    pub fn observe(&mut self, throughput: f64, saturated: bool) -> usize {
        if !saturated {
            return self.level;
        }
        if std::mem::take(&mut self.settling) {
            return self.level;
        }
        match self.before.take() {
            Some((_, rate)) if throughput >= rate * GAIN => self.rise(throughput),
            Some((level, _)) => {
                self.level = level;
                self.hold = HOLD_WINDOWS;
                self.settling = true;
            }
            None if self.hold > 0 => self.hold -= 1,
            None => self.rise(throughput),
        }
        self.level
    }

    fn rise(&mut self, throughput: f64) {
        if self.level < self.ceiling {
            self.before = Some((self.level, throughput));
            self.level = self.level.saturating_mul(2).min(self.ceiling);
            self.settling = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds saturated windows whose throughput `rate(level)` gives; the levels visited.
    fn run(climb: &mut Climb, windows: usize, rate: impl Fn(usize) -> f64) -> Vec<usize> {
        (0..windows).map(|_| climb.observe(rate(climb.level()), true)).collect()
    }

    #[test]
    fn a_link_that_scales_with_connections_climbs_to_the_ceiling() {
        let mut climb = Climb::new(32);
        let levels = run(&mut climb, 8, |level| 10.0 * level as f64);
        // Each level's first window settles, its second is judged.
        assert_eq!(levels, [4, 8, 8, 16, 16, 32, 32, 32]);
    }

    #[test]
    fn a_saturated_machine_steps_back_holds_and_tries_again() {
        let mut climb = Climb::new(32);
        // Throughput flat from 4 transfers on: the rise to 8 does not pay.
        let hold = HOLD_WINDOWS as usize;
        let levels = run(&mut climb, 5 + hold + 3, |level| if level >= 4 { 100.0 } else { 50.0 });
        assert_eq!(&levels[..4], [4, 8, 8, 4], "tries 8, steps back to 4");
        assert!(levels[4..5 + hold].iter().all(|&l| l == 4), "{levels:?}");
        assert_eq!(&levels[5 + hold..], [8, 8, 4], "tries again after the hold");
    }

    #[test]
    fn a_gain_below_the_threshold_is_not_worth_the_memory() {
        let mut climb = Climb::new(32);
        let levels = run(&mut climb, 4, |level| if level >= 8 { 120.0 } else { 100.0 });
        assert_eq!(levels, [4, 8, 8, 4], "20% more for twice the transfers: back to 4");
    }

    #[test]
    fn windows_without_waiting_transfers_change_nothing() {
        let mut climb = Climb::new(32);
        for _ in 0..5 {
            assert_eq!(climb.observe(1e9, false), START);
        }
        assert_eq!(climb.observe(100.0, true), START, "the first judged window settles");
        assert_eq!(climb.observe(100.0, true), 8);
        assert_eq!(climb.observe(1.0, false), 8, "an idle window judges nothing");
        assert_eq!(climb.observe(1.0, true), 8, "the first window at 8 settles");
        assert_eq!(climb.observe(200.0, true), 16);
    }

    #[test]
    fn a_low_ceiling_is_the_level() {
        let mut climb = Climb::new(2);
        assert_eq!(climb.level(), 2);
        assert_eq!(climb.observe(100.0, true), 2);
        assert_eq!(climb.observe(100.0, true), 2);
        assert_eq!(Climb::new(0).level(), 1);
    }
}
