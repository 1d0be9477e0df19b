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
//! Decoded frames wait in a bounded queue. With an audio clock, the front frame is shown when
//! the clock reaches its pts; a frame already more than one frame interval late is dropped when
//! a newer one is ready. With no audio (none in the stream, audio switched off, or no audio
//! pushed for [`AvSyncConfig::audio_timeout`]) frames are shown as they come, i.e. at the
//! jitter buffer's release time. A frame never waits more than
//! [`AvSyncConfig::max_video_wait`] (a timestamp discontinuity must not freeze the picture).

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
    /// Decoded frames held at most; beyond that the oldest is dropped. Default 16.
    pub max_frames: usize,
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
            max_frames: 16,
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

/// A frame to show now.
#[derive(Debug)]
pub struct ShownFrame<T> {
    /// Its timestamp.
    pub pts: u64,
    /// The frame.
    pub frame: T,
    /// `pts` minus the audio clock at show time, in 90 kHz ticks (positive: the picture is
    /// early); `None` when no audio clock was driving video.
    pub offset_ticks: Option<i64>,
}

/// Counters of an [`AvSync`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct AvStats {
    /// Frames handed out to be shown.
    pub frames_shown: u64,
    /// Frames dropped because they were more than a frame interval late and a newer one was
    /// ready.
    pub frames_late: u64,
    /// Frames dropped because the queue of decoded frames was full.
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

#[derive(Debug)]
struct Pending<T> {
    pts: u64,
    arrived: Instant,
    frame: T,
}

/// Longest chain of segments remembered (a push per block; far more than the sink holds).
const MAX_SEGMENTS: usize = 4096;

/// The A/V sync state machine (see the module docs). `T` is the decoded frame type.
#[derive(Debug)]
pub struct AvSync<T> {
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
    // Video.
    frames: VecDeque<Pending<T>>,
    discarded: VecDeque<T>,
    last_clock: Option<(Instant, i128)>,
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

impl<T> AvSync<T> {
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
            frames: VecDeque::new(),
            discarded: VecDeque::new(),
            last_clock: None,
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
        self.last_clock = None;
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

    /// Queues a decoded frame (frames come in pts order, as the jitter buffer releases them).
    /// When the queue is full the oldest frame is dropped (see [`poll_discarded`]).
    ///
    /// [`poll_discarded`]: Self::poll_discarded
    pub fn push_frame(&mut self, now: Instant, pts: u64, frame: T) {
        while self.frames.len() >= self.cfg.max_frames.max(1) {
            if let Some(old) = self.frames.pop_front() {
                self.stats.frames_overflow += 1;
                self.discarded.push_back(old.frame);
            }
        }
        self.frames.push_back(Pending {
            pts,
            arrived: now,
            frame,
        });
    }

    /// Decoded frames waiting to be shown.
    pub fn queued_frames(&self) -> usize {
        self.frames.len()
    }

    /// A frame dropped without being shown, so its buffer can be reused; drain until `None`.
    pub fn poll_discarded(&mut self) -> Option<T> {
        self.discarded.pop_front()
    }

    /// The frame to show now, if one is due (older late frames are dropped on the way). Pass
    /// the sink's reading when there is an audio sink, `None` without one. Call until `None`
    /// and show the last frame returned.
    pub fn poll_frame(
        &mut self,
        now: Instant,
        audio: Option<AudioReading>,
    ) -> Option<ShownFrame<T>> {
        let clock = match audio {
            Some(r) if self.audio_active(now) => self.audio_clock(r),
            _ => None,
        };
        self.last_clock = clock.map(|c| (now, c));
        let interval = i128::from(self.cfg.frame_interval);
        loop {
            let front = self.frames.front()?;
            let late_by = match clock {
                Some(c) => c - i128::from(front.pts),
                None => duration_to_ticks(now.saturating_duration_since(front.arrived)),
            };
            if self.frames.len() >= 2 && late_by > interval {
                if let Some(old) = self.frames.pop_front() {
                    self.stats.frames_late += 1;
                    self.discarded.push_back(old.frame);
                }
                continue;
            }
            let due = match clock {
                Some(c) => {
                    i128::from(front.pts) <= c
                        || now.saturating_duration_since(front.arrived) >= self.cfg.max_video_wait
                }
                None => true,
            };
            if !due {
                return None;
            }
            let f = self.frames.pop_front()?;
            self.stats.frames_shown += 1;
            let offset = clock.map(|c| {
                let o = i128::from(f.pts) - c;
                i64::try_from(o).unwrap_or(if o < 0 { i64::MIN } else { i64::MAX })
            });
            if let Some(o) = offset {
                self.stats.frames_synced += 1;
                self.offset_sum += i128::from(o);
                self.offset_max = self.offset_max.max(o.unsigned_abs());
            }
            return Some(ShownFrame {
                pts: f.pts,
                frame: f.frame,
                offset_ticks: offset,
            });
        }
    }

    /// When [`poll_frame`](Self::poll_frame) should next be called: when the audio clock (as
    /// last read, advancing in real time) reaches the front frame, or when that frame has
    /// waited its longest, or when audio goes stale; `None` with no frame waiting.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let front = self.frames.front()?;
        let give_up = front.arrived + self.cfg.max_video_wait;
        let Some((at, clock)) = self.last_clock else {
            return Some(front.arrived);
        };
        let wait = i128::from(front.pts) - clock;
        let due = if wait <= 0 {
            at
        } else {
            at + ticks_to_duration(wait as u128)
        };
        let stale = self.last_audio_push.map(|t| t + self.cfg.audio_timeout);
        Some(
            [Some(due), Some(give_up), stale]
                .into_iter()
                .flatten()
                .min()
                .unwrap_or(due),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::{AudioSink, ClockSink};

    const MS: Duration = Duration::from_millis(1);

    fn block(pts: u64, samples: &[i16]) -> AudioBlock<'_> {
        AudioBlock {
            pts,
            sample_rate: 48_000,
            channels: 1,
            samples,
        }
    }

    fn reading(played: u64) -> AudioReading {
        AudioReading {
            played_frames: played,
            latency: Duration::ZERO,
        }
    }

    #[test]
    fn first_block_is_primed_and_clock_maps_pts() {
        let t0 = Instant::now();
        let mut s = AvSync::<u32>::new(AvSyncConfig::default());
        assert_eq!(s.audio_clock(reading(0)), None);
        let samples: Vec<i16> = (1..=960).collect(); // 20 ms at 48 kHz
        let mut got = Vec::new();
        let pushed = s.push_audio(t0, block(90_000, &samples), reading(0), |x| {
            got.extend_from_slice(x);
            x.len()
        });
        // 40 ms of silence (1920 frames), then the block untouched.
        assert_eq!(pushed, 1920 + 960);
        assert_eq!(got.len(), 2880);
        assert!(got[..1920].iter().all(|&x| x == 0));
        assert_eq!(&got[1920..], &samples[..]);
        // The silence maps to the 40 ms before the block (3600 ticks).
        assert_eq!(s.audio_clock(reading(0)), Some(90_000 - 3600));
        assert_eq!(s.audio_clock(reading(960)), Some(90_000 - 1800));
        assert_eq!(s.audio_clock(reading(1920)), Some(90_000));
        assert_eq!(s.audio_clock(reading(1920 + 480)), Some(90_000 + 900));
        // Drained: the clock stops at the end of what was pushed.
        assert_eq!(s.audio_clock(reading(10_000)), Some(90_000 + 1800));
        // Device latency moves the clock back.
        let r = AudioReading {
            played_frames: 2400,
            latency: 10 * MS,
        };
        assert_eq!(s.audio_clock(r), Some(90_000 + 900 - 900));
        let st = s.stats();
        assert_eq!((st.audio_primes, st.audio_prime_frames), (1, 1920));
        assert_eq!(st.drift_corrections, 0);
    }

    #[test]
    fn a_long_queue_drops_frames_and_a_short_one_repeats() {
        let t0 = Instant::now();
        let cfg = AvSyncConfig {
            smoothing_shift: 0, // no smoothing: the measurement is the estimate
            ..AvSyncConfig::default()
        };
        let mut s = AvSync::<u32>::new(cfg);
        let b: Vec<i16> = (0..1000).collect();
        let sink = |x: &[i16]| x.len();
        // Prime: 1920 + 1000 frames pushed.
        s.push_audio(t0, block(0, &b), reading(0), sink);
        assert_eq!(s.pushed_frames(), 2920);
        // Queue of 2920 frames = 60.8 ms, 20.8 ms over: 20.8 / 2000 = 1.04 % → capped at
        // 0.5 % of 1000 = 5 frames dropped, at 100, 300, 500, 700, 900.
        let mut got = Vec::new();
        let pts = 1000 * 90_000 / 48_000;
        s.push_audio(t0 + 20 * MS, block(pts, &b), reading(0), |x| {
            got.extend_from_slice(x);
            x.len()
        });
        assert_eq!(got.len(), 995);
        for dropped in [100, 300, 500, 700, 900] {
            assert!(!got.contains(&dropped), "{dropped} dropped");
        }
        assert_eq!(got[99..102], [99, 101, 102]);
        // The block's 1000 frames of media now span 995 sink frames.
        assert_eq!(s.audio_clock(reading(2920)), Some(pts as i128));
        assert_eq!(s.audio_clock(reading(2920 + 995)), Some(pts as i128 + 1875));
        let st = s.stats();
        assert_eq!((st.drift_corrections, st.audio_frames_dropped), (1, 5));

        // Queue of 1000 frames (20.8 ms, 19.2 ms short): 0.5 % → 5 frames repeated.
        got.clear();
        let played = s.pushed_frames() - 1000;
        s.push_audio(t0 + 40 * MS, block(2 * pts, &b), reading(played), |x| {
            got.extend_from_slice(x);
            x.len()
        });
        assert_eq!(got.len(), 1005);
        assert_eq!(got[99..103], [99, 100, 100, 101]);
        let st = s.stats();
        assert_eq!((st.drift_corrections, st.audio_frames_repeated), (2, 5));

        // Within the dead band (40 ± 2 ms): untouched.
        got.clear();
        let played = s.pushed_frames() - 1950; // 40.6 ms
        s.push_audio(t0 + 60 * MS, block(3 * pts, &b), reading(played), |x| {
            got.extend_from_slice(x);
            x.len()
        });
        assert_eq!(got, b);
        assert_eq!(s.stats().drift_corrections, 2);
    }

    #[test]
    fn a_full_sink_takes_part_of_a_block() {
        let t0 = Instant::now();
        let mut s = AvSync::<u32>::new(AvSyncConfig::default());
        let b = [7i16; 960];
        // The sink takes 2000 of the 2880 frames: all the silence, 80 frames of the block.
        let pushed = s.push_audio(t0, block(0, &b), reading(0), |x| x.len().min(2000));
        assert_eq!(pushed, 2000);
        let st = s.stats();
        assert_eq!(st.audio_frames_refused, 880);
        assert_eq!(s.audio_clock(reading(2000)), Some(150)); // 80 frames = 150 ticks
        // Blocks of an impossible shape (a network can claim anything) are ignored, with no
        // allocation sized by the claim.
        for (channels, sample_rate) in [(0, 48_000), (33, 48_000), (2, 0), (2, u32::MAX)] {
            let z = AudioBlock {
                channels,
                sample_rate,
                ..block(0, &b)
            };
            assert_eq!(s.push_audio(t0, z, reading(0), |x| x.len()), 0);
        }
        assert_eq!(s.stats().audio_blocks, 1);
    }

    #[test]
    fn video_waits_for_the_audio_clock() {
        let t0 = Instant::now();
        let mut s = AvSync::<u32>::new(AvSyncConfig::default());
        let b = [0i16; 4800];
        // Audio from pts 0: primed, so pts 0 leaves the speaker after 40 ms (1920 frames).
        s.push_audio(t0, block(0, &b), reading(0), |x| x.len());
        s.push_frame(t0, 0, 1);
        s.push_frame(t0, 3000, 2);
        // Clock at -3600 + 960 frames (1800 ticks) = -1800: frame 1 is 20 ms early.
        assert!(s.poll_frame(t0 + 20 * MS, Some(reading(960))).is_none());
        assert_eq!(s.poll_timeout(), Some(t0 + 40 * MS));
        // At 1920 played: pts 0 is due, offset 0.
        let f = s.poll_frame(t0 + 40 * MS, Some(reading(1920))).unwrap();
        assert_eq!((f.frame, f.offset_ticks), (1, Some(0)));
        assert!(s.poll_frame(t0 + 40 * MS, Some(reading(1920))).is_none());
        // Frame 2 (pts 3000) is due when 1600 more frames have played: at 73.33 ms.
        assert_eq!(
            s.poll_timeout(),
            Some(t0 + 40 * MS + Duration::from_nanos(33_333_333))
        );
        // Shown 450 ticks (5 ms) late.
        let f = s
            .poll_frame(t0 + 80 * MS, Some(reading(1920 + 1840)))
            .unwrap();
        assert_eq!((f.frame, f.offset_ticks), (2, Some(-450)));
        let st = s.stats();
        assert_eq!((st.frames_shown, st.frames_synced), (2, 2));
        assert!((st.av_offset_mean_ms - -2.5).abs() < 1e-9);
        assert!((st.av_offset_max_ms - 5.0).abs() < 1e-9);
    }

    #[test]
    fn late_frames_are_dropped_only_when_a_newer_one_is_ready() {
        let t0 = Instant::now();
        let mut s = AvSync::<u32>::new(AvSyncConfig::default());
        let b = [0i16; 48_000]; // one second
        s.push_audio(t0, block(0, &b), reading(0), |x| x.len());
        // Clock at pts 9000 (100 ms): 1920 + 4800 frames played.
        let r = reading(1920 + 4800);
        s.push_frame(t0, 3000, 1); // 6000 ticks late
        s.push_frame(t0, 6000, 2); // 3000 ticks late: exactly one interval, not more
        s.push_frame(t0, 12_000, 3); // early
        let f = s.poll_frame(t0, Some(r)).unwrap();
        assert_eq!((f.frame, f.offset_ticks), (2, Some(-3000)));
        assert_eq!(s.poll_discarded(), Some(1));
        assert_eq!(s.poll_discarded(), None);
        assert!(s.poll_frame(t0, Some(r)).is_none());
        // Alone in the queue, a late frame is still shown.
        let r = reading(1920 + 48_000);
        let f = s.poll_frame(t0 + 10 * MS, Some(r)).unwrap();
        assert_eq!((f.frame, f.offset_ticks), (3, Some(12_000 - 90_000)));
        let st = s.stats();
        assert_eq!((st.frames_shown, st.frames_late), (2, 1));
    }

    #[test]
    fn without_audio_frames_show_on_arrival() {
        let t0 = Instant::now();
        let mut s = AvSync::<u32>::new(AvSyncConfig::default());
        assert_eq!(s.poll_timeout(), None);
        s.push_frame(t0, 1_000_000, 1);
        assert_eq!(s.poll_timeout(), Some(t0));
        let f = s.poll_frame(t0, None).unwrap();
        assert_eq!((f.frame, f.offset_ticks), (1, None));
        // A backlog: the older frames, more than an interval late, give way to the newest.
        s.push_frame(t0, 1_003_000, 2);
        s.push_frame(t0 + 40 * MS, 1_006_000, 3);
        let f = s.poll_frame(t0 + 40 * MS, None).unwrap();
        assert_eq!(f.frame, 3);
        assert_eq!(s.poll_discarded(), Some(2));
        // Audio pushed once, then nothing for longer than the timeout: video runs free.
        let b = [0i16; 480];
        s.push_audio(t0, block(0, &b), reading(0), |x| x.len());
        s.push_frame(t0 + 600 * MS, 5_000_000, 4);
        let f = s.poll_frame(t0 + 600 * MS, Some(reading(0))).unwrap();
        assert_eq!((f.frame, f.offset_ticks), (4, None));
        assert_eq!(s.stats().frames_synced, 0);
    }

    #[test]
    fn a_frame_never_waits_past_the_limit_and_the_queue_is_bounded() {
        let t0 = Instant::now();
        let cfg = AvSyncConfig {
            max_frames: 2,
            ..AvSyncConfig::default()
        };
        let mut s = AvSync::<u32>::new(cfg);
        let b = [0i16; 48_000];
        s.push_audio(t0, block(0, &b), reading(0), |x| x.len());
        // A frame 1 h ahead of the audio (a timestamp discontinuity).
        s.push_frame(t0, 3600 * 90_000, 1);
        assert!(s.poll_frame(t0 + 100 * MS, Some(reading(100))).is_none());
        assert_eq!(
            s.poll_timeout(),
            Some(t0 + 500 * MS),
            "audio goes stale first"
        );
        let f = s.poll_frame(t0 + 1000 * MS, Some(reading(1000))).unwrap();
        assert_eq!(
            f.frame, 1,
            "shown after waiting 1 s (audio stale by then anyway)"
        );
        s.push_frame(t0, 10, 2);
        s.push_frame(t0, 20, 3);
        s.push_frame(t0, 30, 4);
        assert_eq!(s.queued_frames(), 2);
        assert_eq!(s.poll_discarded(), Some(2));
        assert_eq!(s.stats().frames_overflow, 1);
    }

    #[test]
    fn set_frame_rate() {
        let mut s = AvSync::<u32>::new(AvSyncConfig::default());
        s.set_frame_rate(25, 1);
        assert_eq!(s.config().frame_interval, 3600);
        s.set_frame_rate(30_000, 1001);
        assert_eq!(s.config().frame_interval, 3003);
        s.set_frame_rate(0, 1);
        assert_eq!(s.config().frame_interval, 3003);
    }

    /// Sender blocks of 20 ms arrive every 20 ms of sender time; the receiver's sound card runs
    /// `ppm` fast or slow. Returns (sync stats, sink underruns, the largest and the smallest
    /// queue in frames, just after a push, over the last 30 s).
    fn run_drift(ppm: i64, seconds: u64) -> (AvStats, u64, u64, u64) {
        let t0 = Instant::now();
        let mut sink = ClockSink::new(48_000, 1, 48_000).unwrap();
        let mut s = AvSync::<u32>::new(AvSyncConfig::default());
        let b = [100i16; 960];
        // The sink sees device time: real time scaled by (1 + ppm / 1e6).
        let device = |t: Duration| {
            let n = t.as_nanos() as i128;
            t0 + Duration::from_nanos((n + n * i128::from(ppm) / 1_000_000) as u64)
        };
        let (mut hi, mut lo) = (0, u64::MAX);
        let blocks = seconds * 50;
        for i in 0..blocks {
            let t = Duration::from_millis(20 * i);
            let now = device(t);
            let r = reading(sink.played_frames(now));
            s.push_audio(t0 + t, block(i * 1800, &b), r, |x| sink.push(now, x));
            if i >= blocks - 1500 {
                let q = sink.queued_frames(now);
                hi = hi.max(q);
                lo = lo.min(q);
            }
        }
        (s.stats(), sink.underruns(), hi, lo)
    }

    #[test]
    fn drift_is_corrected_without_latency_creep() {
        // Equal clocks: nothing to correct, the queue sits at the target (40 ms + the block
        // just pushed, measured right after the push).
        let (st, underruns, hi, lo) = run_drift(0, 60);
        assert_eq!(
            (st.drift_corrections, underruns, st.audio_primes),
            (0, 0, 1)
        );
        assert_eq!((hi, lo), (1920 + 960, 1920 + 960));

        // A sound card 1000 ppm fast drains 48 extra frames a second, 2880 over the minute.
        // They are made up by repeating frames, except the 96 frames (2 ms) of dead band the
        // queue settles below its target; the queue then holds still: no underrun, no creep.
        let (st, underruns, hi, lo) = run_drift(1000, 60);
        assert_eq!(
            (underruns, st.audio_primes, st.audio_frames_dropped),
            (0, 1, 0)
        );
        assert_eq!(st.audio_frames_repeated, 2784);
        assert_eq!((hi, lo), (2785, 2784));
        // 1000 ppm slow: frames dropped instead; the queue settles 2 ms above the target.
        let (st, underruns, hi, lo) = run_drift(-1000, 60);
        assert_eq!(
            (underruns, st.audio_primes, st.audio_frames_repeated),
            (0, 1, 0)
        );
        assert_eq!(st.audio_frames_dropped, 2783);
        assert_eq!((hi, lo), (2977, 2975));
        // A typical 100 ppm: 288 frames of drift, 191 corrected, 97 absorbed by the band.
        let (st, underruns, hi, lo) = run_drift(100, 60);
        assert_eq!((underruns, st.audio_frames_repeated), (0, 191));
        assert_eq!((hi, lo), (2786, 2783));
        // At the 0.5 % limit the queue still holds, 10 ms below its target.
        let (st, underruns, hi, lo) = run_drift(5000, 60);
        assert_eq!((underruns, st.audio_frames_repeated), (0, 13_920));
        assert_eq!((hi, lo), (2405, 2404));
    }
}
