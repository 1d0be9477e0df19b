//! Clock drift between the audio a player receives and the device that plays it, told apart
//! from the jitter of the device's callbacks ([`DriftEstimator`], sans-IO).
//!
//! # What is measured
//!
//! The audio queued in the sink (pushed − played, as a duration) is read at every push. With
//! one clock behind both ends it only wobbles: the device takes audio in callback-sized bites
//! (a few to tens of milliseconds, at slightly irregular times), so a single reading is off by
//! up to a callback period, but its mean does not move. With two clocks it creeps: a device
//! 100 ppm fast drains 0.1 ms of it a second.
//!
//! # How it is filtered
//!
//! Readings are averaged over [`DriftConfig::window`] (1 s: hundreds of readings at random
//! phases of the callback cycle), the window means are smoothed with a time constant of
//! [`DriftConfig::smoothing`], and after [`DriftConfig::settle`] the smoothed level becomes the
//! setpoint (whatever the device's buffering makes it). Only an error beyond
//! [`DriftConfig::deadband`] counts, so callback jitter never causes a correction: a shared
//! clock gives a ratio of exactly 1 for ever.
//!
//! # How it is corrected
//!
//! Once the error leaves the dead band there is real drift: the setpoint moves to the band's
//! edge (so nothing jumps) and a proportional-integral loop (a delay-locked loop, critically
//! damped, time constant [`DriftConfig::time_constant`]) holds the queue there from then on;
//! its output is the correction in ppm, and its integral converges to the clocks' true
//! difference. The
//! correction moves by at most [`DriftConfig::max_step_ppm`] per window and never beyond
//! [`DriftConfig::max_correction_ppm`], far below what an ear hears as pitch (a 1000 ppm
//! change is 1.7 cents; the smallest audible pitch step is about 5). The caller applies
//! [`DriftEstimator::ratio`] to an asynchronous resampler, never by dropping or repeating
//! samples.
//!
//! # Steps
//!
//! A window mean more than [`DriftConfig::step`] away from the smoothed level is no drift: a
//! device that stalled (a sound server that missed its deadline plays silence and takes our
//! audio later) or a burst. It is kept out of the filter, measured over the next window and
//! handed to the caller ([`DriftEstimator::take_step`]), which skips the excess once and calls
//! [`DriftEstimator::resync`].

use std::time::{Duration, Instant};

/// Tunables of a [`DriftEstimator`].
#[derive(Debug, Clone, PartialEq)]
pub struct DriftConfig {
    /// Readings are averaged over windows this long. Default 1 s.
    pub window: Duration,
    /// Time constant of the smoothing of the window means. Default 4 s.
    pub smoothing: Duration,
    /// Time after the first reading (or a restart) before the setpoint is taken. Default 3 s.
    pub settle: Duration,
    /// Queue error (smoothed) that is left alone. Default 5 ms.
    pub deadband: Duration,
    /// Time constant of the correcting loop (1/ω of a critically damped loop). Default 60 s.
    pub time_constant: Duration,
    /// Largest correction, ppm. Default 2000.
    pub max_correction_ppm: f64,
    /// Largest change of the correction per window, ppm. Default 50 (0.09 cents).
    pub max_step_ppm: f64,
    /// A window mean this far from the smoothed level is a step, not drift (no clock drifts
    /// that fast): the device stalled, or a burst came. Default 20 ms.
    pub step: Duration,
}

impl Default for DriftConfig {
    fn default() -> Self {
        Self {
            window: Duration::from_secs(1),
            smoothing: Duration::from_secs(4),
            settle: Duration::from_secs(3),
            deadband: Duration::from_millis(5),
            time_constant: Duration::from_secs(60),
            max_correction_ppm: 2000.0,
            max_step_ppm: 50.0,
            step: Duration::from_millis(20),
        }
    }
}

/// Estimates clock drift from queue readings and gives the resampling ratio that cancels it
/// (see the module docs).
#[derive(Debug, Clone)]
pub struct DriftEstimator {
    cfg: DriftConfig,
    /// Start of the current window, its reading sum (s) and count.
    window: Option<(Instant, f64, u32)>,
    /// When readings (re)started.
    since: Option<Instant>,
    /// Smoothed queue, seconds.
    smoothed: Option<f64>,
    /// The queue level to hold, seconds.
    setpoint: Option<f64>,
    /// Integral term, as a fraction (1e-6 = 1 ppm).
    integral: f64,
    /// Correction in force, ppm (positive: the queue was growing; play fewer output frames
    /// per input frame).
    correction_ppm: f64,
    corrections: u64,
    largest_step_ppm: f64,
    /// The queue once strayed beyond the dead band: there is real drift, and the loop runs.
    engaged: bool,
    /// A step was seen in the last window (it may have caught only part of it): the next
    /// window's mean measures it.
    step_seen: bool,
    /// A measured step (seconds, positive: the queue grew), until taken.
    step: Option<f64>,
    /// A setpoint just learnt (seconds), until taken.
    settled: Option<f64>,
}

impl DriftEstimator {
    /// An estimator with these tunables.
    pub fn new(cfg: DriftConfig) -> Self {
        Self {
            cfg,
            window: None,
            since: None,
            smoothed: None,
            setpoint: None,
            integral: 0.0,
            correction_ppm: 0.0,
            corrections: 0,
            largest_step_ppm: 0.0,
            engaged: false,
            step_seen: false,
            step: None,
            settled: None,
        }
    }

    /// The tunables.
    pub fn config(&self) -> &DriftConfig {
        &self.cfg
    }

    /// Forgets the queue level and setpoint (the queue was refilled from empty, or the sink
    /// replaced), keeping the drift learnt so far.
    pub fn restart_level(&mut self) {
        self.window = None;
        self.since = None;
        self.smoothed = None;
        self.setpoint = None;
        self.engaged = false;
        self.step_seen = false;
    }

    /// A step in the queue (seconds, positive: it grew) seen since the last call: no drift,
    /// but a stalled device or a burst of audio. The caller undoes it (skips that much audio)
    /// or accepts it, then calls [`resync`](Self::resync).
    pub fn take_step(&mut self) -> Option<f64> {
        self.step.take()
    }

    /// The queue level (seconds) the estimator has just settled on and will hold, once: the
    /// caller may find it too long (a start or a stall left more audio queued than it wants)
    /// and skip the excess, then call [`resync`](Self::resync).
    pub fn take_settled(&mut self) -> Option<f64> {
        self.settled.take()
    }

    /// After a step in the queue that was no drift (the device stalled, or audio was
    /// skipped to undo one): forgets the level like [`restart_level`](Self::restart_level) and
    /// drops the proportional part of the correction, keeping the drift learnt.
    pub fn resync(&mut self) {
        self.restart_level();
        let learnt = self.integral * 1e6;
        if learnt != self.correction_ppm {
            self.correction_ppm = learnt;
            self.corrections += 1;
        }
    }

    /// Takes one reading of the queued audio at `now`; returns true when the ratio changed.
    /// Call at every push; readings with `now` earlier than the window start count as at it.
    pub fn observe(&mut self, now: Instant, queued: Duration) -> bool {
        let q = queued.as_secs_f64();
        let since = *self.since.get_or_insert(now);
        let (start, sum, n) = self.window.get_or_insert((now, 0.0, 0));
        *sum += q;
        *n += 1;
        let span = now.saturating_duration_since(*start);
        if span < self.cfg.window {
            return false;
        }
        let mean = *sum / f64::from(*n);
        self.window = Some((now, 0.0, 0));
        self.update(now, since, mean, span.as_secs_f64())
    }

    /// One window's mean `mean` (seconds) after `dt` seconds.
    fn update(&mut self, now: Instant, since: Instant, mean: f64, dt: f64) -> bool {
        if let Some(s) = self.smoothed {
            if self.step_seen {
                // The whole window after the jump: that is the step.
                self.step_seen = false;
                self.step = Some(mean - s);
                return false;
            }
            if (mean - s).abs() > self.cfg.step.as_secs_f64() {
                // Not drift: keep it out of the level and the loop.
                self.step_seen = true;
                return false;
            }
        }
        let tau = self.cfg.smoothing.as_secs_f64();
        let alpha = if tau > 0.0 {
            1.0 - (-dt / tau).exp()
        } else {
            1.0
        };
        let s = match self.smoothed {
            Some(s) => s + alpha * (mean - s),
            None => mean,
        };
        self.smoothed = Some(s);
        let Some(setpoint) = self.setpoint else {
            if now.saturating_duration_since(since) >= self.cfg.settle {
                self.setpoint = Some(s);
                self.settled = Some(s);
            }
            return false;
        };
        let mut error = s - setpoint;
        if !self.engaged {
            let band = self.cfg.deadband.as_secs_f64();
            if error.abs() <= band {
                // Jitter, or no drift yet: nothing to correct.
                return false;
            }
            // Real drift: from here on the loop holds the queue where it crossed the band
            // (so the correction starts from zero, without a jump).
            self.engaged = true;
            self.setpoint = Some(setpoint + error.signum() * band);
            error -= error.signum() * band;
        }
        let beyond = error;
        let t = self.cfg.time_constant.as_secs_f64().max(1e-3);
        let max = self.cfg.max_correction_ppm.max(0.0) * 1e-6;
        self.integral = (self.integral + beyond * dt / (t * t)).clamp(-max, max);
        let wanted = ((2.0 * beyond / t + self.integral) * 1e6)
            .clamp(-self.cfg.max_correction_ppm, self.cfg.max_correction_ppm);
        let step =
            (wanted - self.correction_ppm).clamp(-self.cfg.max_step_ppm, self.cfg.max_step_ppm);
        if step == 0.0 {
            return false;
        }
        self.correction_ppm += step;
        self.corrections += 1;
        self.largest_step_ppm = self.largest_step_ppm.max(step.abs());
        true
    }

    /// Output frames to play per input frame, relative to the nominal rates: 1.0 without
    /// drift, above 1 when the device drains the queue faster than audio comes.
    pub fn ratio(&self) -> f64 {
        1.0 / (1.0 + self.correction_ppm * 1e-6)
    }

    /// The correction in force, ppm (positive: audio comes faster than the device plays it).
    pub fn correction_ppm(&self) -> f64 {
        self.correction_ppm
    }

    /// The clock difference learnt so far, ppm (the loop's integral; the correction in force
    /// adds a proportional term that moves the queue back to its setpoint).
    pub fn drift_ppm(&self) -> f64 {
        self.integral * 1e6
    }

    /// Times the correction changed.
    pub fn corrections(&self) -> u64 {
        self.corrections
    }

    /// Largest single change of the correction so far, ppm.
    pub fn largest_step_ppm(&self) -> f64 {
        self.largest_step_ppm
    }

    /// Smoothed queue error from the setpoint, seconds (0 before the setpoint is known).
    pub fn queue_error(&self) -> f64 {
        match (self.smoothed, self.setpoint) {
            (Some(s), Some(p)) => s - p,
            _ => 0.0,
        }
    }
}

#[cfg(test)]
mod tests {
    //! The estimator against a simulated device clock, with the loop closed by arithmetic
    //! (the resampler plays `ratio` output frames per input frame).
    use super::*;

    /// `secs` of 5 ms input blocks (48 kHz) into a device `ppm` off the local clock, taking
    /// 10 ms per callback, each callback up to `jitter_ms` late. Returns the estimator and
    /// the largest correction seen (ppm).
    fn simulate(ppm: f64, jitter_ms: f64, secs: u64, seed: u64) -> (DriftEstimator, f64) {
        let t0 = Instant::now();
        let mut est = DriftEstimator::new(DriftConfig::default());
        let mut rng = fastrand::Rng::with_seed(seed);
        let dev_rate = 48_000.0 * (1.0 + ppm * 1e-6);
        let period = 480.0;
        let (mut pushed, mut played, mut k) = (1920.0f64, 0.0f64, 0u64);
        let mut next_cb = 0.0;
        let mut largest = 0.0f64;
        for i in 0..secs * 200 {
            let t = i as f64 * 0.005 + rng.f64() * 0.002;
            while next_cb <= t {
                played += period;
                k += 1;
                next_cb = k as f64 * period / dev_rate + rng.f64() * jitter_ms / 1000.0;
            }
            let queued = (pushed - played).max(0.0) / 48_000.0;
            est.observe(
                t0 + Duration::from_secs_f64(t),
                Duration::from_secs_f64(queued),
            );
            largest = largest.max(est.correction_ppm().abs());
            pushed += 240.0 * est.ratio();
        }
        (est, largest)
    }

    #[test]
    fn no_drift_no_correction_despite_callback_jitter() {
        for (jitter, seed) in [(0.0, 1), (4.0, 2), (8.0, 3)] {
            let (est, _) = simulate(0.0, jitter, 600, seed);
            assert_eq!(est.corrections(), 0, "jitter {jitter} ms");
            assert_eq!(est.ratio(), 1.0);
        }
    }

    #[test]
    fn converges_to_the_device_clock() {
        for (ppm, seed) in [(100.0, 4), (-100.0, 5), (40.0, 6)] {
            let (est, largest) = simulate(ppm, 4.0, 600, seed);
            // Device fast by `ppm`: `ppm` more output frames per input frame.
            assert!(
                (est.drift_ppm() + ppm).abs() < 5.0,
                "{ppm}: learnt {} ppm",
                est.drift_ppm()
            );
            let want = 1.0 + ppm * 1e-6;
            assert!(
                (est.ratio() - want).abs() < 15e-6,
                "{ppm}: ratio {} want {want}",
                est.ratio()
            );
            // No step above 50 ppm (0.09 cents), never more than 2.5 times the drift.
            assert!(est.largest_step_ppm() <= 50.0, "{}", est.largest_step_ppm());
            assert!(largest < 2.5 * ppm.abs(), "{ppm}: overshoot to {largest}");
            // The queue is held within a few ms of where it settled.
            assert!(est.queue_error().abs() < 0.008, "{}", est.queue_error());
        }
    }
}
