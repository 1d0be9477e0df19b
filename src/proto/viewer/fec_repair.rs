//! The viewer's side of forward error correction (proto-spec.md §7.6): per-frame erasure
//! decoders fed with the data chunks and parity symbols that arrive, and repair rounds that
//! ask for fresh parity symbols ("N more of frame F", §6.8) for as long as the frame's
//! playout deadline allows, instead of NACKing individual chunks.
//!
//! Any K of a frame's K + R symbols restore it, so one request for `n` fresh symbols repairs
//! whichever chunks were lost, and a round only has to succeed in count, not in which
//! datagrams get through.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::proto::fec::sizing::{REPAIR_TARGET, repair_count};
use crate::proto::fec::{FecDecoder, FecParams, MAX_FEC_DATA, parity_space};
use crate::proto::reassembler::Partial;
use crate::proto::wire::{ParityChunk, SeqNo, SymbolRequest};

/// Frames with a decoder at once; the oldest frame id goes first.
const MAX_FRAMES: usize = 64;

/// FEC counters of one viewer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct FecStats {
    /// Parity symbols received.
    pub parity_received: u64,
    /// Parity symbols dropped: inconsistent with the frame, or for a frame already done.
    pub parity_discarded: u64,
    /// Frames whose missing chunks the erasure code restored.
    pub frames_repaired: u64,
    /// Data chunks restored by the erasure code.
    pub chunks_restored: u64,
    /// Repair rounds (one FEC_REQUEST entry each).
    pub rounds: u64,
    /// Parity symbols asked for.
    pub symbols_requested: u64,
    /// Repeated copies of requests not yet answered.
    pub request_copies: u64,
}

/// The timing a viewer's repair rounds follow (proto-spec.md §7.6).
#[derive(Debug, Clone, Copy)]
pub(super) struct RoundTiming {
    /// How long a frame must be quiet once something beyond its last chunk has arrived
    /// (the reorder hold).
    pub hold: Duration,
    /// How long a frame must be quiet while nothing beyond its last chunk has arrived: its
    /// paced tail may still be on the way.
    pub tail_hold: Duration,
    /// When a round that is still short repeats.
    pub retry: Duration,
    /// The smoothed RTT: an answer must be able to arrive before the playout deadline.
    pub srtt: Duration,
    /// The interval between copies of a request that no answer has acknowledged yet.
    pub resend: Duration,
    /// How many times a round's request is sent (the first included) while no symbol of
    /// its answer arrives: 1..=[`crate::proto::fec::sizing::MAX_REQUEST_COPIES`].
    pub copies: u8,
    /// The measured loss fraction of the video flow (0..=1).
    pub loss: f64,
    /// The measured mean length of its gaps ([`crate::proto::loss::LossTracker::mean_burst`]).
    pub mean_burst: f64,
}

/// A request no symbol of which has arrived yet: sent again every `resend`, so that a
/// burst of losses on the way back does not take all of its copies.
#[derive(Debug, Clone, Copy)]
struct Outstanding {
    request: SymbolRequest,
    next_copy: Instant,
    copies_left: u8,
}

/// One frame's decoder and repair state.
#[derive(Debug)]
struct FrameFec {
    decoder: FecDecoder,
    /// Wire sequence number of chunk 0.
    first_seq: u32,
    /// The next parity index never received nor asked for (requests ask for fresh ones).
    next_index: usize,
    /// When the next repair round may run.
    next_round: Option<Instant>,
    /// The last round's request while no symbol of it has arrived.
    outstanding: Option<Outstanding>,
    /// A parity symbol of the frame arrived: its data chunks were all sent before it.
    parity_seen: bool,
    /// No more rounds: the deadline is too near, or nothing can be asked for.
    gave_up: bool,
}

/// A chunk restored by the erasure code, to be handled as if it had arrived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Restored {
    /// Wire sequence number of the chunk (§5.1: chunk 0's plus its index).
    pub seq: u32,
    /// Its index in the frame.
    pub index: u16,
    /// Its byte offset in the frame.
    pub offset: u32,
    /// Its payload, trimmed to its real length.
    pub payload: Bytes,
}

/// Per-frame FEC state of a viewer (§7.6). Sans-IO: time comes in as `now`.
#[derive(Debug, Default)]
pub(super) struct FecRepair {
    frames: BTreeMap<u32, FrameFec>,
    /// When each recent frame's last original (not repaired) datagram arrived: a frame
    /// settles on its originals, so that late repairs from a relay's own recovery do not
    /// keep postponing its rounds.
    last_original: BTreeMap<u32, Instant>,
    stats: FecStats,
}

impl FecRepair {
    pub fn stats(&self) -> FecStats {
        self.stats
    }

    /// Forgets everything (a new source).
    pub fn clear(&mut self) {
        self.frames.clear();
        self.last_original.clear();
    }

    /// Forgets a frame that completed or was dropped.
    pub fn remove(&mut self, frame_id: u32) {
        self.frames.remove(&frame_id);
        self.last_original.remove(&frame_id);
    }

    /// An original (not retransmitted) datagram of `frame_id` arrived at `now`.
    pub fn note_original(&mut self, frame_id: u32, now: Instant) {
        if self.last_original.len() >= MAX_FRAMES && !self.last_original.contains_key(&frame_id) {
            self.last_original.pop_first();
        }
        self.last_original.insert(frame_id, now);
    }

    /// When the last original (not repaired) datagram of `frame_id` arrived, if noted.
    pub fn last_original(&self, frame_id: u32) -> Option<Instant> {
        self.last_original.get(&frame_id).copied()
    }

    fn settled_from(&self, frame_id: u32, p: &Partial) -> Instant {
        self.last_original
            .get(&frame_id)
            .copied()
            .unwrap_or(p.last_arrival)
    }

    /// When the frame counts as settled (§7.6): quiet for the reorder hold once something
    /// beyond its last chunk arrived (a later sequence number of the video flow, whose
    /// `highest` is given, or one of its parity symbols), otherwise quiet for the tail hold,
    /// since a gap inside a paced frame would else start a round while the rest is coming.
    fn settle_time(
        &self,
        frame_id: u32,
        p: &Partial,
        highest: Option<SeqNo>,
        t: &RoundTiming,
    ) -> Instant {
        let last = u64::from(p.chunk_count()).saturating_sub(1);
        let passed = self.frames.get(&frame_id).is_some_and(|f| f.parity_seen)
            || matches!((p.first_seq, highest), (Some(first), Some(h)) if h >= first.plus(last));
        let hold = if passed {
            t.hold
        } else {
            t.hold.max(t.tail_hold)
        };
        self.settled_from(frame_id, p) + hold
    }

    /// The frame's decoder, made from what the reassembler holds when there is none yet.
    fn entry(
        &mut self,
        frame_id: u32,
        params: FecParams,
        first_seq: u32,
        partial: Option<&Partial>,
    ) -> Option<&mut FrameFec> {
        if !self.frames.contains_key(&frame_id) {
            while self.frames.len() >= MAX_FRAMES {
                self.frames.pop_first();
            }
            let mut decoder = FecDecoder::new(params);
            if let Some(p) = partial {
                for (i, data) in p.chunks() {
                    // A chunk that does not fit the code was already judged by the
                    // reassembler; it simply does not count here.
                    let _ = decoder.add_data(i.into(), data);
                }
            }
            self.frames.insert(
                frame_id,
                FrameFec {
                    decoder,
                    first_seq,
                    next_index: 0,
                    next_round: None,
                    outstanding: None,
                    parity_seen: false,
                    gave_up: false,
                },
            );
        }
        let f = self.frames.get_mut(&frame_id)?;
        (f.decoder.params() == params).then_some(f)
    }

    /// A parity symbol arrived (§6.7). `partial` is what the reassembler holds of the frame
    /// (`None` if nothing yet, or the frame is done: then `done` is true). Returns the
    /// chunks restored, if the symbol completed the code.
    pub fn on_parity(
        &mut self,
        seq: u32,
        p: &ParityChunk,
        partial: Option<&Partial>,
        done: bool,
    ) -> Vec<Restored> {
        self.stats.parity_received += 1;
        if done {
            self.stats.parity_discarded += 1;
            return Vec::new();
        }
        let Some(f) = self.entry(p.frame_id, p.params, seq, partial) else {
            self.stats.parity_discarded += 1;
            return Vec::new();
        };
        f.next_index = f.next_index.max(usize::from(p.index) + 1);
        f.parity_seen = true;
        if f.outstanding.is_some_and(|o| {
            let r = o.request;
            (r.from..r.from.saturating_add(r.count)).contains(&p.index)
        }) {
            f.outstanding = None;
        }
        if f.decoder.add_parity(p.index.into(), &p.symbol).is_err() {
            self.stats.parity_discarded += 1;
            return Vec::new();
        }
        self.try_restore(p.frame_id)
    }

    /// A data chunk of `frame_id` arrived (and was stored by the reassembler). Returns the
    /// chunks restored, if it completed the code.
    pub fn on_data(&mut self, frame_id: u32, index: u16, payload: &[u8]) -> Vec<Restored> {
        let Some(f) = self.frames.get_mut(&frame_id) else {
            return Vec::new();
        };
        if f.decoder.add_data(index.into(), payload).is_err() {
            return Vec::new();
        }
        self.try_restore(frame_id)
    }

    fn try_restore(&mut self, frame_id: u32) -> Vec<Restored> {
        let Some(f) = self.frames.get_mut(&frame_id) else {
            return Vec::new();
        };
        if f.decoder.needed() > 0 || f.decoder.missing_data().next().is_none() {
            return Vec::new();
        }
        let Ok(indexes) = f.decoder.recover() else {
            return Vec::new();
        };
        let c = f.decoder.params().chunk_len();
        let out: Vec<Restored> = indexes
            .into_iter()
            .filter_map(|i| {
                let data = f.decoder.data(i)?;
                Some(Restored {
                    seq: f.first_seq.wrapping_add(i as u32),
                    index: i as u16,
                    offset: (i * c) as u32,
                    payload: Bytes::copy_from_slice(data),
                })
            })
            .collect();
        if !out.is_empty() {
            self.stats.frames_repaired += 1;
            self.stats.chunks_restored += out.len() as u64;
        }
        self.frames.remove(&frame_id);
        out
    }

    /// Whether the repair of `frame_id` goes through FEC requests (so its chunks are not
    /// NACKed): the frame is small enough to be coded, and its
    /// parity indexes are not used up.
    pub fn covers(&self, frame_id: u32, partial: &Partial) -> bool {
        if usize::from(partial.chunk_count()) > MAX_FEC_DATA {
            return false;
        }
        match self.frames.get(&frame_id) {
            Some(f) => f.next_index < f.decoder.params().parity_count(),
            None => partial.chunk_len().is_some(),
        }
    }

    /// Repair rounds due at `now` for the frames under reassembly, and copies of requests
    /// still unanswered.
    ///
    /// A frame is asked for once it has settled ([`FecRepair::settle_time`]: its paced
    /// chunks and proactive parity are in), then again every `t.retry` while it is still
    /// short and its playout `deadline(pts)` is at least `t.srtt` away (§7.6). Until a
    /// symbol of a round arrives, its request goes again every `t.resend`, `t.copies` times
    /// in all. `t.loss` and `t.mean_burst` size each request; `highest` is the video flow's
    /// highest sequence number received.
    pub fn poll_requests<'a>(
        &mut self,
        now: Instant,
        partials: impl Iterator<Item = (&'a u32, &'a Partial)>,
        deadline: impl Fn(u64) -> Option<Instant>,
        highest: Option<SeqNo>,
        t: &RoundTiming,
    ) -> Vec<SymbolRequest> {
        let (retry, srtt, loss, mean_burst) = (t.retry, t.srtt, t.loss, t.mean_burst);
        let mut out = Vec::new();
        for (&frame_id, p) in partials {
            if !self.covers(frame_id, p) {
                continue;
            }
            if now < self.settle_time(frame_id, p, highest, t) {
                continue;
            }
            let Some(first_seq) = p.first_seq else {
                continue;
            };
            let params = match self.frames.get(&frame_id) {
                Some(f) => f.decoder.params(),
                None => {
                    let k = usize::from(p.chunk_count());
                    let Some(c) = p.chunk_len() else { continue };
                    let Ok(params) = FecParams::new(k, parity_space(k), c, p.frame_size().into())
                    else {
                        continue;
                    };
                    params
                }
            };
            let Some(f) = self.entry(frame_id, params, first_seq.wire(), Some(p)) else {
                continue;
            };
            if f.gave_up {
                continue;
            }
            if f.next_round.is_some_and(|t| t > now) {
                if let Some(o) = f.outstanding.as_mut().filter(|o| o.next_copy <= now) {
                    out.push(o.request);
                    o.copies_left -= 1;
                    o.next_copy = now + t.resend;
                    if o.copies_left == 0 {
                        f.outstanding = None;
                    }
                    self.stats.request_copies += 1;
                }
                continue;
            }
            let needed = f.decoder.needed();
            let left = params.parity_count().saturating_sub(f.next_index);
            // Before the first estimate (the first report interval), the frame's own losses
            // stand in for it, so that the first rounds are not starved.
            let seen = (params.k() - p.received().min(params.k())) as f64 / params.k() as f64;
            let loss = if loss > 0.0 { loss } else { seen };
            // An answer must arrive before the playout deadline: one SRTT (§7.6). With
            // rounds to spare after this one, each may fail more often for fewer bytes.
            let left_time = deadline(p.pts).map(|d| d.saturating_duration_since(now));
            let in_time = left_time.is_some_and(|t| t >= srtt);
            let rounds_after = left_time.map_or(0, |t| {
                (t.saturating_sub(srtt).as_secs_f64() / retry.as_secs_f64().max(1e-3)) as u32
            });
            let target = match rounds_after {
                0 => REPAIR_TARGET,
                1 => 0.95,
                _ => 0.5,
            };
            let n = repair_count(needed, loss, mean_burst, target).min(left);
            log::trace!(
                "viewer: frame {frame_id} round: {needed} needed, asking {n} from {}, {:?} \
                 before playout, loss {loss:.3} burst {mean_burst:.2}",
                f.next_index,
                left_time
            );
            if needed == 0 || n == 0 || !in_time {
                f.gave_up = true;
                continue;
            }
            let request = SymbolRequest {
                frame_id,
                from: f.next_index as u16,
                count: n as u16,
            };
            out.push(request);
            f.outstanding = (t.copies > 1).then(|| Outstanding {
                request,
                next_copy: now + t.resend,
                copies_left: t.copies - 1,
            });
            f.next_index += n;
            f.next_round = Some(now + retry);
            self.stats.rounds += 1;
            self.stats.symbols_requested += n as u64;
        }
        out
    }

    /// The soonest instant a repair round or a request's copy may become due: a frame
    /// settling, a round's retry time, or the next copy of an unanswered request.
    pub fn poll_timeout<'a>(
        &self,
        partials: impl Iterator<Item = (&'a u32, &'a Partial)>,
        highest: Option<SeqNo>,
        t: &RoundTiming,
    ) -> Option<Instant> {
        partials
            .filter(|(id, p)| self.covers(**id, p))
            .filter_map(|(id, p)| {
                let settle = self.settle_time(*id, p, highest, t);
                match self.frames.get(id) {
                    Some(f) if f.gave_up => None,
                    Some(f) => {
                        let round = f.next_round.map_or(settle, |r| r.max(settle));
                        let copy = f.outstanding.map(|o| o.next_copy.max(settle));
                        Some(copy.map_or(round, |c| c.min(round)))
                    }
                    None => Some(settle),
                }
            })
            .min()
    }
}
