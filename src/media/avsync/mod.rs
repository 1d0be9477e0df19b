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
//! `pts` on, at `rate` (scaled by any drift correction in that block)". The sink reports how
//! many pushed frames it has played; the segment holding that frame gives its `pts`, and the
//! device latency (when the backend reports it) is subtracted: that is the pts of the sample
//! leaving the speaker now. Gaps in the stream, silence inserted while priming and samples
//! dropped or repeated for drift all stay exact because each segment carries its own mapping.
//! When the sink runs dry the clock stops at the end of the last segment, with the sound.
//!
//! # Drift correction
//!
//! The sender's sample clock and the receiver's sound card never run at exactly the same rate
//! (tens to hundreds of ppm apart), so the audio queued in the sink (pushed − played) would
//! slowly grow (latency creeps up) or shrink (underruns). Before each block is pushed, the
//! queue is measured and smoothed; when it strays more than a dead band from its target
//! (default 40 ms), a few sample frames of the block are dropped (queue too long) or repeated
//! (too short), spread evenly over the block, at most 0.5 % of it. A queue that has run dry
//! (start, underrun, or after a pause) is primed with silence up to the target at once, so the
//! cushion exists from the first block.
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

use crate::proto::wire::CLOCK_RATE;

/// Tunables of [`AvSync`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AvSyncConfig {
    /// Audio to keep queued in the sink (pushed, not yet played): the cushion against late
    /// wake-ups, and the latency audio adds. Default 40 ms.
    pub target_queue: Duration,
    /// Queue error (smoothed) left alone by drift correction. Default 2 ms.
    pub deadband: Duration,
    /// Largest correction, in parts per million of a block's sample frames. Default 5000
    /// (0.5 %: one frame in 200, inaudible on speech and music).
    pub max_correction_ppm: u32,
    /// A queue error is corrected over about this long (the controller's gain): an error of
    /// `e` corrects `e / horizon` of each block, up to the maximum. Default 2 s.
    pub correction_horizon: Duration,
    /// Weight of each new queue measurement in the smoothed queue length, as a right shift:
    /// 4 means 1/16. Default 4.
    pub smoothing_shift: u32,
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
            deadband: Duration::from_millis(2),
            max_correction_ppm: 5_000,
            correction_horizon: Duration::from_secs(2),
            smoothing_shift: 4,
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
    /// Blocks whose length drift correction changed.
    pub drift_corrections: u64,
    /// Sample frames dropped by drift correction (the queue was too long).
    pub audio_frames_dropped: u64,
    /// Sample frames repeated by drift correction (the queue was too short).
    pub audio_frames_repeated: u64,
    /// Times the queue was found dry and primed with silence (the first block included).
    pub audio_primes: u64,
    /// Sample frames of silence inserted by priming.
    pub audio_prime_frames: u64,
    /// Sample frames the sink did not take (its ring was full).
    pub audio_frames_refused: u64,
    /// Smoothed audio queue (pushed − played) at the last push, milliseconds.
    pub audio_queue_ms: f64,
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
    /// Smoothed queue length, in 1/256 sample frames.
    smoothed_queue: Option<i128>,
    /// Correction owed, in frame-ppm (a frame is 1 000 000).
    correction_acc: i128,
    last_audio_push: Option<Instant>,
    out: Vec<i16>,
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

fn duration_to_frames(d: Duration, rate: u32) -> u64 {
    u64::try_from(d.as_nanos() * u128::from(rate) / 1_000_000_000).unwrap_or(u64::MAX)
}

impl AvSync {
    /// A synchroniser with these tunables.
    pub fn new(cfg: AvSyncConfig) -> Self {
        Self {
            cfg,
            segments: VecDeque::new(),
            pushed: 0,
            smoothed_queue: None,
            correction_acc: 0,
            last_audio_push: None,
            out: Vec::new(),
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
        self.smoothed_queue = None;
        self.correction_acc = 0;
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

    /// Pushes one block through drift correction: measures the sink's queue from `reading`,
    /// primes it with silence if it ran dry, drops or repeats a few frames of the block to
    /// steer the queue to its target, and hands the result to `push`, which must pass the
    /// samples to the sink and return how many *samples* it took. Returns the sample frames
    /// pushed. A block outside 1..=768000 Hz or 1..=32 channels (what a sink accepts) is
    /// ignored.
    pub fn push_audio(
        &mut self,
        now: Instant,
        block: AudioBlock<'_>,
        reading: AudioReading,
        push: impl FnOnce(&[i16]) -> usize,
    ) -> u64 {
        let ch = usize::from(block.channels);
        let rate = block.sample_rate;
        if !(1..=32).contains(&ch) || !(1..=768_000).contains(&rate) {
            return 0;
        }
        let n = (block.samples.len() / ch) as u64;
        self.stats.audio_blocks += 1;
        self.last_audio_push = Some(now);
        let queue = self.pushed.saturating_sub(reading.played_frames);
        let target = duration_to_frames(self.cfg.target_queue, rate);

        // Prime a dry queue with silence up to the target.
        let prime = if queue == 0 {
            self.stats.audio_primes += 1;
            self.smoothed_queue = Some(i128::from(target) << 8);
            self.correction_acc = 0;
            target
        } else {
            0
        };

        // Drift correction: a proportional controller on the smoothed queue length, in
        // integers (queue in 1/256 frames, correction in frame-ppm) so runs are reproducible.
        let k = if prime > 0 || n < 2 {
            0
        } else {
            let shift = self.cfg.smoothing_shift.min(16);
            let q = i128::from(queue) << 8;
            let sq = match self.smoothed_queue {
                Some(s) => s + ((q - s) >> shift),
                None => q,
            };
            self.smoothed_queue = Some(sq);
            let error = sq - (i128::from(target) << 8);
            let band = i128::from(duration_to_frames(self.cfg.deadband, rate)) << 8;
            if error.abs() <= band {
                self.correction_acc = 0;
                0
            } else {
                let max = i128::from(self.cfg.max_correction_ppm.min(100_000));
                let horizon =
                    i128::from(duration_to_frames(self.cfg.correction_horizon, rate).max(1)) << 8;
                let ppm = (error * 1_000_000 / horizon).clamp(-max, max);
                self.correction_acc += ppm * i128::from(n);
                let k = self.correction_acc / 1_000_000;
                self.correction_acc -= k * 1_000_000;
                let cap = ((i128::from(n) * max + 999_999) / 1_000_000).min(i128::from(n / 2));
                k.clamp(-cap, cap) as i64
            }
        };
        self.stats.audio_queue_ms =
            (self.smoothed_queue.unwrap_or(0) >> 8) as f64 * 1000.0 / f64::from(rate);

        // Build what goes to the sink: silence, then the block with `k` frames dropped
        // (k > 0) or repeated (k < 0) at evenly spaced positions.
        self.out.clear();
        self.out.resize(prime as usize * ch, 0);
        let nk = k.unsigned_abs();
        let mut next_mark = 0u64;
        let mark = |j: u64| (2 * j + 1) * n / (2 * nk.max(1));
        for (i, frame) in block.samples.chunks_exact(ch).enumerate() {
            let i = i as u64;
            if next_mark < nk && i == mark(next_mark) {
                next_mark += 1;
                if k > 0 {
                    continue;
                }
                self.out.extend_from_slice(frame);
            }
            self.out.extend_from_slice(frame);
        }
        let out_frames = (self.out.len() / ch) as u64;
        if k > 0 {
            self.stats.drift_corrections += 1;
            self.stats.audio_frames_dropped += nk;
        } else if k < 0 {
            self.stats.drift_corrections += 1;
            self.stats.audio_frames_repeated += nk;
        }

        let taken = (push(&self.out) / ch) as u64;
        let taken = taken.min(out_frames);
        self.stats.audio_frames_refused += out_frames - taken;

        // Remember the mapping of what the sink took.
        let block_pts = i128::from(block.pts);
        let rate_ticks = u128::from(CLOCK_RATE);
        if prime > 0 && taken > 0 {
            let len = taken.min(prime);
            self.stats.audio_prime_frames += len;
            let prime_ticks = (u128::from(prime) * rate_ticks / u128::from(rate)) as i128;
            self.add_segment(Segment {
                start: self.pushed,
                len,
                pts: block_pts - prime_ticks,
                num: rate_ticks,
                den: u128::from(rate),
            });
        }
        if taken > prime {
            let body = out_frames - prime;
            self.add_segment(Segment {
                start: self.pushed + prime,
                len: taken - prime,
                pts: block_pts,
                num: u128::from(n) * rate_ticks,
                den: u128::from(body) * u128::from(rate),
            });
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
