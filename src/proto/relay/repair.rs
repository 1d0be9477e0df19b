//! Repair (proto-spec.md §7.3): the relay answers a subscriber's NACK from its cache and
//! asks its origin for what it lacks, once per sequence number however many subscribers
//! ask (re-asking after [`UPSTREAM_REASK`]); it also detects its own losses on the path
//! from the origin and asks for them before its subscribers notice. Requests to a pushing
//! publisher stay within the bytes it sent (anti-amplification, §8).

use foldhash::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::Relay;
use super::fanout::Queued;
use super::gather::Held;
use crate::proto::fec::sizing::{burst_to_q8, loss_to_q16};
use crate::proto::loss::{LossConfig, LossTracker};
use crate::proto::wire::{self, Body, FLAG_RETRANSMIT, Flow, NackRange, Packet, PacketType, SeqNo};

/// How long the relay holds a gap from its origin before calling it a loss.
pub(super) const RELAY_REORDER_HOLD: Duration = Duration::from_millis(3);
/// A request forwarded upstream is repeated for a new asker only after this long.
const UPSTREAM_REASK: Duration = Duration::from_millis(10);
/// A forwarded request is forgotten after this long.
const PENDING_MAX_AGE: Duration = Duration::from_secs(1);
/// Most sequence numbers one NACK may ask for.
const MAX_NACK_SEQS: u64 = 1024;
/// How far past the newest datagram it has a relay still forwards a request: the tail of
/// a frame lost upstream is asked for before the next frame reveals the gap.
const MAX_AHEAD: u64 = 4096;
/// Most forwarded requests remembered per stream.
const MAX_PENDING: usize = 16384;

#[derive(Debug)]
struct PendingRtx {
    asked_at: Instant,
    who: Vec<SocketAddr>,
}

/// Per-stream repair state towards the origin.
#[derive(Debug)]
pub(super) struct UpstreamRepair {
    video_loss: LossTracker,
    audio_loss: LossTracker,
    pending: HashMap<(Flow, SeqNo), PendingRtx>,
}

impl Default for UpstreamRepair {
    fn default() -> Self {
        UpstreamRepair {
            video_loss: LossTracker::new(LossConfig::default()),
            audio_loss: LossTracker::new(LossConfig::default()),
            pending: HashMap::default(),
        }
    }
}

impl UpstreamRepair {
    fn tracker(&mut self, flow: Flow) -> &mut LossTracker {
        match flow {
            Flow::Video => &mut self.video_loss,
            Flow::Audio => &mut self.audio_loss,
        }
    }

    /// Samples the loss measured on the path from the origin (§6.6 `loss_q16`): what a relay
    /// reports upstream so that its origin sizes parity for it.
    pub(super) fn loss_q16(&mut self) -> u16 {
        loss_to_q16(self.video_loss.sample_loss_rate())
    }

    /// The mean burst length on that path as of the last [`UpstreamRepair::loss_q16`] sample
    /// (§6.6 `burst_q8`).
    pub(super) fn burst_q8(&self) -> u16 {
        burst_to_q8(self.video_loss.mean_burst())
    }

    /// The loss fraction (0..=1) and mean burst length measured on the path from the
    /// origin, without taking a sample.
    pub(super) fn loss(&self) -> (f64, f64) {
        (self.video_loss.loss_rate(), self.video_loss.mean_burst())
    }

    /// Notes a chunk the relay restored from its origin's parity (§7.6): it fills its gap as
    /// a repair, never as reordering.
    pub(super) fn on_restored(&mut self, now: Instant, seq: SeqNo) {
        self.video_loss
            .on_restored(now, seq, RELAY_REORDER_HOLD, None);
    }

    /// Forgets everything (a new source).
    pub(super) fn reset(&mut self) {
        self.pending.clear();
        self.video_loss.reset();
        self.audio_loss.reset();
    }

    /// Forgets forwarded requests older than [`PENDING_MAX_AGE`].
    pub(super) fn expire(&mut self, now: Instant) {
        self.pending
            .retain(|_, p| now.saturating_duration_since(p.asked_at) < PENDING_MAX_AGE);
    }

    /// Notes a datagram from the origin; returns who asked for it, if it answers a
    /// forwarded request.
    pub(super) fn on_arrival(
        &mut self,
        now: Instant,
        flow: Flow,
        seq: SeqNo,
        from_remote: bool,
    ) -> Option<Vec<SocketAddr>> {
        if from_remote {
            self.tracker(flow)
                .on_arrival(now, seq, RELAY_REORDER_HOLD, None);
        }
        self.pending.remove(&(flow, seq)).map(|p| p.who)
    }

    /// When the loss trackers next have a request to make.
    pub(super) fn poll_timeout(&self) -> Option<Instant> {
        crate::proto::node::soonest(
            self.video_loss.poll_timeout(),
            self.audio_loss.poll_timeout(),
        )
    }
}

impl Relay {
    /// A subscriber's NACK: answers from the cache, forwards what the relay lacks.
    pub(super) fn on_nack(
        &mut self,
        now: Instant,
        from: SocketAddr,
        flow: Flow,
        ranges: &[NackRange],
    ) {
        let Some(sub) = self.fanout.get(&from) else {
            self.stats.unknown_sender += 1;
            return;
        };
        let Some(idx) = self.streams.position(&sub.stream) else {
            return;
        };
        // Chunks of frames skipped for it under overload are not sent after all, nor is any
        // video for a second after a skip: what it lacks then came late from this relay, and
        // answers would only add to the overload (§7.3).
        let overloaded = sub.skipping(now);
        let skipped = |seq: u32| flow == Flow::Video && (overloaded || sub.skipped_seq(seq));
        let mut ignored = 0;
        let mut still_queued = 0;
        let mut hits: Vec<Bytes> = Vec::new();
        let mut ask: Vec<SeqNo> = Vec::new();
        let mut misses = 0;
        let s = self.streams.get_mut(idx);
        let origin_remote = s.origin.addr().is_some();
        let key = s.cache_key();
        // Chunks held for gathering go out with their frame (§7.3).
        let held: Vec<u64> = s.held.as_ref().map(Held::seqs).unwrap_or_default();
        let (cache, ext) = s.cache(flow);
        let Some(last) = ext.last() else { return };
        let mut budget = MAX_NACK_SEQS;
        for r in ranges {
            let start = last.extend(r.start);
            for i in 0..r.len as u64 {
                if budget == 0 {
                    break;
                }
                budget -= 1;
                let seq = start.plus(i);
                if skipped(seq.wire()) {
                    ignored += 1;
                    continue;
                }
                // On its way already: the relay fell behind, and an answer would only put
                // the chunk out twice (§7.3).
                if flow == Flow::Video && (sub.queued_seq(key, seq.0) || held.contains(&seq.0)) {
                    still_queued += 1;
                    continue;
                }
                if let Some(d) = cache.get(now, seq) {
                    if let Some(d) = wire::with_flags(d, FLAG_RETRANSMIT) {
                        hits.push(d);
                    }
                } else if origin_remote && seq.0 <= last.0 + MAX_AHEAD {
                    ask.push(seq);
                } else {
                    misses += 1;
                }
            }
        }
        self.stats.cache_misses += misses;
        self.stats.skipped_requests += ignored;
        self.stats.requests_still_queued += still_queued;
        let mut forward: Vec<SeqNo> = Vec::new();
        let s = self.streams.get_mut(idx);
        let pending = &mut s.repair.pending;
        for seq in ask {
            if pending.len() >= MAX_PENDING && !pending.contains_key(&(flow, seq)) {
                self.stats.cache_misses += 1;
                continue;
            }
            let e = pending.entry((flow, seq)).or_insert(PendingRtx {
                asked_at: now,
                who: Vec::new(),
            });
            if !e.who.contains(&from) {
                e.who.push(from);
            }
            if e.who.len() == 1 || now.saturating_duration_since(e.asked_at) >= UPSTREAM_REASK {
                e.asked_at = now;
                forward.push(seq);
            }
        }
        if let (false, Some(origin)) = (forward.is_empty(), s.origin.addr()) {
            let ssrc = s.ssrc.unwrap_or(0);
            self.stats.upstream_requests += forward.len() as u64;
            for chunk in ranges_of(&forward).chunks(wire::MAX_NACK_RANGES) {
                let body = Body::Nack {
                    flow,
                    ranges: chunk.to_vec(),
                };
                self.send_to_origin(idx, origin, ssrc, body);
            }
        }
        self.stats.cache_hits += hits.len() as u64;
        self.stats.retransmits_sent += hits.len() as u64;
        for d in hits.into_iter().rev() {
            self.fanout.enqueue(from, Queued::single(d), true);
        }
    }

    /// Sends a NACK to a stream's origin if the anti-amplification budget allows.
    fn send_to_origin(&mut self, idx: usize, origin: SocketAddr, ssrc: u32, body: Body) -> bool {
        let seq = self.next_ctrl_seq();
        let d = Packet::new(PacketType::Nack, ssrc, seq, body).encode();
        if self.streams.get_mut(idx).may_send_origin(d.len()) {
            self.send_control(origin, d);
            true
        } else {
            self.stats.origin_budget_exceeded += 1;
            false
        }
    }

    /// The relay's own requests for what it lost on the way from its origins.
    pub(super) fn poll_own_nacks(&mut self, now: Instant) {
        let mut out = Vec::new();
        for (idx, s) in self.streams.iter_mut().enumerate() {
            let Some(origin) = s.origin.addr() else {
                continue;
            };
            let rtt = s.rtt();
            let ssrc = s.ssrc.unwrap_or(0);
            for flow in [Flow::Video, Flow::Audio] {
                let ranges = s.repair.tracker(flow).poll_nack(now, &rtt);
                for chunk in ranges.chunks(wire::MAX_NACK_RANGES) {
                    out.push((idx, origin, ssrc, flow, chunk.to_vec()));
                }
            }
        }
        for (idx, origin, ssrc, flow, ranges) in out {
            let n = ranges.iter().map(|r| r.len as u64).sum::<u64>();
            if self.send_to_origin(idx, origin, ssrc, Body::Nack { flow, ranges }) {
                self.stats.upstream_requests += n;
            }
        }
    }

    /// The soonest deadline of the relay's own loss detection towards remote origins.
    pub(super) fn upstream_nack_deadline(&self) -> Option<Instant> {
        self.streams
            .iter()
            .filter(|s| s.origin.addr().is_some())
            .fold(None, |t, s| {
                crate::proto::node::soonest(t, s.repair.poll_timeout())
            })
    }
}

/// Compresses sorted sequence numbers into NACK ranges.
pub fn ranges_of(seqs: &[SeqNo]) -> Vec<NackRange> {
    let mut out: Vec<NackRange> = Vec::new();
    let mut prev: Option<SeqNo> = None;
    for &s in seqs {
        match (out.last_mut(), prev) {
            (Some(r), Some(p)) if p.next() == s && r.len < u16::MAX => r.len += 1,
            _ => out.push(NackRange {
                start: s.wire(),
                len: 1,
            }),
        }
        prev = Some(s);
    }
    out
}

#[cfg(test)]
#[path = "repair_tests.rs"]
mod tests;
