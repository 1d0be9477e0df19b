//! Gathering (proto-spec.md §7.3): a relay fanning a stream out to many subscribers holds a
//! frame's chunks as they arrive and queues them for every subscriber at once, when the
//! frame's last chunk comes, a newer frame starts, or a short wait runs out.
//!
//! Why: a publisher paces a frame over part of its interval (§7.1), so it arrives in a few
//! bursts. Fanned out burst by burst, each subscriber's frame leaves in as many sends; the
//! kernel's cost per send (route lookup, skb, loopback or NIC hand-off, the receiver's
//! wake-up) outweighed the copy of the bytes. At 300 subscribers of a 15 Mbit/s stream,
//! fanning out whole frames cut the sends by 44 % (GSO super-datagrams of about 14
//! datagrams became about 25) and cut the relay's CPU per delivered GB by about 30 %. The last
//! chunk is not held, but every subscriber's whole frame follows it, so those served last
//! get the frame later by up to the time the relay takes to send it to all. The wait of
//! the chunks before it counts against the frame's queue-delay budget, so that a frame
//! still leaves the relay within half the latency of its first chunk's arrival.
//! Below [`GATHER_MIN_MEMBERS`] the fan-out is cheap and chunks go on as they come, so a
//! viewer sees each one (and each gap to NACK) as early as possible.

use std::time::{Duration, Instant};

use super::fanout::DEFAULT_LATENCY;
use super::{OverloadLimit, Relay};
use crate::proto::wire::{self, SeqNo};

/// Subscribers of a stream from which its frames are gathered.
const GATHER_MIN_MEMBERS: usize = 16;
/// The longest a frame's first chunk is held is this fraction (1/n) of its subscribers'
/// tightest latency (100 ms assumed for one that stated none, §6.2): a publisher paces a
/// frame within a quarter of it (§7.1), so a frame whose last chunk has not come by then
/// lost it.
const GATHER_LATENCY_SHARE: u32 = 4;
/// Frames skipped for a subscriber this recently for want of the relay's CPU or socket
/// buffer (not for one subscriber's own rate cap) stop gathering: under a CPU quota at 2.3
/// times the relay's capacity, gathered frames went round unevenly (viewers played 34 to
/// 61 % of the frames; 40 to 45 % without). Short, so that a skip at a burst of joins costs
/// little.
const GATHER_SKIP_MEMORY: Duration = Duration::from_millis(250);
/// Most chunks held at once per stream (a frame of more goes out in parts): bounds memory.
const GATHER_MAX_CHUNKS: usize = 256;

/// A frame's chunks held for one fan-out.
#[derive(Debug)]
pub(super) struct Held {
    frame: u32,
    /// When the first held chunk reached the relay: the frame's queue time counts from then.
    since: Instant,
    /// Until when it may be held.
    until: Instant,
    /// (sequence number, bytes) of each held chunk, in arrival order.
    chunks: Vec<(SeqNo, usize)>,
}

impl Held {
    /// The (extended) sequence numbers held.
    pub(super) fn seqs(&self) -> Vec<u64> {
        self.chunks.iter().map(|(s, _)| s.0).collect()
    }

    /// Whether `datagram`, a chunk of frame `frame`, is held (its header's `seq`, §3, is a
    /// held chunk's).
    pub(super) fn holds(&self, frame: u32, datagram: &[u8]) -> bool {
        let Some((_, _, _, seq)) = wire::peek_header(datagram) else {
            return false;
        };
        frame == self.frame && self.chunks.iter().any(|(s, _)| s.wire() == seq)
    }

    /// When the held chunks must go out.
    pub(super) fn until(&self) -> Instant {
        self.until
    }
}

impl Relay {
    /// Queues new video datagram `seq` (`len` bytes, cached) of frame `frame` for every
    /// subscriber of stream `idx`, or holds it with the rest of its frame (see the module).
    /// `last`: it is the frame's last chunk, so the frame goes out now. `now`: the latest
    /// input's time, when the fan-out has none of its arrival.
    pub(super) fn gather(
        &mut self,
        now: Instant,
        idx: usize,
        seq: SeqNo,
        len: usize,
        frame: u32,
        last: bool,
    ) {
        let s = self.streams.get_mut(idx);
        let holding = s.held.as_ref().is_some_and(|h| h.frame == frame);
        if !holding {
            self.release_held(idx);
            let overloaded = self.skipped_within(GATHER_SKIP_MEMORY);
            let s = self.streams.get_mut(idx);
            if s.members.len() < GATHER_MIN_MEMBERS || last || overloaded {
                self.broadcast_cached(idx, seq, len, frame);
                return;
            }
            let tightest = s
                .members
                .iter()
                .filter_map(|m| self.fanout.get(m).map(|sub| sub.latency()))
                .min()
                .unwrap_or(DEFAULT_LATENCY);
            let wait = tightest / GATHER_LATENCY_SHARE;
            // When it reached the relay (the kernel's timestamp, where there is one).
            let arrived = self.fanout.now().unwrap_or(now);
            s.held = Some(Held {
                frame,
                since: arrived,
                until: arrived + wait,
                chunks: Vec::new(),
            });
        }
        let s = self.streams.get_mut(idx);
        let Some(h) = &mut s.held else { return };
        h.chunks.push((seq, len));
        if last || h.chunks.len() >= GATHER_MAX_CHUNKS {
            self.release_held(idx);
        }
    }

    /// Queues stream `idx`'s held chunks, if any, for its subscribers, as queued when the
    /// first of them arrived. (A new source drops what is held with its cache, so the
    /// stream's cache key is the one they were held under.)
    pub(super) fn release_held(&mut self, idx: usize) {
        let s = self.streams.get_mut(idx);
        let Some(h) = s.held.take() else { return };
        let cache_key = s.cache_key();
        // Every subscriber becomes ready at once, and those whose turns tie are served in
        // the order they became ready: the order goes round from frame to frame. A fixed
        // one, under a CPU quota, gave the first 62 of 250 subscribers 100 frames of 150
        // and the rest 83 to 94.
        let n = s.members.len();
        // A multiplicative hash of the frame id: the start jumps round the list (one step a
        // frame would keep neighbours ahead for seconds).
        let first = if n == 0 {
            0
        } else {
            (u64::from(h.frame).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32) as usize % n
        };
        let order: Vec<_> = s.members[first..]
            .iter()
            .chain(&s.members[..first])
            .copied()
            .collect();
        let now = self.fanout.now();
        self.fanout.set_now(h.since);
        for (seq, len) in h.chunks {
            self.fanout
                .broadcast_cached(&order, cache_key, seq, len, h.frame);
        }
        if let Some(now) = now {
            self.fanout.set_now(now);
        }
    }

    /// Queues every frame whose wait ran out by `now`.
    pub(super) fn release_due(&mut self, now: Instant) {
        for idx in 0..self.streams.len() {
            let due = self
                .streams
                .get_mut(idx)
                .held
                .as_ref()
                .is_some_and(|h| h.until <= now);
            if due {
                self.release_held(idx);
            }
        }
    }

    /// When the first held frame must go out.
    pub(super) fn gather_deadline(&self) -> Option<Instant> {
        self.streams
            .iter()
            .filter_map(|s| s.held.as_ref().map(Held::until))
            .min()
    }

    /// Whether a frame was skipped for some subscriber within `memory` of the latest input.
    fn skipped_within(&self, memory: Duration) -> bool {
        let Some(now) = self.last_now else {
            return false;
        };
        self.fanout.last_skip.is_some_and(|(t, limit)| {
            limit != OverloadLimit::SlowSubscriber && now.saturating_duration_since(t) < memory
        })
    }
}
