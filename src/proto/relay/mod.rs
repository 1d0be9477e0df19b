//! The relay (proto-spec.md §6–§7.3): a subscriber table, a per-stream packet cache and
//! fan-out through bounded per-subscriber queues. The `serve` role embeds the same relay for
//! its own (local) stream, so viewers may subscribe to a server directly.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::Serialize;

use crate::proto::loss::{LossConfig, LossTracker};
use crate::proto::node::{Node, Transmit, soonest};
use crate::proto::rtt::RttEstimator;
use crate::proto::rtx_cache::{Inserted, RtxCache};
use crate::proto::subscription::Subscription;
use crate::proto::token::TokenKey;
use crate::proto::wire::{
    self, Body, FLAG_REPLAY, FLAG_RETRANSMIT, Flow, NackRange, Packet, PacketType, ReceiverReport,
    RejectReason, SeqExtender, SeqNo,
};

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

/// Relay counters (also what `--stats-json` writes for the relay role).
#[derive(Debug, Clone, Default, Serialize)]
pub struct RelayStats {
    /// Datagrams received.
    pub datagrams_in: u64,
    /// Datagrams sent.
    pub datagrams_out: u64,
    /// Bytes received.
    pub bytes_in: u64,
    /// Bytes sent.
    pub bytes_out: u64,
    /// Malformed datagrams dropped, by reason.
    pub malformed: BTreeMap<String, u64>,
    /// Datagrams from addresses with no business sending them.
    pub unknown_sender: u64,
    /// Subscribers now.
    pub subscribers: u64,
    /// Subscriptions accepted in all.
    pub subscribed: u64,
    /// Subscribers evicted for silence.
    pub evicted: u64,
    /// Subscribers that said bye.
    pub byes: u64,
    /// RETRY challenges sent.
    pub retries_sent: u64,
    /// REJECTs sent.
    pub rejects_sent: u64,
    /// Retransmission requests answered from the cache.
    pub cache_hits: u64,
    /// Retransmission requests forwarded upstream (once per sequence number).
    pub upstream_requests: u64,
    /// Requests for datagrams nobody can supply any more.
    pub cache_misses: u64,
    /// Retransmissions sent to subscribers.
    pub retransmits_sent: u64,
    /// Media datagrams received from the origin (first copies).
    pub media_in: u64,
    /// Duplicate media from the origin, dropped.
    pub duplicates: u64,
    /// Whole frames dropped from slow subscribers' queues.
    pub queue_frames_dropped: u64,
    /// Datagrams dropped from slow subscribers' queues.
    pub queue_datagrams_dropped: u64,
    /// Latest frames replayed to late joiners.
    pub late_join_frames: u64,
    /// Receiver reports received, latest per subscriber summed.
    pub reports: u64,
    /// Requests not sent to a pushing publisher because they would have exceeded the bytes
    /// it sent (anti-amplification, §8).
    pub origin_budget_exceeded: u64,
}

#[derive(Debug)]
enum Origin {
    Local,
    Publisher(SocketAddr),
    Upstream(Box<Subscription>),
}

impl Origin {
    fn addr(&self) -> Option<SocketAddr> {
        match self {
            Origin::Local => None,
            Origin::Publisher(a) => Some(*a),
            Origin::Upstream(s) => Some(s.server()),
        }
    }
}

#[derive(Debug, Default)]
struct FrameTracker {
    building: BTreeMap<u32, (u16, Vec<Option<Bytes>>, usize)>,
    latest: Option<(u32, Vec<Bytes>)>,
}

impl FrameTracker {
    fn add(&mut self, frame_id: u32, index: u16, count: u16, datagram: &Bytes) {
        if let Some((latest, _)) = &self.latest {
            if !wire::seq::wire_newer(frame_id, *latest) {
                return;
            }
        }
        let e = self
            .building
            .entry(frame_id)
            .or_insert_with(|| (count, vec![None; count as usize], 0));
        if e.0 != count || index >= count {
            return;
        }
        let slot = &mut e.1[index as usize];
        if slot.is_none() {
            *slot = Some(datagram.clone());
            e.2 += 1;
        }
        if e.2 == count as usize {
            if let Some((_, (_, chunks, _))) = self.building.remove_entry(&frame_id) {
                self.latest = Some((frame_id, chunks.into_iter().flatten().collect()));
            }
            // Anything older than the latest complete frame is no use to a late joiner.
            self.building
                .retain(|&id, _| wire::seq::wire_newer(id, frame_id));
        }
        while self.building.len() > 4 {
            let oldest = self
                .building
                .keys()
                .copied()
                .reduce(|a, b| if wire::seq::wire_newer(a, b) { b } else { a });
            if let Some(o) = oldest {
                self.building.remove(&o);
            }
        }
    }
}

#[derive(Debug)]
struct PendingRtx {
    asked_at: Instant,
    who: Vec<SocketAddr>,
}

#[derive(Debug)]
struct Stream {
    name: String,
    ssrc: Option<u32>,
    description: Option<Bytes>,
    origin: Origin,
    last_heard: Option<Instant>,
    video: RtxCache,
    audio: RtxCache,
    video_ext: SeqExtender,
    audio_ext: SeqExtender,
    frames: FrameTracker,
    /// The relay's own loss detection on the path from its origin: it asks upstream for
    /// what it lacks before its subscribers do (§7.3).
    video_loss: LossTracker,
    audio_loss: LossTracker,
    pending: HashMap<(Flow, SeqNo), PendingRtx>,
    members: Vec<SocketAddr>,
    idle_since: Option<Instant>,
    /// Bytes received from a pushing publisher and NACK bytes sent to it: a publisher's
    /// address is never validated, so the relay sends it no more than it received (§8).
    origin_in: u64,
    origin_out: u64,
}

impl Stream {
    fn new(name: &str, origin: Origin, cfg: &RelayConfig) -> Stream {
        Stream {
            name: name.to_owned(),
            ssrc: None,
            description: None,
            origin,
            last_heard: None,
            video: RtxCache::new(cfg.cache_packets, cfg.cache_age),
            audio: RtxCache::new(cfg.cache_packets, cfg.cache_age),
            video_ext: SeqExtender::default(),
            audio_ext: SeqExtender::default(),
            frames: FrameTracker::default(),
            video_loss: LossTracker::new(LossConfig::default()),
            audio_loss: LossTracker::new(LossConfig::default()),
            pending: HashMap::new(),
            members: Vec::new(),
            idle_since: None,
            origin_in: 0,
            origin_out: 0,
        }
    }

    fn reset_source(&mut self, ssrc: u32) {
        self.ssrc = Some(ssrc);
        self.video.clear();
        self.audio.clear();
        self.video_ext.reset();
        self.audio_ext.reset();
        self.frames = FrameTracker::default();
        self.pending.clear();
        self.video_loss.reset();
        self.audio_loss.reset();
    }

    /// Whether `len` more bytes may go to the origin: always for an upstream the relay
    /// subscribed to itself, within what it received for a pushing publisher.
    fn may_send_origin(&mut self, len: usize) -> bool {
        match self.origin {
            Origin::Publisher(_) => {
                if self.origin_out + len as u64 > self.origin_in {
                    return false;
                }
                self.origin_out += len as u64;
                true
            }
            _ => true,
        }
    }

    fn rtt(&self) -> RttEstimator {
        match &self.origin {
            Origin::Upstream(sub) => *sub.rtt(),
            _ => RttEstimator::new(Duration::from_millis(5)),
        }
    }

    fn cache(&mut self, flow: Flow) -> (&mut RtxCache, &mut SeqExtender) {
        match flow {
            Flow::Video => (&mut self.video, &mut self.video_ext),
            Flow::Audio => (&mut self.audio, &mut self.audio_ext),
        }
    }
}

#[derive(Debug)]
struct Queued {
    datagram: Bytes,
    frame: Option<u32>,
}

#[derive(Debug)]
struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

#[derive(Debug)]
struct Subscriber {
    stream: String,
    queue: VecDeque<Queued>,
    queued_bytes: usize,
    last_heard: Instant,
    permanent: bool,
    in_ready: bool,
    bucket: Option<TokenBucket>,
    skip_frame: Option<u32>,
    report: Option<ReceiverReport>,
    frames_dropped: u64,
}

/// Per-subscriber figures for statistics.
#[derive(Debug, Clone, Serialize)]
pub struct SubscriberInfo {
    /// Address.
    pub addr: String,
    /// Stream name.
    pub stream: String,
    /// Datagrams queued now.
    pub queued: usize,
    /// Whole frames dropped for this subscriber.
    pub frames_dropped: u64,
    /// Frames played, from its last receiver report.
    pub frames_played: Option<u32>,
}

const HOUSEKEEPING: Duration = Duration::from_millis(100);
const RELAY_REORDER_HOLD: Duration = Duration::from_millis(3);
const UPSTREAM_REASK: Duration = Duration::from_millis(10);
const PENDING_MAX_AGE: Duration = Duration::from_secs(1);
const MAX_NACK_SEQS: u64 = 1024;
/// How far past the newest datagram it has a relay still forwards a request: the tail of
/// a frame lost upstream is asked for before the next frame reveals the gap.
const MAX_AHEAD: u64 = 4096;
const MAX_PENDING: usize = 16384;

/// The relay state machine.
#[derive(Debug)]
pub struct Relay {
    cfg: RelayConfig,
    tokens: TokenKey,
    streams: Vec<Stream>,
    subs: HashMap<SocketAddr, Subscriber>,
    ready: VecDeque<SocketAddr>,
    blocked: Vec<(Instant, SocketAddr)>,
    control: VecDeque<Transmit>,
    next_housekeeping: Option<Instant>,
    last_now: Option<Instant>,
    ctrl_seq: u32,
    stats: RelayStats,
}

impl Relay {
    /// A relay with the given configuration.
    pub fn new(cfg: RelayConfig) -> Relay {
        Relay {
            tokens: TokenKey::new(cfg.token_key, cfg.token_lifetime),
            cfg,
            streams: Vec::new(),
            subs: HashMap::new(),
            ready: VecDeque::new(),
            blocked: Vec::new(),
            control: VecDeque::new(),
            next_housekeeping: None,
            last_now: None,
            ctrl_seq: 0,
            stats: RelayStats::default(),
        }
    }

    /// Counters.
    pub fn stats(&self) -> RelayStats {
        let mut s = self.stats.clone();
        s.subscribers = self.subs.len() as u64;
        s
    }

    /// Figures per subscriber.
    pub fn subscribers(&self) -> Vec<SubscriberInfo> {
        let mut v: Vec<SubscriberInfo> = self
            .subs
            .iter()
            .map(|(a, s)| SubscriberInfo {
                addr: a.to_string(),
                stream: s.stream.clone(),
                queued: s.queue.len(),
                frames_dropped: s.frames_dropped,
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
        let queues: usize = self.subs.values().map(|s| s.queued_bytes).sum();
        caches + queues
    }

    /// Bytes queued for one subscriber.
    pub fn queued_bytes(&self, addr: &SocketAddr) -> Option<usize> {
        self.subs.get(addr).map(|s| s.queued_bytes)
    }

    fn now(&mut self, now: Instant) -> Instant {
        // Time never goes backwards inside the relay.
        let now = self.last_now.map_or(now, |l| l.max(now));
        self.last_now = Some(now);
        if self.next_housekeeping.is_none() {
            self.next_housekeeping = Some(now + HOUSEKEEPING);
        }
        now
    }

    /// Creates (or takes over) a local stream: the `serve` role's own source.
    pub fn add_local_stream(&mut self, name: &str) {
        if !self.streams.iter().any(|s| s.name == name) {
            let s = Stream::new(name, Origin::Local, &self.cfg);
            self.streams.push(s);
        }
    }

    /// Adds a subscriber that needs no handshake and never times out: the relay a server
    /// pushes its stream into (`serve --relay`), configured by the operator.
    pub fn add_permanent_subscriber(&mut self, now: Instant, addr: SocketAddr, stream: &str) {
        let now = self.now(now);
        self.insert_subscriber(now, addr, stream, 0, true);
    }

    /// Feeds a datagram of a local stream (already encoded by the server's packetizer).
    pub fn ingest_local(&mut self, now: Instant, stream: &str, datagram: Bytes) {
        let now = self.now(now);
        // Only a stream this relay's own source feeds (not one a publisher pushes).
        let Some(idx) = self
            .streams
            .iter()
            .position(|s| s.name == stream && matches!(s.origin, Origin::Local))
        else {
            return;
        };
        match Packet::decode(&datagram) {
            Ok(p) => self.on_media(now, idx, p, datagram),
            Err(e) => *self.stats.malformed.entry(e.reason().into()).or_default() += 1,
        }
    }

    fn send_control(&mut self, dest: SocketAddr, payload: Bytes) {
        self.control.push_back(Transmit { dest, payload });
    }

    fn next_ctrl_seq(&mut self) -> u32 {
        self.ctrl_seq = self.ctrl_seq.wrapping_add(1);
        self.ctrl_seq
    }

    fn insert_subscriber(
        &mut self,
        now: Instant,
        addr: SocketAddr,
        stream: &str,
        max_kbps: u32,
        permanent: bool,
    ) {
        if let Some(old) = self.subs.remove(&addr) {
            self.remove_member(&old.stream, &addr);
        }
        let bucket = (max_kbps > 0).then(|| {
            let rate = max_kbps as f64 * 1000.0 / 8.0;
            TokenBucket {
                rate,
                burst: (rate / 10.0).max(16_000.0),
                tokens: (rate / 10.0).max(16_000.0),
                last: now,
            }
        });
        self.subs.insert(
            addr,
            Subscriber {
                stream: stream.to_owned(),
                queue: VecDeque::new(),
                queued_bytes: 0,
                last_heard: now,
                permanent,
                in_ready: false,
                bucket,
                skip_frame: None,
                report: None,
                frames_dropped: 0,
            },
        );
        self.stats.subscribed += 1;
        let Some(idx) = self.streams.iter().position(|s| s.name == stream) else {
            return;
        };
        let s = &mut self.streams[idx];
        s.members.push(addr);
        s.idle_since = None;
        // Late join (§7.4): the description and the latest complete frame, at once.
        let mut first: Vec<Queued> = Vec::new();
        if let Some(d) = &s.description {
            first.push(Queued {
                datagram: d.clone(),
                frame: None,
            });
        }
        if let Some((id, chunks)) = &s.frames.latest {
            for c in chunks {
                if let Some(d) = wire::with_flags(c, FLAG_REPLAY) {
                    first.push(Queued {
                        datagram: d,
                        frame: Some(*id),
                    });
                }
            }
            self.stats.late_join_frames += 1;
        }
        for q in first {
            self.enqueue(addr, q, false);
        }
    }

    fn remove_member(&mut self, stream: &str, addr: &SocketAddr) {
        if let Some(s) = self.streams.iter_mut().find(|s| s.name == stream) {
            s.members.retain(|a| a != addr);
        }
    }

    fn remove_subscriber(&mut self, addr: &SocketAddr) {
        if let Some(old) = self.subs.remove(addr) {
            self.remove_member(&old.stream, addr);
        }
    }

    /// Queues a datagram for one subscriber; on overflow drops the oldest whole frames
    /// for that subscriber only (§7.3).
    fn enqueue(&mut self, addr: SocketAddr, q: Queued, front: bool) {
        let cap = self.cfg.queue_bytes;
        let Some(sub) = self.subs.get_mut(&addr) else {
            return;
        };
        if q.frame.is_some() && q.frame == sub.skip_frame {
            self.stats.queue_datagrams_dropped += 1;
            return;
        }
        while sub.queued_bytes + q.datagram.len() > cap {
            let Some(old) = sub.queue.pop_front() else {
                break;
            };
            sub.queued_bytes -= old.datagram.len();
            self.stats.queue_datagrams_dropped += 1;
            if let Some(f) = old.frame {
                let before = sub.queue.len();
                sub.queue.retain(|e| e.frame != Some(f));
                self.stats.queue_datagrams_dropped += (before - sub.queue.len()) as u64;
                sub.queued_bytes = sub.queue.iter().map(|e| e.datagram.len()).sum();
                sub.skip_frame = Some(f);
                sub.frames_dropped += 1;
                self.stats.queue_frames_dropped += 1;
            }
        }
        if q.frame.is_some() && q.frame == sub.skip_frame {
            self.stats.queue_datagrams_dropped += 1;
            return;
        }
        sub.queued_bytes += q.datagram.len();
        if front {
            sub.queue.push_front(q);
        } else {
            sub.queue.push_back(q);
        }
        if !sub.in_ready {
            sub.in_ready = true;
            self.ready.push_back(addr);
        }
    }

    fn broadcast(&mut self, idx: usize, datagram: &Bytes, frame: Option<u32>) {
        let members = std::mem::take(&mut self.streams[idx].members);
        for m in &members {
            self.enqueue(
                *m,
                Queued {
                    datagram: datagram.clone(),
                    frame,
                },
                false,
            );
        }
        self.streams[idx].members = members;
    }

    fn on_media(&mut self, now: Instant, idx: usize, p: Packet, datagram: Bytes) {
        let retransmit = p.header.flags & FLAG_RETRANSMIT != 0;
        let s = &mut self.streams[idx];
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
                let (flow, frame) = match &p.body {
                    Body::Video(v) => (
                        Flow::Video,
                        Some((v.frame_id, v.chunk_index, v.chunk_count)),
                    ),
                    _ => (Flow::Audio, None),
                };
                let remote = s.origin.addr().is_some();
                let (cache, ext) = s.cache(flow);
                let seq = ext.extend(p.header.seq);
                let inserted = cache.insert(now, seq, datagram.clone());
                if remote {
                    let tracker = match flow {
                        Flow::Video => &mut s.video_loss,
                        Flow::Audio => &mut s.audio_loss,
                    };
                    tracker.on_arrival(now, seq, RELAY_REORDER_HOLD, None);
                }
                if let Some((id, index, count)) = frame {
                    s.frames.add(id, index, count, &datagram);
                }
                let pending = s.pending.remove(&(flow, seq));
                if retransmit && inserted == Inserted::New {
                    // Something the relay never had: none of its subscribers had it either.
                    self.stats.media_in += 1;
                    self.broadcast(idx, &datagram, None);
                    return;
                }
                if retransmit {
                    // An answer to a forwarded request: only to those who asked.
                    if let Some(p) = pending {
                        for who in p.who {
                            self.stats.retransmits_sent += 1;
                            self.enqueue(
                                who,
                                Queued {
                                    datagram: datagram.clone(),
                                    frame: None,
                                },
                                true,
                            );
                        }
                    }
                    return;
                }
                if inserted == Inserted::Duplicate {
                    self.stats.duplicates += 1;
                    return;
                }
                self.stats.media_in += 1;
                self.broadcast(idx, &datagram, frame.map(|f| f.0));
            }
            _ => {}
        }
    }

    fn on_subscribe(
        &mut self,
        now: Instant,
        from: SocketAddr,
        name: String,
        token: Vec<u8>,
        max_kbps: u32,
    ) {
        if let Some(sub) = self.subs.get_mut(&from) {
            if sub.stream == name {
                sub.last_heard = now;
                return;
            }
        }
        let known = self.streams.iter().any(|s| s.name == name);
        let can_pull = self.cfg.upstream.is_some()
            && !self
                .streams
                .iter()
                .any(|s| matches!(s.origin, Origin::Upstream(_)) && s.name != name);
        if !known && !can_pull {
            self.reject(from, RejectReason::UnknownStream);
            return;
        }
        if token.is_empty() || !self.tokens.check(now, &token, &from, &name) {
            // Never more bytes than the request (the SUBSCRIBE is padded to 64 bytes, a
            // RETRY is 37): §6.2.
            let t = self.tokens.mint(now, &from, &name);
            let seq = self.next_ctrl_seq();
            self.send_control(
                from,
                Packet::new(PacketType::Retry, 0, seq, Body::Retry { token: t }).encode(),
            );
            self.stats.retries_sent += 1;
            return;
        }
        if self.subs.len() >= self.cfg.max_subscribers {
            self.reject(from, RejectReason::Full);
            return;
        }
        if !known {
            if self.streams.len() >= self.cfg.max_streams {
                self.reject(from, RejectReason::Full);
                return;
            }
            let Some(up) = self.cfg.upstream else { return };
            let s = Stream::new(
                &name,
                Origin::Upstream(Box::new(Subscription::new(up, &name, 0))),
                &self.cfg,
            );
            self.streams.push(s);
        }
        self.insert_subscriber(now, from, &name, max_kbps, false);
    }

    fn reject(&mut self, to: SocketAddr, reason: RejectReason) {
        let seq = self.next_ctrl_seq();
        self.send_control(
            to,
            Packet::new(PacketType::Reject, 0, seq, Body::Reject { reason }).encode(),
        );
        self.stats.rejects_sent += 1;
    }

    fn on_nack(&mut self, now: Instant, from: SocketAddr, flow: Flow, ranges: &[NackRange]) {
        let Some(sub) = self.subs.get(&from) else {
            self.stats.unknown_sender += 1;
            return;
        };
        let Some(idx) = self.streams.iter().position(|s| s.name == sub.stream) else {
            return;
        };
        let mut hits: Vec<Bytes> = Vec::new();
        let mut ask: Vec<SeqNo> = Vec::new();
        let mut misses = 0;
        let s = &mut self.streams[idx];
        let origin_remote = s.origin.addr().is_some();
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
        let mut forward: Vec<SeqNo> = Vec::new();
        let s = &mut self.streams[idx];
        for seq in ask {
            if s.pending.len() >= MAX_PENDING && !s.pending.contains_key(&(flow, seq)) {
                self.stats.cache_misses += 1;
                continue;
            }
            let e = s.pending.entry((flow, seq)).or_insert(PendingRtx {
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
                let seq = self.next_ctrl_seq();
                let p = Packet::new(
                    PacketType::Nack,
                    ssrc,
                    seq,
                    Body::Nack {
                        flow,
                        ranges: chunk.to_vec(),
                    },
                );
                let d = p.encode();
                if self.streams[idx].may_send_origin(d.len()) {
                    self.send_control(origin, d);
                } else {
                    self.stats.origin_budget_exceeded += 1;
                }
            }
        }
        self.stats.cache_hits += hits.len() as u64;
        self.stats.retransmits_sent += hits.len() as u64;
        for d in hits.into_iter().rev() {
            self.enqueue(
                from,
                Queued {
                    datagram: d,
                    frame: None,
                },
                true,
            );
        }
    }

    fn housekeeping(&mut self, now: Instant) {
        // Evict silent subscribers (§6.4).
        let timeout = self.cfg.subscriber_timeout;
        let gone: Vec<SocketAddr> = self
            .subs
            .iter()
            .filter(|(_, s)| !s.permanent && now.saturating_duration_since(s.last_heard) > timeout)
            .map(|(a, _)| *a)
            .collect();
        for a in gone {
            self.remove_subscriber(&a);
            self.stats.evicted += 1;
        }
        let ptimeout = self.cfg.publisher_timeout;
        let mut byes = Vec::new();
        self.streams.retain_mut(|s| {
            s.pending
                .retain(|_, p| now.saturating_duration_since(p.asked_at) < PENDING_MAX_AGE);
            if s.members.is_empty() {
                let since = *s.idle_since.get_or_insert(now);
                if let Origin::Upstream(sub) = &mut s.origin {
                    if now.saturating_duration_since(since) > timeout {
                        byes.push((sub.server(), sub.bye()));
                        return false;
                    }
                }
                if let Origin::Publisher(_) = s.origin {
                    // A stream nobody publishes or watches any more.
                    if s.last_heard
                        .is_none_or(|t| now.saturating_duration_since(t) > ptimeout)
                        && now.saturating_duration_since(since) > timeout
                    {
                        return false;
                    }
                }
            }
            true
        });
        for (to, b) in byes {
            self.send_control(to, b);
        }
    }

    fn poll_own_nacks(&mut self, now: Instant) {
        let mut out = Vec::new();
        for (idx, s) in self.streams.iter_mut().enumerate() {
            let Some(origin) = s.origin.addr() else {
                continue;
            };
            let rtt = s.rtt();
            let ssrc = s.ssrc.unwrap_or(0);
            for flow in [Flow::Video, Flow::Audio] {
                let tracker = match flow {
                    Flow::Video => &mut s.video_loss,
                    Flow::Audio => &mut s.audio_loss,
                };
                let ranges = tracker.poll_nack(now, &rtt);
                for chunk in ranges.chunks(wire::MAX_NACK_RANGES) {
                    out.push((idx, origin, ssrc, flow, chunk.to_vec()));
                }
            }
        }
        for (idx, origin, ssrc, flow, ranges) in out {
            let n = ranges.iter().map(|r| r.len as u64).sum::<u64>();
            let seq = self.next_ctrl_seq();
            let d = Packet::new(PacketType::Nack, ssrc, seq, Body::Nack { flow, ranges }).encode();
            if self.streams[idx].may_send_origin(d.len()) {
                self.stats.upstream_requests += n;
                self.send_control(origin, d);
            } else {
                self.stats.origin_budget_exceeded += 1;
            }
        }
    }

    fn wake_blocked(&mut self, now: Instant) {
        // Wake rate-limited subscribers whose tokens refilled.
        let mut still = Vec::new();
        for (t, a) in std::mem::take(&mut self.blocked) {
            if t <= now {
                if let Some(s) = self.subs.get_mut(&a) {
                    if !s.in_ready && !s.queue.is_empty() {
                        s.in_ready = true;
                        self.ready.push_back(a);
                    }
                }
            } else {
                still.push((t, a));
            }
        }
        self.blocked = still;
    }

    fn find_origin(&self, from: SocketAddr, ssrc: u32, name: Option<&str>) -> Option<usize> {
        self.streams.iter().position(|s| {
            s.origin.addr() == Some(from)
                && match name {
                    Some(n) => s.name == n,
                    None => s.ssrc.is_none() || s.ssrc == Some(ssrc),
                }
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

impl Node for Relay {
    fn handle_datagram(&mut self, now: Instant, from: SocketAddr, datagram: &[u8]) {
        let now = self.now(now);
        self.stats.datagrams_in += 1;
        self.stats.bytes_in += datagram.len() as u64;
        let datagram = Bytes::copy_from_slice(datagram);
        let p = match Packet::decode(&datagram) {
            Ok(p) => p,
            Err(e) => {
                *self.stats.malformed.entry(e.reason().into()).or_default() += 1;
                return;
            }
        };
        let ssrc = p.header.ssrc;
        match &p.body {
            Body::Video(_) | Body::Audio(_) => match self.find_origin(from, ssrc, None) {
                Some(idx) => {
                    if let Origin::Upstream(sub) = &mut self.streams[idx].origin {
                        sub.on_traffic(now);
                    }
                    self.on_media(now, idx, p, datagram)
                }
                None => self.stats.unknown_sender += 1,
            },
            Body::Description(d) => {
                let idx = match self.find_origin(from, ssrc, Some(&d.name)) {
                    Some(i) => Some(i),
                    None => {
                        // A push publisher announcing (or taking over a stale) stream.
                        let ptimeout = self.cfg.publisher_timeout;
                        match self.streams.iter().position(|s| s.name == d.name) {
                            Some(i) => {
                                let s = &mut self.streams[i];
                                let stale = match s.origin {
                                    Origin::Publisher(_) => s.last_heard.is_none_or(|t| {
                                        now.saturating_duration_since(t) > ptimeout
                                    }),
                                    _ => false,
                                };
                                if stale {
                                    s.origin = Origin::Publisher(from);
                                    // The new address earns its own byte budget (§8).
                                    s.origin_in = 0;
                                    s.origin_out = 0;
                                    Some(i)
                                } else {
                                    None
                                }
                            }
                            None if self.streams.len() < self.cfg.max_streams => {
                                self.streams.push(Stream::new(
                                    &d.name,
                                    Origin::Publisher(from),
                                    &self.cfg,
                                ));
                                Some(self.streams.len() - 1)
                            }
                            None => None,
                        }
                    }
                };
                match idx {
                    Some(i) => {
                        if let Origin::Upstream(sub) = &mut self.streams[i].origin {
                            sub.on_traffic(now);
                        }
                        self.on_media(now, i, p, datagram)
                    }
                    None => self.stats.unknown_sender += 1,
                }
            }
            Body::Subscribe {
                name,
                token,
                max_kbps,
            } => {
                let (name, token, max_kbps) = (name.clone(), token.clone(), *max_kbps);
                self.on_subscribe(now, from, name, token, max_kbps)
            }
            Body::KeepAlive { echo_us } => match self.subs.get_mut(&from) {
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
                if self.subs.get(&from).is_some_and(|s| !s.permanent) {
                    self.remove_subscriber(&from);
                    self.stats.byes += 1;
                } else {
                    self.stats.unknown_sender += 1;
                }
            }
            Body::Nack { flow, ranges } => {
                let (flow, ranges) = (*flow, ranges.clone());
                self.on_nack(now, from, flow, &ranges)
            }
            Body::ReceiverReport(r) => match self.subs.get_mut(&from) {
                Some(s) => {
                    s.last_heard = now;
                    s.report = Some(*r);
                    self.stats.reports += 1;
                }
                None => self.stats.unknown_sender += 1,
            },
            Body::Retry { .. } | Body::Reject { .. } | Body::KeepAliveAck { .. } => {
                let mut handled = false;
                for s in &mut self.streams {
                    if let Origin::Upstream(sub) = &mut s.origin {
                        if sub.server() == from {
                            handled |= sub.handle_control(now, &p);
                        }
                    }
                }
                if !handled {
                    self.stats.unknown_sender += 1;
                }
            }
        }
    }

    fn handle_timeout(&mut self, now: Instant) {
        let now = self.now(now);
        self.wake_blocked(now);
        self.poll_own_nacks(now);
        if self.next_housekeeping.is_some_and(|t| t <= now) {
            self.next_housekeeping = Some(now + HOUSEKEEPING);
            self.housekeeping(now);
        }
    }

    fn poll_timeout(&self) -> Option<Instant> {
        let mut t = self.next_housekeeping;
        for s in &self.streams {
            if let Origin::Upstream(sub) = &s.origin {
                t = soonest(t, sub.poll_timeout());
            }
        }
        for (b, _) in &self.blocked {
            t = soonest(t, Some(*b));
        }
        for s in &self.streams {
            if s.origin.addr().is_some() {
                t = soonest(t, s.video_loss.poll_timeout());
                t = soonest(t, s.audio_loss.poll_timeout());
            }
        }
        t
    }

    fn poll_transmit(&mut self, now: Instant) -> Option<Transmit> {
        let now = self.now(now);
        // Upstream subscriptions' own control traffic.
        for s in &mut self.streams {
            if let Origin::Upstream(sub) = &mut s.origin {
                if let Some(payload) = sub.poll_transmit(now) {
                    self.control.push_back(Transmit {
                        dest: sub.server(),
                        payload,
                    });
                }
            }
        }
        let t = if let Some(t) = self.control.pop_front() {
            t
        } else {
            let mut found = None;
            for _ in 0..self.ready.len() {
                let addr = self.ready.pop_front()?;
                let Some(sub) = self.subs.get_mut(&addr) else {
                    continue;
                };
                let Some(front_len) = sub.queue.front().map(|q| q.datagram.len()) else {
                    sub.in_ready = false;
                    continue;
                };
                if let Some(b) = &mut sub.bucket {
                    let dt = now.saturating_duration_since(b.last).as_secs_f64();
                    b.tokens = (b.tokens + dt * b.rate).min(b.burst);
                    b.last = now;
                    // The bucket may go into debt by one datagram; it sends again once
                    // the debt is repaid, so the long-run rate is exact.
                    if b.tokens <= 0.0 {
                        let wait = Duration::from_secs_f64(-b.tokens / b.rate)
                            .max(Duration::from_micros(100));
                        sub.in_ready = false;
                        self.blocked.push((now + wait, addr));
                        continue;
                    }
                    b.tokens -= front_len as f64;
                }
                let Some(q) = sub.queue.pop_front() else {
                    continue;
                };
                sub.queued_bytes -= q.datagram.len();
                if sub.queue.is_empty() {
                    sub.in_ready = false;
                } else {
                    self.ready.push_back(addr);
                }
                found = Some(Transmit {
                    dest: addr,
                    payload: q.datagram,
                });
                break;
            }
            found?
        };
        self.stats.datagrams_out += 1;
        self.stats.bytes_out += t.payload.len() as u64;
        Some(t)
    }
}
