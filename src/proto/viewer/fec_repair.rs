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
use crate::proto::wire::{ParityChunk, SymbolRequest};

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
    /// True once the stream's sender was seen sending parity: from then on video repair
    /// goes through FEC requests.
    active: bool,
    stats: FecStats,
}

impl FecRepair {
    pub fn stats(&self) -> FecStats {
        self.stats
    }

    /// Whether the sender speaks FEC (a parity symbol arrived on this stream).
    pub fn is_active(&self) -> bool {
        self.active
    }

    /// Forgets everything (a new source).
    pub fn clear(&mut self) {
        self.frames.clear();
        self.last_original.clear();
        self.active = false;
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
        self.active = true;
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
    /// NACKed): the sender speaks FEC, the frame is small enough to be coded, and its
    /// parity indexes are not used up.
    pub fn covers(&self, frame_id: u32, partial: &Partial) -> bool {
        if !self.active || usize::from(partial.chunk_count()) > MAX_FEC_DATA {
            return false;
        }
        match self.frames.get(&frame_id) {
            Some(f) => f.next_index < f.decoder.params().parity_count(),
            None => partial.chunk_len().is_some(),
        }
    }

    /// Repair rounds due at `now` for the frames under reassembly.
    ///
    /// A frame is asked for once it has settled (nothing of it arrived for `hold`, so its
    /// paced chunks and proactive parity are in), then again every `retry` while it is
    /// still short and its playout `deadline(pts)` is at least `srtt` away (§7.6). `loss`
    /// is the measured loss fraction, which sizes each request.
    #[allow(clippy::too_many_arguments)]
    pub fn poll_requests<'a>(
        &mut self,
        now: Instant,
        partials: impl Iterator<Item = (&'a u32, &'a Partial)>,
        deadline: impl Fn(u64) -> Option<Instant>,
        hold: Duration,
        retry: Duration,
        srtt: Duration,
        loss: f64,
    ) -> Vec<SymbolRequest> {
        let mut out = Vec::new();
        if !self.active {
            return out;
        }
        for (&frame_id, p) in partials {
            if !self.covers(frame_id, p) {
                continue;
            }
            if now.saturating_duration_since(self.settled_from(frame_id, p)) < hold {
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
            if f.gave_up || f.next_round.is_some_and(|t| t > now) {
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
                _ => 0.85,
            };
            let n = repair_count(needed, loss, target).min(left);
            if needed == 0 || n == 0 || !in_time {
                f.gave_up = true;
                continue;
            }
            out.push(SymbolRequest {
                frame_id,
                from: f.next_index as u16,
                count: n as u16,
            });
            f.next_index += n;
            f.next_round = Some(now + retry);
            self.stats.rounds += 1;
            self.stats.symbols_requested += n as u64;
        }
        out
    }

    /// The soonest instant a repair round may become due: a frame settling after `hold`,
    /// or a round's retry time.
    pub fn poll_timeout<'a>(
        &self,
        partials: impl Iterator<Item = (&'a u32, &'a Partial)>,
        hold: Duration,
    ) -> Option<Instant> {
        if !self.active {
            return None;
        }
        partials
            .filter(|(id, p)| self.covers(**id, p))
            .filter_map(|(id, p)| {
                let settle = self.settled_from(*id, p) + hold;
                match self.frames.get(id) {
                    Some(f) if f.gave_up => None,
                    Some(f) => Some(f.next_round.map_or(settle, |t| t.max(settle))),
                    None => Some(settle),
                }
            })
            .min()
    }
}
