//! The recording's audio timeline: where each block's samples go in the file, with gaps
//! filled with silence, overlaps skipped, and a slow creep between the blocks' timestamps and
//! their sample count (an audio clock that does not match the stream's, tens to hundreds of
//! ppm) followed by resampling with the player's [`DriftEstimator`] and [`StreamResampler`],
//! never by inserting or dropping samples. With matching clocks the samples pass bit for bit.
//!
//! # The reading
//!
//! The estimator reads the *slip*: how far the timestamps have run ahead of the frames given
//! to the file (those written plus those the resampler holds), biased by [`SLIP_BIAS`] so it
//! reads as a positive queue. Timestamps come from the sender's clock, so there is no
//! arrival jitter in it, only rounding to a tick; a smaller dead band than the player's
//! ([`DEADBAND`]) then keeps the file within a few ms of its timestamps.

use std::time::{Duration, Instant};

use super::RecordSummary;
use crate::media::avsync::{DriftConfig, DriftEstimator};
use crate::media::resample::StreamResampler;
use crate::proto::wire::CLOCK_RATE;

/// A block this close (frames) to where the timeline expects it is right after the last one
/// (rates that do not divide 90 kHz stamp blocks to the nearest tick); the difference is creep.
const TOL: i128 = 2;

/// Added to the slip for the estimator's reading, which is a queue and cannot be negative.
const SLIP_BIAS: Duration = Duration::from_secs(10);

/// Slip (seconds) left alone: the recorder's readings have no callback jitter.
const DEADBAND: Duration = Duration::from_millis(2);

/// A slip beyond this is more than the correction follows (a clock thousands of ppm off,
/// which the estimator takes for steps, or beyond [`DriftConfig::max_correction_ppm`]): it
/// is resolved at once, silence when the timestamps ran ahead, a cut when they fell behind.
const MAX_SLIP: Duration = Duration::from_millis(500);

/// One piece of audio for the file: its time (ticks from the start of the recording), its
/// duration (ticks) and interleaved samples.
pub(super) struct Packet {
    pub t: i128,
    pub dur: i128,
    pub samples: Vec<i16>,
}

/// See the module docs.
pub(super) struct AudioTimeline {
    rate: u32,
    channels: u16,
    /// File time of the first frame, ticks.
    anchor: i128,
    /// Frames given to the file.
    written: u64,
    /// Frames the timestamps are ahead of `written` (negative: behind).
    slip: i128,
    drift: DriftEstimator,
    resampler: Option<StreamResampler>,
    /// Media-time origin for the estimator, which wants instants.
    epoch: Instant,
}

fn round_div(n: i128, d: i128) -> i128 {
    if n >= 0 {
        (n + d / 2) / d
    } else {
        -((-n + d / 2) / d)
    }
}

impl AudioTimeline {
    /// A timeline for `rate` Hz, `channels` channels, whose first frame is at `t` ticks.
    pub(super) fn new(rate: u32, channels: u16, t: i128) -> Self {
        let cfg = DriftConfig {
            deadband: DEADBAND,
            ..DriftConfig::default()
        };
        Self {
            rate,
            channels,
            anchor: t,
            written: 0,
            slip: 0,
            drift: DriftEstimator::new(cfg),
            resampler: StreamResampler::new(rate, rate, channels).ok(),
            epoch: Instant::now(),
        }
    }

    fn ticks(&self, frames: i128) -> i128 {
        round_div(frames * i128::from(CLOCK_RATE), i128::from(self.rate))
    }

    fn held(&self) -> i128 {
        self.resampler
            .as_ref()
            .map_or(0, |r| i128::from(r.held_frames()))
    }

    /// Time just after the audio so far by its timestamps, ticks.
    pub(super) fn end(&self) -> i128 {
        self.anchor + self.ticks(i128::from(self.written) + self.slip)
    }

    /// Places a block whose first frame is at `t` ticks; returns the packets to write and
    /// counts them (and what it skips) in `summary`.
    pub(super) fn place(
        &mut self,
        t: i128,
        samples: &[i16],
        concealed: bool,
        summary: &mut RecordSummary,
    ) -> Vec<Packet> {
        let ch = usize::from(self.channels);
        let frames = (samples.len() / ch) as u64;
        let rate = i128::from(self.rate);
        let pos = round_div((t - self.anchor) * rate, i128::from(CLOCK_RATE));
        let written = i128::from(self.written);
        let d = pos - (written + self.slip);
        if d < -TOL {
            // Overlaps what was written.
            summary.audio_skipped += frames;
            return Vec::new();
        }
        let mut gap = 0u64;
        let mut cut = 0u64;
        if d > TOL {
            gap = d as u64;
        } else {
            self.slip = pos - written;
        }
        let max_slip = rate * MAX_SLIP.as_millis() as i128 / 1000;
        let lead = self.slip - self.held();
        let mut stepped = false;
        if lead > max_slip {
            gap += lead as u64;
            self.slip -= lead;
            stepped = true;
        } else if lead < -max_slip {
            cut = ((-lead) as u64).min(frames);
            self.slip += cut as i128;
            summary.audio_skipped += cut;
            stepped = true;
        }
        let media = Duration::from_nanos(
            u64::try_from((t - self.anchor).max(0) * 1_000_000_000 / i128::from(CLOCK_RATE))
                .unwrap_or(0),
        );
        let lead = (self.slip - self.held()) as f64 / f64::from(self.rate);
        let reading = (SLIP_BIAS.as_secs_f64() - lead).max(0.0);
        let changed = self
            .drift
            .observe(self.epoch + media, Duration::from_secs_f64(reading));
        if stepped || self.drift.take_step().is_some() {
            // Resolved above, or no drift: keep what was learnt, forget the level.
            self.drift.resync();
        }
        if changed || stepped {
            if let Some(r) = &mut self.resampler {
                r.set_relative_ratio(self.drift.ratio());
            }
        }
        summary.audio_drift_corrections = self.drift.corrections();

        let body = &samples[cut as usize * ch..];
        let body_frames = frames - cut;
        let silent = gap + if concealed { body_frames } else { 0 };
        summary.audio_silence_frames += silent;
        let mut packets = Vec::new();
        match &mut self.resampler {
            Some(r) if r.is_resampling() => {
                // Drifting clocks: everything through the resampler, silence included, so
                // the ratio applies to all of it and nothing jumps.
                let mut out = Vec::new();
                let mut runs = Vec::new();
                let mut left = silent;
                let zeros = vec![0i16; left.min(4096) as usize * ch];
                while left > 0 {
                    let n = left.min(4096) as usize;
                    r.process(0, &zeros[..n * ch], &mut out, &mut runs);
                    left -= n as u64;
                }
                if !concealed {
                    r.process(0, body, &mut out, &mut runs);
                }
                let made = (out.len() / ch) as u64;
                // The timeline moved by what went in, the file by what came out.
                self.slip += i128::from(gap + body_frames) - i128::from(made);
                packets.extend(self.packet(out));
            }
            _ => {
                // Matching clocks: the samples as received.
                if gap > 0 {
                    packets.extend(self.packet(vec![0; gap as usize * ch]));
                }
                let body = if concealed {
                    vec![0; body.len()]
                } else {
                    body.to_vec()
                };
                packets.extend(self.packet(body));
            }
        }
        summary.audio_frames = self.written;
        packets
    }

    /// `samples` as the next packet of the file (none if empty).
    fn packet(&mut self, samples: Vec<i16>) -> Option<Packet> {
        let n = (samples.len() / usize::from(self.channels)) as i128;
        if n == 0 {
            return None;
        }
        let from = i128::from(self.written);
        self.written += n as u64;
        let t = self.anchor + self.ticks(from);
        Some(Packet {
            t,
            dur: self.anchor + self.ticks(from + n) - t,
            samples,
        })
    }

    /// What the resampler still holds, at the end of the recording.
    pub(super) fn finish(&mut self, summary: &mut RecordSummary) -> Option<Packet> {
        let mut out = Vec::new();
        if let Some(r) = &mut self.resampler {
            r.flush(&mut out);
        }
        let p = self.packet(out);
        summary.audio_frames = self.written;
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `secs` of `block`-frame mono blocks at `rate` Hz stamped `ppm` fast; returns the
    /// summary and the packets (the tail included).
    fn feed(rate: u32, block: usize, ppm: f64, secs: u64) -> (RecordSummary, Vec<Packet>) {
        let mut a = AudioTimeline::new(rate, 1, 0);
        let mut s = RecordSummary::default();
        let mut packets = Vec::new();
        let samples = vec![100i16; block];
        for k in 0..secs * u64::from(rate) / block as u64 {
            let t = (k as f64 * block as f64 * 90_000.0 / f64::from(rate) * (1.0 + ppm * 1e-6))
                .round() as i128;
            packets.extend(a.place(t, &samples, false, &mut s));
        }
        packets.extend(a.finish(&mut s));
        (s, packets)
    }

    /// 44.1 kHz in 1024-frame blocks: timestamps rounded to a tick are no creep and no gap;
    /// the packets follow each other exactly.
    #[test]
    fn rounded_timestamps_are_no_drift() {
        let (s, packets) = feed(44_100, 1024, 0.0, 60);
        assert_eq!(s.audio_silence_frames, 0, "{s:?}");
        assert_eq!(s.audio_drift_corrections, 0, "{s:?}");
        assert_eq!(s.audio_frames, 60 * 44_100 / 1024 * 1024);
        for w in packets.windows(2) {
            assert_eq!(w[0].t + w[0].dur, w[1].t);
        }
    }

    /// A clock 1 % off is no drift to the estimator (no crystal is that far off; its
    /// correction stops at 2000 ppm): the file is kept within MAX_SLIP of the timestamps in
    /// steps, silence when they run ahead, cuts when they fall behind.
    #[test]
    fn a_clock_too_far_off_is_caught_up_in_steps() {
        for ppm in [10_000.0, -10_000.0] {
            let (s, _) = feed(8000, 40, ppm, 120);
            let span = 120.0 * 8000.0 * (1.0 + ppm * 1e-6);
            let (added, cut) = (s.audio_silence_frames, s.audio_skipped);
            if ppm > 0.0 {
                assert!(added > 0 && cut == 0, "{s:?}");
            } else {
                assert!(added == 0 && cut > 0, "{s:?}");
            }
            assert!(
                (s.audio_frames as f64 - span).abs() <= 0.5 * 8000.0 + 80.0,
                "{s:?} vs {span}"
            );
        }
    }
}
