//! The receiver's playout clock and jitter buffers (proto-spec.md §7.2).
//!
//! The playout clock maps a media timestamp to the instant it should be shown:
//! `playout(pts) = base + pts + latency`, where `base` is the smallest `arrival - pts` seen
//! over a sliding window (the path's fastest transit). Frames and audio blocks are released
//! in timestamp order at their playout instant; what is not whole by then is dropped.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::proto::reassembler::Frame;
use crate::proto::wire::CLOCK_RATE;

/// Converts 90 kHz ticks to nanoseconds.
pub fn ticks_to_nanos(ticks: i128) -> i128 {
    ticks * 1_000_000_000 / CLOCK_RATE as i128
}

/// Converts a duration to 90 kHz ticks.
pub fn duration_to_ticks(d: Duration) -> u64 {
    (d.as_nanos() * CLOCK_RATE as u128 / 1_000_000_000) as u64
}

/// Maps media timestamps to local playout instants.
#[derive(Debug, Clone)]
pub struct PlayoutClock {
    latency: Duration,
    ceiling: Duration,
    window: Duration,
    epoch: Option<(Instant, u64)>,
    cur_min: Option<i128>,
    prev_min: Option<i128>,
    window_start: Option<Instant>,
    /// Times the clock re-based (a jump in timestamps, or the ceiling reached).
    pub rebases: u64,
}

impl PlayoutClock {
    /// A clock that plays `latency` after the fastest transit and re-bases when a frame
    /// would be more than `ceiling` beyond the latency (§7.2, the hard ceiling).
    pub fn new(latency: Duration, ceiling: Duration) -> PlayoutClock {
        PlayoutClock {
            latency,
            ceiling,
            window: Duration::from_secs(4),
            epoch: None,
            cur_min: None,
            prev_min: None,
            window_start: None,
            rebases: 0,
        }
    }

    /// The configured latency.
    pub fn latency(&self) -> Duration {
        self.latency
    }

    /// Changes the latency for what is played from now on (already scheduled frames keep
    /// their playout times).
    pub fn set_latency(&mut self, latency: Duration) {
        self.latency = latency;
    }

    fn offset(&self, now: Instant, pts: u64) -> i128 {
        let (e, p0) = self.epoch.unwrap_or((now, pts));
        now.saturating_duration_since(e).as_nanos() as i128
            - ticks_to_nanos(pts as i128 - p0 as i128)
    }

    /// Notes the arrival of media stamped `pts` at `now`.
    pub fn observe(&mut self, now: Instant, pts: u64) {
        if self.epoch.is_none() {
            self.reset_at(now, pts);
            return;
        }
        let off = self.offset(now, pts);
        // A timestamp jump (or transit growing past the ceiling): start over, newest wins.
        let base = self.base();
        if (off - base).unsigned_abs() > self.ceiling.as_nanos() {
            self.rebases += 1;
            self.reset_at(now, pts);
            return;
        }
        if self
            .window_start
            .is_some_and(|w| now.saturating_duration_since(w) >= self.window)
        {
            self.prev_min = self.cur_min;
            self.cur_min = None;
            self.window_start = Some(now);
        }
        self.cur_min = Some(self.cur_min.map_or(off, |m| m.min(off)));
    }

    fn reset_at(&mut self, now: Instant, pts: u64) {
        self.epoch = Some((now, pts));
        self.cur_min = Some(0);
        self.prev_min = None;
        self.window_start = Some(now);
    }

    fn base(&self) -> i128 {
        match (self.cur_min, self.prev_min) {
            (Some(a), Some(b)) => a.min(b),
            (Some(a), None) | (None, Some(a)) => a,
            (None, None) => 0,
        }
    }

    /// The instant `pts` should be played, once anything was observed.
    pub fn playout(&self, pts: u64) -> Option<Instant> {
        let (e, p0) = self.epoch?;
        let ns = self.base()
            + ticks_to_nanos(pts as i128 - p0 as i128)
            + self.latency.as_nanos() as i128;
        Some(if ns >= 0 {
            e + Duration::from_nanos(ns as u64)
        } else {
            e.checked_sub(Duration::from_nanos((-ns) as u64))
                .unwrap_or(e)
        })
    }

    /// Forgets everything (a new source).
    pub fn reset(&mut self) {
        self.epoch = None;
        self.cur_min = None;
        self.prev_min = None;
        self.window_start = None;
    }
}

/// Why a frame was not played.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub enum DropReason {
    /// Still incomplete at its playout time.
    Incomplete,
    /// Completed (or first seen) after its playout time, or behind a frame already played.
    Late,
    /// Pushed out by the buffer's ceiling (newest frame wins).
    Overflow,
}

/// What the frame buffer releases.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameOut {
    /// Play this frame now.
    Play(Frame),
    /// This frame is lost.
    Drop {
        /// Its id.
        frame_id: u32,
        /// Its timestamp.
        pts: u64,
        /// Why.
        reason: DropReason,
    },
}

#[derive(Debug, Clone)]
enum Slot {
    Pending(u32),
    Ready(Frame),
}

/// Video jitter buffer: frames by timestamp, released at their playout instant.
#[derive(Debug, Clone)]
pub struct FrameBuffer {
    slots: BTreeMap<u64, (Instant, Slot)>,
    last_released: Option<u64>,
    max_frames: usize,
}

impl FrameBuffer {
    /// A buffer holding at most `max_frames` frames (pending or ready).
    pub fn new(max_frames: usize) -> FrameBuffer {
        FrameBuffer {
            slots: BTreeMap::new(),
            last_released: None,
            max_frames: max_frames.max(1),
        }
    }

    /// Registers a frame seen for the first time (its first chunk arrived) with its
    /// playout `deadline`. Refused as late if a newer frame was already released or the
    /// deadline has passed.
    pub fn admit(
        &mut self,
        now: Instant,
        pts: u64,
        frame_id: u32,
        deadline: Instant,
    ) -> Result<(), DropReason> {
        if self.last_released.is_some_and(|l| pts <= l) || deadline < now {
            return Err(DropReason::Late);
        }
        self.slots
            .entry(pts)
            .or_insert((deadline, Slot::Pending(frame_id)));
        Ok(())
    }

    /// Whether a frame with this timestamp is waiting.
    pub fn contains(&self, pts: u64) -> bool {
        self.slots.contains_key(&pts)
    }

    /// The id of the frame waiting under this timestamp.
    pub fn frame_id(&self, pts: u64) -> Option<u32> {
        self.slots.get(&pts).map(|(_, s)| match s {
            Slot::Pending(id) => *id,
            Slot::Ready(f) => f.frame_id,
        })
    }

    /// The playout deadline of a waiting frame.
    pub fn deadline(&self, pts: u64) -> Option<Instant> {
        self.slots.get(&pts).map(|(d, _)| *d)
    }

    /// A frame became whole. Returns a drop if it is too late to play.
    pub fn complete(&mut self, now: Instant, frame: Frame) -> Option<FrameOut> {
        match self.slots.get_mut(&frame.pts) {
            Some((deadline, slot)) if *deadline >= now => {
                *slot = Slot::Ready(frame);
                None
            }
            Some(_) => {
                self.slots.remove(&frame.pts);
                Some(FrameOut::Drop {
                    frame_id: frame.frame_id,
                    pts: frame.pts,
                    reason: DropReason::Late,
                })
            }
            None => Some(FrameOut::Drop {
                frame_id: frame.frame_id,
                pts: frame.pts,
                reason: DropReason::Late,
            }),
        }
    }

    /// Withdraws frame `frame_id`, waiting incomplete under `pts`, without a verdict (the
    /// relay skipped the rest of it, §6.10). False, and nothing done, when that frame is not
    /// waiting incomplete there.
    pub fn withdraw(&mut self, pts: u64, frame_id: u32) -> bool {
        if !matches!(self.slots.get(&pts), Some((_, Slot::Pending(id))) if *id == frame_id) {
            return false;
        }
        self.slots.remove(&pts);
        true
    }

    /// When the oldest frame is due.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.slots.values().map(|(d, _)| *d).next()
    }

    /// Releases the next frame due at `now` (play or drop), in timestamp order.
    pub fn pop(&mut self, now: Instant) -> Option<FrameOut> {
        let over = self.slots.len() > self.max_frames;
        let (&pts, (deadline, _)) = self.slots.first_key_value()?;
        if !over && *deadline > now {
            return None;
        }
        let (_, slot) = self.slots.remove(&pts)?;
        self.last_released = Some(pts);
        Some(match (slot, over) {
            (Slot::Pending(frame_id), false) => FrameOut::Drop {
                frame_id,
                pts,
                reason: DropReason::Incomplete,
            },
            (Slot::Ready(f), false) => FrameOut::Play(f),
            (Slot::Pending(frame_id), true) => FrameOut::Drop {
                frame_id,
                pts,
                reason: DropReason::Overflow,
            },
            (Slot::Ready(f), true) => FrameOut::Drop {
                frame_id: f.frame_id,
                pts,
                reason: DropReason::Overflow,
            },
        })
    }

    /// Frames waiting.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// True when no frame waits.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Forgets everything.
    pub fn clear(&mut self) {
        self.slots.clear();
        self.last_released = None;
    }
}

/// The longest gap filled with silence (half a second); a longer one is a pause.
const MAX_CONCEAL_TICKS: u64 = CLOCK_RATE / 2;

/// A block of audio released for playing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AudioOut {
    /// Timestamp of the first sample.
    pub pts: u64,
    /// Samples per second.
    pub sample_rate: u32,
    /// Channels.
    pub channels: u8,
    /// Interleaved s16le bytes.
    pub samples: Bytes,
    /// True when this is silence standing in for a lost block.
    pub concealed: bool,
}

#[derive(Debug, Clone)]
struct Block {
    sample_rate: u32,
    channels: u8,
    frames: u16,
    samples: Bytes,
}

/// Audio jitter buffer: blocks by timestamp; a block missing at its playout instant is
/// replaced by silence of the same length (§7.2).
#[derive(Debug, Clone)]
pub struct AudioBuffer {
    blocks: BTreeMap<u64, Block>,
    next: Option<(u64, Block)>,
    max_blocks: usize,
    /// Blocks concealed with silence.
    pub concealed: u64,
    /// Blocks that arrived after their slot was played.
    pub late: u64,
}

impl AudioBuffer {
    /// A buffer for at most `max_blocks` blocks.
    pub fn new(max_blocks: usize) -> AudioBuffer {
        AudioBuffer {
            blocks: BTreeMap::new(),
            next: None,
            max_blocks,
            concealed: 0,
            late: 0,
        }
    }

    fn block_ticks(b: &Block) -> u64 {
        b.frames as u64 * CLOCK_RATE / b.sample_rate.max(1) as u64
    }

    /// Adds a received block.
    pub fn insert(
        &mut self,
        pts: u64,
        sample_rate: u32,
        channels: u8,
        frames: u16,
        samples: Bytes,
    ) {
        if let Some((next, _)) = &self.next {
            // One tick of slack: timestamps of rates that do not divide 90 kHz round.
            if pts + 1 < *next {
                self.late += 1;
                return;
            }
        }
        if self.blocks.len() >= self.max_blocks {
            self.blocks.pop_first();
        }
        self.blocks.insert(
            pts,
            Block {
                sample_rate,
                channels,
                frames,
                samples,
            },
        );
    }

    /// The timestamp of the next block to play.
    pub fn next_pts(&self) -> Option<u64> {
        match &self.next {
            Some((p, _)) => Some(*p),
            None => self.blocks.keys().next().copied(),
        }
    }

    /// Releases the next block if its playout instant (from `clock`) has come.
    pub fn pop(&mut self, now: Instant, clock: &PlayoutClock) -> Option<AudioOut> {
        let pts = self.next_pts()?;
        if clock.playout(pts)? > now {
            return None;
        }
        // The block at (or within a tick of) the expected timestamp, if present.
        let found = self
            .blocks
            .range(pts.saturating_sub(1)..=pts + 1)
            .next()
            .map(|(k, _)| *k);
        // Drop anything older still lingering.
        while let Some((&k, _)) = self.blocks.first_key_value() {
            if k + 1 < pts {
                self.blocks.pop_first();
                self.late += 1;
            } else {
                break;
            }
        }
        match found.and_then(|k| self.blocks.remove(&k).map(|b| (k, b))) {
            Some((k, b)) => {
                let ticks = Self::block_ticks(&b);
                let out = AudioOut {
                    pts: k,
                    sample_rate: b.sample_rate,
                    channels: b.channels,
                    samples: b.samples.clone(),
                    concealed: false,
                };
                self.next = Some((k + ticks, b));
                Some(out)
            }
            None => {
                // Conceal only a real gap: a later block is already here. If nothing later
                // has come, the source paused or stopped; wait instead of inventing audio.
                let (&later, _) = self.blocks.range(pts + 2..).next()?;
                let (_, shape) = self.next.as_ref()?;
                let shape = shape.clone();
                let ticks = Self::block_ticks(&shape);
                if later - pts > MAX_CONCEAL_TICKS {
                    // A long pause: resume at the next block rather than fill it with silence.
                    self.next = None;
                    return self.pop(now, clock);
                }
                self.concealed += 1;
                self.next = Some((pts + ticks, shape.clone()));
                Some(AudioOut {
                    pts,
                    sample_rate: shape.sample_rate,
                    channels: shape.channels,
                    samples: Bytes::from(vec![0u8; shape.samples.len()]),
                    concealed: true,
                })
            }
        }
    }

    /// When the next block is due.
    pub fn poll_timeout(&self, clock: &PlayoutClock) -> Option<Instant> {
        let pts = self.next_pts()?;
        // Nothing to play or conceal until some block at or after `pts` is here.
        self.blocks.range(pts.saturating_sub(1)..).next()?;
        clock.playout(pts)
    }

    /// Forgets everything.
    pub fn clear(&mut self) {
        self.blocks.clear();
        self.next = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn frame(id: u32, pts: u64) -> Frame {
        Frame {
            frame_id: id,
            pts,
            width: 1,
            height: 1,
            jpeg: Bytes::from_static(b"j"),
        }
    }

    #[test]
    fn clock_follows_the_fastest_transit() {
        let t0 = Instant::now();
        let mut c = PlayoutClock::new(100 * MS, Duration::from_secs(1));
        c.observe(t0, 0);
        assert_eq!(c.playout(0), Some(t0 + 100 * MS));
        // Frame 3000 ticks (33.3 ms) later arrives 5 ms early relative to the first: base moves.
        c.observe(t0 + Duration::from_micros(28_333), 3000);
        let p = c.playout(3000).unwrap();
        assert_eq!(p, t0 + Duration::from_micros(128_333));
        // A jump of an hour in pts re-bases instead of waiting an hour.
        c.observe(t0 + 40 * MS, 90_000 * 3600);
        assert_eq!(c.rebases, 1);
        assert_eq!(c.playout(90_000 * 3600), Some(t0 + 140 * MS));
    }

    #[test]
    fn frames_release_in_order_and_incomplete_ones_drop() {
        let t0 = Instant::now();
        let mut b = FrameBuffer::new(8);
        b.admit(t0, 0, 0, t0 + 10 * MS).unwrap();
        b.admit(t0, 3000, 1, t0 + 43 * MS).unwrap();
        assert!(b.complete(t0, frame(1, 3000)).is_none());
        assert_eq!(b.poll_timeout(), Some(t0 + 10 * MS));
        assert!(b.pop(t0 + 9 * MS).is_none());
        assert_eq!(
            b.pop(t0 + 10 * MS),
            Some(FrameOut::Drop {
                frame_id: 0,
                pts: 0,
                reason: DropReason::Incomplete
            })
        );
        assert_eq!(b.pop(t0 + 43 * MS), Some(FrameOut::Play(frame(1, 3000))));
        // Older than what was played: late.
        assert_eq!(
            b.admit(t0 + 44 * MS, 1500, 5, t0 + 100 * MS),
            Err(DropReason::Late)
        );
        // Completing after the deadline: late.
        b.admit(t0 + 44 * MS, 6000, 2, t0 + 50 * MS).unwrap();
        assert_eq!(
            b.complete(t0 + 51 * MS, frame(2, 6000)),
            Some(FrameOut::Drop {
                frame_id: 2,
                pts: 6000,
                reason: DropReason::Late
            })
        );
    }

    #[test]
    fn overflow_drops_oldest() {
        let t0 = Instant::now();
        let mut b = FrameBuffer::new(2);
        for i in 0..3u32 {
            b.admit(t0, i as u64, i, t0 + Duration::from_secs(1))
                .unwrap();
        }
        assert_eq!(
            b.pop(t0),
            Some(FrameOut::Drop {
                frame_id: 0,
                pts: 0,
                reason: DropReason::Overflow
            })
        );
        assert!(b.pop(t0).is_none());
    }

    #[test]
    fn audio_gaps_are_concealed_with_silence() {
        let t0 = Instant::now();
        let mut c = PlayoutClock::new(20 * MS, Duration::from_secs(1));
        c.observe(t0, 0);
        let mut a = AudioBuffer::new(64);
        let blk = Bytes::from(vec![1u8; 240 * 4]);
        a.insert(0, 48_000, 2, 240, blk.clone());
        a.insert(900, 48_000, 2, 240, blk.clone());
        let o = a.pop(t0 + 20 * MS, &c).unwrap();
        assert!(!o.concealed && o.pts == 0);
        let o = a.pop(t0 + 25 * MS, &c).unwrap();
        assert!(o.concealed && o.pts == 450 && o.samples.iter().all(|&b| b == 0));
        let o = a.pop(t0 + 30 * MS, &c).unwrap();
        assert!(!o.concealed && o.pts == 900 && o.samples == blk);
        assert_eq!(a.concealed, 1);
    }
}
