//! Adaptive reorder hold (proto-spec.md §7.2): how long a gap waits before it is NACKed,
//! learned from the gaps that filled themselves.
//!
//! Each time a missing sequence number arrives without having been asked for (or sooner after
//! the request than any answer could come), the time since its gap opened is a measured
//! reordering delay. The estimator keeps the largest such delay over a sliding window (two
//! buckets of `window`, so an old burst is forgotten after one to two windows) and proposes a
//! hold of `max × 5/4 + slack`, within `[min_hold, max_hold]`. It starts from `initial`, as
//! if that delay had just been seen, so a stream that is only reordered from its first packet
//! is not met by a burst of spurious NACKs while the estimator learns.

use std::time::{Duration, Instant};

/// Tunables of the reorder hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReorderConfig {
    /// Smallest hold.
    pub min_hold: Duration,
    /// Largest hold (a late repair costs more than a spurious NACK beyond this).
    pub max_hold: Duration,
    /// Assumed reordering delay before anything is measured.
    pub initial: Duration,
    /// Added to the scaled maximum (timer granularity, scheduling).
    pub slack: Duration,
    /// Length of one bucket of the sliding maximum.
    pub window: Duration,
}

impl Default for ReorderConfig {
    fn default() -> Self {
        ReorderConfig {
            min_hold: Duration::from_millis(2),
            max_hold: Duration::from_millis(30),
            initial: Duration::from_millis(10),
            slack: Duration::from_millis(1),
            window: Duration::from_secs(2),
        }
    }
}

/// The sliding maximum of observed reordering delays.
#[derive(Debug, Clone)]
pub struct ReorderEstimator {
    cfg: ReorderConfig,
    /// Start of the current bucket (None before the first call).
    start: Option<Instant>,
    cur: Duration,
    prev: Duration,
    samples: u64,
}

impl ReorderEstimator {
    /// An estimator that has seen nothing yet.
    pub fn new(cfg: ReorderConfig) -> ReorderEstimator {
        ReorderEstimator {
            cfg,
            start: None,
            cur: Duration::ZERO,
            prev: cfg.initial,
            samples: 0,
        }
    }

    fn roll(&mut self, now: Instant) {
        let Some(start) = self.start else {
            self.start = Some(now);
            return;
        };
        let age = now.saturating_duration_since(start);
        if age >= self.cfg.window * 2 {
            self.prev = Duration::ZERO;
            self.cur = Duration::ZERO;
            self.start = Some(now);
        } else if age >= self.cfg.window {
            self.prev = self.cur;
            self.cur = Duration::ZERO;
            self.start = Some(now);
        }
    }

    /// Records a gap that filled `delay` after it opened, without a repair.
    pub fn observe(&mut self, now: Instant, delay: Duration) {
        self.roll(now);
        self.cur = self.cur.max(delay);
        self.samples += 1;
    }

    /// The largest delay still in the window at `now`.
    pub fn max_delay(&self, now: Instant) -> Duration {
        let Some(start) = self.start else {
            return self.prev;
        };
        let age = now.saturating_duration_since(start);
        if age < self.cfg.window {
            self.prev.max(self.cur)
        } else if age < self.cfg.window * 2 {
            self.cur
        } else {
            Duration::ZERO
        }
    }

    /// The hold to apply to a gap opening at `now`.
    pub fn hold(&self, now: Instant) -> Duration {
        let m = self.max_delay(now);
        if m.is_zero() {
            return self.cfg.min_hold;
        }
        (m * 5 / 4 + self.cfg.slack).clamp(self.cfg.min_hold, self.cfg.max_hold)
    }

    /// Reordering delays observed so far.
    pub fn samples(&self) -> u64 {
        self.samples
    }

    /// Forgets what was measured (a new source); the hold starts from `initial` again.
    pub fn reset(&mut self) {
        *self = ReorderEstimator::new(self.cfg);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn starts_at_initial_learns_the_maximum_and_forgets_it() {
        let t0 = Instant::now();
        let cfg = ReorderConfig::default();
        let mut r = ReorderEstimator::new(cfg);
        assert_eq!(r.hold(t0), cfg.initial * 5 / 4 + cfg.slack);
        r.observe(t0, 4 * MS);
        // The initial guess is still in the window.
        assert_eq!(r.max_delay(t0), cfg.initial);
        // One window later only the measured delay counts ...
        let t1 = t0 + cfg.window;
        assert_eq!(r.max_delay(t1), 4 * MS);
        r.observe(t1, 2 * MS);
        assert_eq!(r.hold(t1), 4 * MS * 5 / 4 + cfg.slack);
        // ... a large outlier is capped ...
        r.observe(t1 + MS, Duration::from_secs(1));
        assert_eq!(r.hold(t1 + MS), cfg.max_hold);
        // ... and after two quiet windows the hold is back at its floor.
        assert_eq!(r.hold(t1 + cfg.window * 2), cfg.min_hold);
        assert_eq!(r.samples(), 3);
        r.reset();
        assert_eq!(r.max_delay(t1), cfg.initial);
    }

    #[test]
    fn time_going_backwards_does_not_panic() {
        let t0 = Instant::now() + Duration::from_secs(10);
        let mut r = ReorderEstimator::new(ReorderConfig::default());
        r.observe(t0, MS);
        r.observe(t0 - Duration::from_secs(5), 3 * MS);
        assert!(r.hold(t0 - Duration::from_secs(9)) >= 3 * MS);
    }
}
