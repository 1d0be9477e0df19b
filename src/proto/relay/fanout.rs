//! Fan-out (proto-spec.md §7.3): one queue per subscriber, bounded in bytes and in time,
//! served in turns (the subscriber whose latest frame started longest ago first), a turn
//! being what it has queued of one frame, back to back, up to
//! [`RUN_MAX`] datagrams (a SKIP notice, §6.10, costs no turn). A queue over its byte bound drops whole frames, oldest first, for that
//! subscriber only; a frame that waited longer than the subscriber's share of its latency
//! budget before its first chunk could go out is skipped whole (§7.3, overload; one started is cut
//! short only once its rest could no longer arrive before its playout), so that when
//! the relay or one subscriber's path cannot keep up the frame rate drops and the newest frame
//! wins instead of every frame arriving late. A subscriber that asked for a rate cap
//! (`max_kbps`, §6.2) is held back by the shared [`TokenBucket`].
//!
//! A stream's video chunks are not copied into the queues: each subscriber queues a run of
//! sequence numbers, read from the stream's retransmission cache (one shared buffer per
//! datagram for every subscriber) only when a datagram goes out. Queuing a chunk for a
//! subscriber costs a comparison and an increment, and a frame skipped under overload costs
//! nothing more, so an overloaded relay spends its CPU on what it sends.

use std::collections::{BTreeSet, VecDeque};

use foldhash::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::proto::node::Transmit;
use crate::proto::pacer::TokenBucket;
use crate::proto::wire::{
    Body, FLAG_REPLAY, Packet, PacketType, ReceiverReport, SKIP_QUIET, SeqNo,
};

use super::stats::OverloadLimit;

/// The share of a subscriber's playout latency its frames may spend in the relay: 1/2, from
/// entering its queue to their last datagram going out (§7.3). A frame may wait before its
/// first datagram goes out for this budget less the time its recent frames took to go out
/// whole, so a relay that stalls for a while keeps its frames, and one that has fallen behind
/// skips them before they could arrive late.
pub(super) const RELAY_SHARE: u32 = 2;
/// The wait before its first datagram a frame is always allowed: 1/8 of the latency, and at
/// least [`MIN_WAIT`].
pub(super) const MIN_WAIT_SHARE: u32 = 8;
/// The least wait a frame is allowed before its first datagram, whatever the latency: a
/// viewer whose latency is too low for the path must see its frames arrive late, and raise
/// its latency (§7.2), rather than see them vanish as loss.
pub(super) const MIN_WAIT: Duration = Duration::from_millis(10);
/// The latency assumed for a subscriber that stated none (the viewer's default, §7.2).
pub(super) const DEFAULT_LATENCY: Duration = Duration::from_millis(100);
/// A send the socket refused (EAGAIN/ENOBUFS) names the socket buffer as the limit for this
/// long.
const PRESSURE_MEMORY: Duration = Duration::from_secs(1);
/// Most datagrams of one frame a subscriber's turn sends back to back: under overload each
/// subscriber's frame then goes out in well under a millisecond instead of being spread over
/// the time the relay takes to serve every subscriber (which the frame would spend late), and
/// its datagrams leave as GSO super-datagrams.
pub(super) const RUN_MAX: u16 = 64;
/// Frames remembered per subscriber as started (never to be skipped).
const STARTED_MEMORY: usize = 8;
/// Frames skipped per subscriber remembered, so that its requests for them go unanswered.
const SKIPPED_MEMORY: usize = 64;

/// Where the bytes of a queued entry are.
#[derive(Debug)]
enum Payload {
    /// One datagram of its own (descriptions, audio, answers, parity, replays, notices).
    Owned(Bytes),
    /// `count` consecutive video datagrams from `first`, in the retransmission cache of the
    /// stream whose [`Cached::stream`] id is `stream`: read when they go out.
    Cached {
        stream: u64,
        first: SeqNo,
        count: u32,
    },
}

/// The datagram under `seq` in the video cache of stream `stream` (an id, stable while the
/// stream lives), if it is still there: what [`Fanout::pop_with`] reads queued runs with.
pub(super) trait Cached {
    fn cached(&self, stream: u64, seq: SeqNo) -> Option<Bytes>;
}

/// No cache: every queued run is gone (tests of owned datagrams).
#[cfg(test)]
pub(super) struct NoCache;

#[cfg(test)]
impl Cached for NoCache {
    fn cached(&self, _: u64, _: SeqNo) -> Option<Bytes> {
        None
    }
}

/// One datagram (or a run of cached ones) queued for a subscriber, tagged with its frame id
/// when it is a chunk that may be dropped with its frame.
#[derive(Debug)]
pub(super) struct Queued {
    payload: Payload,
    /// Its bytes: the datagram's, or the whole run's.
    bytes: usize,
    pub(super) frame: Option<u32>,
    /// When it was queued (set by [`Fanout::enqueue`]); a run's first datagram's.
    at: Option<Instant>,
    /// A SKIP notice (§6.10): it goes out without costing the subscriber its turn.
    notice: bool,
}

impl Queued {
    /// A datagram that is never dropped with a frame (description, audio, answers).
    pub(super) fn single(datagram: Bytes) -> Queued {
        Queued {
            bytes: datagram.len(),
            payload: Payload::Owned(datagram),
            frame: None,
            at: None,
            notice: false,
        }
    }

    /// A datagram of frame `frame` (a chunk or its parity), dropped or skipped with it.
    pub(super) fn of_frame(datagram: Bytes, frame: u32) -> Queued {
        Queued {
            frame: Some(frame),
            ..Queued::single(datagram)
        }
    }

    /// Datagrams it stands for.
    fn datagrams(&self) -> usize {
        match self.payload {
            Payload::Owned(_) => 1,
            Payload::Cached { count, .. } => count as usize,
        }
    }
}

/// One subscriber.
#[derive(Debug)]
pub(super) struct Subscriber {
    pub(super) stream: String,
    queue: VecDeque<Queued>,
    queued_bytes: usize,
    pub(super) last_heard: Instant,
    pub(super) permanent: bool,
    in_ready: bool,
    bucket: Option<TokenBucket>,
    skip_frame: Option<u32>,
    pub(super) report: Option<ReceiverReport>,
    pub(super) frames_dropped: u64,
    /// Whole frames skipped because they waited longer than its queue-delay budget.
    pub(super) frames_skipped: u64,
    /// The frame whose chunks are going out: it is sent whole, never cut short.
    sending: Option<u32>,
    /// Datagrams sent back to back in its current turn.
    run: u16,
    /// When its latest frame started going out (when it subscribed, before any): the
    /// schedule serves the subscriber whose frame started longest ago first, so that under
    /// overload the frames that go out, and the skips, go round evenly.
    last_turn: Instant,
    /// Its place in [`Fanout::ready`] while `in_ready`: (`last_turn`, insertion count).
    ready_key: (Instant, u64),
    /// Turns that sent a datagram of no frame since its latest frame started.
    loose: u16,
    /// The latest frames any datagram of which went out (a frame's late parity may follow
    /// the next frame's first chunks): none of them is skipped, so none is cut short.
    started: VecDeque<u32>,
    /// When the first datagram of the frame going out was sent, and when its latest; the
    /// first moved on by each time its queue ran dry before the frame's next chunk came
    /// (the publisher paces a frame's chunks over its interval: that is not the relay's).
    sending_since: Option<(Instant, Instant)>,
    /// How long its recent frames took from first datagram out to last, while queued: the
    /// largest at once, decaying by 1/8 a frame.
    send_span: Duration,
    /// Its rate cap held it back since its queue was last empty (a slow subscriber).
    rate_limited: bool,
    /// The latest frames skipped for it: (frame id, sequence number of chunk 0, chunks).
    skipped: VecDeque<(u32, u32, u16)>,
    /// When it last had a frame skipped.
    skipped_at: Option<Instant>,
    /// The playout latency it stated in its SUBSCRIBE, ms (0: not stated).
    pub(super) latency_ms: u16,
    /// (chunk count, proactive parity) last sized for its path; cleared when its report or
    /// latency changes.
    pub(super) proactive_memo: Option<(usize, usize)>,
}

impl Subscriber {
    /// Datagrams queued.
    pub(super) fn queued(&self) -> usize {
        self.queue.iter().map(Queued::datagrams).sum()
    }

    /// Bytes queued.
    pub(super) fn queued_bytes(&self) -> usize {
        self.queued_bytes
    }

    /// The playout latency it stated (§6.2), or [`DEFAULT_LATENCY`].
    pub(super) fn latency(&self) -> Duration {
        match self.latency_ms {
            0 => DEFAULT_LATENCY,
            ms => Duration::from_millis(ms.into()),
        }
    }

    /// The longest a frame may wait in its queue before its first chunk goes out (§7.3):
    /// half its latency less the time its recent frames took to go out, at least an eighth.
    pub(super) fn queue_delay_budget(&self) -> Duration {
        let latency = self.latency();
        let latest = self.sending_since.map_or(Duration::ZERO, |(first, last)| {
            last.saturating_duration_since(first)
        });
        (latency / RELAY_SHARE)
            .saturating_sub(self.send_span.max(latest))
            .max(latency / MIN_WAIT_SHARE)
            .max(MIN_WAIT)
    }

    /// Notes that a datagram of frame `f` went out at `now`, measuring how long frames take
    /// to go out whole. A late joiner's replayed frame (`replay`, §7.4) is not measured: it
    /// goes out to every joiner at once, so its span says how many joined, not how fast
    /// this subscriber's frames leave.
    fn sent_of_frame(&mut self, f: u32, now: Instant, replay: bool) {
        // The frame of the last datagram is the usual case: no need to search.
        if self.started.back() != Some(&f) && !self.started.contains(&f) {
            if self.started.len() >= STARTED_MEMORY {
                self.started.pop_front();
            }
            self.started.push_back(f);
        }
        if self.sending == Some(f) {
            if let Some((_, last)) = &mut self.sending_since {
                *last = now;
            }
            return;
        }
        if let Some((first, last)) = self.sending_since {
            let span = last.saturating_duration_since(first);
            self.send_span = if span >= self.send_span {
                span
            } else {
                (self.send_span * 7 + span) / 8
            };
        }
        self.sending = Some(f);
        self.sending_since = (!replay).then_some((now, now));
        self.last_turn = now;
        self.loose = 0;
    }

    /// Whether a frame was skipped for it recently (within a second of `now`).
    pub(super) fn skipping(&self, now: Instant) -> bool {
        self.skipped_at
            .is_some_and(|t| now.saturating_duration_since(t) < SKIP_QUIET)
    }

    /// Whether video sequence number `seq` (wire form) belongs to a frame skipped for it:
    /// a request for it is not answered (§7.3).
    pub(super) fn skipped_seq(&self, seq: u32) -> bool {
        self.skipped
            .iter()
            .any(|&(_, base, n)| seq.wrapping_sub(base) < u32::from(n))
    }

    /// Whether video datagram `seq` (extended) of the stream whose cache key is `stream` is
    /// still queued for it, not yet sent.
    pub(super) fn queued_seq(&self, stream: u64, seq: u64) -> bool {
        self.queue.iter().any(|q| match q.payload {
            Payload::Cached {
                stream: s,
                first,
                count,
            } => s == stream && seq >= first.0 && seq < first.0 + u64::from(count),
            Payload::Owned(_) => false,
        })
    }

    /// Whether chunks of frame `f` are still queued for it, not yet sent.
    pub(super) fn queued_frame(&self, f: u32) -> bool {
        self.queue
            .iter()
            .any(|q| q.frame == Some(f) && matches!(q.payload, Payload::Cached { .. }))
    }

    /// Whether frame `f` was skipped for it.
    pub(super) fn skipped_frame(&self, f: u32) -> bool {
        self.skipped.iter().any(|&(id, _, _)| id == f)
    }

    /// Drops every queued datagram of frame `f` and the rest of it when it arrives.
    fn drop_frame(&mut self, f: u32) -> u64 {
        let mut dropped = 0;
        self.queue.retain(|e| {
            let keep = e.frame != Some(f);
            if !keep {
                dropped += e.datagrams() as u64;
                self.queued_bytes -= e.bytes;
            }
            keep
        });
        self.skip_frame = Some(f);
        dropped
    }
}

/// What the queues dropped, in all.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Drops {
    /// Whole frames dropped for the byte bound.
    pub(super) frames: u64,
    /// Datagrams (of dropped and skipped frames).
    pub(super) datagrams: u64,
    /// Whole frames skipped for the time bound, by the limit that was hit: relay CPU,
    /// socket buffer, one slow subscriber.
    pub(super) skipped: [u64; 3],
}

impl Drops {
    /// Frames skipped for `limit`.
    pub(super) fn skipped(&self, limit: OverloadLimit) -> u64 {
        self.skipped[limit as usize]
    }
}

/// Every subscriber's queue and the schedule of turns over them.
#[derive(Debug)]
pub(super) struct Fanout {
    /// Looked up two or three times per datagram sent: foldhash costs a fraction of std's
    /// SipHash there, and is seeded per process like std's.
    subs: HashMap<SocketAddr, Subscriber>,
    /// Subscribers with something queued and not rate-blocked, in service order: the one
    /// whose latest frame started going out longest ago first (its `last_turn`), then in the
    /// order they became ready. A subscriber that was skipped, or joined, keeps its place.
    ready: BTreeSet<(Instant, u64, SocketAddr)>,
    /// Entries ever put in `ready` (ties broken first come, first served).
    readied: u64,
    /// Subscribers whose turn goes on: the rest of a frame that started going out to them.
    /// Served before `ready`.
    urgent: VecDeque<SocketAddr>,
    /// Rate-blocked subscribers and when their bucket allows them again.
    blocked: Vec<(Instant, SocketAddr)>,
    queue_bytes: usize,
    pub(super) drops: Drops,
    /// The latest input's time: what [`Fanout::enqueue`] stamps queued frames with.
    now: Option<Instant>,
    /// When the driver last said the socket refused a send.
    send_blocked_at: Option<Instant>,
    /// The latest frame skip: when, and the limit that was hit.
    pub(super) last_skip: Option<(Instant, OverloadLimit)>,
}

impl Fanout {
    /// Queues of at most `queue_bytes` bytes each.
    pub(super) fn new(queue_bytes: usize) -> Fanout {
        Fanout {
            subs: HashMap::default(),
            ready: BTreeSet::new(),
            readied: 0,
            urgent: VecDeque::new(),
            blocked: Vec::new(),
            queue_bytes,
            drops: Drops::default(),
            now: None,
            send_blocked_at: None,
            last_skip: None,
        }
    }

    /// The time of the input being handled (stamps what is queued).
    pub(super) fn set_now(&mut self, now: Instant) {
        self.now = Some(now);
    }

    /// What [`Fanout::set_now`] set last: the time new queue entries are stamped with.
    pub(super) fn now(&self) -> Option<Instant> {
        self.now
    }

    /// The driver's socket refused a send at `now` (EAGAIN/ENOBUFS): skips in the next
    /// [`PRESSURE_MEMORY`] are put down to the socket buffer.
    pub(super) fn on_send_blocked(&mut self, now: Instant) {
        self.send_blocked_at = Some(now);
    }

    /// Adds a subscriber of `stream` with an empty queue, capped at `max_kbps` (0: no
    /// cap). Returns the subscriber it replaced at that address.
    pub(super) fn insert(
        &mut self,
        now: Instant,
        addr: SocketAddr,
        stream: &str,
        max_kbps: u32,
        permanent: bool,
    ) -> Option<Subscriber> {
        let old = self.remove(&addr);
        self.subs.insert(
            addr,
            Subscriber {
                stream: stream.to_owned(),
                queue: VecDeque::new(),
                queued_bytes: 0,
                last_heard: now,
                permanent,
                in_ready: false,
                bucket: (max_kbps > 0).then(|| TokenBucket::for_kbps(now, max_kbps)),
                skip_frame: None,
                report: None,
                frames_dropped: 0,
                frames_skipped: 0,
                sending: None,
                run: 0,
                last_turn: now,
                ready_key: (now, 0),
                loose: 0,
                started: VecDeque::new(),
                sending_since: None,
                send_span: Duration::ZERO,
                rate_limited: false,
                skipped: VecDeque::new(),
                skipped_at: None,
                latency_ms: 0,
                proactive_memo: None,
            },
        );
        old
    }

    /// Removes a subscriber (its stale entries in `ready` are skipped later).
    pub(super) fn remove(&mut self, addr: &SocketAddr) -> Option<Subscriber> {
        self.urgent.retain(|a| a != addr);
        self.subs.remove(addr)
    }

    pub(super) fn get(&self, addr: &SocketAddr) -> Option<&Subscriber> {
        self.subs.get(addr)
    }

    pub(super) fn get_mut(&mut self, addr: &SocketAddr) -> Option<&mut Subscriber> {
        self.subs.get_mut(addr)
    }

    pub(super) fn len(&self) -> usize {
        self.subs.len()
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = (&SocketAddr, &Subscriber)> {
        self.subs.iter()
    }

    /// Bytes queued over all subscribers.
    pub(super) fn queued_bytes(&self) -> usize {
        self.subs.values().map(|s| s.queued_bytes).sum()
    }

    /// Queues a datagram for one subscriber, at the front for answers that should overtake
    /// media. On overflow drops the oldest whole frames for that subscriber only, and the
    /// rest of a dropped frame when it arrives (§7.3).
    pub(super) fn enqueue(&mut self, addr: SocketAddr, mut q: Queued, front: bool) {
        let cap = self.queue_bytes;
        q.at = self.now;
        let Some(sub) = self.subs.get_mut(&addr) else {
            return;
        };
        if q.frame.is_some() && q.frame == sub.skip_frame {
            self.drops.datagrams += 1;
            return;
        }
        while sub.queued_bytes + q.bytes > cap {
            let Some(old) = sub.queue.pop_front() else {
                break;
            };
            sub.queued_bytes -= old.bytes;
            self.drops.datagrams += old.datagrams() as u64;
            if let Some(f) = old.frame {
                self.drops.datagrams += sub.drop_frame(f);
                sub.frames_dropped += 1;
                self.drops.frames += 1;
            }
        }
        if q.frame.is_some() && q.frame == sub.skip_frame {
            self.drops.datagrams += 1;
            return;
        }
        if sub.queue.is_empty() && q.frame.is_some() && q.frame == sub.sending {
            // The rest of a frame going out, after its queue ran dry: the relay kept up, and
            // the gap is the publisher's pacing, not time the frame spent in the relay.
            if let (Some((first, last)), Some(now)) = (&mut sub.sending_since, self.now) {
                *first += now.saturating_duration_since(*last);
            }
        }
        sub.queued_bytes += q.bytes;
        let q_frame = q.frame;
        if front {
            sub.queue.push_front(q);
        } else {
            sub.queue.push_back(q);
        }
        if !sub.in_ready {
            sub.in_ready = true;
            if q_frame.is_some() && q_frame == sub.sending {
                // The rest of a frame that started going out goes first: a frame is sent
                // whole, and spread over every other subscriber's turn it would be late.
                self.urgent.push_back(addr);
            } else {
                self.schedule(addr);
            }
        }
    }

    /// Queues one datagram for every address in `members`.
    pub(super) fn broadcast(
        &mut self,
        members: &[SocketAddr],
        datagram: &Bytes,
        frame: Option<u32>,
    ) {
        for m in members {
            self.enqueue(
                *m,
                Queued {
                    frame,
                    ..Queued::single(datagram.clone())
                },
                false,
            );
        }
    }

    /// Queues video datagram `seq` of frame `frame`, `len` bytes, held in the video cache of
    /// stream `stream` (see [`Cached`]), for every address in `members`: it joins the
    /// subscriber's run of that frame where it follows it, so no datagram is copied or
    /// counted per subscriber.
    pub(super) fn broadcast_cached(
        &mut self,
        members: &[SocketAddr],
        stream: u64,
        seq: SeqNo,
        len: usize,
        frame: u32,
    ) {
        let now = self.now;
        for m in members {
            let Some(sub) = self.subs.get_mut(m) else {
                continue;
            };
            if let Some(back) = sub.queue.back_mut() {
                if let Payload::Cached {
                    stream: s,
                    first,
                    count,
                } = &mut back.payload
                {
                    if *s == stream
                        && back.frame == Some(frame)
                        && first.0 + u64::from(*count) == seq.0
                        && sub.queued_bytes + len <= self.queue_bytes
                    {
                        *count += 1;
                        back.bytes += len;
                        sub.queued_bytes += len;
                        continue;
                    }
                }
            }
            let q = Queued {
                payload: Payload::Cached {
                    stream,
                    first: seq,
                    count: 1,
                },
                bytes: len,
                frame: Some(frame),
                at: now,
                notice: false,
            };
            self.enqueue(*m, q, false);
        }
    }

    /// [`Fanout::pop_with`] with no cache (tests of owned datagrams).
    #[cfg(test)]
    pub(super) fn pop(&mut self, now: Instant) -> Option<Transmit> {
        self.pop_with(now, &NoCache)
    }

    /// The next datagram to send at `now`, in turns over the subscribers, queued runs read
    /// from `cache`. A subscriber out of tokens is set aside until [`Fanout::next_wake`].
    /// Frames that waited past the subscriber's queue-delay budget before their first chunk
    /// went out are skipped whole; a queued datagram no longer cached (the stream's source
    /// changed, or it aged out) is dropped.
    pub(super) fn pop_with(&mut self, now: Instant, cache: &impl Cached) -> Option<Transmit> {
        for _ in 0..self.ready.len() + self.urgent.len() {
            let addr = match self.urgent.pop_front() {
                Some(a) => a,
                None => {
                    let (t, n, a) = self.ready.pop_first()?;
                    let current = self
                        .subs
                        .get(&a)
                        .is_some_and(|s| s.in_ready && s.ready_key == (t, n));
                    if !current {
                        // A subscriber removed, or one re-added since at this address.
                        continue;
                    }
                    a
                }
            };
            let Some(sub) = self.subs.get_mut(&addr) else {
                continue;
            };
            // Skip stale frames not yet started (the newest frame wins; never half a frame),
            // and tell the subscriber (SKIP, §6.10).
            let budget = sub.queue_delay_budget();
            let mut notices: Vec<Bytes> = Vec::new();
            while let Some(&Queued {
                frame: Some(f),
                at: Some(at),
                ..
            }) = sub.queue.front()
            {
                let age = now.saturating_duration_since(at);
                let span = || {
                    sub.queue.front().and_then(|q| match &q.payload {
                        Payload::Owned(d) => chunk_span(d),
                        Payload::Cached { stream, first, .. } => {
                            chunk_span(&cache.cached(*stream, *first)?)
                        }
                    })
                };
                if sub.sending == Some(f) || sub.started.contains(&f) {
                    // A frame started goes out whole, unless the relay stalled so long with
                    // it that its rest could only arrive after its playout: then it is cut
                    // short and skipped, rather than played late. Only its chunks count: what
                    // trails a frame sent whole (its parity) is no frame to skip.
                    if age < sub.latency() || span().is_none() {
                        break;
                    }
                } else if age <= budget && !(sub.skipping(now) && whole_newer_queued(sub, f, cache))
                {
                    // In time, unless frames are being skipped for it already and a newer
                    // frame is queued whole behind: then the newest wins at once (it costs
                    // the same turn, and an older frame sent is the one a stall would make
                    // late).
                    break;
                }
                let rate_limited = sub.rate_limited;
                if let Some((ssrc, base, n)) = span() {
                    if sub.skipped.len() >= SKIPPED_MEMORY {
                        sub.skipped.pop_front();
                    }
                    sub.skipped.push_back((f, base, n));
                    notices.push(skip_notice(ssrc, sub.frames_skipped as u32, f, base, n));
                }
                sub.skipped_at = Some(now);
                self.drops.datagrams += sub.drop_frame(f);
                sub.frames_skipped += 1;
                let limit = limit_hit(now, rate_limited, self.send_blocked_at);
                self.drops.skipped[limit as usize] += 1;
                self.last_skip = Some((now, limit));
            }
            // Ahead of what is queued, in the order the frames were skipped.
            for d in notices.into_iter().rev() {
                sub.queued_bytes += d.len();
                sub.queue.push_front(Queued {
                    notice: true,
                    ..Queued::single(d)
                });
            }
            // The front datagram, read from the cache for a run (what is gone is dropped).
            let datagram = loop {
                let Some(front) = sub.queue.front_mut() else {
                    break None;
                };
                let cached = match &front.payload {
                    Payload::Owned(d) => break Some(d.clone()),
                    Payload::Cached { stream, first, .. } => cache.cached(*stream, *first),
                };
                if cached.is_some() {
                    break cached;
                }
                self.drops.datagrams += 1;
                take_one(sub, 0);
            };
            let Some(datagram) = datagram else {
                sub.in_ready = false;
                sub.rate_limited = false;
                continue;
            };
            let front_len = datagram.len();
            if let Some(b) = &mut sub.bucket {
                if let Err(retry) = b.take(now, front_len) {
                    sub.in_ready = false;
                    sub.rate_limited = true;
                    self.blocked.push((retry, addr));
                    continue;
                }
            }
            let Some((frame, notice)) = take_one(sub, front_len) else {
                sub.in_ready = false;
                continue;
            };
            if let Some(f) = frame {
                let replay = datagram.get(4).is_some_and(|&b| b & FLAG_REPLAY != 0);
                sub.sent_of_frame(f, now, replay);
            }
            if !notice {
                sub.run = sub.run.saturating_add(1);
            }
            let same_frame = frame.is_some() && sub.queue.front().is_some_and(|q| q.frame == frame);
            if sub.queue.is_empty() {
                sub.in_ready = false;
                sub.rate_limited = false;
                sub.run = 0;
            } else if notice || (same_frame && sub.run < RUN_MAX) {
                // A skip costs the subscriber no turn, and its turn goes on while the frame
                // does: what is queued after goes next.
                self.urgent.push_front(addr);
            } else {
                if frame.is_none() && !notice {
                    // Turns of datagrams of no frame (audio, answers) keep its place, up to
                    // a turn's worth: then they count as a frame started and its place goes
                    // to the back, so a subscriber with many answers queued cannot take every
                    // turn.
                    sub.loose += 1;
                    if sub.loose >= RUN_MAX {
                        sub.loose = 0;
                        sub.last_turn = now;
                    }
                }
                sub.run = 0;
                self.schedule(addr);
            }
            return Some(Transmit {
                dest: addr,
                payload: datagram,
            });
        }
        None
    }

    /// Puts subscriber `addr` (marked `in_ready`) into [`Fanout::ready`] by its `last_turn`.
    fn schedule(&mut self, addr: SocketAddr) {
        let Some(sub) = self.subs.get_mut(&addr) else {
            return;
        };
        self.readied += 1;
        sub.ready_key = (sub.last_turn, self.readied);
        self.ready.insert((sub.last_turn, self.readied, addr));
    }

    /// Whether some subscriber waits for its rate limit.
    pub(super) fn has_blocked(&self) -> bool {
        !self.blocked.is_empty()
    }

    /// When the first rate-blocked subscriber may send again.
    pub(super) fn next_wake(&self) -> Option<Instant> {
        self.blocked.iter().map(|(t, _)| *t).min()
    }

    /// Puts rate-blocked subscribers whose wait is over back into the schedule.
    pub(super) fn wake(&mut self, now: Instant) {
        let mut still = Vec::new();
        for (t, a) in std::mem::take(&mut self.blocked) {
            if t <= now {
                if let Some(s) = self.subs.get_mut(&a) {
                    if !s.in_ready && !s.queue.is_empty() {
                        s.in_ready = true;
                        self.schedule(a);
                    }
                }
            } else {
                still.push((t, a));
            }
        }
        self.blocked = still;
    }
}

/// Whether every chunk of a frame newer than `f` is queued for `sub` (its chunk count read
/// from the first one queued).
fn whole_newer_queued(sub: &Subscriber, f: u32, cache: &impl Cached) -> bool {
    let mut newer: Option<(u32, usize, Option<u16>)> = None;
    for q in &sub.queue {
        let Some(g) = q.frame else { continue };
        if (g.wrapping_sub(f) as i32) <= 0 {
            continue;
        }
        match &mut newer {
            Some((id, n, _)) if *id == g => *n += q.datagrams(),
            Some(_) => break,
            None => {
                let chunks = match &q.payload {
                    Payload::Owned(d) => chunk_span(d),
                    Payload::Cached { stream, first, .. } => {
                        cache.cached(*stream, *first).and_then(|d| chunk_span(&d))
                    }
                }
                .map(|(_, _, n)| n);
                newer = Some((g, q.datagrams(), chunks));
            }
        }
    }
    newer.is_some_and(|(_, n, chunks)| chunks.is_some_and(|c| n >= usize::from(c)))
}

/// Takes the front datagram off `sub`'s queue (`len` bytes: a run's datagram's, read from the
/// cache; an owned datagram's own are known): returns its frame and whether it is a notice.
fn take_one(sub: &mut Subscriber, len: usize) -> Option<(Option<u32>, bool)> {
    let front = sub.queue.front_mut()?;
    let taken = (front.frame, front.notice);
    if let Payload::Cached { first, count, .. } = &mut front.payload {
        if *count > 1 {
            *first = SeqNo(first.0 + 1);
            *count -= 1;
            let len = len.min(front.bytes);
            front.bytes -= len;
            sub.queued_bytes -= len;
            return Some(taken);
        }
    }
    let q = sub.queue.pop_front()?;
    sub.queued_bytes -= q.bytes;
    Some(taken)
}

/// The source, the sequence number of chunk 0 and the chunk count of the frame a VIDEO
/// datagram belongs to (§5.1: its chunks have consecutive sequence numbers), read from the
/// header.
fn chunk_span(d: &[u8]) -> Option<(u32, u32, u16)> {
    if d.len() < 40 || d[3] != PacketType::Video as u8 {
        return None;
    }
    let ssrc = u32::from_be_bytes(d[8..12].try_into().ok()?);
    let seq = u32::from_be_bytes(d[12..16].try_into().ok()?);
    let index = u16::from_be_bytes(d[36..38].try_into().ok()?);
    let count = u16::from_be_bytes(d[38..40].try_into().ok()?);
    Some((ssrc, seq.wrapping_sub(index.into()), count))
}

/// The SKIP telling a subscriber that frame `frame_id` (chunk 0 at `first_seq`, `chunks`
/// chunks) of source `ssrc` was skipped for it (§6.10); `seq` counts its SKIPs.
fn skip_notice(ssrc: u32, seq: u32, frame_id: u32, first_seq: u32, chunks: u16) -> Bytes {
    Packet::new(
        PacketType::Skip,
        ssrc,
        seq,
        Body::Skip {
            frame_id,
            first_seq,
            chunk_count: chunks.max(1),
        },
    )
    .encode()
}

/// The limit that made a frame skip for a subscriber at `now`: its own rate cap if that held
/// it back, else the socket buffer if the driver's socket refused a send lately, else the
/// relay's CPU.
fn limit_hit(now: Instant, rate_limited: bool, send_blocked_at: Option<Instant>) -> OverloadLimit {
    if rate_limited {
        OverloadLimit::SlowSubscriber
    } else if send_blocked_at.is_some_and(|t| now.saturating_duration_since(t) < PRESSURE_MEMORY) {
        OverloadLimit::SocketBuffer
    } else {
        OverloadLimit::RelayCpu
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn addr(n: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], n))
    }

    fn chunk(frame: u32, byte: u8, len: usize) -> Queued {
        Queued::of_frame(Bytes::from(vec![byte; len]), frame)
    }

    #[test]
    fn overflow_drops_whole_frames_oldest_first() {
        let t0 = Instant::now();
        let mut f = Fanout::new(1000);
        let (a, b) = (addr(1), addr(2));
        f.insert(t0, a, "s", 0, false);
        f.insert(t0, b, "s", 0, false);
        // Frames 1 and 2, 400 bytes each, to both.
        for (frame, byte) in [(1, 1u8), (1, 1), (2, 2), (2, 2)] {
            f.enqueue(a, chunk(frame, byte, 200), false);
            f.enqueue(b, chunk(frame, byte, 200), false);
        }
        // Only `a` gets frame 3: it overflows and loses frame 1, all of it.
        f.enqueue(a, chunk(3, 3, 300), false);
        assert_eq!(f.get(&a).unwrap().queued_bytes(), 700);
        assert_eq!(f.get(&a).unwrap().queued(), 3);
        assert_eq!(f.get(&a).unwrap().frames_dropped, 1);
        assert_eq!(f.get(&b).unwrap().queued_bytes(), 800);
        assert_eq!(
            f.drops,
            Drops {
                frames: 1,
                datagrams: 2,
                skipped: [0; 3],
            }
        );
        // The rest of a dropped frame is dropped when it arrives.
        f.enqueue(a, chunk(1, 1, 10), false);
        assert_eq!(f.drops.datagrams, 3);
        // 400 more bytes push frame 2 (400 bytes) out, whole.
        f.enqueue(a, Queued::single(Bytes::from(vec![9; 400])), false);
        assert_eq!(f.get(&a).unwrap().queued_bytes(), 700);
        assert_eq!(f.drops.datagrams, 5);
        assert_eq!(f.drops.frames, 2);
        let mut out = Vec::new();
        while let Some(t) = f.pop(t0) {
            if t.dest == a {
                out.push(t.payload[0]);
            }
        }
        assert_eq!(out, vec![3, 9]);
        assert_eq!(f.queued_bytes(), 0);
    }

    /// A VIDEO datagram of frame `frame`, chunk `index` of `count`, sequence number `seq`.
    fn video(frame: u32, seq: u32, index: u16, count: u16) -> Queued {
        Queued::of_frame(video_bytes(frame, seq, index, count), frame)
    }

    fn video_bytes(frame: u32, seq: u32, index: u16, count: u16) -> Bytes {
        use crate::proto::wire::{Body, Packet, PacketType, VideoChunk};
        let p = Packet::new(
            PacketType::Video,
            1,
            seq,
            Body::Video(VideoChunk {
                frame_id: frame,
                pts: 0,
                frame_size: 10 * count as u32,
                width: 8,
                height: 8,
                chunk_index: index,
                chunk_count: count,
                offset: 10 * index as u32,
                payload: Bytes::from(vec![0; 10]),
            }),
        );
        p.encode()
    }

    /// The (frame id, first sequence number, chunks) of a SKIP notice (§6.10).
    fn skip_of(t: Option<Transmit>) -> (u32, u32, u16) {
        match Packet::decode(&t.expect("a SKIP").payload).unwrap().body {
            Body::Skip {
                frame_id,
                first_seq,
                chunk_count,
            } => (frame_id, first_seq, chunk_count),
            b => panic!("not a SKIP: {b:?}"),
        }
    }

    /// A fan-out with one subscriber (port 1) that stated 100 ms of latency.
    fn one_subscriber(t0: Instant) -> (Fanout, SocketAddr) {
        let mut f = Fanout::new(1 << 20);
        let a = addr(1);
        f.insert(t0, a, "s", 0, false);
        f.get_mut(&a).unwrap().latency_ms = 100;
        (f, a)
    }

    #[test]
    fn frames_past_the_time_budget_are_skipped_whole_never_cut_short() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        // latency 100 ms stated: a frame may spend 50 ms in the relay.
        let (mut f, a) = one_subscriber(t0);
        f.set_now(t0);
        for i in 0..3 {
            f.enqueue(a, video(1, 10 + i, i as u16, 3), false);
        }
        f.set_now(t0 + ms(20));
        for i in 0..3 {
            f.enqueue(a, video(2, 13 + i, i as u16, 3), false);
        }
        // Frame 1 starts in time; its rest goes out even once it is stale.
        let seq = |t: Transmit| u32::from_be_bytes(t.payload[12..16].try_into().unwrap());
        assert_eq!(f.pop(t0 + ms(25)).map(seq), Some(10));
        assert_eq!(f.pop(t0 + ms(40)).map(seq), Some(11));
        assert_eq!(f.pop(t0 + ms(40)).map(seq), Some(12));
        assert_eq!(f.drops.skipped, [0; 3]);
        // Frame 1 took 15 ms to go out, so frame 2 may wait 35 ms for its first chunk. At
        // 56 ms it has waited 36: skipped whole, and its late chunk too.
        assert_eq!(f.get(&a).unwrap().queue_delay_budget(), ms(35));
        // In its place the subscriber is told (SKIP, §6.10): frame 2, chunk 0 at 13, 3 chunks.
        assert_eq!(skip_of(f.pop(t0 + ms(56))), (2, 13, 3));
        assert_eq!(f.pop(t0 + ms(56)), None);
        f.set_now(t0 + ms(56));
        f.enqueue(a, video(2, 16, 3, 4), false);
        assert_eq!(f.pop(t0 + ms(56)), None);
        assert_eq!(f.drops.skipped(OverloadLimit::RelayCpu), 1);
        assert_eq!(f.drops.datagrams, 4);
        let sub = f.get(&a).unwrap();
        assert_eq!(sub.frames_skipped, 1);
        assert!(sub.skipped_frame(2) && !sub.skipped_frame(1));
        assert!(sub.skipped_seq(13) && sub.skipped_seq(15) && !sub.skipped_seq(12));
        assert!(!sub.skipped_seq(16));
        // The socket refused a send: the next skip is put down to the socket buffer.
        f.on_send_blocked(t0 + ms(60));
        f.set_now(t0 + ms(60));
        f.enqueue(a, video(3, 20, 0, 1), false);
        let notice = f.pop(t0 + ms(96)).expect("a SKIP");
        assert_eq!(Packet::decode(&notice.payload).unwrap().header.seq, 1);
        assert_eq!(f.pop(t0 + ms(96)), None);
        assert_eq!(f.drops.skipped(OverloadLimit::SocketBuffer), 1);
        assert_eq!(
            f.last_skip,
            Some((t0 + ms(96), OverloadLimit::SocketBuffer))
        );
    }

    #[test]
    fn a_frame_started_is_cut_short_only_once_its_rest_would_come_after_its_playout() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let (mut f, a) = one_subscriber(t0);
        f.set_now(t0);
        for i in 0..3 {
            f.enqueue(a, video(1, 10 + i, i as u16, 3), false);
        }
        let seq = |t: Transmit| u32::from_be_bytes(t.payload[12..16].try_into().unwrap());
        assert_eq!(f.pop(t0).map(seq), Some(10));
        // A stall of 99 ms: the rest still goes (it may yet be played).
        assert_eq!(f.pop(t0 + ms(99)).map(seq), Some(11));
        assert_eq!(f.pop(t0 + ms(99)).map(seq), Some(12));
        f.set_now(t0 + ms(99));
        for i in 0..2 {
            f.enqueue(a, video(2, 13 + i, i as u16, 2), false);
        }
        assert_eq!(f.pop(t0 + ms(99)).map(seq), Some(13));
        // Frame 2 started; at 100 ms of age its rest would only come after its playout:
        // cut short, and the subscriber told (SKIP).
        assert_eq!(skip_of(f.pop(t0 + ms(199))), (2, 13, 2));
        assert_eq!(f.pop(t0 + ms(199)), None);
        assert_eq!(f.drops.skipped(OverloadLimit::RelayCpu), 1);
        assert!(f.get(&a).unwrap().skipped_seq(14));
    }

    #[test]
    fn what_trails_a_frame_sent_whole_is_not_cut_as_a_skip() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let (mut f, a) = one_subscriber(t0);
        f.set_now(t0);
        f.enqueue(a, video(1, 10, 0, 1), false);
        let parity = Bytes::from_static(b"parity of frame 1");
        f.enqueue(a, Queued::of_frame(parity.clone(), 1), false);
        assert!(f.pop(t0).is_some());
        // A stall of more than the latency: the frame went out whole, so its parity still
        // goes, and nothing counts as skipped (which would also hold back its repair).
        assert_eq!(f.pop(t0 + ms(150)).map(|t| t.payload), Some(parity));
        assert_eq!(f.drops.skipped, [0; 3]);
        assert!(!f.get(&a).unwrap().skipping(t0 + ms(150)));
    }

    #[test]
    fn a_late_joiners_replayed_frame_does_not_shrink_the_wait() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let (mut f, a) = one_subscriber(t0);
        f.set_now(t0);
        for i in 0..3 {
            let d = video_bytes(1, 10 + i, i as u16, 3);
            let d = crate::proto::wire::with_flags(&d, FLAG_REPLAY).unwrap();
            f.enqueue(a, Queued::of_frame(d, 1), false);
        }
        f.enqueue(a, video(2, 13, 0, 1), false);
        // The replay takes 40 ms to go out (every joiner gets it at once)...
        for t in [0, 20, 40] {
            assert!(f.pop(t0 + ms(t)).is_some());
        }
        // ...and the live frame behind it, 41 ms queued, still goes: the wait stays 50 ms.
        assert_eq!(f.get(&a).unwrap().queue_delay_budget(), ms(50));
        let live = f.pop(t0 + ms(41)).expect("the live frame");
        assert_eq!(Packet::decode(&live.payload).unwrap().header.seq, 13);
        assert_eq!(f.drops.skipped, [0; 3]);
    }

    #[test]
    fn a_brief_stall_keeps_frames_and_slow_sending_shrinks_the_wait() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let (mut f, a) = one_subscriber(t0);
        f.set_now(t0);
        f.enqueue(a, video(1, 10, 0, 1), false);
        // Frames go out at once: a 45 ms stall (under half the latency) loses nothing.
        assert!(f.pop(t0 + ms(45)).is_some());
        assert_eq!(f.drops.skipped, [0; 3]);
        // A frame that took 60 ms to go out leaves the floor, an eighth of the latency.
        f.set_now(t0 + ms(50));
        f.enqueue(a, video(2, 11, 0, 2), false);
        f.enqueue(a, video(2, 12, 1, 2), false);
        assert!(f.pop(t0 + ms(50)).is_some());
        assert!(f.pop(t0 + ms(110)).is_some());
        assert_eq!(
            f.get(&a).unwrap().queue_delay_budget(),
            ms(12) + Duration::from_micros(500)
        );
    }

    #[test]
    fn a_frame_paced_by_its_publisher_does_not_shrink_the_wait() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let (mut f, a) = one_subscriber(t0);
        // Frame 1's chunks come 15 ms apart and each goes out at once: it spans 30 ms, but
        // none of that was spent in the relay.
        for i in 0..3u16 {
            f.set_now(t0 + ms(15 * u64::from(i)));
            f.enqueue(a, video(1, 10 + u32::from(i), i, 3), false);
            assert!(f.pop(t0 + ms(15 * u64::from(i))).is_some());
        }
        f.set_now(t0 + ms(33));
        f.enqueue(a, video(2, 13, 0, 1), false);
        assert_eq!(f.get(&a).unwrap().queue_delay_budget(), ms(50));
        // So a 40 ms stall before frame 2 loses nothing (with 30 ms counted, it would).
        assert!(f.pop(t0 + ms(73)).is_some());
        assert_eq!(f.drops.skipped, [0; 3]);
        // A frame queued whole and sent slowly still counts in full.
        f.set_now(t0 + ms(80));
        f.enqueue(a, video(3, 14, 0, 2), false);
        f.enqueue(a, video(3, 15, 1, 2), false);
        assert!(f.pop(t0 + ms(80)).is_some());
        assert!(f.pop(t0 + ms(105)).is_some());
        assert_eq!(f.get(&a).unwrap().queue_delay_budget(), ms(25));
    }

    #[test]
    fn round_robin_by_frame_and_answers_first() {
        let t0 = Instant::now();
        let mut f = Fanout::new(10_000);
        let (a, b) = (addr(1), addr(2));
        f.insert(t0, a, "s", 0, false);
        f.insert(t0, b, "s", 0, false);
        f.broadcast(&[a, b], &Bytes::from_static(b"m1"), Some(1));
        f.broadcast(&[a, b], &Bytes::from_static(b"m2"), Some(1));
        f.enqueue(b, Queued::single(Bytes::from_static(b"rx")), true);
        let out: Vec<(u16, Bytes)> = std::iter::from_fn(|| f.pop(t0))
            .map(|t| (t.dest.port(), t.payload))
            .collect();
        // A turn is a subscriber's frame, back to back.
        let want: Vec<(u16, &[u8])> =
            vec![(1, b"m1"), (1, b"m2"), (2, b"rx"), (2, b"m1"), (2, b"m2")];
        assert_eq!(
            out,
            want.into_iter()
                .map(|(p, d)| (p, Bytes::from_static(d)))
                .collect::<Vec<_>>()
        );
    }

    #[test]
    fn a_turn_ends_at_run_max_datagrams_or_at_the_frames_end() {
        let t0 = Instant::now();
        let mut f = Fanout::new(1 << 20);
        let (a, b) = (addr(1), addr(2));
        f.insert(t0, a, "s", 0, false);
        f.insert(t0, b, "s", 0, false);
        let n = RUN_MAX as usize + 6;
        for _ in 0..n {
            f.broadcast(&[a, b], &Bytes::from_static(b"f1"), Some(1));
        }
        f.broadcast(&[a, b], &Bytes::from_static(b"f2"), Some(2));
        let ports: Vec<u16> = std::iter::from_fn(|| f.pop(t0))
            .map(|t| t.dest.port())
            .collect();
        let mut want = vec![1; RUN_MAX as usize];
        want.extend(vec![2; RUN_MAX as usize]);
        // The rest of frame 1, then (a new turn) frame 2.
        want.extend([1; 6]);
        want.extend([2; 6]);
        want.extend([1, 2]);
        assert_eq!(ports, want);
    }

    #[test]
    fn while_skipping_the_newest_whole_frame_wins_at_once() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let videos = |f: &mut Fanout, now| {
            std::iter::from_fn(|| f.pop(now))
                .filter_map(|t| match Packet::decode(&t.payload).unwrap().body {
                    Body::Video(v) => Some(v.frame_id),
                    _ => None,
                })
                .collect::<Vec<_>>()
        };
        let (mut f, a) = one_subscriber(t0);
        // Frame 1 waits 60 ms, past its 50 ms: skipped, so frames are being skipped for `a`.
        f.set_now(t0);
        f.enqueue(a, video(1, 10, 0, 1), false);
        assert_eq!(videos(&mut f, t0 + ms(60)), Vec::<u32>::new());
        // Frame 2 (in time, 10 ms queued) has frame 3 whole behind it: 3 goes, 2 is skipped.
        f.set_now(t0 + ms(60));
        f.enqueue(a, video(2, 11, 0, 1), false);
        f.set_now(t0 + ms(65));
        f.enqueue(a, video(3, 12, 0, 1), false);
        assert_eq!(videos(&mut f, t0 + ms(70)), vec![3]);
        // Frame 5 only half queued behind frame 4: 4 goes, then what there is of 5.
        f.set_now(t0 + ms(100));
        f.enqueue(a, video(4, 13, 0, 1), false);
        f.enqueue(a, video(5, 14, 0, 2), false);
        assert_eq!(videos(&mut f, t0 + ms(105)), vec![4, 5]);
        // A second after the latest skip, an older frame in time goes again.
        f.set_now(t0 + ms(1100));
        f.enqueue(a, video(6, 16, 0, 1), false);
        f.enqueue(a, video(7, 17, 0, 1), false);
        assert_eq!(videos(&mut f, t0 + ms(1105)), vec![6, 7]);
    }

    #[test]
    fn answers_queued_by_the_hundred_do_not_take_every_turn() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut f = Fanout::new(1 << 20);
        let (a, b) = (addr(1), addr(2));
        f.insert(t0, a, "s", 0, false);
        f.insert(t0, b, "s", 0, false);
        // `b` had a frame just now, so `a`, whose latest frame is older, goes first...
        f.set_now(t0 + ms(1));
        f.enqueue(b, video(1, 10, 0, 1), false);
        assert_eq!(f.pop(t0 + ms(1)).map(|t| t.dest), Some(b));
        // ...but 200 answers queued for it take a turn's worth, then `b` has its turn.
        f.set_now(t0 + ms(2));
        for _ in 0..200 {
            f.enqueue(a, Queued::single(Bytes::from(vec![0; 100])), true);
        }
        f.enqueue(b, video(2, 11, 0, 1), false);
        let first_b = std::iter::from_fn(|| f.pop(t0 + ms(2)))
            .position(|t| t.dest == b)
            .unwrap();
        assert_eq!(first_b, usize::from(RUN_MAX));
    }

    #[test]
    fn rate_limit_holds_a_subscriber_back_until_its_tokens_refill() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut f = Fanout::new(1 << 20);
        let (a, b) = (addr(1), addr(2));
        // 8 kbit/s = 1000 bytes/s, 16 000 bytes of burst.
        f.insert(t0, a, "s", 8, false);
        f.insert(t0, b, "s", 0, false);
        for _ in 0..3 {
            f.broadcast(&[a, b], &Bytes::from(vec![0; 8250]), None);
        }
        let sent = |f: &mut Fanout, now| {
            std::iter::from_fn(|| f.pop(now))
                .map(|t| t.dest.port())
                .collect::<Vec<_>>()
        };
        // Two datagrams use the burst and 500 bytes of debt; `b` is not held back.
        assert_eq!(sent(&mut f, t0), vec![1, 2, 1, 2, 2]);
        assert!(f.has_blocked());
        assert_eq!(f.next_wake(), Some(t0 + ms(500)));
        f.wake(t0 + ms(499));
        assert_eq!(sent(&mut f, t0 + ms(499)), Vec::<u16>::new());
        f.wake(t0 + ms(500));
        assert!(!f.has_blocked());
        // Exactly repaid is not enough: the bucket needs a token left.
        assert_eq!(sent(&mut f, t0 + ms(500)), Vec::<u16>::new());
        let wake = f.next_wake().unwrap();
        assert_eq!(wake, t0 + ms(500) + Duration::from_micros(100));
        f.wake(wake);
        assert_eq!(sent(&mut f, wake), vec![1]);
    }
}
