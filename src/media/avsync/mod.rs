//! Audio-master A/V synchronisation for a player, as a sans-IO state machine.
//!
//! Audio is the master clock (as in ffplay's default `-sync audio`): a video frame stamped `pts`
//! is shown when the sound leaving the speaker reaches `pts`. [`AvSync`] holds no clock and no
//! device; the caller passes `now`, the sink's played-frame count ([`AudioReading`]) and a
//! closure that pushes samples into the sink.
//!
//! # The audio clock
//!
//! Every push is remembered as a segment: "sink frames `start..start + len` carry media from
//! `pts` on, at `rate` (scaled by the resampling ratio of that block)". The sink reports how
//! many pushed frames it has played; the segment holding that frame gives its `pts`, and the
//! device latency (when the backend reports it) is subtracted: that is the pts of the sample
//! leaving the speaker now. Gaps in the stream, silence inserted while priming and the
//! resampler's delay and ratio all stay exact because each segment carries its own mapping.
//! When the sink runs dry the clock stops at the end of the last segment, with the sound.
//!
//! # Drift correction
//!
//! The sender's sample clock and the receiver's sound card never run at exactly the same rate
//! (tens to hundreds of ppm apart), so the audio queued in the sink (pushed − played) would
//! slowly grow (latency creeps up) or shrink (underruns). Every block goes through a
//! [`StreamResampler`](crate::media::resample::StreamResampler) from the stream's rate to the
//! sink's; the [`DriftEstimator`] reads the queue at every push, tells real drift from the
//! jitter of the device's callbacks (means over seconds, a dead band) and sets the
//! resampler's ratio, smoothly. A shared clock yields no correction at all (and, at equal
//! rates, the audio passes through bit for bit); nothing is ever dropped or repeated for
//! drift. A jump of the queue that no drift could make (the device stalled: a sound server
//! that missed its deadline played silence) is undone once, by skipping that much audio right
//! after the server's own gap, instead of playing everything (and the picture) late. A
//! queue that has run dry (start, underrun, or after a pause) is primed with silence up to
//! the target at once, so the cushion exists from the first block.
//!
//! # Video
//!
//! [`AvSync`] holds no frame and schedules nothing: the viewer's jitter buffer releases each
//! frame at its playout instant (and drops what is too late for it), and the player asks
//! [`AvSync::present`] what to do with the frame in hand. With an audio clock the frame is shown
//! when the clock reaches its pts ([`Present::Wait`] says until when); a frame already more
//! than one frame interval late is skipped when a newer one is ready ([`Present::Late`]). With
//! no audio (none in the stream, audio switched off, or no audio pushed for
//! [`AvSyncConfig::audio_timeout`]) frames are shown as they come, i.e. at the jitter buffer's
//! release time. A frame never waits more than [`AvSyncConfig::max_video_wait`] (a timestamp
//! discontinuity must not freeze the picture).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::media::resample::{Run, StreamResampler};
use crate::proto::wire::CLOCK_RATE;

mod drift;
pub use drift::{DriftConfig, DriftEstimator};

/// Tunables of [`AvSync`].
#[derive(Debug, Clone, PartialEq)]
pub struct AvSyncConfig {
    /// Audio to keep queued in the sink (pushed, not yet played): the cushion against late
    /// wake-ups, and the latency audio adds. Default 40 ms.
    pub target_queue: Duration,
    /// The drift estimator's tunables.
    pub drift: DriftConfig,
    /// Audio not pushed for this long no longer drives video, which then plays at release time.
    /// Default 500 ms.
    pub audio_timeout: Duration,
    /// A frame never waits longer than this for the audio clock. Default 1 s.
    pub max_video_wait: Duration,
    /// Frame interval in 90 kHz ticks (set from the stream's frame rate with
    /// [`AvSync::set_frame_rate`]). Default 3000 (30 fps).
    pub frame_interval: u64,
}

impl Default for AvSyncConfig {
    fn default() -> Self {
        Self {
            target_queue: Duration::from_millis(40),
            drift: DriftConfig::default(),
            audio_timeout: Duration::from_millis(500),
            max_video_wait: Duration::from_secs(1),
            frame_interval: CLOCK_RATE / 30,
        }
    }
}

/// One block of audio to push: interleaved s16 samples whose first frame has timestamp `pts`.
#[derive(Debug, Clone, Copy)]
pub struct AudioBlock<'a> {
    /// Timestamp of the first sample frame, 90 kHz.
    pub pts: u64,
    /// Sample frames per second.
    pub sample_rate: u32,
    /// Interleaved channels.
    pub channels: u16,
    /// Interleaved samples (a trailing partial frame is ignored).
    pub samples: &'a [i16],
}

/// What the audio sink says about its progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AudioReading {
    /// Sample frames of pushed audio the sink has played (`AudioSink::played_frames`).
    pub played_frames: u64,
    /// Delay from "played" to the speaker, when the backend reports it (else zero).
    pub latency: Duration,
    /// The sink's sample rate, Hz (what the audio is resampled to); 0: the stream's own.
    pub sample_rate: u32,
}

/// What to do with the frame in hand ([`AvSync::present`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Present {
    /// Not yet: ask again at this instant (when the audio clock, advancing in real time,
    /// reaches the frame, when the frame has waited its longest, or when audio goes stale),
    /// or sooner if audio or a newer frame comes.
    Wait(Instant),
    /// Show it now.
    Show {
        /// `pts` minus the audio clock at show time, in 90 kHz ticks (positive: the picture
        /// is early); `None` when no audio clock was driving video.
        offset_ticks: Option<i64>,
    },
    /// Skip it: more than a frame interval late and a newer frame is ready.
    Late,
}

/// Counters of an [`AvSync`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct AvStats {
    /// Frames handed out to be shown.
    pub frames_shown: u64,
    /// Frames dropped because they were more than a frame interval late and a newer one was
    /// ready.
    pub frames_late: u64,
    /// Frames dropped because the player's queue of decoded frames was full (counted by the
    /// player, see [`AvSync::note_overflow`]).
    pub frames_overflow: u64,
    /// Frames shown while an audio clock drove video (those with an offset).
    pub frames_synced: u64,
    /// Mean A/V offset of the synced frames, milliseconds (positive: video early).
    pub av_offset_mean_ms: f64,
    /// Largest absolute A/V offset of a synced frame, milliseconds.
    pub av_offset_max_ms: f64,
    /// Audio blocks pushed.
    pub audio_blocks: u64,
    /// Times the drift correction (the resampling ratio) changed.
    pub drift_corrections: u64,
    /// The drift correction in force, ppm (positive: audio comes faster than the sink plays
    /// it, so it is played with fewer frames).
    pub drift_correction_ppm: f64,
    /// The clock difference the drift estimator has learnt, ppm (same sign as
    /// `drift_correction_ppm`, which adds a term steering the queue back to its setpoint).
    pub drift_estimate_ppm: f64,
    /// Largest single change of the drift correction, ppm.
    pub drift_largest_step_ppm: f64,
    /// The sink's sample rate, Hz (the stream is resampled to it when they differ).
    pub sink_rate: u32,
    /// Times the queue was found dry and primed with silence (the first block included).
    pub audio_primes: u64,
    /// Sample frames of silence inserted by priming.
    pub audio_prime_frames: u64,
    /// Times the queue jumped by more than drift can explain (the device stalled) and the
    /// excess was skipped.
    pub audio_resyncs: u64,
    /// Sample frames skipped by those resyncs.
    pub audio_resync_frames: u64,
    /// Sample frames the sink did not take (its ring was full).
    pub audio_frames_refused: u64,
    /// Audio queue (pushed − played) at the last push, milliseconds.
    pub audio_queue_ms: f64,
    /// Smoothed audio queue's distance from its setpoint, milliseconds (what drift
    /// correction acts on).
    pub audio_queue_error_ms: f64,
}

/// Sink frames `start..start + len` play media from `pts` on; frame `i` of them has media time
/// `pts + (i - start) * num / den` ticks.
#[derive(Debug, Clone, Copy)]
struct Segment {
    start: u64,
    len: u64,
    pts: i128,
    num: u128,
    den: u128,
}

impl Segment {
    fn at(&self, i: u64) -> i128 {
        let d = u128::from(i.saturating_sub(self.start).min(self.len));
        self.pts + (d * self.num / self.den.max(1)) as i128
    }

    fn end(&self) -> u64 {
        self.start + self.len
    }
}

/// Longest chain of segments remembered (a push per block; far more than the sink holds).
const MAX_SEGMENTS: usize = 4096;

/// The A/V sync state machine (see the module docs).
#[derive(Debug)]
pub struct AvSync {
    cfg: AvSyncConfig,
    // Audio.
    segments: VecDeque<Segment>,
    pushed: u64,
    drift: DriftEstimator,
    resampler: Option<StreamResampler>,
    last_audio_push: Option<Instant>,
    out: Vec<i16>,
    runs: Vec<Run>,
    /// Input frames still to skip after a device stall.
    skip_frames: u64,
    // Stats.
    stats: AvStats,
    offset_sum: i128,
    offset_max: u64,
}

fn ticks_to_duration(ticks: u128) -> Duration {
    let nanos = ticks.saturating_mul(1_000_000_000) / u128::from(CLOCK_RATE);
    Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
}

fn duration_to_ticks(d: Duration) -> i128 {
    (d.as_nanos() * u128::from(CLOCK_RATE) / 1_000_000_000) as i128
}

fn n_frames(samples: usize, channels: usize) -> u64 {
    (samples / channels.max(1)) as u64
}

fn frames_to_duration(frames: u64, rate: u32) -> Duration {
    let nanos = u128::from(frames) * 1_000_000_000 / u128::from(rate.max(1));
    Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
}

fn duration_to_frames(d: Duration, rate: u32) -> u64 {
    u64::try_from(d.as_nanos() * u128::from(rate) / 1_000_000_000).unwrap_or(u64::MAX)
}

impl AvSync {
    /// A synchroniser with these tunables.
    pub fn new(cfg: AvSyncConfig) -> Self {
        Self {
            drift: DriftEstimator::new(cfg.drift.clone()),
            cfg,
            segments: VecDeque::new(),
            pushed: 0,
            resampler: None,
            last_audio_push: None,
            out: Vec::new(),
            runs: Vec::new(),
            skip_frames: 0,
            stats: AvStats::default(),
            offset_sum: 0,
            offset_max: 0,
        }
    }

    /// The tunables.
    pub fn config(&self) -> &AvSyncConfig {
        &self.cfg
    }

    /// Sets the frame interval from the stream's frame rate (`num / den` frames a second);
    /// ignored when either is zero.
    pub fn set_frame_rate(&mut self, num: u32, den: u32) {
        if num > 0 && den > 0 {
            self.cfg.frame_interval = (CLOCK_RATE * u64::from(den) / u64::from(num)).max(1);
        }
    }

    /// Forgets all audio state: call when the sink is replaced (a new one counts its played
    /// frames from zero), or when the stream's source changes.
    pub fn reset_audio(&mut self) {
        self.segments.clear();
        self.pushed = 0;
        self.drift = DriftEstimator::new(self.cfg.drift.clone());
        self.resampler = None;
        self.skip_frames = 0;
        self.last_audio_push = None;
    }

    /// Counters so far.
    pub fn stats(&self) -> AvStats {
        let mut s = self.stats;
        if s.frames_synced > 0 {
            s.av_offset_mean_ms = self.offset_sum as f64 / s.frames_synced as f64 / 90.0;
        }
        s.av_offset_max_ms = self.offset_max as f64 / 90.0;
        s
    }

    /// Sample frames pushed into the sink since creation or [`reset_audio`](Self::reset_audio).
    pub fn pushed_frames(&self) -> u64 {
        self.pushed
    }

    /// Pushes one block through the resampler: measures the sink's queue from `reading`,
    /// primes it with silence if it ran dry, lets the drift estimator set the resampling
    /// ratio, resamples the block to the sink's rate and hands the result to `push`, which
    /// must pass the samples to the sink and return how many *samples* it took. Returns the
    /// sample frames pushed. A block outside 1..=768000 Hz or 1..=32 channels (what a sink
    /// accepts) is ignored.
    pub fn push_audio(
        &mut self,
        now: Instant,
        block: AudioBlock<'_>,
        reading: AudioReading,
        push: impl FnOnce(&[i16]) -> usize,
    ) -> u64 {
        let ch = usize::from(block.channels);
        let rate = block.sample_rate;
        let sink_rate = match reading.sample_rate {
            0 => rate,
            r => r,
        };
        if !(1..=32).contains(&ch)
            || !(1..=768_000).contains(&rate)
            || !(1..=768_000).contains(&sink_rate)
        {
            return 0;
        }
        let format = (rate, sink_rate);
        if self
            .resampler
            .as_ref()
            .is_none_or(|r| (r.in_rate(), r.out_rate()) != format)
        {
            match StreamResampler::new(rate, sink_rate, block.channels) {
                Ok(r) => self.resampler = Some(r),
                Err(e) => {
                    log::warn!("play: {e}");
                    return 0;
                }
            }
        }
        let Some(resampler) = self.resampler.as_mut() else {
            return 0;
        };
        self.stats.audio_blocks += 1;
        self.stats.sink_rate = sink_rate;
        self.last_audio_push = Some(now);
        let queue = self.pushed.saturating_sub(reading.played_frames);
        let target = duration_to_frames(self.cfg.target_queue, sink_rate);

        // Prime a dry queue with silence up to the target; otherwise the queue is a reading
        // for the drift estimator.
        let prime = if queue == 0 {
            self.stats.audio_primes += 1;
            self.drift.restart_level();
            target
        } else {
            if self
                .drift
                .observe(now, frames_to_duration(queue, sink_rate))
            {
                resampler.set_relative_ratio(self.drift.ratio());
            }
            // The device stalled (or a burst came), or the queue settled far above its
            // target: skip the excess at once, one cut right after the sound server's own
            // gap, rather than play everything late (which would hold the picture back too).
            // A queue that shrank is left be.
            let target_s = self.cfg.target_queue.as_secs_f64();
            let excess = match (self.drift.take_step(), self.drift.take_settled()) {
                (Some(step), _) => Some(step),
                (None, Some(level)) if level - target_s > self.cfg.drift.step.as_secs_f64() => {
                    Some(level - target_s)
                }
                _ => None,
            };
            if let Some(excess) = excess {
                self.stats.audio_resyncs += 1;
                if excess > 0.0 {
                    self.skip_frames = (excess * f64::from(rate)) as u64;
                }
                self.drift.resync();
                resampler.set_relative_ratio(self.drift.ratio());
            }
            0
        };
        self.stats.drift_corrections = self.drift.corrections();
        self.stats.drift_correction_ppm = self.drift.correction_ppm();
        self.stats.drift_largest_step_ppm = self.drift.largest_step_ppm();
        self.stats.drift_estimate_ppm = self.drift.drift_ppm();
        self.stats.audio_queue_ms = queue as f64 * 1000.0 / f64::from(sink_rate);
        self.stats.audio_queue_error_ms = self.drift.queue_error() * 1000.0;

        // Silence, then the resampled block.
        self.out.clear();
        self.out.resize(prime as usize * ch, 0);
        self.runs.clear();
        let skip = self.skip_frames.min(n_frames(block.samples.len(), ch));
        self.skip_frames -= skip;
        self.stats.audio_resync_frames += skip;
        let pts = block.pts + skip * CLOCK_RATE / u64::from(rate);
        let body = &block.samples[skip as usize * ch..];
        resampler.process(pts, body, &mut self.out, &mut self.runs);
        let out_frames = (self.out.len() / ch) as u64;
        let taken = (push(&self.out) / ch) as u64;
        let taken = taken.min(out_frames);
        self.stats.audio_frames_refused += out_frames - taken;

        // Remember the mapping of what the sink took.
        let rate_ticks = u128::from(CLOCK_RATE);
        let mut left = taken;
        if prime > 0 && left > 0 {
            let len = left.min(prime);
            self.stats.audio_prime_frames += len;
            let first = self.runs.first().map_or(i128::from(block.pts), |r| r.pts);
            let prime_ticks = (u128::from(prime) * rate_ticks / u128::from(sink_rate)) as i128;
            self.add_segment(Segment {
                start: self.pushed,
                len,
                pts: first - prime_ticks,
                num: rate_ticks,
                den: u128::from(sink_rate),
            });
            left -= len;
        }
        let mut start = self.pushed + prime.min(taken);
        for i in 0..self.runs.len() {
            if left == 0 {
                break;
            }
            let run = self.runs[i];
            let len = left.min(run.out_frames);
            self.add_segment(Segment {
                start,
                len,
                pts: run.pts,
                num: u128::from(run.in_frames) * rate_ticks,
                den: u128::from(run.out_frames.max(1)) * u128::from(rate),
            });
            start += len;
            left -= len;
        }
        self.pushed += taken;
        taken
    }

    fn add_segment(&mut self, s: Segment) {
        if self.segments.len() >= MAX_SEGMENTS {
            self.segments.pop_front();
        }
        self.segments.push_back(s);
    }

    /// The media time (90 kHz ticks) of the sound leaving the speaker, given the sink's
    /// reading; `None` before any audio was pushed. Forgets segments already played.
    pub fn audio_clock(&mut self, reading: AudioReading) -> Option<i128> {
        let played = reading.played_frames;
        while self.segments.len() > 1 && self.segments[0].end() <= played {
            self.segments.pop_front();
        }
        let first = self.segments.front()?;
        let seg = if played < first.end() {
            first
        } else {
            self.segments.back()?
        };
        Some(seg.at(played) - duration_to_ticks(reading.latency))
    }

    fn audio_active(&self, now: Instant) -> bool {
        self.last_audio_push
            .is_some_and(|t| now.saturating_duration_since(t) <= self.cfg.audio_timeout)
    }

    /// Counts `n` decoded frames the player dropped because its queue was full (they show in
    /// [`AvStats::frames_overflow`]).
    pub fn note_overflow(&mut self, n: u64) {
        self.stats.frames_overflow += n;
    }

    /// What to do with the next frame (timestamp `pts`, decoded and ready since `arrived`):
    /// show it, wait, or skip it as late when `newer_waiting` (a newer frame is ready behind
    /// it). Pass the sink's reading when there is an audio sink, `None` without one. Frames
    /// come in pts order, as the jitter buffer releases them.
    pub fn present(
        &mut self,
        now: Instant,
        pts: u64,
        arrived: Instant,
        newer_waiting: bool,
        audio: Option<AudioReading>,
    ) -> Present {
        let clock = match audio {
            Some(r) if self.audio_active(now) => self.audio_clock(r),
            _ => None,
        };
        let waited = now.saturating_duration_since(arrived);
        let late_by = match clock {
            Some(c) => c - i128::from(pts),
            None => duration_to_ticks(waited),
        };
        if newer_waiting && late_by > i128::from(self.cfg.frame_interval) {
            self.stats.frames_late += 1;
            return Present::Late;
        }
        if let Some(c) = clock {
            let wait = i128::from(pts) - c;
            if wait > 0 && waited < self.cfg.max_video_wait {
                let due = now + ticks_to_duration(wait as u128);
                let give_up = arrived + self.cfg.max_video_wait;
                let stale = self.last_audio_push.map(|t| t + self.cfg.audio_timeout);
                let at = [Some(due), Some(give_up), stale]
                    .into_iter()
                    .flatten()
                    .min()
                    .unwrap_or(due);
                return Present::Wait(at);
            }
        }
        self.stats.frames_shown += 1;
        let offset = clock.map(|c| {
            let o = i128::from(pts) - c;
            i64::try_from(o).unwrap_or(if o < 0 { i64::MIN } else { i64::MAX })
        });
        if let Some(o) = offset {
            self.stats.frames_synced += 1;
            self.offset_sum += i128::from(o);
            self.offset_max = self.offset_max.max(o.unsigned_abs());
        }
        Present::Show {
            offset_ticks: offset,
        }
    }
}

#[cfg(test)]
mod tests;
