//! The viewer's state machine (proto-spec.md §7.2): subscription, reassembly, jitter buffer,
//! loss detection with NACKs, audio concealment and receiver reports.

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::proto::jitter::{
    AudioBuffer, AudioOut, DropReason, FrameBuffer, FrameOut, PlayoutClock, duration_to_ticks,
};
use crate::proto::loss::{Arrival, LossConfig, LossTracker};
use crate::proto::node::{Node, Transmit, soonest};
use crate::proto::reassembler::{ChunkOutcome, Frame, Reassembler, ReassemblyLimits};
use crate::proto::subscription::Subscription;
use crate::proto::timer::TimerTable;
use crate::proto::wire::{
    Body, Description, FLAG_REPLAY, FLAG_RETRANSMIT, Packet, RejectReason, SeqExtender,
};

mod end;
mod fec_repair;
mod latency;
mod repair;
mod stats;
#[cfg(test)]
mod tests;

pub use end::END_MARGIN;
pub use fec_repair::FecStats;
pub use stats::{LossCounters, ViewerStats};

/// Viewer tunables.
#[derive(Debug, Clone)]
pub struct ViewerConfig {
    /// The relay or publisher to subscribe to.
    pub server: SocketAddr,
    /// Stream name.
    pub stream: String,
    /// Jitter-buffer latency (§7.2).
    pub latency: Duration,
    /// Most kbit/s wanted from the relay (0 = no limit).
    pub max_kbps: u32,
    /// NACK tunables.
    pub loss: LossConfig,
    /// Send NACKs at all.
    pub nack: bool,
    /// How long after its last chunk an incomplete frame's missing chunks are asked for.
    pub tail_hold: Duration,
    /// Receiver-report interval (§6.6).
    pub report_interval: Duration,
}

impl ViewerConfig {
    /// Defaults for a LAN: 100 ms latency, NACKs on.
    pub fn new(server: SocketAddr, stream: &str) -> ViewerConfig {
        ViewerConfig {
            server,
            stream: stream.into(),
            latency: Duration::from_millis(100),
            max_kbps: 0,
            // Gaps wait for the reordering measured on the path (§7.2).
            loss: LossConfig {
                adaptive_hold: true,
                ..LossConfig::default()
            },
            nack: true,
            tail_hold: Duration::from_millis(10),
            report_interval: Duration::from_millis(250),
        }
    }
}

/// What the viewer hands to the application (pulled with [`Viewer::poll_event`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ViewerEvent {
    /// The stream's description (first, and whenever it changes).
    Description(Description),
    /// A whole frame, at its playout time.
    Frame(Frame),
    /// A frame that will not be played.
    FrameDropped {
        /// Frame id.
        frame_id: u32,
        /// Timestamp.
        pts: u64,
        /// Why.
        reason: DropReason,
    },
    /// Audio to play now (silence where a block was lost).
    Audio(AudioOut),
    /// The relay refused the subscription (the viewer keeps asking).
    Rejected(RejectReason),
    /// Most recent frames were not whole by their playout time: the latency was raised to
    /// what they need (§7.2). Said once per raise.
    LatencyRaised {
        /// The latency before.
        from: Duration,
        /// The latency now.
        to: Duration,
        /// The longest a recent frame took to be whole, from its zero-latency playout time.
        need: Duration,
    },
    /// The stream's source said the stream ended (§6.9) and its last media has had its
    /// playout time: nothing more will come. Said once.
    Ended,
}

const SCAN_INTERVAL: Duration = Duration::from_millis(2);
const DONE_MEMORY: usize = 512;

/// The viewer's timers (its [`TimerTable`]). The subscription's keep-alive and the jitter
/// buffers' playout deadlines are kept by those parts themselves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ViewerTimer {
    /// The next receiver report (§6.6); unarmed until the first `handle_timeout`.
    Report,
    /// The earliest instant the next scan for quiet incomplete frames may run (at most one
    /// scan per 2 ms). The scan itself is due once a partial frame has been quiet for
    /// [`ViewerConfig::tail_hold`].
    Scan,
    /// The end of stream is announced (§6.9); armed by an END.
    End,
}

/// The viewer state machine.
#[derive(Debug)]
pub struct Viewer {
    cfg: ViewerConfig,
    sub: Subscription,
    ssrc: Option<u32>,
    description: Option<Description>,
    clock: PlayoutClock,
    frames: FrameBuffer,
    audio: AudioBuffer,
    reasm: Reassembler,
    video_ext: SeqExtender,
    audio_ext: SeqExtender,
    video_loss: LossTracker,
    audio_loss: LossTracker,
    /// Frames played, dropped or skipped lately (their late chunks are ignored), oldest
    /// first, and the same as a set: every datagram is checked against it.
    done: VecDeque<u32>,
    done_set: std::collections::HashSet<u32>,
    first_chunk_at: BTreeMap<u32, (Instant, bool)>,
    jitter: f64,
    last_transit: Option<i128>,
    timers: TimerTable<ViewerTimer>,
    fec: fec_repair::FecRepair,
    latency_guard: latency::LatencyGuard,
    /// When the relay last said it skipped a frame for this viewer (§6.10): it answers no
    /// video repair requests for a second after (§7.3), so none are sent.
    skip_heard_at: Option<Instant>,
    control: VecDeque<Bytes>,
    events: VecDeque<ViewerEvent>,
    last_now: Option<Instant>,
    delay_sum: f64,
    stats: ViewerStats,
    ctrl_seq: u32,
    epoch: Option<Instant>,
    ended: bool,
}

impl Viewer {
    /// A viewer that starts subscribing at the first poll.
    pub fn new(cfg: ViewerConfig) -> Viewer {
        let ceiling = cfg.latency + Duration::from_secs(1);
        let mut sub = Subscription::new(cfg.server, &cfg.stream, cfg.max_kbps);
        sub.set_latency_ms(cfg.latency.as_millis().min(u16::MAX.into()) as u16);
        Viewer {
            sub,
            ssrc: None,
            description: None,
            clock: PlayoutClock::new(cfg.latency, ceiling),
            frames: FrameBuffer::new(256),
            audio: AudioBuffer::new(1024),
            reasm: Reassembler::new(ReassemblyLimits::default()),
            video_ext: SeqExtender::default(),
            audio_ext: SeqExtender::default(),
            video_loss: LossTracker::new(cfg.loss),
            audio_loss: LossTracker::new(cfg.loss),
            done: VecDeque::new(),
            done_set: std::collections::HashSet::new(),
            first_chunk_at: BTreeMap::new(),
            jitter: 0.0,
            last_transit: None,
            timers: TimerTable::new(),
            fec: fec_repair::FecRepair::default(),
            latency_guard: latency::LatencyGuard::default(),
            skip_heard_at: None,
            control: VecDeque::new(),
            events: VecDeque::new(),
            last_now: None,
            delay_sum: 0.0,
            stats: ViewerStats::default(),
            ctrl_seq: 0,
            epoch: None,
            ended: false,
            cfg,
        }
    }

    /// The next event for the application.
    pub fn poll_event(&mut self) -> Option<ViewerEvent> {
        self.events.pop_front()
    }

    /// The stream description, once known.
    pub fn description(&self) -> Option<&Description> {
        self.description.as_ref()
    }

    /// Counters.
    pub fn stats(&self) -> ViewerStats {
        let mut s = self.stats.clone();
        s.video = self.video_loss.stats().into();
        s.audio = self.audio_loss.stats().into();
        s.fec = self.fec.stats();
        s.latency_raises = self.latency_guard.raises;
        s.latency_ms = self.clock.latency().as_secs_f64() * 1000.0;
        s.loss_estimate = self.video_loss.loss_rate();
        s.audio_concealed = self.audio.concealed;
        s.audio_late = self.audio.late;
        s.jitter_ms = self.jitter / 90.0;
        s.rtt_ms = self.sub.rtt().srtt().as_secs_f64() * 1000.0;
        if s.frames_played > 0 {
            s.mean_frame_delay_ms = self.delay_sum / s.frames_played as f64;
        }
        s
    }

    /// Bytes held in reassembly (for memory-bound assertions).
    pub fn memory_bytes(&self) -> usize {
        self.reasm.bytes()
    }

    /// A BYE for the driver to send when the viewer leaves; the viewer sends nothing after.
    pub fn bye(&mut self) -> Transmit {
        Transmit {
            dest: self.cfg.server,
            payload: self.sub.bye(),
        }
    }

    fn now(&mut self, now: Instant) -> Instant {
        let now = self.last_now.map_or(now, |l| l.max(now));
        self.last_now = Some(now);
        now
    }

    fn reorder_hold(&self) -> Duration {
        let jitter = Duration::from_secs_f64(self.jitter / 90_000.0);
        (Duration::from_millis(2) + jitter * 2).min(Duration::from_millis(20))
    }

    fn reset_source(&mut self, ssrc: u32) {
        if self.ssrc.is_some() {
            self.stats.source_changes += 1;
        }
        self.ssrc = Some(ssrc);
        self.timers.stop(ViewerTimer::End);
        self.ended = false;
        self.clock.reset();
        self.frames.clear();
        self.audio.clear();
        self.reasm.clear();
        self.video_ext.reset();
        self.audio_ext.reset();
        self.video_loss.reset();
        self.audio_loss.reset();
        self.done.clear();
        self.done_set.clear();
        self.first_chunk_at.clear();
        self.last_transit = None;
        self.fec.clear();
    }

    /// Media proves the subscription alive; its source must be the stream's (the first one
    /// seen is adopted when no description has come yet).
    fn accept_source(&mut self, now: Instant, ssrc: u32) -> bool {
        self.sub.on_traffic(now);
        if self.ssrc.is_none() {
            self.reset_source(ssrc);
        }
        if self.ssrc != Some(ssrc) {
            self.stats.unknown_sender += 1;
            return false;
        }
        true
    }

    fn mark_done(&mut self, frame_id: u32) {
        if !self.done_set.insert(frame_id) {
            return;
        }
        self.done.push_back(frame_id);
        if self.done.len() > DONE_MEMORY {
            if let Some(old) = self.done.pop_front() {
                self.done_set.remove(&old);
            }
        }
    }

    /// Whether frame `frame_id` was played, dropped or skipped lately.
    fn is_done(&self, frame_id: u32) -> bool {
        self.done_set.contains(&frame_id)
    }

    fn emit_frame_out(&mut self, now: Instant, out: FrameOut) {
        match out {
            FrameOut::Play(f) => {
                self.stats.frames_played += 1;
                self.judge_latency(f.frame_id, f.pts, false);
                if let Some((t, rtx)) = self.first_chunk_at.remove(&f.frame_id) {
                    let d = now.saturating_duration_since(t).as_secs_f64() * 1000.0;
                    self.delay_sum += d;
                    self.stats.max_frame_delay_ms = self.stats.max_frame_delay_ms.max(d);
                    if rtx {
                        self.stats.frames_recovered += 1;
                    }
                }
                self.events.push_back(ViewerEvent::Frame(f));
            }
            FrameOut::Drop {
                frame_id,
                pts,
                reason,
            } => {
                if matches!(reason, DropReason::Incomplete | DropReason::Late) {
                    self.judge_latency(frame_id, pts, true);
                }
                match reason {
                    DropReason::Incomplete => self.stats.frames_incomplete += 1,
                    DropReason::Late => self.stats.frames_late += 1,
                    DropReason::Overflow => self.stats.frames_overflow += 1,
                }
                self.first_chunk_at.remove(&frame_id);
                self.reasm.remove(frame_id);
                self.fec.remove(frame_id);
                self.mark_done(frame_id);
                self.events.push_back(ViewerEvent::FrameDropped {
                    frame_id,
                    pts,
                    reason,
                });
            }
        }
    }

    /// A video chunk: received (`restored` false) or restored by the erasure code.
    fn on_video(
        &mut self,
        now: Instant,
        flags: u8,
        seq_wire: u32,
        v: crate::proto::wire::VideoChunk,
        restored: bool,
    ) {
        let replay = flags & FLAG_REPLAY != 0;
        let rtx = flags & FLAG_RETRANSMIT != 0;
        let seq = self.video_ext.extend(seq_wire);
        self.clock.observe(now, v.pts);
        if !replay && !rtx && v.chunk_index == 0 {
            self.update_jitter(now, v.pts);
        }
        let deadline = self.clock.playout(v.pts);
        if !replay {
            let hold = self.reorder_hold();
            let arrival = if restored {
                self.video_loss.on_restored(now, seq, hold, deadline)
            } else {
                self.video_loss.on_arrival(now, seq, hold, deadline)
            };
            if arrival == Arrival::Duplicate {
                return;
            }
        }
        if self.is_done(v.frame_id) {
            return;
        }
        let Some(deadline) = deadline else { return };
        // The reassembler judges the chunk first: one inconsistent with its frame (another
        // pts, size or shape under the same id) must not open a jitter-buffer slot.
        let outcome = self.reasm.insert(now, seq, &v);
        match outcome {
            ChunkOutcome::Inconsistent => {
                self.stats.chunks_inconsistent += 1;
                return;
            }
            ChunkOutcome::Duplicate => return,
            ChunkOutcome::Stored | ChunkOutcome::Complete(_) => {}
        }
        let stored = outcome == ChunkOutcome::Stored;
        if !self.frames.contains(v.pts) {
            if let Err(reason) = self.frames.admit(now, v.pts, v.frame_id, deadline) {
                self.reasm.remove(v.frame_id);
                if !rtx && !replay {
                    // What the latency guard judges the miss by (§7.2).
                    self.fec.note_original(v.frame_id, now);
                }
                self.emit_frame_out(
                    now,
                    FrameOut::Drop {
                        frame_id: v.frame_id,
                        pts: v.pts,
                        reason,
                    },
                );
                return;
            }
            self.first_chunk_at.insert(v.frame_id, (now, false));
            while self.first_chunk_at.len() > 512 {
                self.first_chunk_at.pop_first();
            }
        } else if self.frames.frame_id(v.pts) != Some(v.frame_id) {
            // Another frame already holds this timestamp.
            self.reasm.remove(v.frame_id);
            self.stats.chunks_inconsistent += 1;
            return;
        }
        if rtx {
            if let Some(e) = self.first_chunk_at.get_mut(&v.frame_id) {
                e.1 = true;
            }
        } else {
            self.fec.note_original(v.frame_id, now);
        }
        if let ChunkOutcome::Complete(f) = outcome {
            let id = f.frame_id;
            self.mark_done(id);
            if let Some(out) = self.frames.complete(now, f) {
                self.emit_frame_out(now, out);
            }
            self.fec.remove(id);
        }
        if self.timers.get(ViewerTimer::Scan).is_none() {
            self.timers.set(ViewerTimer::Scan, now + SCAN_INTERVAL);
        }
        if stored {
            let restored = self.fec.on_data(v.frame_id, v.chunk_index, &v.payload);
            self.apply_restored(now, v.frame_id, restored);
        }
    }

    fn update_jitter(&mut self, now: Instant, pts: u64) {
        // RFC 3550 A.8: transit in media-clock units, J += (|D| - J) / 16.
        let epoch = *self.epoch.get_or_insert(now);
        let arrival = duration_to_ticks(now.saturating_duration_since(epoch)) as i128;
        let transit = arrival - pts as i128;
        if let Some(last) = self.last_transit {
            let d = (transit - last).abs() as f64;
            self.jitter += (d - self.jitter) / 16.0;
        }
        self.last_transit = Some(transit);
    }

    fn on_audio(
        &mut self,
        now: Instant,
        flags: u8,
        seq_wire: u32,
        a: crate::proto::wire::AudioBlock,
    ) {
        let replay = flags & FLAG_REPLAY != 0;
        let seq = self.audio_ext.extend(seq_wire);
        self.clock.observe(now, a.pts);
        let deadline = self.clock.playout(a.pts);
        if !replay {
            let hold = self.reorder_hold();
            if self.audio_loss.on_arrival(now, seq, hold, deadline) == Arrival::Duplicate {
                return;
            }
        }
        self.audio
            .insert(a.pts, a.sample_rate, a.channels, a.frames, a.payload);
    }
}

impl Node for Viewer {
    fn handle_datagram(&mut self, now: Instant, from: SocketAddr, datagram: &[u8]) {
        let now = self.now(now);
        if from != self.cfg.server {
            self.stats.unknown_sender += 1;
            return;
        }
        self.stats.datagrams += 1;
        self.stats.bytes += datagram.len() as u64;
        let datagram = Bytes::copy_from_slice(datagram);
        let p = match Packet::decode(&datagram) {
            Ok(p) => p,
            Err(e) => {
                self.stats.malformed.record(&e);
                return;
            }
        };
        if self.sub.handle_control(now, &p) {
            if let Body::Reject { reason } = p.body {
                self.events.push_back(ViewerEvent::Rejected(reason));
            }
            return;
        }
        let flags = p.header.flags;
        if flags & FLAG_RETRANSMIT != 0 {
            self.stats.retransmits_received += 1;
        }
        match p.body {
            Body::Description(d) => {
                self.sub.on_traffic(now);
                if self.ssrc != Some(p.header.ssrc) {
                    self.reset_source(p.header.ssrc);
                }
                if self.description.as_ref() != Some(&d) {
                    self.description = Some(d.clone());
                    self.events.push_back(ViewerEvent::Description(d));
                }
            }
            Body::Video(v) => {
                if self.accept_source(now, p.header.ssrc) {
                    self.on_video(now, flags, p.header.seq, v, false);
                }
            }
            Body::Audio(a) => {
                if self.accept_source(now, p.header.ssrc) {
                    self.on_audio(now, flags, p.header.seq, a);
                }
            }
            Body::Parity(pc) => {
                if self.accept_source(now, p.header.ssrc) {
                    self.on_parity(now, p.header.seq, pc);
                }
            }
            Body::End { last_pts } => self.on_end(now, p.header.ssrc, last_pts),
            Body::Skip {
                frame_id,
                first_seq,
                chunk_count,
            } => {
                if self.ssrc.is_some() && self.accept_source(now, p.header.ssrc) {
                    self.skip_heard_at = Some(now);
                    self.on_skip(frame_id, first_seq, chunk_count);
                } else if self.ssrc.is_none() {
                    self.stats.unknown_sender += 1;
                }
            }
            _ => self.stats.unknown_sender += 1,
        }
        self.drain_buffers(now);
    }

    fn handle_timeout(&mut self, now: Instant) {
        let now = self.now(now);
        if self.scan_due().is_some_and(|t| t <= now) {
            self.scan_incomplete(now);
            self.timers.set(ViewerTimer::Scan, now + SCAN_INTERVAL);
        }
        self.drain_buffers(now);
        self.poll_end(now);
        self.queue_fec_requests(now);
        self.queue_nacks(now);
        if self
            .timers
            .get(ViewerTimer::Report)
            .is_none_or(|t| t <= now)
        {
            self.timers
                .set(ViewerTimer::Report, now + self.cfg.report_interval);
            if self.ssrc.is_some() {
                let r = self.report();
                self.control.push_back(r);
            }
        }
    }

    fn poll_timeout(&self) -> Option<Instant> {
        let mut t = self.sub.poll_timeout();
        t = soonest(t, self.frames.poll_timeout());
        t = soonest(t, self.audio.poll_timeout(&self.clock));
        if self.cfg.nack {
            t = soonest(t, self.video_loss.poll_timeout());
            t = soonest(t, self.audio_loss.poll_timeout());
        }
        t = soonest(t, self.timers.get(ViewerTimer::Report));
        t = soonest(t, self.fec_timeout());
        t = soonest(t, self.timers.get(ViewerTimer::End));
        soonest(t, self.scan_due())
    }

    fn poll_transmit(&mut self, now: Instant) -> Option<Transmit> {
        let now = self.now(now);
        let dest = self.cfg.server;
        if self.sub.is_closed() {
            self.control.clear();
            return None;
        }
        if let Some(p) = self.control.pop_front() {
            return Some(Transmit { dest, payload: p });
        }
        self.sub
            .poll_transmit(now)
            .map(|payload| Transmit { dest, payload })
    }
}

impl Viewer {
    /// The relay skipped frame `frame_id` for this viewer (SKIP, §6.10): its chunks will not
    /// come, so they are neither asked for nor counted lost, and the frame is not waited
    /// for. A frame partly here and still waiting goes whole, as skipped (the relay cut it
    /// short, §7.3); one played, or here whole, is left alone.
    fn on_skip(&mut self, frame_id: u32, first_seq: u32, chunk_count: u16) {
        if self.is_done(frame_id) {
            return;
        }
        if let Some(pts) = self.reasm.get(frame_id).map(|p| p.pts) {
            // A frame started and cut short: the relay stalled so long that its rest could
            // only have come after its playout (§7.3). It goes whole, as skipped.
            if !self.frames.withdraw(pts, frame_id) {
                return;
            }
            self.reasm.remove(frame_id);
            self.first_chunk_at.remove(&frame_id);
        }
        let first = self.video_ext.extend(first_seq);
        self.video_loss.on_skipped(first, u64::from(chunk_count));
        self.fec.remove(frame_id);
        self.mark_done(frame_id);
        self.stats.frames_skipped_by_relay += 1;
    }

    fn drain_buffers(&mut self, now: Instant) {
        while let Some(out) = self.frames.pop(now) {
            self.emit_frame_out(now, out);
        }
        while let Some(a) = self.audio.pop(now, &self.clock) {
            if !a.concealed {
                self.stats.audio_blocks += 1;
            }
            self.events.push_back(ViewerEvent::Audio(a));
        }
    }
}
