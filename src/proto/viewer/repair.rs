//! How the viewer repairs video (proto-spec.md §7.2, §7.6): parity symbols and restored
//! chunks go through the same path as arriving chunks; a frame's
//! missing chunks are asked for as fresh parity symbols (FEC_REQUEST), everything else as
//! NACKs; and the loss it measured goes back in receiver reports to size the sender's parity.

use std::time::{Duration, Instant};

use crate::proto::fec::sizing::{burst_to_q8, loss_to_q16, request_copies};
use bytes::Bytes;

use crate::proto::wire::{
    Body, FLAG_RETRANSMIT, Flow, NackRange, Packet, PacketType, ParityChunk, ReceiverReport, SeqNo,
    VideoChunk,
};

use super::fec_repair::{Restored, RoundTiming};
use super::{Viewer, ViewerTimer};

/// Shortest interval between two copies of an unanswered FEC_REQUEST.
const MIN_RESEND: Duration = Duration::from_millis(2);

impl Viewer {
    /// A PARITY datagram of the stream's source (§6.7).
    pub(super) fn on_parity(&mut self, now: Instant, seq: u32, p: ParityChunk) {
        let done = self.is_done(p.frame_id);
        let restored = self
            .fec
            .on_parity(seq, &p, self.reasm.get(p.frame_id), done);
        self.apply_restored(now, p.frame_id, restored);
    }

    /// Hands chunks the erasure code restored to the reassembler as if they had arrived
    /// (as repairs: they fill gaps the loss tracker holds).
    pub(super) fn apply_restored(&mut self, now: Instant, frame_id: u32, restored: Vec<Restored>) {
        if restored.is_empty() {
            return;
        }
        let Some(p) = self.reasm.get(frame_id) else {
            return;
        };
        let (pts, frame_size, (width, height), chunk_count) =
            (p.pts, p.frame_size(), p.dimensions(), p.chunk_count());
        for r in restored {
            let chunk = VideoChunk {
                frame_id,
                pts,
                frame_size,
                width,
                height,
                chunk_index: r.index,
                chunk_count,
                offset: r.offset,
                payload: r.payload,
            };
            self.on_video(now, FLAG_RETRANSMIT, r.seq, chunk, true);
        }
    }

    /// Drops from NACK ranges the sequence numbers whose frames are repaired with FEC
    /// requests instead.
    pub(super) fn without_fec_frames(&self, ranges: Vec<NackRange>) -> Vec<NackRange> {
        let frames: Vec<(u64, u64)> = self
            .reasm
            .partials()
            .filter(|(id, p)| self.fec.covers(**id, p))
            .filter_map(|(_, p)| {
                let first = p.first_seq?;
                Some((first.0, first.0 + u64::from(p.chunk_count())))
            })
            .collect();
        if frames.is_empty() {
            return ranges;
        }
        let Some(highest) = self.video_loss.highest() else {
            return ranges;
        };
        let covered = |wire: u32| {
            let s = highest.extend(wire).0;
            frames.iter().any(|&(a, b)| s >= a && s < b)
        };
        let mut out: Vec<NackRange> = Vec::new();
        for r in ranges {
            for i in 0..u32::from(r.len) {
                let wire = r.start.wrapping_add(i);
                if covered(wire) {
                    continue;
                }
                match out.last_mut() {
                    Some(last)
                        if last.start.wrapping_add(u32::from(last.len)) == wire
                            && last.len < u16::MAX =>
                    {
                        last.len += 1
                    }
                    _ => out.push(NackRange {
                        start: wire,
                        len: 1,
                    }),
                }
            }
        }
        out
    }

    /// The timing of repair rounds at `now` (§7.6).
    fn round_timing(&self, now: Instant) -> RoundTiming {
        let rtt = self.sub.rtt();
        let srtt = rtt.srtt();
        let copies = request_copies(self.video_loss.loss_rate(), self.video_loss.mean_burst());
        RoundTiming {
            hold: self.fec_hold(now),
            tail_hold: self.cfg.tail_hold,
            // A round is repeated once its answers are due: SRTT plus a margin for jitter
            // and for the answer's own datagrams (at least SRTT/4, so that a steady path
            // with no RTT variation does not start a round as the last answer arrives), but
            // never so late that an early, noisy RTTVAR costs the frame its second round.
            retry: (srtt + (rtt.rttvar() * 2).max(srtt / 4))
                .max(self.cfg.loss.min_retry_interval)
                .min(srtt + srtt / 2 + Duration::from_millis(2)),
            srtt,
            // Copies of an unanswered request, spread over the round trip: a request is small
            // and idempotent (the sender answers one copy), a lost one costs a whole round,
            // and losses come in bursts that would take copies sent back to back together.
            resend: (srtt / u32::from(copies)).max(MIN_RESEND),
            copies,
            loss: self.video_loss.loss_rate(),
            mean_burst: self.video_loss.mean_burst(),
        }
    }

    /// Queues the FEC_REQUESTs of the repair rounds due at `now`, and copies of those still
    /// unanswered (§7.6).
    pub(super) fn queue_fec_requests(&mut self, now: Instant) {
        if !self.cfg.nack {
            return;
        }
        let timing = self.round_timing(now);
        let frames = &self.frames;
        let entries = self.fec.poll_requests(
            now,
            self.reasm.partials(),
            |pts| frames.deadline(pts),
            self.video_loss.highest(),
            &timing,
        );
        if self.relay_overloaded(now) {
            self.stats.repair_held_after_skip += entries.len() as u64;
            return;
        }
        let ssrc = self.ssrc.unwrap_or(0);
        for chunk in entries.chunks(crate::proto::fec::msg::MAX_FEC_REQUESTS) {
            self.ctrl_seq = self.ctrl_seq.wrapping_add(1);
            let p = Packet::new(
                PacketType::FecRequest,
                ssrc,
                self.ctrl_seq,
                Body::FecRequest {
                    entries: chunk.to_vec(),
                },
            )
            .encode();
            self.control.push_back(p);
            self.stats.fec_requests_sent += 1;
        }
    }

    /// The soonest FEC repair round.
    pub(super) fn fec_timeout(&self) -> Option<Instant> {
        if !self.cfg.nack {
            return None;
        }
        let now = self.last_now?;
        self.fec.poll_timeout(
            self.reasm.partials(),
            self.video_loss.highest(),
            &self.round_timing(now),
        )
    }

    /// How long a frame must be quiet before a repair round asks for it: the reorder hold,
    /// with the learned one when the configuration asks for it (§7.2).
    fn fec_hold(&self, now: Instant) -> Duration {
        let learned = if self.cfg.loss.adaptive_hold {
            self.video_loss.reorder_hold(now)
        } else {
            Duration::ZERO
        };
        self.reorder_hold().max(learned)
    }

    /// Asks for the missing chunks of frames that have gone quiet (head and tail losses
    /// that no later sequence number reveals), §7.2.
    pub(super) fn scan_incomplete(&mut self, now: Instant) {
        let hold = self.cfg.tail_hold;
        let mut marks: Vec<(SeqNo, Option<Instant>)> = Vec::new();
        for (_, p) in self.reasm.partials() {
            if now.saturating_duration_since(p.last_arrival) < hold {
                continue;
            }
            let Some(first) = p.first_seq else { continue };
            let deadline = self.frames.deadline(p.pts);
            for idx in p.missing() {
                let seq = first.plus(idx as u64);
                if !self.video_loss.is_pending(seq) {
                    marks.push((seq, deadline));
                }
            }
        }
        for (seq, deadline) in marks {
            self.video_loss.mark_missing(now, seq, deadline);
        }
    }

    /// Whether the relay skipped a frame for this viewer within the last second: it then
    /// answers no video NACK or FEC request (proto-spec.md §7.3), so none is sent.
    fn relay_overloaded(&self, now: Instant) -> bool {
        self.skip_heard_at
            .is_some_and(|t| now.saturating_duration_since(t) < crate::proto::wire::SKIP_QUIET)
    }

    pub(super) fn scan_due(&self) -> Option<Instant> {
        let oldest = self.reasm.partials().map(|(_, p)| p.last_arrival).min()?;
        let floor = self.timers.get(ViewerTimer::Scan).unwrap_or(oldest);
        Some((oldest + self.cfg.tail_hold).max(floor))
    }

    pub(super) fn queue_nacks(&mut self, now: Instant) {
        if !self.cfg.nack {
            return;
        }
        let ssrc = self.ssrc.unwrap_or(0);
        for (flow, ranges) in [
            (Flow::Video, {
                let ranges = self.video_loss.poll_nack(now, self.sub.rtt());
                let ranges = self.without_fec_frames(ranges);
                if self.relay_overloaded(now) {
                    self.stats.repair_held_after_skip += ranges.len() as u64;
                    Vec::new()
                } else {
                    ranges
                }
            }),
            (Flow::Audio, self.audio_loss.poll_nack(now, self.sub.rtt())),
        ] {
            for chunk in ranges.chunks(crate::proto::wire::MAX_NACK_RANGES) {
                self.ctrl_seq = self.ctrl_seq.wrapping_add(1);
                let p = Packet::new(
                    PacketType::Nack,
                    ssrc,
                    self.ctrl_seq,
                    Body::Nack {
                        flow,
                        ranges: chunk.to_vec(),
                    },
                );
                self.control.push_back(p.encode());
                self.stats.nacks_sent += 1;
            }
        }
    }

    pub(super) fn report(&mut self) -> Bytes {
        let s = self.stats();
        let lost = s.video.lost + s.audio.lost;
        let r = ReceiverReport {
            received: s.datagrams as u32,
            lost: lost as u32,
            recovered: (s.video.recovered + s.audio.recovered) as u32,
            jitter: self.jitter as u32,
            frames_played: s.frames_played as u32,
            frames_dropped: (s.frames_late + s.frames_incomplete + s.frames_overflow) as u32,
            rtt_us: self.sub.rtt().srtt().as_micros() as u32,
            loss_q16: loss_to_q16(self.video_loss.sample_loss_rate()),
            // After the sample above, which also updates the burst figure.
            burst_q8: burst_to_q8(self.video_loss.mean_burst()),
        };
        self.ctrl_seq = self.ctrl_seq.wrapping_add(1);
        Packet::new(
            PacketType::ReceiverReport,
            self.ssrc.unwrap_or(0),
            self.ctrl_seq,
            Body::ReceiverReport(r),
        )
        .encode()
    }
}
