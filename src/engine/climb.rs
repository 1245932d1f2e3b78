//! How many blob transfers to run at once, found by climbing: start with a few, double while
//! doubling pays (throughput up by at least [`GAIN`]), step back to the last level that paid
//! when it does not, hold there a while, then try again. Far registries whose throughput
//! grows with parallel connections get many transfers; a machine whose CPUs (or registries)
//! are already saturated keeps few, and with them little memory in flight. Pure: fed one
//! throughput figure per window, it answers the level for the next.

/// The least gain in throughput that justifies a higher level.
pub const GAIN: f64 = 1.10;
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
}

impl Climb {
    /// A controller between [`START`] and `ceiling` transfers.
    pub fn new(ceiling: usize) -> Self {
        let ceiling = ceiling.max(1);
        Climb { level: START.min(ceiling), ceiling, before: None, hold: 0 }
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
        match self.before.take() {
            Some((_, rate)) if throughput >= rate * GAIN => self.rise(throughput),
            Some((level, _)) => {
                self.level = level;
                self.hold = HOLD_WINDOWS;
            }
            None if self.hold > 0 => self.hold -= 1,
            None => self.rise(throughput),
        }
        self.level
    }

    fn rise(&mut self, throughput: f64) {
        if self.level < self.ceiling {
            self.before = Some((self.level, throughput));
            self.level = (self.level * 2).min(self.ceiling);
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
        let levels = run(&mut climb, 5, |level| 10.0 * level as f64);
        assert_eq!(levels, [8, 16, 32, 32, 32]);
    }

    #[test]
    fn a_saturated_machine_steps_back_holds_and_tries_again() {
        let mut climb = Climb::new(32);
        // Throughput flat from 4 transfers on: the rise to 8 does not pay.
        let levels = run(&mut climb, 2 + HOLD_WINDOWS as usize + 2, |level| if level >= 4 { 100.0 } else { 50.0 });
        assert_eq!(&levels[..2], [8, 4], "tries 8, steps back to 4");
        assert!(levels[2..2 + HOLD_WINDOWS as usize].iter().all(|&l| l == 4), "{levels:?}");
        assert_eq!(&levels[2 + HOLD_WINDOWS as usize..], [8, 4], "tries again after the hold");
    }

    #[test]
    fn windows_without_waiting_transfers_change_nothing() {
        let mut climb = Climb::new(32);
        for _ in 0..5 {
            assert_eq!(climb.observe(1e9, false), START);
        }
        assert_eq!(climb.observe(100.0, true), 8);
        assert_eq!(climb.observe(1.0, false), 8, "an idle window judges nothing");
        assert_eq!(climb.observe(105.0, true), 4, "a 5% gain is not enough");
    }

    #[test]
    fn a_low_ceiling_is_the_level() {
        let mut climb = Climb::new(2);
        assert_eq!(climb.level(), 2);
        assert_eq!(climb.observe(100.0, true), 2);
        assert_eq!(Climb::new(0).level(), 1);
    }
}
