//! The relay's forward error correction (proto-spec.md §6.7, §6.8, §7.6): each subscriber
//! gets, after every whole frame, as many parity symbols as the loss it reports calls for,
//! and fresh symbols when it asks for them. The frame is coded once, from the chunks the
//! relay already holds, whoever needs it.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::Relay;
use super::fanout::Queued;
use super::streams::{Origin, UpstreamAsk};
use crate::proto::fec::msg::MAX_FEC_REQUESTS;
use crate::proto::fec::parity_space;
use crate::proto::fec::sizing::{REPAIR_TARGET, repair_count};
use crate::proto::fec::source::proactive_for;
use crate::proto::wire::{
    Body, FLAG_RETRANSMIT, Packet, PacketType, ReceiverReport, SymbolRequest, VideoChunk,
};

/// How often a relay reports to its upstream (§6.6).
pub(super) const REPORT_INTERVAL: Duration = Duration::from_millis(250);

/// Requests waiting for their frame to become whole here, per stream; the oldest go first.
const MAX_PENDING: usize = 256;
/// A waiting request older than this is dropped (its frame is long past playout).
const PENDING_MAX_AGE: Duration = Duration::from_secs(1);
/// Requests remembered per stream to recognise copies (several per frame at 30 fps).
const MAX_ANSWERED: usize = 512;
/// Frames whose parity the relay asked its upstream for, remembered per stream.
const MAX_UPSTREAM_ASKS: usize = 64;
/// The least time between two requests to the upstream for one frame.
const UPSTREAM_FEC_REASK: Duration = Duration::from_millis(10);

impl Relay {
    /// After a video chunk: if it made frame `whole` whole here, sends each subscriber its
    /// proactive parity and answers the requests that waited for the frame.
    pub(super) fn on_frame_whole(&mut self, now: Instant, idx: usize, whole: Option<u32>) {
        let Some(frame_id) = whole else { return };
        // Its parity follows its chunks.
        self.release_held(idx);
        let s = self.streams.get_mut(idx);
        let Some(k) = s.parity.chunk_count(frame_id) else {
            return;
        };
        let mut plan: Vec<(SocketAddr, usize)> = Vec::new();
        for m in &s.members {
            let Some(sub) = self.fanout.get_mut(m) else {
                continue;
            };
            let Some(report) = sub.report else { continue };
            if sub.skipping(now) {
                continue;
            }
            // Sizing is worth remembering: it changes only with the report (every 250 ms)
            // or the frame's chunk count.
            let r = match sub.proactive_memo {
                Some((memo_k, r)) if memo_k == k => r,
                _ => {
                    let r = proactive_for(k, &report, sub.latency_ms);
                    sub.proactive_memo = Some((k, r));
                    r
                }
            };
            if r > 0 {
                plan.push((*m, r));
            }
        }
        let most = plan.iter().map(|(_, r)| *r).max().unwrap_or(0);
        if most > 0 {
            let symbols = s.parity.parity(frame_id, 0, most, false);
            for (m, r) in plan {
                for d in symbols.iter().take(r) {
                    self.stats.parity_sent += 1;
                    let q = Queued::of_frame(d.clone(), frame_id);
                    self.fanout.enqueue(m, q, false);
                }
            }
        }
        let s = self.streams.get_mut(idx);
        s.fec_upstream.remove(&frame_id);
        let mut waiting = Vec::new();
        s.fec_pending.retain(|(at, who, r)| {
            if r.frame_id == frame_id {
                waiting.push((*who, *r));
                false
            } else {
                now.saturating_duration_since(*at) < PENDING_MAX_AGE
            }
        });
        for (who, r) in waiting {
            let answers = self.streams.get_mut(idx).parity.answer(&r);
            self.send_answers(who, answers);
        }
    }

    /// A FEC_REQUEST from a subscriber (§6.8): answered from the frame's code if the frame
    /// is whole here, else once it is (the relay's own repair towards its origin fills it).
    pub(super) fn on_fec_request(
        &mut self,
        now: Instant,
        from: SocketAddr,
        entries: &[SymbolRequest],
    ) {
        let Some(sub) = self.fanout.get_mut(&from) else {
            self.stats.unknown_sender += 1;
            return;
        };
        sub.last_heard = now;
        let Some(idx) = self.streams.position(&sub.stream.clone()) else {
            return;
        };
        // Not for a frame skipped for it, nor for a second after a skip (§7.3).
        let overloaded = sub.skipping(now);
        // Nor for a frame whose chunks are still queued for it: they are on their way.
        let held: Vec<(bool, bool)> = entries
            .iter()
            .map(|r| {
                (
                    overloaded || sub.skipped_frame(r.frame_id),
                    sub.queued_frame(r.frame_id),
                )
            })
            .collect();
        // Frames asked for that are not whole here: the relay asks its upstream (§7.3).
        let mut lacking: Vec<u32> = Vec::new();
        for (r, (skipped, queued)) in entries.iter().zip(held) {
            self.stats.fec_requests += 1;
            if skipped {
                self.stats.skipped_requests += 1;
                continue;
            }
            if queued {
                self.stats.requests_still_queued += 1;
                continue;
            }
            let s = self.streams.get_mut(idx);
            if !s.parity.is_whole(r.frame_id) && !lacking.contains(&r.frame_id) {
                lacking.push(r.frame_id);
            }
            if s.fec_answered.contains(&(from, *r))
                || s.fec_pending.iter().any(|(_, w, p)| *w == from && p == r)
            {
                self.stats.fec_request_copies += 1;
                continue;
            }
            if s.fec_answered.len() >= MAX_ANSWERED {
                s.fec_answered.pop_front();
            }
            s.fec_answered.push_back((from, *r));
            if s.parity.is_whole(r.frame_id) {
                let answers = s.parity.answer(r);
                self.send_answers(from, answers);
            } else {
                if s.fec_pending.len() >= MAX_PENDING {
                    s.fec_pending.remove(0);
                }
                s.fec_pending.push((now, from, *r));
            }
        }
        self.ask_upstream(now, idx, &lacking);
    }

    /// Asks the upstream this relay pulls from for fresh parity symbols of `frames`, which
    /// subscribers asked for and the relay does not hold whole (§7.3): as many as its own
    /// losses need, sized for the loss on that hop, once per RTT of it however many
    /// subscribers ask. Its NACKs alone take a round trip per lost chunk, and a chunk lost
    /// again and again would hold the frame (and every subscriber's repair of it) back.
    fn ask_upstream(&mut self, now: Instant, idx: usize, frames: &[u32]) {
        if frames.is_empty() {
            return;
        }
        let s = self.streams.get_mut(idx);
        let (server, srtt) = match &s.origin {
            Origin::Upstream(sub) => (sub.server(), sub.rtt().srtt()),
            _ => return,
        };
        let Some(ssrc) = s.ssrc else { return };
        let reask = srtt.max(UPSTREAM_FEC_REASK);
        let (loss, burst) = s.repair.loss();
        let mut entries = Vec::new();
        for &frame_id in frames {
            let Some((needed, fresh, k)) = s.parity.missing(frame_id) else {
                continue;
            };
            let asked = s.fec_upstream.get(&frame_id).copied();
            if asked.is_some_and(|a| now.saturating_duration_since(a.at) < reask) {
                continue;
            }
            let from = asked.map_or(fresh, |a| a.upto.max(fresh));
            let room = parity_space(k).saturating_sub(usize::from(from));
            // Before the hop's loss is measured, the frame's own losses stand in for it.
            let loss = if loss > 0.0 {
                loss
            } else {
                needed as f64 / k as f64
            };
            let n = repair_count(needed, loss, burst, REPAIR_TARGET).min(room);
            if n == 0 {
                continue;
            }
            entries.push(SymbolRequest {
                frame_id,
                from,
                count: n as u16,
            });
            while s.fec_upstream.len() >= MAX_UPSTREAM_ASKS {
                s.fec_upstream.pop_first();
            }
            s.fec_upstream.insert(
                frame_id,
                UpstreamAsk {
                    upto: from + n as u16,
                    at: now,
                },
            );
        }
        for chunk in entries.chunks(MAX_FEC_REQUESTS) {
            self.stats.upstream_fec_requests += chunk.len() as u64;
            let seq = self.next_ctrl_seq();
            let body = Body::FecRequest {
                entries: chunk.to_vec(),
            };
            let d = Packet::new(PacketType::FecRequest, ssrc, seq, body).encode();
            self.send_control(server, d);
        }
    }

    fn send_answers(&mut self, to: SocketAddr, answers: Vec<Bytes>) {
        for d in answers {
            self.stats.parity_answered += 1;
            self.fanout.enqueue(to, Queued::single(d), true);
        }
    }

    /// Parity from the stream's origin: restores the relay's own losses (the chunks go on
    /// as retransmissions, to every subscriber). The relay sizes and codes parity for its
    /// own subscribers from the whole frames it holds, so an origin's symbols are not
    /// forwarded.
    pub(super) fn on_origin_parity(&mut self, now: Instant, idx: usize, p: Packet, _d: Bytes) {
        self.stats.parity_from_origin += 1;
        let Body::Parity(pc) = &p.body else { return };
        let s = self.streams.get_mut(idx);
        if s.ssrc != Some(p.header.ssrc) {
            return;
        }
        s.last_heard = Some(now);
        let restored = s.parity.on_parity(p.header.ssrc, p.header.seq, pc);
        self.on_restored(now, idx, p.header.ssrc, restored);
    }

    /// Chunks the origin's parity restored (§7.3): each goes on as a retransmission that
    /// brings the relay a datagram it never had.
    pub(super) fn on_restored(
        &mut self,
        now: Instant,
        idx: usize,
        ssrc: u32,
        restored: Vec<(u32, VideoChunk)>,
    ) {
        for (seq, chunk) in restored {
            self.stats.chunks_restored += 1;
            let mut packet = Packet::new(PacketType::Video, ssrc, seq, Body::Video(chunk));
            packet.header.flags = FLAG_RETRANSMIT;
            let datagram = packet.encode();
            let len = datagram.len() as u64;
            let s = self.streams.get_mut(idx);
            let ext = s.video_ext.extend(seq);
            s.repair.on_restored(now, ext);
            self.on_media(now, idx, packet, datagram);
            // Made here, not received: it earns a pushing publisher no byte budget (§8).
            let s = self.streams.get_mut(idx);
            s.origin_in = s.origin_in.saturating_sub(len);
        }
    }

    /// Sends each upstream the relay pulls from a receiver report with the loss it measured
    /// (§6.6), so that the upstream sizes its parity for this hop (§7.6).
    pub(super) fn report_upstream(&mut self, now: Instant) {
        self.timers
            .set(super::RelayTimer::UpstreamReport, now + REPORT_INTERVAL);
        let mut out = Vec::new();
        for s in self.streams.iter_mut() {
            let (Some(ssrc), Origin::Upstream(sub)) = (s.ssrc, &s.origin) else {
                continue;
            };
            let (server, rtt) = (sub.server(), sub.rtt().srtt());
            let r = ReceiverReport {
                rtt_us: rtt.as_micros().min(u32::MAX.into()) as u32,
                loss_q16: s.repair.loss_q16(),
                burst_q8: s.repair.burst_q8(),
                ..ReceiverReport::default()
            };
            out.push((server, ssrc, r));
        }
        for (server, ssrc, r) in out {
            let seq = self.next_ctrl_seq();
            let p = Packet::new(
                PacketType::ReceiverReport,
                ssrc,
                seq,
                Body::ReceiverReport(r),
            );
            self.send_control(server, p.encode());
        }
    }
}
