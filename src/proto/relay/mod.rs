//! The relay (proto-spec.md §6–§7.3): a subscriber table, a per-stream packet cache and
//! fan-out through bounded per-subscriber queues. The `serve` role embeds the same relay for
//! its own (local) stream, so viewers may subscribe to a server directly.
//!
//! This file holds the [`Relay`] itself: its settings, counters and timers, media intake
//! and the dispatch of each datagram by packet type. The parts live beside it: `streams`
//! (the stream table, publisher claims, late-join frame), `fanout` (per-subscriber queues
//! and their schedule), `repair` (NACKs answered from the cache or forwarded upstream, the
//! relay's own loss detection), `subscribers` (handshake, admission, eviction) and
//! `events` ([`RelayEvent`]).

mod events;
mod fanout;
mod fec;
mod gather;
mod repair;
mod stats;
mod streams;
mod subscribers;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::proto::node::{Node, Transmit, soonest};
use crate::proto::packetizer::Packetized;
use crate::proto::refusal::RefusalLimiter;
use crate::proto::rtx_cache::Inserted;
use crate::proto::timer::TimerTable;
use crate::proto::token::TokenKey;
use crate::proto::wire::{Body, FLAG_RETRANSMIT, Flow, Packet, PacketType, RejectReason, SeqNo};

pub use events::{LeaveReason, RelayEvent};
use fanout::{Fanout, Queued};
pub use repair::ranges_of;
pub use stats::{OverloadLimit, RelayStats, SubscriberInfo};
use streams::{Claim, Origin, StreamTable};

/// Relay tunables.
#[derive(Debug, Clone)]
pub struct RelayConfig {
    /// Secret for address-validation tokens (§6.2). Random per process in production.
    pub token_key: [u8; 16],
    /// How long a token stays valid.
    pub token_lifetime: Duration,
    /// Most subscribers at once.
    pub max_subscribers: usize,
    /// Most streams at once.
    pub max_streams: usize,
    /// A subscriber not heard from for this long is evicted (§6.4).
    pub subscriber_timeout: Duration,
    /// A publisher not heard from for this long gives up its stream name.
    pub publisher_timeout: Duration,
    /// Bytes queued per subscriber before whole frames are dropped for it (§7.3).
    pub queue_bytes: usize,
    /// Datagrams cached per flow (§7.3).
    pub cache_packets: usize,
    /// Oldest datagram the cache answers with.
    pub cache_age: Duration,
    /// Where to pull streams from that nobody pushes here.
    pub upstream: Option<SocketAddr>,
}

impl Default for RelayConfig {
    fn default() -> Self {
        RelayConfig {
            token_key: [0x5a; 16],
            token_lifetime: Duration::from_secs(30),
            max_subscribers: 1024,
            max_streams: 64,
            subscriber_timeout: Duration::from_secs(5),
            publisher_timeout: Duration::from_secs(5),
            queue_bytes: 4 * 1024 * 1024,
            cache_packets: 8192,
            cache_age: Duration::from_secs(3),
            upstream: None,
        }
    }
}

/// The relay's timers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelayTimer {
    /// Eviction of silent subscribers, release of idle streams, expiry of requests.
    Housekeeping,
    /// A rate-limited subscriber may send again.
    RateWake,
    /// The relay's own loss detection towards a remote origin has a NACK to send.
    UpstreamNack,
    /// A subscription to the upstream has a SUBSCRIBE or keep-alive due.
    UpstreamControl,
    /// The next receiver report to the upstream (§6.6), so that it sizes parity for us.
    UpstreamReport,
    /// A frame held for gathering (§7.3) must go out.
    Gather,
}

/// A pulling relay states 1/n of its tightest viewer's latency upstream.
const UPSTREAM_LATENCY_SHARE: u128 = 3;
const HOUSEKEEPING: Duration = Duration::from_millis(100);
/// The relay says it is overloaded while its latest frame skip is this recent.
const OVERLOAD_MEMORY: Duration = Duration::from_secs(1);
/// Events kept for [`Relay::poll_event`] when nobody pulls them; the oldest go first.
const MAX_EVENTS: usize = 1024;

/// The relay state machine.
#[derive(Debug)]
pub struct Relay {
    cfg: RelayConfig,
    tokens: TokenKey,
    streams: StreamTable,
    fanout: Fanout,
    control: VecDeque<Transmit>,
    events: VecDeque<RelayEvent>,
    timers: TimerTable<RelayTimer>,
    last_now: Option<Instant>,
    ctrl_seq: u32,
    /// Rate limit of the REJECT `unknown_stream` answers to media from unknown senders (§7.3).
    unknown_media: RefusalLimiter,
    /// Rate limit of the DESCRIPTIONs sent again to relays pushed into that answered so.
    reannounce_limit: RefusalLimiter,
    stats: RelayStats,
}

impl Relay {
    /// A relay with the given configuration.
    pub fn new(cfg: RelayConfig) -> Relay {
        Relay {
            tokens: TokenKey::new(cfg.token_key, cfg.token_lifetime),
            fanout: Fanout::new(cfg.queue_bytes),
            cfg,
            streams: StreamTable::default(),
            control: VecDeque::new(),
            events: VecDeque::new(),
            timers: TimerTable::new(),
            last_now: None,
            ctrl_seq: 0,
            unknown_media: RefusalLimiter::default(),
            reannounce_limit: RefusalLimiter::default(),
            stats: RelayStats::default(),
        }
    }

    /// Counters.
    pub fn stats(&self) -> RelayStats {
        let mut s = self.stats.clone();
        s.subscribers = self.fanout.len() as u64;
        s.queue_frames_dropped = self.fanout.drops.frames;
        s.queue_datagrams_dropped = self.fanout.drops.datagrams;
        s.frames_skipped_relay_cpu = self.fanout.drops.skipped(OverloadLimit::RelayCpu);
        s.frames_skipped_socket_buffer = self.fanout.drops.skipped(OverloadLimit::SocketBuffer);
        s.frames_skipped_slow_subscriber = self.fanout.drops.skipped(OverloadLimit::SlowSubscriber);
        s.overloaded = self.overloaded();
        s.frames_coded = self.streams.iter().map(|st| st.parity.frames_coded).sum();
        s
    }

    /// The limit the relay hit if it skipped a frame for some subscriber within the last
    /// second of its latest input (§7.3, overload), else `None`.
    pub fn overloaded(&self) -> Option<OverloadLimit> {
        let now = self.last_now?;
        self.fanout
            .last_skip
            .filter(|(t, _)| now.saturating_duration_since(*t) < OVERLOAD_MEMORY)
            .map(|(_, l)| l)
    }

    /// The next event, oldest first. Unpulled events are bounded (the oldest are dropped).
    pub fn poll_event(&mut self) -> Option<RelayEvent> {
        self.events.pop_front()
    }

    fn event(&mut self, e: RelayEvent) {
        if self.events.len() >= MAX_EVENTS {
            self.events.pop_front();
        }
        self.events.push_back(e);
    }

    /// Figures per subscriber.
    pub fn subscribers(&self) -> Vec<SubscriberInfo> {
        let mut v: Vec<SubscriberInfo> = self
            .fanout
            .iter()
            .map(|(a, s)| SubscriberInfo {
                addr: a.to_string(),
                stream: s.stream.clone(),
                queued: s.queued(),
                frames_dropped: s.frames_dropped,
                frames_skipped: s.frames_skipped,
                frames_played: s.report.map(|r| r.frames_played),
            })
            .collect();
        v.sort_by(|a, b| a.addr.cmp(&b.addr));
        v
    }

    /// Bytes held in caches and queues (for memory-bound assertions).
    pub fn memory_bytes(&self) -> usize {
        let caches: usize = self
            .streams
            .iter()
            .map(|s| s.video.bytes() + s.audio.bytes())
            .sum();
        caches + self.fanout.queued_bytes()
    }

    /// The smallest playout latency a subscriber of `stream` stated in its SUBSCRIBE (§6.2),
    /// if any did: a publisher paces within it (§7.1).
    pub fn min_viewer_latency(&self, stream: &str) -> Option<Duration> {
        self.fanout
            .iter()
            .filter(|(_, s)| s.stream == stream && s.latency_ms > 0)
            .map(|(_, s)| Duration::from_millis(s.latency_ms.into()))
            .min()
    }

    /// Bytes queued for one subscriber.
    pub fn queued_bytes(&self, addr: &SocketAddr) -> Option<usize> {
        self.fanout.get(addr).map(|s| s.queued_bytes())
    }

    /// Clamps `now` so that time never goes backwards inside the relay, and starts the
    /// housekeeping timer on the first input.
    fn now(&mut self, now: Instant) -> Instant {
        let now = self.last_now.map_or(now, |l| l.max(now));
        self.last_now = Some(now);
        self.fanout.set_now(now);
        if self.timers.get(RelayTimer::Housekeeping).is_none() {
            self.timers
                .set(RelayTimer::Housekeeping, now + HOUSEKEEPING);
        }
        now
    }

    /// After every input: collects the upstream subscriptions' control datagrams and
    /// re-arms the timers that follow the state.
    fn after_input(&mut self, now: Instant) {
        let mut next_control = None;
        for s in self.streams.iter_mut() {
            if let Origin::Upstream(sub) = &mut s.origin {
                if let Some(payload) = sub.poll_transmit(now) {
                    self.control.push_back(Transmit {
                        dest: sub.server(),
                        payload,
                    });
                }
                next_control = soonest(next_control, sub.poll_timeout());
            }
        }
        self.timers
            .set_or_stop(RelayTimer::UpstreamControl, next_control);
        if next_control.is_some() && self.timers.get(RelayTimer::UpstreamReport).is_none() {
            self.timers
                .set(RelayTimer::UpstreamReport, now + fec::REPORT_INTERVAL);
        }
        let nack = self.upstream_nack_deadline();
        self.timers.set_or_stop(RelayTimer::UpstreamNack, nack);
        self.timers
            .set_or_stop(RelayTimer::RateWake, self.fanout.next_wake());
        self.timers
            .set_or_stop(RelayTimer::Gather, self.gather_deadline());
    }

    /// Creates (or takes over) a local stream: the `serve` role's own source.
    pub fn add_local_stream(&mut self, name: &str) {
        self.streams.add_local(name, &self.cfg);
    }

    /// Adds a subscriber that needs no handshake and never times out: the relay a server
    /// pushes its stream into (`serve --relay`), configured by the operator.
    pub fn add_permanent_subscriber(&mut self, now: Instant, addr: SocketAddr, stream: &str) {
        let now = self.now(now);
        self.insert_subscriber(now, addr, stream, 0, true);
        self.after_input(now);
    }

    /// Feeds a packet of the local stream `stream`, as built by this process's packetizer:
    /// taken as it is, without decoding it again. Ignored unless `stream` is a local stream
    /// (see [`Relay::add_local_stream`]).
    pub fn ingest_local(&mut self, now: Instant, stream: &str, packet: Packetized) {
        let now = self.now(now);
        if let Some(idx) = self.streams.local(stream) {
            let (p, datagram) = packet.into_parts();
            self.on_media(now, idx, p, datagram);
        }
        self.after_input(now);
    }

    fn send_control(&mut self, dest: SocketAddr, payload: Bytes) {
        self.control.push_back(Transmit { dest, payload });
    }

    fn next_ctrl_seq(&mut self) -> u32 {
        self.ctrl_seq = self.ctrl_seq.wrapping_add(1);
        self.ctrl_seq
    }

    fn broadcast(&mut self, idx: usize, datagram: &Bytes, frame: Option<u32>) {
        let s = self.streams.get_mut(idx);
        let members = std::mem::take(&mut s.members);
        self.fanout.broadcast(&members, datagram, frame);
        self.streams.get_mut(idx).members = members;
    }

    /// Queues cached video datagram `seq` (`len` bytes) of frame `frame` for every
    /// subscriber of stream `idx`: each queue reads it from the cache when it goes out.
    fn broadcast_cached(&mut self, idx: usize, seq: SeqNo, len: usize, frame: u32) {
        let s = self.streams.get_mut(idx);
        let members = std::mem::take(&mut s.members);
        let key = s.cache_key();
        self.fanout.broadcast_cached(&members, key, seq, len, frame);
        self.streams.get_mut(idx).members = members;
    }

    fn on_media(&mut self, now: Instant, idx: usize, p: Packet, datagram: Bytes) {
        let ssrc = p.header.ssrc;
        let frame = match &p.body {
            Body::Video(v) => Some(v.frame_id),
            _ => None,
        };
        self.on_media_inner(now, idx, p, datagram);
        // A chunk may complete the code of a frame the origin's parity was restoring.
        if let Some(frame_id) = frame {
            let restored = self.streams.get_mut(idx).parity.restore(frame_id);
            if !restored.is_empty() {
                self.on_restored(now, idx, ssrc, restored);
            }
        }
    }

    fn on_media_inner(&mut self, now: Instant, idx: usize, p: Packet, datagram: Bytes) {
        let retransmit = p.header.flags & FLAG_RETRANSMIT != 0;
        let s = self.streams.get_mut(idx);
        s.last_heard = Some(now);
        s.origin_in += datagram.len() as u64;
        match p.body {
            Body::Description(d) => {
                if d.name != s.name {
                    self.stats.unknown_sender += 1;
                    return;
                }
                if s.ssrc != Some(p.header.ssrc) {
                    s.reset_source(p.header.ssrc);
                }
                s.description = Some(datagram.clone());
                self.release_held(idx);
                self.broadcast(idx, &datagram, None);
            }
            Body::Video(_) | Body::Audio(_) => {
                if s.ssrc.is_none() {
                    s.reset_source(p.header.ssrc);
                }
                if s.ssrc != Some(p.header.ssrc) {
                    self.stats.unknown_sender += 1;
                    return;
                }
                let (flow, video) = match &p.body {
                    Body::Video(v) => (Flow::Video, Some(v)),
                    _ => (Flow::Audio, None),
                };
                let remote = s.origin.addr().is_some();
                let (cache, ext) = s.cache(flow);
                let seq = ext.extend(p.header.seq);
                let inserted = cache.insert(now, seq, datagram.clone());
                let asked = s.repair.on_arrival(now, flow, seq, remote);
                let whole = match video {
                    Some(v) => {
                        s.late.add(now, seq, v, &datagram);
                        s.parity.on_video(p.header.ssrc, p.header.seq, v)
                    }
                    None => None,
                };
                let frame = video.map(|v| v.frame_id);
                if retransmit && inserted == Inserted::New {
                    // Something the relay never had: none of its subscribers had it either.
                    self.stats.media_in += 1;
                    self.release_held(idx);
                    self.broadcast(idx, &datagram, None);
                    self.on_frame_whole(now, idx, whole);
                    return;
                }
                if retransmit {
                    // An answer to a forwarded request: only to those who asked.
                    for who in asked.unwrap_or_default() {
                        self.stats.retransmits_sent += 1;
                        self.fanout
                            .enqueue(who, Queued::single(datagram.clone()), true);
                    }
                    return;
                }
                if inserted == Inserted::Duplicate {
                    self.stats.duplicates += 1;
                    return;
                }
                self.stats.media_in += 1;
                match video {
                    Some(v) if inserted == Inserted::New => {
                        let last = v.chunk_index.saturating_add(1) >= v.chunk_count;
                        let (f, len) = (v.frame_id, datagram.len());
                        self.gather(now, idx, seq, len, f, last);
                    }
                    Some(_) => {
                        self.release_held(idx);
                        self.broadcast(idx, &datagram, frame);
                    }
                    None => self.broadcast(idx, &datagram, frame),
                }
                self.on_frame_whole(now, idx, whole);
            }
            Body::End { .. } => {
                if s.ssrc.is_some_and(|x| x != p.header.ssrc) {
                    self.stats.unknown_sender += 1;
                    return;
                }
                // §6.9: the name is free for the next publisher at once, and late joiners
                // learn that the stream ended.
                if matches!(s.origin, Origin::Publisher(_)) {
                    s.last_heard = None;
                }
                s.ended = Some(datagram.clone());
                self.release_held(idx);
                self.broadcast(idx, &datagram, None);
            }
            _ => {}
        }
    }

    /// A DESCRIPTION from `from`: its own stream's, or a publisher claiming a name.
    fn on_description(&mut self, now: Instant, from: SocketAddr, p: Packet, datagram: Bytes) {
        let Body::Description(d) = &p.body else {
            return;
        };
        let idx = match self
            .streams
            .claim(now, from, p.header.ssrc, &d.name, &self.cfg)
        {
            Claim::Owner(i) => i,
            Claim::Created(i) => {
                self.event(RelayEvent::StreamClaimed {
                    stream: d.name.clone(),
                    publisher: from,
                    displaced: None,
                });
                i
            }
            Claim::TookOver { idx, previous } => {
                self.event(RelayEvent::StreamClaimed {
                    stream: d.name.clone(),
                    publisher: from,
                    displaced: Some(previous),
                });
                idx
            }
            Claim::Refused => {
                self.stats.unknown_sender += 1;
                // Tell the second publisher (21 bytes, in answer to its ≥ 43-byte
                // DESCRIPTION, once a second): it would otherwise stream to nobody.
                let reason = if self.streams.position(&d.name).is_some() {
                    RejectReason::NameTaken
                } else {
                    RejectReason::Full
                };
                self.reject(from, reason);
                self.event(RelayEvent::StreamRefused {
                    stream: d.name.clone(),
                    from,
                });
                return;
            }
        };
        if let Origin::Upstream(sub) = &mut self.streams.get_mut(idx).origin {
            sub.on_traffic(now);
        }
        self.on_media(now, idx, p, datagram)
    }

    fn housekeeping(&mut self, now: Instant) {
        self.evict_silent(now);
        for r in self.streams.release_idle(now, &self.cfg) {
            if let Some((to, bye)) = r.bye {
                self.send_control(to, bye);
            }
        }
    }
}

impl Node for Relay {
    fn handle_datagram(&mut self, now: Instant, from: SocketAddr, datagram: &[u8]) {
        let now = self.now(now);
        self.input(now, from, datagram);
    }

    fn handle_datagram_at(
        &mut self,
        now: Instant,
        arrived: Instant,
        from: SocketAddr,
        datagram: &[u8],
    ) {
        let now = self.now(now);
        // What this queues waited in the socket already (§7.3, overload).
        self.fanout.set_now(arrived.min(now));
        self.input(now, from, datagram);
    }

    fn handle_timeout(&mut self, now: Instant) {
        let now = self.now(now);
        while let Some(t) = self.timers.next_expired(now) {
            match t {
                RelayTimer::Housekeeping => {
                    self.timers
                        .set(RelayTimer::Housekeeping, now + HOUSEKEEPING);
                    self.housekeeping(now);
                }
                RelayTimer::RateWake => self.fanout.wake(now),
                RelayTimer::UpstreamNack => self.poll_own_nacks(now),
                // Collected by `after_input` below.
                RelayTimer::UpstreamControl => {}
                RelayTimer::UpstreamReport => self.report_upstream(now),
                RelayTimer::Gather => self.release_due(now),
            }
        }
        self.after_input(now);
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.timers.next_timeout()
    }

    fn on_send_blocked(&mut self, now: Instant) {
        let now = self.now(now);
        self.fanout.on_send_blocked(now);
    }

    fn poll_transmit(&mut self, now: Instant) -> Option<Transmit> {
        let now = self.now(now);
        let t = match self.control.pop_front() {
            Some(t) => t,
            None => {
                let t = self
                    .fanout
                    .pop_with(now, &streams::CachesAt(&self.streams, now));
                if self.fanout.has_blocked() {
                    self.timers
                        .set_or_stop(RelayTimer::RateWake, self.fanout.next_wake());
                }
                t?
            }
        };
        self.stats.datagrams_out += 1;
        self.stats.bytes_out += t.payload.len() as u64;
        Some(t)
    }
}

impl Relay {
    /// One received datagram, at `now` (already clamped).
    fn input(&mut self, now: Instant, from: SocketAddr, datagram: &[u8]) {
        self.stats.datagrams_in += 1;
        self.stats.bytes_in += datagram.len() as u64;
        let datagram = Bytes::copy_from_slice(datagram);
        match Packet::decode(&datagram) {
            Ok(p) => self.dispatch(now, from, p, datagram),
            Err(e) => self.stats.malformed.record(&e),
        }
        self.after_input(now);
    }

    /// Routes one decoded datagram by packet type.
    fn dispatch(&mut self, now: Instant, from: SocketAddr, p: Packet, datagram: Bytes) {
        let ssrc = p.header.ssrc;
        match &p.body {
            Body::Video(_) | Body::Audio(_) => match self.streams.find_origin(from, ssrc, None) {
                Some(idx) => {
                    if let Origin::Upstream(sub) = &mut self.streams.get_mut(idx).origin {
                        sub.on_traffic(now);
                    }
                    self.on_media(now, idx, p, datagram)
                }
                None => self.on_unknown_media(now, from),
            },
            Body::Description(_) => self.on_description(now, from, p, datagram),
            // Not answered: a stream that ended has nothing to announce again.
            Body::End { .. } => match self.streams.find_origin(from, ssrc, None) {
                Some(idx) => self.on_media(now, idx, p, datagram),
                None => self.stats.unknown_sender += 1,
            },
            Body::Subscribe {
                name,
                token,
                max_kbps,
                latency_ms,
            } => {
                let (name, token, max_kbps) = (name.clone(), token.clone(), *max_kbps);
                self.on_subscribe(now, from, name.clone(), token, max_kbps);
                if let Some(s) = self.fanout.get_mut(&from) {
                    s.latency_ms = *latency_ms;
                    s.proactive_memo = None;
                }
                // A relay that pulls the stream states upstream a share of its tightest
                // viewer's latency: the origin paces within it, and sizes parity for this
                // hop to restore frames without a round (the relay repairs its own losses
                // with NACKs, and its viewers need the rest of the budget), §7.6.
                let tightest = self.min_viewer_latency(&name);
                if let Some(idx) = self.streams.position(&name) {
                    if let Origin::Upstream(sub) = &mut self.streams.get_mut(idx).origin {
                        let ms = tightest.map_or(0, |l| {
                            (l.as_millis() / UPSTREAM_LATENCY_SHARE).clamp(1, u16::MAX.into())
                                as u16
                        });
                        sub.set_latency_ms(ms);
                    }
                }
            }
            Body::FecRequest { entries } => {
                let entries = entries.clone();
                self.on_fec_request(now, from, &entries)
            }
            Body::Parity(_) => match self.streams.find_origin(from, ssrc, None) {
                Some(idx) => self.on_origin_parity(now, idx, p, datagram),
                None => self.stats.unknown_sender += 1,
            },
            Body::KeepAlive { echo_us } => match self.fanout.get_mut(&from) {
                Some(s) => {
                    s.last_heard = now;
                    let seq = self.next_ctrl_seq();
                    let ack = Packet::new(
                        PacketType::KeepAliveAck,
                        0,
                        seq,
                        Body::KeepAliveAck { echo_us: *echo_us },
                    );
                    self.send_control(from, ack.encode());
                }
                None => self.stats.unknown_sender += 1,
            },
            Body::Bye => {
                if self.fanout.get(&from).is_some_and(|s| !s.permanent) {
                    self.remove_subscriber(&from, LeaveReason::Bye);
                    self.stats.byes += 1;
                } else {
                    self.stats.unknown_sender += 1;
                }
            }
            Body::Nack { flow, ranges } => {
                let (flow, ranges) = (*flow, ranges.clone());
                self.on_nack(now, from, flow, &ranges)
            }
            Body::ReceiverReport(r) => match self.fanout.get_mut(&from) {
                Some(s) => {
                    s.last_heard = now;
                    s.report = Some(*r);
                    s.proactive_memo = None;
                    self.stats.reports += 1;
                    self.stats.loss_reports += u64::from(r.loss_q16 > 0);
                }
                None => self.stats.unknown_sender += 1,
            },
            // An upstream relay skipped a frame for this one (§6.10): the gap detection on
            // the origin (§7.3) asks for it and goes unanswered, as before SKIP existed.
            Body::Skip { .. } => self.stats.unknown_sender += 1,
            Body::Retry { .. } | Body::Reject { .. } | Body::KeepAliveAck { .. } => {
                let mut handled = false;
                for s in self.streams.iter_mut() {
                    if let Origin::Upstream(sub) = &mut s.origin {
                        if sub.server() == from {
                            handled |= sub.handle_control(now, &p);
                        }
                    }
                }
                if !handled {
                    match p.body {
                        // Not a refusal of a push (a relay pushed into refuses a claim
                        // with `name_taken` or `full`): a subscriber that forgot the stream,
                        // or a stray answer to media.
                        Body::Reject {
                            reason: RejectReason::UnknownStream,
                        } => self.forgotten_by(now, from),
                        Body::Reject { reason } => {
                            // A relay this node pushes into refused it (§6.3).
                            self.stats.unknown_sender += 1;
                            self.event(RelayEvent::Rejected { from, reason });
                        }
                        _ => self.stats.unknown_sender += 1,
                    }
                }
            }
        }
    }
}

impl Relay {
    /// Media from a sender that is no stream's publisher or upstream: dropped, and answered
    /// with REJECT `unknown_stream` (21 bytes, less than any media datagram), rate limited,
    /// so that a publisher whose DESCRIPTION never arrived (this relay was not listening yet,
    /// restarted, or the datagram was lost) announces its stream again at once instead of
    /// at its next DESCRIPTION, up to a second of the stream later (§7.3).
    /// Media from an upstream this relay pulls from is not answered: it is a source it has
    /// not yet caught up with (a new ssrc whose DESCRIPTION was lost), not one that does not
    /// know it, and the upstream would take the REJECT as this relay forgetting the stream.
    fn on_unknown_media(&mut self, now: Instant, from: SocketAddr) {
        self.stats.unknown_sender += 1;
        let pulled_from = self
            .streams
            .iter()
            .any(|s| matches!(&s.origin, Origin::Upstream(sub) if sub.server() == from));
        if !pulled_from && self.unknown_media.note(now, from).may_send {
            self.reject(from, RejectReason::UnknownStream);
        }
    }

    /// Subscriber `from` answered media with REJECT `unknown_stream`: it no longer knows the
    /// stream (§7.3). A relay this node pushes into (a permanent subscriber) gets the
    /// stream's DESCRIPTION again at once, at most once per
    /// [`REFUSAL_INTERVAL`](crate::proto::refusal::REFUSAL_INTERVAL), so that forged REJECTs
    /// make it send at most 5 DESCRIPTIONs a second, and only to that relay; any other
    /// subscriber (a relay that restarted) is gone and leaves the table. From a
    /// non-subscriber it is only counted.
    fn forgotten_by(&mut self, now: Instant, from: SocketAddr) {
        let Some((stream, permanent)) = self
            .fanout
            .get(&from)
            .map(|s| (s.stream.clone(), s.permanent))
        else {
            self.stats.unknown_sender += 1;
            return;
        };
        if !permanent {
            self.remove_subscriber(&from, LeaveReason::Forgotten);
            return;
        }
        let Some(d) = self
            .streams
            .position(&stream)
            .and_then(|i| self.streams.get_mut(i).description.clone())
        else {
            return;
        };
        if self.reannounce_limit.note(now, from).may_send {
            self.stats.reannounced += 1;
            self.fanout.enqueue(from, Queued::single(d), true);
        }
    }
}

#[cfg(test)]
pub(crate) mod test_util;

#[cfg(test)]
mod tests;
