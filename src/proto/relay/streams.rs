//! The relay's stream table (proto-spec.md §6.1, §7.3): who feeds each stream name (the
//! local source, a pushing publisher or the relay's own upstream subscription), its caches
//! and the latest complete frame for late joiners. A publisher claims a name, or takes it
//! over from a silent one, in one operation ([`StreamTable::claim`]); idle names are
//! released in one operation too ([`StreamTable::release_idle`]).

use crate::proto::fec::source::ParitySource;
use crate::proto::wire::SymbolRequest;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::RelayConfig;
use super::fanout::Cached;
use super::gather::Held;
use super::repair::UpstreamRepair;
use crate::proto::reassembler::{DatagramOutcome, Reassembler, ReassemblyLimits};
use crate::proto::rtt::RttEstimator;
use crate::proto::rtx_cache::RtxCache;
use crate::proto::subscription::Subscription;
use crate::proto::wire::{self, Flow, SeqExtender, SeqNo, VideoChunk};

/// Who feeds a stream.
#[derive(Debug)]
pub(super) enum Origin {
    /// The embedding publisher's own source.
    Local,
    /// A publisher pushing to this relay from that address.
    Publisher(SocketAddr),
    /// The relay's own subscription to its upstream.
    Upstream(Box<Subscription>),
}

impl Origin {
    /// The origin's address, if it is remote.
    pub(super) fn addr(&self) -> Option<SocketAddr> {
        match self {
            Origin::Local => None,
            Origin::Publisher(a) => Some(*a),
            Origin::Upstream(s) => Some(s.server()),
        }
    }
}

/// What a relay asked its upstream for, of one frame it does not hold whole (§7.3).
#[derive(Debug, Clone, Copy)]
pub(super) struct UpstreamAsk {
    /// Parity indexes `..upto` were asked for.
    pub upto: u16,
    /// When the last request went.
    pub at: Instant,
}

/// How recently a chunk of a frame newer than the latest complete one must have come for the
/// frame to count as in progress for a late joiner (§7.4).
pub(super) const IN_PROGRESS_FRESH: Duration = Duration::from_millis(100);

/// `datagram` with `FLAG_RETRANSMIT` cleared (CRC recomputed), as the original was sent.
fn as_original(datagram: &Bytes) -> Option<Bytes> {
    match datagram.get(4) {
        Some(&flags) if flags & wire::FLAG_RETRANSMIT != 0 => {
            wire::with_flags(datagram, flags & !wire::FLAG_RETRANSMIT)
        }
        Some(_) => Some(datagram.clone()),
        None => None,
    }
}

/// The latest complete frame, for late joiners (§7.4), found by the shared [`Reassembler`]
/// (which also refuses chunks inconsistent with their frame).
#[derive(Debug)]
pub(super) struct LateJoin {
    reassembler: Reassembler,
    /// Frame id and datagrams of the latest complete frame.
    pub(super) latest: Option<(u32, Vec<Bytes>)>,
}

impl Default for LateJoin {
    fn default() -> Self {
        LateJoin {
            reassembler: Reassembler::new(ReassemblyLimits {
                max_frames: 4,
                max_bytes: 16 * 1024 * 1024,
            }),
            latest: None,
        }
    }
}

impl LateJoin {
    /// The frames newer than the latest complete one that are still arriving (the one in
    /// progress, and any still missing chunks), oldest first: their datagrams as received,
    /// for a late joiner (§7.4), who would otherwise get only the rest of the frame in
    /// progress and ask for its head.
    /// Only frames a chunk of which came within [`IN_PROGRESS_FRESH`] of `now` count: one
    /// older is not arriving any more (the publisher paused, or its rest was lost), and a
    /// joiner would only ask for chunks long gone. A retransmitted or restored chunk goes
    /// without `FLAG_RETRANSMIT`: to the joiner it is an original.
    pub(super) fn in_progress(&self, now: Instant) -> Vec<(u32, Vec<Bytes>)> {
        let latest = self.latest.as_ref().map(|(id, _)| *id);
        let mut partials: Vec<_> = self
            .reassembler
            .partials()
            .filter(|(id, p)| {
                latest.is_none_or(|l| wire::seq::wire_newer(**id, l))
                    && now.saturating_duration_since(p.last_arrival) <= IN_PROGRESS_FRESH
            })
            .collect();
        // Oldest first: frames begin arriving in their order.
        partials.sort_by_key(|(_, p)| p.first_arrival);
        partials
            .into_iter()
            .map(|(id, p)| (*id, p.datagrams().filter_map(as_original).collect()))
            .collect()
    }

    /// Notes a video chunk (extended sequence number `seq`) and its datagram.
    pub(super) fn add(&mut self, now: Instant, seq: SeqNo, v: &VideoChunk, datagram: &Bytes) {
        if let Some((latest, _)) = &self.latest {
            if !wire::seq::wire_newer(v.frame_id, *latest) {
                return;
            }
        }
        let DatagramOutcome::Complete(chunks) =
            self.reassembler.insert_datagram(now, seq, v, datagram)
        else {
            return;
        };
        self.latest = Some((v.frame_id, chunks));
        // Anything older than the latest complete frame is no use to a late joiner.
        let old: Vec<u32> = self
            .reassembler
            .partials()
            .map(|(id, _)| *id)
            .filter(|id| !wire::seq::wire_newer(*id, v.frame_id))
            .collect();
        for id in old {
            self.reassembler.remove(id);
        }
    }
}

/// One stream name and everything the relay keeps for it.
#[derive(Debug)]
pub(super) struct Stream {
    /// Unique in its table: with `epoch`, what subscribers' queued runs name it by.
    id: u32,
    /// Bumped when a new source takes over (its cache starts again).
    epoch: u32,
    pub(super) name: String,
    pub(super) ssrc: Option<u32>,
    pub(super) description: Option<Bytes>,
    pub(super) origin: Origin,
    pub(super) last_heard: Option<Instant>,
    pub(super) video: RtxCache,
    pub(super) audio: RtxCache,
    pub(super) video_ext: SeqExtender,
    pub(super) audio_ext: SeqExtender,
    pub(super) late: LateJoin,
    /// Loss detection towards the origin and forwarded requests (§7.3).
    pub(super) repair: UpstreamRepair,
    pub(super) members: Vec<SocketAddr>,
    pub(super) idle_since: Option<Instant>,
    /// Bytes received from a pushing publisher and NACK bytes sent to it: a publisher's
    /// address is never validated, so the relay sends it no more than it received (§8).
    pub(super) origin_in: u64,
    pub(super) origin_out: u64,
    /// Recent frames' chunks, coded on demand for parity (§7.6).
    pub(super) parity: ParitySource,
    /// FEC requests for frames not yet whole here: answered when they are (§6.8).
    pub(super) fec_pending: Vec<(Instant, SocketAddr, SymbolRequest)>,
    /// Requests answered lately: a copy of one is not answered again (§6.8).
    pub(super) fec_answered: std::collections::VecDeque<(SocketAddr, SymbolRequest)>,
    /// Per frame not yet whole here, the parity indexes already asked of the upstream for
    /// subscribers' requests (`..upto`) and when last (§7.3).
    pub(super) fec_upstream: std::collections::BTreeMap<u32, UpstreamAsk>,
    /// The current source's END, once it came: late joiners get it too (§6.9).
    pub(super) ended: Option<Bytes>,
    /// A frame's chunks held to go out to every subscriber at once (§7.3, gathering).
    pub(super) held: Option<Held>,
}

impl Stream {
    fn new(id: u32, name: &str, origin: Origin, cfg: &RelayConfig) -> Stream {
        Stream {
            id,
            epoch: 0,
            name: name.to_owned(),
            ssrc: None,
            description: None,
            origin,
            last_heard: None,
            video: RtxCache::new(cfg.cache_packets, cfg.cache_age),
            audio: RtxCache::new(cfg.cache_packets, cfg.cache_age),
            video_ext: SeqExtender::default(),
            audio_ext: SeqExtender::default(),
            late: LateJoin::default(),
            repair: UpstreamRepair::default(),
            members: Vec::new(),
            idle_since: None,
            origin_in: 0,
            origin_out: 0,
            parity: ParitySource::default(),
            fec_pending: Vec::new(),
            fec_answered: std::collections::VecDeque::new(),
            fec_upstream: std::collections::BTreeMap::new(),
            ended: None,
            held: None,
        }
    }

    /// A new source (ssrc) took the stream over: forget everything of the old one.
    pub(super) fn reset_source(&mut self, ssrc: u32) {
        self.ssrc = Some(ssrc);
        // What subscribers have queued of the old source is gone with its cache.
        self.epoch = self.epoch.wrapping_add(1);
        self.video.clear();
        self.audio.clear();
        self.video_ext.reset();
        self.audio_ext.reset();
        self.late = LateJoin::default();
        self.repair.reset();
        self.parity.clear();
        self.fec_pending.clear();
        self.fec_answered.clear();
        self.fec_upstream.clear();
        self.ended = None;
        self.held = None;
    }

    /// What the fan-out's queued runs name this stream's video cache by (see
    /// [`Cached`]): a new source gets a new one.
    pub(super) fn cache_key(&self) -> u64 {
        (u64::from(self.id) << 32) | u64::from(self.epoch)
    }

    /// Whether `len` more bytes may go to the origin: always for an upstream the relay
    /// subscribed to itself, within what it received for a pushing publisher.
    pub(super) fn may_send_origin(&mut self, len: usize) -> bool {
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

    /// The round-trip time to the origin.
    pub(super) fn rtt(&self) -> RttEstimator {
        match &self.origin {
            Origin::Upstream(sub) => *sub.rtt(),
            _ => RttEstimator::new(Duration::from_millis(5)),
        }
    }

    /// The cache and sequence extender of one flow.
    pub(super) fn cache(&mut self, flow: Flow) -> (&mut RtxCache, &mut SeqExtender) {
        match flow {
            Flow::Video => (&mut self.video, &mut self.video_ext),
            Flow::Audio => (&mut self.audio, &mut self.audio_ext),
        }
    }
}

/// The outcome of a publisher's claim on a stream name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Claim {
    /// The sender already feeds this stream (a pushing publisher or the upstream).
    Owner(usize),
    /// The name was free: a new stream.
    Created(usize),
    /// The name's publisher had gone silent: the sender took it over from `previous`.
    TookOver {
        /// The stream.
        idx: usize,
        /// The silent publisher displaced.
        previous: SocketAddr,
    },
    /// Someone else feeds the name, or the table is full.
    Refused,
}

/// A stream name given up by [`StreamTable::release_idle`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Released {
    /// The name.
    pub(super) name: String,
    /// For a pulled stream, the BYE to send upstream.
    pub(super) bye: Option<(SocketAddr, Bytes)>,
}

/// All streams, at most `max_streams`.
#[derive(Debug, Default)]
pub(super) struct StreamTable {
    list: Vec<Stream>,
    /// The id of the next stream added.
    next_id: u32,
}

/// The streams' video caches as they are at one instant: what the fan-out reads its queued
/// runs from (§7.3).
pub(super) struct CachesAt<'a>(pub(super) &'a StreamTable, pub(super) Instant);

impl Cached for CachesAt<'_> {
    fn cached(&self, key: u64, seq: SeqNo) -> Option<Bytes> {
        let s = self.0.list.iter().find(|s| s.cache_key() == key)?;
        s.video.get(self.1, seq).cloned()
    }
}

impl StreamTable {
    fn new_id(&mut self) -> u32 {
        self.next_id = self.next_id.wrapping_add(1);
        self.next_id
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = &Stream> {
        self.list.iter()
    }

    pub(super) fn iter_mut(&mut self) -> impl Iterator<Item = &mut Stream> {
        self.list.iter_mut()
    }

    pub(super) fn len(&self) -> usize {
        self.list.len()
    }

    pub(super) fn get_mut(&mut self, idx: usize) -> &mut Stream {
        &mut self.list[idx]
    }

    /// The index of the stream called `name`.
    pub(super) fn position(&self, name: &str) -> Option<usize> {
        self.list.iter().position(|s| s.name == name)
    }

    /// The index of the stream `from` feeds: the one called `name` if given, else the one
    /// whose source is `ssrc` (or not yet known).
    pub(super) fn find_origin(
        &self,
        from: SocketAddr,
        ssrc: u32,
        name: Option<&str>,
    ) -> Option<usize> {
        self.list.iter().position(|s| {
            s.origin.addr() == Some(from)
                && match name {
                    Some(n) => s.name == n,
                    None => s.ssrc.is_none() || s.ssrc == Some(ssrc),
                }
        })
    }

    /// The index of the local stream called `name` (not one a publisher pushes).
    pub(super) fn local(&self, name: &str) -> Option<usize> {
        self.list
            .iter()
            .position(|s| s.name == name && matches!(s.origin, Origin::Local))
    }

    /// Creates the local stream `name` unless the name exists.
    pub(super) fn add_local(&mut self, name: &str, cfg: &RelayConfig) {
        if self.position(name).is_none() {
            let id = self.new_id();
            self.list.push(Stream::new(id, name, Origin::Local, cfg));
        }
    }

    /// Whether the relay pulls some stream other than `name` from its upstream.
    pub(super) fn pulls_other_than(&self, name: &str) -> bool {
        self.list
            .iter()
            .any(|s| matches!(s.origin, Origin::Upstream(_)) && s.name != name)
    }

    /// Starts pulling `name` from `upstream`. False when the table is full.
    pub(super) fn add_upstream(
        &mut self,
        name: &str,
        upstream: SocketAddr,
        cfg: &RelayConfig,
    ) -> bool {
        if self.len() >= cfg.max_streams {
            return false;
        }
        let sub = Subscription::new(upstream, name, 0);
        let id = self.new_id();
        self.list
            .push(Stream::new(id, name, Origin::Upstream(Box::new(sub)), cfg));
        true
    }

    /// `from`, which announces stream `name` from source `ssrc`, claims the name: it keeps
    /// a name it already feeds, gets a free one (within `max_streams`), or takes over one
    /// whose publisher was silent for longer than `publisher_timeout` (the new address then
    /// earns its own byte budget, §8). A local or pulled stream is never taken over.
    pub(super) fn claim(
        &mut self,
        now: Instant,
        from: SocketAddr,
        ssrc: u32,
        name: &str,
        cfg: &RelayConfig,
    ) -> Claim {
        if let Some(i) = self.find_origin(from, ssrc, Some(name)) {
            return Claim::Owner(i);
        }
        match self.position(name) {
            Some(idx) => {
                let s = &mut self.list[idx];
                let Origin::Publisher(previous) = s.origin else {
                    return Claim::Refused;
                };
                let stale = s
                    .last_heard
                    .is_none_or(|t| now.saturating_duration_since(t) > cfg.publisher_timeout);
                if !stale {
                    return Claim::Refused;
                }
                s.origin = Origin::Publisher(from);
                s.origin_in = 0;
                s.origin_out = 0;
                Claim::TookOver { idx, previous }
            }
            None if self.list.len() < cfg.max_streams => {
                let id = self.new_id();
                self.list
                    .push(Stream::new(id, name, Origin::Publisher(from), cfg));
                Claim::Created(self.list.len() - 1)
            }
            None => Claim::Refused,
        }
    }

    /// Releases the names nobody watches any more: a pulled stream unwatched for longer
    /// than `subscriber_timeout` (its BYE is returned), and a pushed stream whose publisher
    /// is also silent for longer than `publisher_timeout`. Also expires forwarded requests.
    pub(super) fn release_idle(&mut self, now: Instant, cfg: &RelayConfig) -> Vec<Released> {
        let timeout = cfg.subscriber_timeout;
        let ptimeout = cfg.publisher_timeout;
        let mut released = Vec::new();
        self.list.retain_mut(|s| {
            s.repair.expire(now);
            if !s.members.is_empty() {
                return true;
            }
            let since = *s.idle_since.get_or_insert(now);
            let idle = now.saturating_duration_since(since) > timeout;
            match &mut s.origin {
                Origin::Upstream(sub) if idle => {
                    released.push(Released {
                        name: s.name.clone(),
                        bye: Some((sub.server(), sub.bye())),
                    });
                    false
                }
                Origin::Publisher(_)
                    if idle
                        && s.last_heard
                            .is_none_or(|t| now.saturating_duration_since(t) > ptimeout) =>
                {
                    released.push(Released {
                        name: s.name.clone(),
                        bye: None,
                    });
                    false
                }
                _ => true,
            }
        });
        released
    }

    /// Adds `addr` to the members of `name`; returns the stream's index if it exists.
    pub(super) fn join(&mut self, name: &str, addr: SocketAddr) -> Option<usize> {
        let idx = self.position(name)?;
        let s = &mut self.list[idx];
        s.members.push(addr);
        s.idle_since = None;
        Some(idx)
    }

    /// Removes `addr` from the members of `name`.
    pub(super) fn leave(&mut self, name: &str, addr: &SocketAddr) {
        if let Some(s) = self.list.iter_mut().find(|s| s.name == name) {
            s.members.retain(|a| a != addr);
        }
    }
}

#[cfg(test)]
#[path = "streams_tests.rs"]
mod tests;
