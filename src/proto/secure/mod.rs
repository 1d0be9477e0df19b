//! The secure layer (proto-spec.md §8): keys, a handshake that proves the address and then
//! the key, and ChaCha20-Poly1305 over every datagram, wrapped around any sans-IO [`Node`].
//!
//! [`Secure`] sits between a node and its driver: what the node sends to a peer leaves
//! sealed under that peer's session keys, and what arrives is opened, checked against the
//! session's replay window and the session's rights, and only then handed to the node. The
//! node itself (publisher, relay, viewer) is unchanged and sees plaintext, which is what
//! lets a relay cache, repair and re-seal per subscriber (§8.5). Without keys the layer
//! passes everything through. Randomness comes from a seed the driver draws from the OS.

pub mod crypto;
pub mod msg;

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::ops::{Deref, DerefMut};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hmac::{Hmac, Mac};
use serde::Serialize;
use sha2::Sha256;

pub use crypto::{Keys, ReplayWindow, Role};
use crypto::{RANDOM_LEN, Sealer, session_keys};
pub use msg::{Msg, RefuseReason, SEAL_OVERHEAD};

use crate::proto::node::{Node, Transmit, soonest};
use crate::proto::refusal::{Refusal, RefusalLimiter};
use crate::proto::token::TokenKey;
use crate::proto::wire::{self, Body, Header, Packet, PacketType, RejectReason};

/// A client repeats an unanswered HELLO this often.
pub const HELLO_RETRY: Duration = Duration::from_millis(250);
/// After a REFUSE a client asks again this much later.
pub const REFUSED_RETRY: Duration = Duration::from_secs(1);
/// A server forgets a session it has heard nothing valid from for this long.
pub const SESSION_TIMEOUT: Duration = Duration::from_secs(10);
/// The most sessions a server keeps.
pub const MAX_SESSIONS: usize = 4096;
pub use crate::proto::refusal::{MAX_REFUSALS_PER_SEC, REFUSAL_INTERVAL};
/// Plaintext datagrams a client queues for a peer while its handshake runs.
const MAX_QUEUED: usize = 64;

/// Counters of the secure layer (every refused datagram is counted under one of them).
#[derive(Debug, Clone, Default, Serialize)]
pub struct SecureStats {
    /// Datagrams sealed and sent.
    pub sealed: u64,
    /// Datagrams opened and handed to the node.
    pub opened: u64,
    /// Sealed datagrams whose tag did not verify (wrong key, flipped bits, truncation).
    pub bad_tag: u64,
    /// Sealed datagrams whose counter was already seen or is behind the replay window.
    pub replayed: u64,
    /// Sealed datagrams from an address with no session, or naming another session.
    pub no_session: u64,
    /// Datagrams a session's rights do not allow (e.g. media from a view-only peer).
    pub forbidden: u64,
    /// Plaintext datagrams dropped because keys are in use.
    pub plaintext: u64,
    /// Handshake datagrams that did not decode or did not match a handshake under way.
    pub bad_handshake: u64,
    /// Handshakes refused for a wrong key.
    pub bad_key: u64,
    /// Refusals sent (after rate limiting).
    pub refusals_sent: u64,
    /// Sessions set up (as server or client).
    pub sessions: u64,
    /// Datagrams the node sent to a peer without a session, dropped.
    pub unsent: u64,
}

/// What the layer tells its driver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecureEvent {
    /// A session with `peer` is up.
    Connected {
        /// The peer.
        peer: SocketAddr,
        /// Our role (as client) or the peer's (as server).
        role: Role,
    },
    /// `peer` refused our handshake.
    RefusedBy {
        /// The server.
        peer: SocketAddr,
        /// Why.
        reason: RefuseReason,
    },
    /// We refused a source for the first time (later refusals only count, §8.3).
    Refused {
        /// The source.
        peer: SocketAddr,
        /// Why.
        reason: RefuseReason,
    },
    /// A source sent plaintext where keys are required (logged once per source).
    Plaintext {
        /// The source.
        peer: SocketAddr,
    },
}

/// A deterministic random generator keyed by the driver's seed: HMAC-SHA256(seed, counter).
#[derive(Debug, Clone)]
struct Drbg {
    seed: [u8; 32],
    counter: u64,
}

impl Drbg {
    fn fill(&mut self, out: &mut [u8]) {
        for chunk in out.chunks_mut(32) {
            let mut m = <Hmac<Sha256> as Mac>::new_from_slice(&self.seed).expect("any key length");
            m.update(&self.counter.to_be_bytes());
            self.counter += 1;
            chunk.copy_from_slice(&m.finalize().into_bytes()[..chunk.len()]);
        }
    }

    fn random16(&mut self) -> [u8; RANDOM_LEN] {
        let mut r = [0u8; RANDOM_LEN];
        self.fill(&mut r);
        r
    }
}

/// One established session, either side.
#[derive(Debug)]
struct Session {
    sid: u32,
    role: Role,
    send: Sealer,
    recv: Sealer,
    /// The next counter to send with.
    send_counter: u32,
    window: ReplayWindow,
    last_heard: Instant,
    client_random: [u8; RANDOM_LEN],
    /// Server side: the ACCEPT, resent if the client repeats its HELLO.
    accept: Option<Bytes>,
}

impl Session {
    /// Seals `plain` into a SEALED datagram; `None` once the counter space is used up.
    fn seal(&mut self, plain: &[u8]) -> Option<Bytes> {
        let counter = self.send_counter;
        if counter == u32::MAX {
            return None;
        }
        self.send_counter += 1;
        let mut buf = Vec::with_capacity(plain.len() + SEAL_OVERHEAD);
        buf.extend_from_slice(&msg::header(msg::SEALED, self.sid, counter));
        buf.extend_from_slice(plain);
        self.send.seal(counter, &mut buf, wire::HEADER_LEN);
        Some(Bytes::from(buf))
    }
}

#[derive(Debug)]
struct Client {
    role: Role,
    client_random: [u8; RANDOM_LEN],
    cookie: Option<[u8; RANDOM_LEN]>,
    session: Option<Session>,
    queue: VecDeque<Bytes>,
    next_hello: Instant,
    refused: Option<RefuseReason>,
}

#[derive(Debug)]
enum Peer {
    Client(Client),
    Server(Session),
}

impl Peer {
    fn session(&mut self) -> Option<&mut Session> {
        match self {
            Peer::Client(c) => c.session.as_mut(),
            Peer::Server(s) => Some(s),
        }
    }
}

/// A node with the secure layer around it. Derefs to the node, so a driver's hooks call the
/// node's own methods unchanged.
#[derive(Debug)]
pub struct Secure<N> {
    inner: N,
    keys: Option<Keys>,
    rng: Drbg,
    cookies: TokenKey,
    peers: HashMap<SocketAddr, Peer>,
    connects: HashMap<SocketAddr, Role>,
    out: VecDeque<Transmit>,
    refusals: RefusalLimiter,
    events: VecDeque<SecureEvent>,
    stats: SecureStats,
    next_sweep: Option<Instant>,
}

impl<N> Deref for Secure<N> {
    type Target = N;
    fn deref(&self) -> &N {
        &self.inner
    }
}

impl<N> DerefMut for Secure<N> {
    fn deref_mut(&mut self) -> &mut N {
        &mut self.inner
    }
}

impl<N: Node> Secure<N> {
    /// Wraps `inner`. With `keys` None everything passes through unchanged (§8: a LAN
    /// without keys). `seed` is 32 random bytes from the driver (the OS), or fixed in tests.
    pub fn new(inner: N, keys: Option<Keys>, seed: [u8; 32]) -> Secure<N> {
        let mut rng = Drbg { seed, counter: 0 };
        let cookie_key = {
            let mut k = [0u8; 16];
            rng.fill(&mut k);
            k
        };
        Secure {
            inner,
            keys,
            rng,
            cookies: TokenKey::new(cookie_key, Duration::from_secs(30)),
            peers: HashMap::new(),
            connects: HashMap::new(),
            out: VecDeque::new(),
            refusals: RefusalLimiter::default(),
            events: VecDeque::new(),
            stats: SecureStats::default(),
            next_sweep: None,
        }
    }

    /// Declares that datagrams the node sends to `peer` go through a session this side
    /// opens as client, proving `role` (a viewer's server, a publisher's relay, a relay's
    /// upstream). Datagrams to any other address need a session the peer opened.
    pub fn connect(&mut self, peer: SocketAddr, role: Role) {
        self.connects.insert(peer, role);
    }

    /// Whether keys are in use.
    pub fn is_keyed(&self) -> bool {
        self.keys.is_some()
    }

    /// The wrapped node.
    pub fn inner(&self) -> &N {
        &self.inner
    }

    /// The wrapped node, mutably.
    pub fn inner_mut(&mut self) -> &mut N {
        &mut self.inner
    }

    /// The layer's counters.
    pub fn secure_stats(&self) -> &SecureStats {
        &self.stats
    }

    /// The next event, if any.
    pub fn poll_secure_event(&mut self) -> Option<SecureEvent> {
        self.events.pop_front()
    }

    /// Why `peer` refused our last handshake, while no session with it is up.
    pub fn refused_by(&self, peer: SocketAddr) -> Option<RefuseReason> {
        match self.peers.get(&peer) {
            Some(Peer::Client(c)) if c.session.is_none() => c.refused,
            _ => None,
        }
    }

    /// Whether a session with `peer` is up.
    pub fn connected(&self, peer: SocketAddr) -> bool {
        match self.peers.get(&peer) {
            Some(Peer::Client(c)) => c.session.is_some(),
            Some(Peer::Server(_)) => true,
            None => false,
        }
    }

    /// Refusals by source address: how many datagrams of each source were refused.
    pub fn refusal_counts(&self) -> Vec<(SocketAddr, u64)> {
        self.refusals.counts()
    }

    /// Seals a datagram the node produced outside `poll_transmit` (e.g. a BYE sent at
    /// shutdown); `None` if there is no session with its destination yet.
    pub fn seal_now(&mut self, now: Instant, t: Transmit) -> Option<Transmit> {
        if self.keys.is_none() {
            return Some(t);
        }
        if !self.connected(t.dest) {
            return None;
        }
        self.route(now, t)
    }

    fn send(&mut self, dest: SocketAddr, payload: Vec<u8>) {
        self.out.push_back(Transmit {
            dest,
            payload: Bytes::from(payload),
        });
    }

    fn hello(&mut self, now: Instant, peer: SocketAddr) {
        let Some(Peer::Client(c)) = self.peers.get_mut(&peer) else {
            return;
        };
        let keys = self.keys.as_ref().expect("clients exist only with keys");
        let Some(key) = keys.for_role(c.role) else {
            // A view-only key cannot ask to publish: say so, send nothing.
            c.refused = Some(RefuseReason::NoKey);
            c.next_hello = now + REFUSED_RETRY;
            return;
        };
        let cookie = c.cookie.map(|cookie| {
            (
                cookie,
                crypto::proof(key, c.role, &c.client_random, &cookie),
            )
        });
        let m = Msg::Hello {
            role: c.role,
            client_random: c.client_random,
            cookie,
        };
        c.next_hello = now + HELLO_RETRY;
        self.send(peer, m.encode());
    }

    fn new_client(&mut self, now: Instant, role: Role) -> Client {
        Client {
            role,
            client_random: self.rng.random16(),
            cookie: None,
            session: None,
            queue: VecDeque::new(),
            next_hello: now,
            refused: None,
        }
    }

    /// Refuses `peer`, at most once per [`REFUSAL_INTERVAL`] per source address; the
    /// first refusal of a source is reported as an event, later ones only counted.
    fn refuse(&mut self, now: Instant, peer: SocketAddr, m: Msg) {
        let Msg::Refuse { reason, .. } = m else {
            return;
        };
        let Refusal { first, may_send } = self.refusals.note(now, peer);
        if first {
            self.events.push_back(SecureEvent::Refused { peer, reason });
        }
        if may_send {
            self.stats.refusals_sent += 1;
            self.send(peer, m.encode());
        }
    }

    fn on_hello(&mut self, now: Instant, from: SocketAddr, m: Msg) {
        let Msg::Hello {
            role,
            client_random,
            cookie,
        } = m
        else {
            return;
        };
        if matches!(self.peers.get(&from), Some(Peer::Client(_))) {
            self.stats.bad_handshake += 1;
            return;
        }
        let refusal = |reason| Msg::Refuse {
            sid: 0,
            reason,
            client_random,
        };
        let keys = self.keys.as_ref().expect("keyed");
        let Some(key) = keys.for_role(role).copied() else {
            self.refuse(now, from, refusal(RefuseReason::NoKey));
            return;
        };
        let cookie_name = format!("{}{:02x?}", role as u8, client_random);
        let Some((cookie, proof)) =
            cookie.filter(|(c, _)| self.cookies.check(now, c, &from, &cookie_name))
        else {
            // First request (or a stale cookie): prove the address first, keep no state.
            let cookie = self.cookies.mint(now, &from, &cookie_name);
            self.send(
                from,
                Msg::Cookie {
                    client_random,
                    cookie,
                }
                .encode(),
            );
            return;
        };
        if !crypto::ct_eq(&proof, &crypto::proof(&key, role, &client_random, &cookie)) {
            self.stats.bad_key += 1;
            self.refuse(now, from, refusal(RefuseReason::BadKey));
            return;
        }
        if let Some(Peer::Server(s)) = self.peers.get(&from) {
            if s.client_random == client_random {
                // A repeated HELLO (or a replayed one): the same session, its ACCEPT again.
                if let Some(a) = s.accept.clone() {
                    self.out.push_back(Transmit {
                        dest: from,
                        payload: a,
                    });
                }
                return;
            }
        }
        if self.peers.len() >= MAX_SESSIONS && !self.peers.contains_key(&from) {
            self.refuse(now, from, refusal(RefuseReason::Full));
            return;
        }
        let mut sid_bytes = [0u8; 4];
        self.rng.fill(&mut sid_bytes);
        let sid = u32::from_be_bytes(sid_bytes);
        let server_random = self.rng.random16();
        let k = session_keys(&key, &client_random, &cookie, &server_random, sid);
        let send = Sealer::new(&k.s2c);
        let mut aad = msg::accept_aad(sid, &client_random, &server_random);
        let n = aad.len();
        send.seal(0, &mut aad, n);
        let mut tag = [0u8; crypto::TAG_LEN];
        tag.copy_from_slice(&aad[n..]);
        let accept = Bytes::from(
            Msg::Accept {
                sid,
                client_random,
                server_random,
                tag,
            }
            .encode(),
        );
        self.peers.insert(
            from,
            Peer::Server(Session {
                sid,
                role,
                send,
                recv: Sealer::new(&k.c2s),
                send_counter: 1,
                window: ReplayWindow::default(),
                last_heard: now,
                client_random,
                accept: Some(accept.clone()),
            }),
        );
        self.stats.sessions += 1;
        self.events
            .push_back(SecureEvent::Connected { peer: from, role });
        self.out.push_back(Transmit {
            dest: from,
            payload: accept,
        });
    }

    fn on_client_msg(&mut self, now: Instant, from: SocketAddr, m: Msg) {
        let keys = self.keys.clone().expect("keyed");
        let Some(Peer::Client(c)) = self.peers.get_mut(&from) else {
            self.stats.bad_handshake += 1;
            return;
        };
        match m {
            Msg::Cookie {
                client_random,
                cookie,
            } if c.session.is_none() && client_random == c.client_random => {
                c.cookie = Some(cookie);
                self.hello(now, from);
            }
            Msg::Accept {
                sid,
                client_random,
                server_random,
                tag,
            } if c.session.is_none() && client_random == c.client_random => {
                let (Some(cookie), Some(key)) = (c.cookie, keys.for_role(c.role)) else {
                    self.stats.bad_handshake += 1;
                    return;
                };
                let k = session_keys(key, &client_random, &cookie, &server_random, sid);
                let recv = Sealer::new(&k.s2c);
                let mut buf = msg::accept_aad(sid, &client_random, &server_random);
                let n = buf.len();
                buf.extend_from_slice(&tag);
                if recv.open(0, &mut buf, n).is_none() {
                    // The server does not hold our key (or the ACCEPT was forged).
                    self.stats.bad_tag += 1;
                    return;
                }
                let mut session = Session {
                    sid,
                    role: c.role,
                    send: Sealer::new(&k.c2s),
                    recv,
                    send_counter: 0,
                    window: ReplayWindow::default(),
                    last_heard: now,
                    client_random,
                    accept: None,
                };
                // The receive window starts after the ACCEPT's counter 0.
                session.window.accept(0);
                for plain in std::mem::take(&mut c.queue) {
                    if let Some(p) = session.seal(&plain) {
                        self.stats.sealed += 1;
                        self.out.push_back(Transmit {
                            dest: from,
                            payload: p,
                        });
                    }
                }
                c.refused = None;
                let role = c.role;
                c.session = Some(session);
                self.stats.sessions += 1;
                self.events
                    .push_back(SecureEvent::Connected { peer: from, role });
            }
            Msg::Refuse {
                sid,
                reason: RefuseReason::UnknownSession,
                ..
            } if c.session.as_ref().is_some_and(|s| s.sid == sid) => {
                // The server lost our session (restart, eviction): start again.
                let role = c.role;
                let queue = std::mem::take(&mut c.queue);
                let mut fresh = self.new_client(now, role);
                fresh.queue = queue;
                self.peers.insert(from, Peer::Client(fresh));
                self.hello(now, from);
            }
            Msg::Refuse {
                reason,
                client_random,
                ..
            } if c.session.is_none() && client_random == c.client_random => {
                if c.refused.is_none() {
                    self.events
                        .push_back(SecureEvent::RefusedBy { peer: from, reason });
                }
                c.refused = Some(reason);
                c.cookie = None;
                c.next_hello = now + REFUSED_RETRY;
            }
            _ => self.stats.bad_handshake += 1,
        }
    }

    fn on_sealed(&mut self, now: Instant, from: SocketAddr, d: &[u8]) {
        let sid = u32::from_be_bytes([d[8], d[9], d[10], d[11]]);
        let counter = u32::from_be_bytes([d[12], d[13], d[14], d[15]]);
        let session = self.peers.get_mut(&from).and_then(Peer::session);
        let Some(s) = session.filter(|s| s.sid == sid) else {
            self.stats.no_session += 1;
            // Tell a client we lost its session, unless we are its client. The REFUSE (37
            // bytes) is smaller than any sealed datagram (≥ 52).
            if !self.connects.contains_key(&from) && d.len() >= 52 {
                let m = Msg::Refuse {
                    sid,
                    reason: RefuseReason::UnknownSession,
                    client_random: [0; RANDOM_LEN],
                };
                self.refuse(now, from, m);
            }
            return;
        };
        if !s.window.check(counter) {
            self.stats.replayed += 1;
            return;
        }
        let mut buf = d.to_vec();
        let Some(range) = s.recv.open(counter, &mut buf, wire::HEADER_LEN) else {
            self.stats.bad_tag += 1;
            return;
        };
        s.window.accept(counter);
        s.last_heard = now;
        let plain = &buf[range];
        let is_server = s.accept.is_some();
        if is_server && s.role == Role::View && !view_may_send(plain) {
            self.stats.forbidden += 1;
            return;
        }
        self.stats.opened += 1;
        self.inner.handle_datagram(now, from, plain);
    }

    fn on_plaintext(&mut self, now: Instant, from: SocketAddr, d: &[u8]) {
        self.stats.plaintext += 1;
        // A keyless subscriber or publisher learns why nothing happens: a REJECT
        // `auth_required` (21 bytes, no larger than what it sent), rate-limited. Other
        // plaintext is only counted.
        let ptype = d[3];
        let asks = ptype == PacketType::Subscribe as u8 || ptype == PacketType::Description as u8;
        if !asks {
            return;
        }
        let Refusal { first, may_send } = self.refusals.note(now, from);
        if first {
            self.events.push_back(SecureEvent::Plaintext { peer: from });
        }
        if may_send && d.len() >= 21 {
            self.stats.refusals_sent += 1;
            let p = Packet {
                header: Header {
                    ptype: PacketType::Reject,
                    flags: 0,
                    ssrc: 0,
                    seq: 0,
                },
                body: Body::Reject {
                    reason: RejectReason::AuthRequired,
                },
            };
            self.out.push_back(Transmit {
                dest: from,
                payload: p.encode(),
            });
        }
    }

    fn sweep(&mut self, now: Instant) {
        if self.next_sweep.is_none_or(|t| now >= t) {
            self.next_sweep = Some(now + Duration::from_secs(1));
            self.peers.retain(|_, p| match p {
                Peer::Server(s) => now.saturating_duration_since(s.last_heard) < SESSION_TIMEOUT,
                Peer::Client(_) => true,
            });
        }
        let due: Vec<SocketAddr> = self
            .peers
            .iter()
            .filter_map(|(a, p)| match p {
                Peer::Client(c) if c.session.is_none() && c.next_hello <= now => Some(*a),
                _ => None,
            })
            .collect();
        for a in due {
            self.hello(now, a);
        }
    }

    /// Routes one datagram of the node: sealed to a peer with a session, queued behind a
    /// handshake this side opens, or dropped.
    fn route(&mut self, now: Instant, t: Transmit) -> Option<Transmit> {
        if !self.peers.contains_key(&t.dest) {
            let Some(&role) = self.connects.get(&t.dest) else {
                self.stats.unsent += 1;
                return None;
            };
            let c = self.new_client(now, role);
            self.peers.insert(t.dest, Peer::Client(c));
            self.hello(now, t.dest);
        }
        let peer = self.peers.get_mut(&t.dest)?;
        if let Peer::Client(c) = peer {
            if c.session.is_none() {
                if c.queue.len() >= MAX_QUEUED {
                    c.queue.pop_front();
                }
                c.queue.push_back(t.payload);
                return None;
            }
        }
        let s = peer.session()?;
        match s.seal(&t.payload) {
            Some(payload) => {
                self.stats.sealed += 1;
                Some(Transmit {
                    dest: t.dest,
                    payload,
                })
            }
            None => {
                // Counter space used up (2^32 datagrams): drop the session; a client
                // opens a new one, a server's client is told so on its next datagram.
                let dest = t.dest;
                self.peers.remove(&dest);
                self.stats.unsent += 1;
                None
            }
        }
    }
}

/// Whether a datagram from a view-only session may reach the node: only what a subscriber
/// sends (§6.2–§6.8), never media or a DESCRIPTION (that would publish).
fn view_may_send(plain: &[u8]) -> bool {
    let Some(&t) = plain.get(3) else {
        return false;
    };
    [
        PacketType::Subscribe,
        PacketType::KeepAlive,
        PacketType::Bye,
        PacketType::Nack,
        PacketType::ReceiverReport,
        PacketType::FecRequest,
    ]
    .iter()
    .any(|p| *p as u8 == t)
}

impl<N: Node> Node for Secure<N> {
    fn handle_datagram(&mut self, now: Instant, from: SocketAddr, d: &[u8]) {
        if self.keys.is_none() {
            return self.inner.handle_datagram(now, from, d);
        }
        if d.len() < wire::HEADER_LEN + 4
            || d[..2] != wire::MAGIC.to_be_bytes()
            || d[2] != wire::VERSION
        {
            self.stats.bad_handshake += 1;
            return;
        }
        match d[3] {
            msg::SEALED => self.on_sealed(now, from, d),
            msg::HELLO..=msg::REFUSE => match Msg::decode(d) {
                Some(m @ Msg::Hello { .. }) => self.on_hello(now, from, m),
                Some(m) => self.on_client_msg(now, from, m),
                None => self.stats.bad_handshake += 1,
            },
            _ => self.on_plaintext(now, from, d),
        }
    }

    fn handle_timeout(&mut self, now: Instant) {
        self.inner.handle_timeout(now);
        if self.keys.is_some() {
            self.sweep(now);
        }
    }

    fn poll_timeout(&self) -> Option<Instant> {
        let mut t = self.inner.poll_timeout();
        if self.keys.is_some() && !self.peers.is_empty() {
            t = soonest(t, self.next_sweep);
            for p in self.peers.values() {
                if let Peer::Client(c) = p {
                    if c.session.is_none() {
                        t = soonest(t, Some(c.next_hello));
                    }
                }
            }
        }
        t
    }

    fn poll_transmit(&mut self, now: Instant) -> Option<Transmit> {
        if self.keys.is_none() {
            return self.inner.poll_transmit(now);
        }
        loop {
            if let Some(t) = self.out.pop_front() {
                return Some(t);
            }
            let t = self.inner.poll_transmit(now)?;
            if let Some(t) = self.route(now, t) {
                return Some(t);
            }
        }
    }

    fn on_send_blocked(&mut self, now: Instant) {
        self.inner.on_send_blocked(now);
    }
}

#[cfg(test)]
mod tests;
