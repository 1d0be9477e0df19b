//! A deterministic simulated network for tests and benches: a [`World`] of sans-IO
//! [`Node`]s joined by emulated [`Link`]s, run in virtual time.
//!
//! The shape follows quinn's test `Pair::step` and str0m's `progress`: [`World::step`] jumps
//! virtual time straight to the soonest deadline of any node or link, so an hour of streaming
//! runs in seconds, and the same seed gives the same run, datagram for datagram.
//!
//! Every ordered pair of addresses `(from, to)` has its own one-direction [`Link`], created
//! lazily on the first datagram. Its impairments come from, in order of precedence:
//! [`World::set_link`] for that pair, [`World::set_node_link`] for `from`, then for `to`,
//! then [`World::set_default_link`]. Its seed is [`World::link_seed`], derived from the world
//! seed and the pair only, so adding a node does not change the randomness of other links.
//! A datagram's size, for a link's rate limit, is its UDP payload length.
//!
//! ```
//! # use std::time::{Duration, Instant};
//! # use framecast::sim::World;
//! let mut world = World::new(Instant::now(), 7);
//! // world.add_node(addr, node);
//! // world.with_node(addr, |n: &mut MyNode, now| n.push_frame(now, ..));
//! world.run_for(Duration::from_secs(10));
//! ```

use std::any::Any;
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::proto::node::{Node, Transmit, soonest};
use crate::sim::netem::{Link, LinkConfig, LinkStats, add_sat};

/// How many steps in a row may leave virtual time unchanged before [`World::step`] panics:
/// a node that keeps asking to be woken in the past, or two nodes that ping-pong forever
/// over zero-delay links, is a bug, and this turns the hang into a test failure.
pub const MAX_STALLED_STEPS: u64 = 1_000_000;

/// How many datagrams one node may return from a single drain of
/// [`Node::poll_transmit`] before the world panics (a node that never returns `None`).
pub const MAX_TRANSMITS_PER_DRAIN: usize = 10_000_000;

/// A [`Node`] the [`World`] can hold and hand back by its concrete type.
///
/// Implemented for every `T: Node + Any`; there is nothing to implement by hand.
pub trait SimNode: Node + Any {
    /// `self` as `&dyn Any`, for [`World::node`].
    fn as_any(&self) -> &dyn Any;
    /// `self` as `&mut dyn Any`, for [`World::node_mut`].
    fn as_any_mut(&mut self) -> &mut dyn Any;
}

impl<T: Node + Any> SimNode for T {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}

/// What a simulated link carries: (from, to, payload).
pub type SimDatagram = (SocketAddr, SocketAddr, Bytes);

/// Nodes bound to addresses, joined by emulated links, in virtual time.
pub struct World {
    now: Instant,
    seed: u64,
    nodes: BTreeMap<SocketAddr, Box<dyn SimNode>>,
    links: BTreeMap<(SocketAddr, SocketAddr), Link<SimDatagram>>,
    default_link: LinkConfig,
    pair_links: BTreeMap<(SocketAddr, SocketAddr), LinkConfig>,
    node_links: BTreeMap<SocketAddr, LinkConfig>,
    undeliverable: u64,
    stalled_steps: u64,
    steps: u64,
    /// Scratch buffers reused across steps.
    outbox: Vec<Transmit>,
    due: Vec<SimDatagram>,
}

impl std::fmt::Debug for World {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("World")
            .field("now", &self.now)
            .field("seed", &self.seed)
            .field("nodes", &self.nodes.keys().collect::<Vec<_>>())
            .field("links", &self.links.len())
            .field("undeliverable", &self.undeliverable)
            .field("steps", &self.steps)
            .finish_non_exhaustive()
    }
}

impl World {
    /// An empty world whose virtual clock starts at `start` and whose links draw their
    /// randomness from `seed`. Links default to a perfect link ([`LinkConfig::default`]).
    pub fn new(start: Instant, seed: u64) -> Self {
        Self {
            now: start,
            seed,
            nodes: BTreeMap::new(),
            links: BTreeMap::new(),
            default_link: LinkConfig::default(),
            pair_links: BTreeMap::new(),
            node_links: BTreeMap::new(),
            undeliverable: 0,
            stalled_steps: 0,
            steps: 0,
            outbox: Vec::new(),
            due: Vec::new(),
        }
    }

    /// Binds `node` to `addr` and returns `addr`.
    ///
    /// # Panics
    /// If a node is already bound to `addr` (a bug in the test).
    pub fn add_node<N: SimNode>(&mut self, addr: SocketAddr, node: N) -> SocketAddr {
        assert!(
            !self.nodes.contains_key(&addr),
            "sim: a node is already bound to {addr}"
        );
        self.nodes.insert(addr, Box::new(node));
        addr
    }

    /// The node bound to `addr`, as its concrete type.
    ///
    /// # Panics
    /// If no node is bound to `addr` or it is not a `T` (a bug in the test).
    pub fn node<T: Any>(&self, addr: SocketAddr) -> &T {
        let node = self
            .nodes
            .get(&addr)
            .unwrap_or_else(|| panic!("sim: no node bound to {addr}"));
        node.as_any().downcast_ref::<T>().unwrap_or_else(|| {
            panic!(
                "sim: the node at {addr} is not a {}",
                std::any::type_name::<T>()
            )
        })
    }

    /// The node bound to `addr`, as its concrete type, for node-specific input (for
    /// example pushing a frame with `world.now()`). The next [`World::step`],
    /// [`World::run_until`] or [`World::poll_all`] drains what that input made it send.
    ///
    /// # Panics
    /// If no node is bound to `addr` or it is not a `T` (a bug in the test).
    pub fn node_mut<T: Any>(&mut self, addr: SocketAddr) -> &mut T {
        let node = self
            .nodes
            .get_mut(&addr)
            .unwrap_or_else(|| panic!("sim: no node bound to {addr}"));
        node.as_any_mut().downcast_mut::<T>().unwrap_or_else(|| {
            panic!(
                "sim: the node at {addr} is not a {}",
                std::any::type_name::<T>()
            )
        })
    }

    /// Runs `f` on the node bound to `addr` with the current virtual time, then drains
    /// every node's transmits into the links ([`World::poll_all`]). This is the
    /// borrow-friendly form of `world.node_mut::<T>(a).push_frame(world.now(), ..)`, which
    /// does not compile (`world` is borrowed mutably and immutably at once):
    /// `world.with_node(a, |n: &mut T, now| n.push_frame(now, ..))`.
    ///
    /// # Panics
    /// As [`World::node_mut`].
    pub fn with_node<T: Any, R>(
        &mut self,
        addr: SocketAddr,
        f: impl FnOnce(&mut T, Instant) -> R,
    ) -> R {
        let now = self.now;
        let r = f(self.node_mut::<T>(addr), now);
        self.poll_all();
        r
    }

    /// Whether a node is bound to `addr`.
    pub fn has_node(&self, addr: SocketAddr) -> bool {
        self.nodes.contains_key(&addr)
    }

    /// The current virtual time.
    pub fn now(&self) -> Instant {
        self.now
    }

    /// The world seed given to [`World::new`].
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// How many steps have run so far.
    pub fn steps(&self) -> u64 {
        self.steps
    }

    /// Datagrams sent to (or arriving at) an address with no node; they are dropped.
    pub fn undeliverable(&self) -> u64 {
        self.undeliverable
    }

    /// Sets the impairments of every link without a per-pair or per-node override,
    /// existing links included.
    pub fn set_default_link(&mut self, cfg: LinkConfig) {
        self.default_link = cfg;
        self.refresh_links();
    }

    /// Sets the impairments of the one-direction link `from -> to` (overrides everything
    /// else for that pair).
    pub fn set_link(&mut self, from: SocketAddr, to: SocketAddr, cfg: LinkConfig) {
        self.pair_links.insert((from, to), cfg);
        self.refresh_links();
    }

    /// Sets the impairments of both directions of every link touching `addr`, unless a
    /// per-pair override exists. When both ends have one, the sender's wins.
    pub fn set_node_link(&mut self, addr: SocketAddr, cfg: LinkConfig) {
        self.node_links.insert(addr, cfg);
        self.refresh_links();
    }

    /// The impairments that apply to the link `from -> to` (see the module docs).
    pub fn link_config(&self, from: SocketAddr, to: SocketAddr) -> &LinkConfig {
        self.pair_links
            .get(&(from, to))
            .or_else(|| self.node_links.get(&from))
            .or_else(|| self.node_links.get(&to))
            .unwrap_or(&self.default_link)
    }

    /// Counters of the link `from -> to` (all zero if nothing was ever sent on it).
    pub fn link_stats(&self, from: SocketAddr, to: SocketAddr) -> LinkStats {
        self.links
            .get(&(from, to))
            .map(Link::stats)
            .unwrap_or_default()
    }

    /// The seed of the link `from -> to`: a mix of the world seed and the pair only.
    pub fn link_seed(&self, from: SocketAddr, to: SocketAddr) -> u64 {
        let h = splitmix64(self.seed ^ 0x6672_616d_6563_6173); // "framecas"
        splitmix64(mix_addr(mix_addr(h, from), to))
    }

    /// The soonest deadline of any node or link, if anything is scheduled.
    pub fn next_deadline(&self) -> Option<Instant> {
        let nodes = self.nodes.values().map(|n| n.poll_timeout());
        let links = self.links.values().map(Link::poll_timeout);
        nodes.chain(links).fold(None, soonest)
    }

    /// Drains every node's [`Node::poll_transmit`] at the current time into the links.
    /// [`World::step`] and [`World::run_until`] call this first, so calling it by hand is
    /// only needed to inspect link state right after an external input.
    pub fn poll_all(&mut self) {
        let now = self.now;
        let mut outbox = std::mem::take(&mut self.outbox);
        let addrs: Vec<SocketAddr> = self.nodes.keys().copied().collect();
        for from in addrs {
            if let Some(node) = self.nodes.get_mut(&from) {
                while let Some(t) = node.poll_transmit(now) {
                    outbox.push(t);
                    assert!(
                        outbox.len() < MAX_TRANSMITS_PER_DRAIN,
                        "sim: node {from} returned {MAX_TRANSMITS_PER_DRAIN} transmits in one \
                         drain; does its poll_transmit ever return None?"
                    );
                }
            }
            for t in outbox.drain(..) {
                self.route(from, t);
            }
        }
        self.outbox = outbox;
    }

    /// Advances virtual time to the soonest deadline of any node or link, delivers the
    /// datagrams due then ([`Node::handle_datagram`]), calls [`Node::handle_timeout`] on the
    /// nodes whose deadline is due, and drains every node's transmits into the links.
    /// Returns `false`, without moving time, if nothing is scheduled.
    ///
    /// # Panics
    /// After [`MAX_STALLED_STEPS`] steps in a row without time moving forward.
    pub fn step(&mut self) -> bool {
        self.poll_all();
        let Some(deadline) = self.next_deadline() else {
            return false;
        };
        let t = deadline.max(self.now);
        if t == self.now {
            self.stalled_steps += 1;
            assert!(
                self.stalled_steps <= MAX_STALLED_STEPS,
                "sim: no progress in virtual time after {MAX_STALLED_STEPS} steps at {:?} \
                 (a node keeps asking to be woken in the past, or nodes ping-pong forever over \
                 zero-delay links)",
                self.now
            );
        } else {
            self.stalled_steps = 0;
        }
        self.now = t;
        self.steps += 1;

        // Deliver everything due, in link order (all of it is due exactly at `t`).
        let mut due = std::mem::take(&mut self.due);
        for link in self.links.values_mut() {
            due.extend(std::iter::from_fn(|| link.poll_recv(t)));
        }
        for (from, to, payload) in due.drain(..) {
            match self.nodes.get_mut(&to) {
                Some(node) => node.handle_datagram(t, from, &payload),
                None => self.undeliverable += 1,
            }
        }
        self.due = due;

        for node in self.nodes.values_mut() {
            if node.poll_timeout().is_some_and(|d| d <= t) {
                node.handle_timeout(t);
            }
        }
        self.poll_all();
        true
    }

    /// Steps until no deadline is `<= t`, then sets the clock to `t` (if it is later).
    pub fn run_until(&mut self, t: Instant) {
        loop {
            self.poll_all();
            match self.next_deadline() {
                Some(d) if d <= t => {
                    self.step();
                }
                _ => break,
            }
        }
        if t > self.now {
            self.now = t;
            self.stalled_steps = 0;
        }
    }

    /// Runs for `d` of virtual time ([`World::run_until`] `now + d`).
    pub fn run_for(&mut self, d: Duration) {
        self.run_until(add_sat(self.now, d));
    }

    /// Sends one transmit of node `from` on its link, or counts it as undeliverable.
    fn route(&mut self, from: SocketAddr, t: Transmit) {
        if !self.nodes.contains_key(&t.dest) {
            self.undeliverable += 1;
            return;
        }
        let key = (from, t.dest);
        if !self.links.contains_key(&key) {
            let link = Link::new(
                self.link_config(from, t.dest).clone(),
                self.link_seed(from, t.dest),
            );
            self.links.insert(key, link);
        }
        if let Some(link) = self.links.get_mut(&key) {
            let size = t.payload.len();
            link.send(self.now, (from, t.dest, t.payload), size);
        }
    }

    fn refresh_links(&mut self) {
        let keys: Vec<_> = self.links.keys().copied().collect();
        for (from, to) in keys {
            let cfg = self.link_config(from, to).clone();
            if let Some(link) = self.links.get_mut(&(from, to)) {
                if *link.config() != cfg {
                    link.set_config(cfg);
                }
            }
        }
    }
}

/// SplitMix64 finaliser: a fixed, platform-independent 64-bit mix.
fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn mix_addr(mut h: u64, addr: SocketAddr) -> u64 {
    let (tag, octets): (u64, Vec<u8>) = match addr.ip() {
        IpAddr::V4(ip) => (4, ip.octets().to_vec()),
        IpAddr::V6(ip) => (6, ip.octets().to_vec()),
    };
    h = splitmix64(h ^ tag);
    for chunk in octets.chunks(8) {
        let mut word = [0u8; 8];
        word[..chunk.len()].copy_from_slice(chunk);
        h = splitmix64(h ^ u64::from_le_bytes(word));
    }
    splitmix64(h ^ u64::from(addr.port()))
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;

    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn addr(last: u8) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, last], 5000))
    }

    /// Replies to every datagram with the same payload and records arrival times.
    #[derive(Default)]
    struct Echo {
        received: Vec<(Instant, SocketAddr, Bytes)>,
        out: VecDeque<Transmit>,
    }

    impl Node for Echo {
        fn handle_datagram(&mut self, now: Instant, from: SocketAddr, datagram: &[u8]) {
            let payload = Bytes::copy_from_slice(datagram);
            self.received.push((now, from, payload.clone()));
            self.out.push_back(Transmit {
                dest: from,
                payload,
            });
        }
        fn handle_timeout(&mut self, _now: Instant) {}
        fn poll_timeout(&self) -> Option<Instant> {
            None
        }
        fn poll_transmit(&mut self, _now: Instant) -> Option<Transmit> {
            self.out.pop_front()
        }
    }

    /// Sends numbered pings to `peer`: either one at a time, the next when the previous
    /// comes back (`period == None`), or one every `period` from `start` regardless.
    struct Pinger {
        peer: SocketAddr,
        count: u32,
        sent: u32,
        period: Option<Duration>,
        next: Option<Instant>,
        received: Vec<(Instant, u32)>,
        out: VecDeque<Transmit>,
    }

    impl Pinger {
        fn new(peer: SocketAddr, count: u32, period: Option<Duration>) -> Self {
            Self {
                peer,
                count,
                sent: 0,
                period,
                next: None,
                received: Vec::new(),
                out: VecDeque::new(),
            }
        }

        /// External input: starts pinging at `now`.
        fn start(&mut self, now: Instant) {
            self.ping();
            self.next = self.period.map(|p| now + p);
        }

        fn ping(&mut self) {
            if self.sent < self.count {
                let payload = Bytes::copy_from_slice(&self.sent.to_be_bytes());
                self.out.push_back(Transmit {
                    dest: self.peer,
                    payload,
                });
                self.sent += 1;
            }
        }
    }

    impl Node for Pinger {
        fn handle_datagram(&mut self, now: Instant, _from: SocketAddr, datagram: &[u8]) {
            let Ok(n) = <[u8; 4]>::try_from(datagram) else {
                return;
            };
            self.received.push((now, u32::from_be_bytes(n)));
            if self.period.is_none() {
                self.ping();
            }
        }
        fn handle_timeout(&mut self, now: Instant) {
            if let (Some(next), Some(period)) = (self.next, self.period) {
                if next <= now {
                    self.ping();
                    self.next = (self.sent < self.count).then(|| next + period);
                }
            }
        }
        fn poll_timeout(&self) -> Option<Instant> {
            self.next
        }
        fn poll_transmit(&mut self, _now: Instant) -> Option<Transmit> {
            self.out.pop_front()
        }
    }

    #[test]
    fn ping_pong_over_delayed_link_arrives_at_exact_virtual_times() {
        let t0 = Instant::now();
        let mut world = World::new(t0, 1);
        let (a, b) = (addr(1), addr(2));
        world.add_node(a, Pinger::new(b, 5, None));
        world.add_node(b, Echo::default());
        world.set_link(a, b, LinkConfig::delayed(10 * MS));
        world.set_link(b, a, LinkConfig::delayed(15 * MS));

        world.with_node(a, Pinger::start);
        world.run_for(Duration::from_secs(1));
        assert_eq!(world.now(), t0 + Duration::from_secs(1));

        let pongs: Vec<_> = (0..5).map(|k| (t0 + 25 * MS * (k + 1), k)).collect();
        assert_eq!(world.node::<Pinger>(a).received, pongs);
        let pings: Vec<_> = world
            .node::<Echo>(b)
            .received
            .iter()
            .map(|(t, from, _)| (*t, *from))
            .collect();
        let expect: Vec<_> = (0..5).map(|k| (t0 + 10 * MS + 25 * MS * k, a)).collect();
        assert_eq!(pings, expect);
        assert_eq!(world.link_stats(a, b).delivered, 5);
        assert_eq!(world.link_stats(b, a).delivered, 5);
        assert!(!world.step(), "nothing left to do");
    }

    /// Runs 1000 periodic pings over 20 % loss each way; returns what came back, when
    /// (relative to the start) and the stats of both links.
    fn lossy_run(seed: u64) -> (Vec<(Duration, u32)>, LinkStats, LinkStats) {
        let t0 = Instant::now();
        let mut world = World::new(t0, seed);
        let (a, b) = (addr(1), addr(2));
        world.add_node(a, Pinger::new(b, 1000, Some(MS)));
        world.add_node(b, Echo::default());
        world.set_default_link(LinkConfig {
            delay: 5 * MS,
            jitter: 2 * MS,
            ..LinkConfig::lossy(20.0)
        });
        world.with_node(a, Pinger::start);
        world.run_for(Duration::from_secs(2));
        let received = world
            .node::<Pinger>(a)
            .received
            .iter()
            .map(|(t, n)| (t.duration_since(t0), *n))
            .collect();
        (received, world.link_stats(a, b), world.link_stats(b, a))
    }

    #[test]
    fn lossy_link_is_deterministic_for_a_seed() {
        let (got, ab, ba) = lossy_run(99);
        assert_eq!((got.clone(), ab, ba), lossy_run(99), "same seed, same run");

        assert_eq!(ab.sent, 1000);
        assert_eq!(ab.sent, ab.delivered + ab.lost);
        assert_eq!(ba.sent, ab.delivered);
        assert_eq!(got.len() as u64, ba.delivered);
        // 0.8 * 0.8 = 64 % round trip.
        assert!((560..=720).contains(&got.len()), "{} came back", got.len());

        assert_ne!(got, lossy_run(100).0, "another seed, another run");
    }

    #[test]
    fn link_seeds_depend_on_world_seed_and_pair_only() {
        let w1 = World::new(Instant::now(), 5);
        let w2 = World::new(Instant::now(), 5);
        let w3 = World::new(Instant::now(), 6);
        let (a, b) = (addr(1), addr(2));
        assert_eq!(w1.link_seed(a, b), w2.link_seed(a, b));
        assert_ne!(w1.link_seed(a, b), w1.link_seed(b, a));
        assert_ne!(w1.link_seed(a, b), w3.link_seed(a, b));
        let v6 = SocketAddr::from(([0, 0, 0, 0, 0, 0, 0, 1], 5000));
        assert_ne!(w1.link_seed(a, v6), w1.link_seed(a, b));
    }

    /// Wakes every `period` and sends a tick to `peer`.
    struct Ticker {
        peer: SocketAddr,
        period: Duration,
        next: Instant,
        ticks: u64,
        out: Option<Transmit>,
    }

    impl Node for Ticker {
        fn handle_datagram(&mut self, _: Instant, _: SocketAddr, _: &[u8]) {}
        fn handle_timeout(&mut self, now: Instant) {
            while self.next <= now {
                self.ticks += 1;
                self.next += self.period;
                self.out = Some(Transmit {
                    dest: self.peer,
                    payload: Bytes::from_static(b"tick"),
                });
            }
        }
        fn poll_timeout(&self) -> Option<Instant> {
            Some(self.next)
        }
        fn poll_transmit(&mut self, _: Instant) -> Option<Transmit> {
            self.out.take()
        }
    }

    #[test]
    fn an_hour_of_virtual_time_runs_fast() {
        let t0 = Instant::now();
        let mut world = World::new(t0, 3);
        let (a, b) = (addr(1), addr(2));
        let period = 50 * MS;
        world.add_node(
            a,
            Ticker {
                peer: b,
                period,
                next: t0 + period,
                ticks: 0,
                out: None,
            },
        );
        world.add_node(b, Echo::default());
        world.set_default_link(LinkConfig {
            delay: 20 * MS,
            ..LinkConfig::lossy(10.0)
        });
        let hour = Duration::from_secs(3600);
        world.run_for(hour);
        assert_eq!(world.now(), t0 + hour);
        assert_eq!(world.node::<Ticker>(a).ticks, 72_000);
        let ab = world.link_stats(a, b);
        // The tick sent at exactly t0 + 1h is still in flight.
        assert_eq!(ab.sent, 72_000);
        assert_eq!(ab.delivered + ab.lost + 1, ab.sent);
        assert_eq!(world.node::<Echo>(b).received.len() as u64, ab.delivered);
        assert_eq!(world.link_stats(b, a).sent, ab.delivered);
        // Wall-clock time is not asserted (machine-dependent); it takes well under a second
        // in release and a few seconds in debug builds.
        assert!(t0.elapsed() < Duration::from_secs(300));
    }

    #[test]
    fn external_input_is_drained_by_the_next_run() {
        let t0 = Instant::now();
        let mut world = World::new(t0, 1);
        let (a, b) = (addr(1), addr(2));
        world.add_node(a, Pinger::new(b, 1, None));
        world.add_node(b, Echo::default());
        world.run_for(5 * MS);
        // Input through `node_mut` is drained at the start of the next step.
        let now = world.now();
        world.node_mut::<Pinger>(a).start(now);
        world.run_for(MS);
        assert_eq!(world.node::<Pinger>(a).received, vec![(t0 + 5 * MS, 0)]);
    }

    #[test]
    fn datagrams_to_nowhere_are_counted_and_dropped() {
        let mut world = World::new(Instant::now(), 1);
        let a = world.add_node(addr(1), Pinger::new(addr(9), 3, Some(MS)));
        world.with_node(a, Pinger::start);
        world.run_for(10 * MS);
        assert_eq!(world.undeliverable(), 3);
        assert_eq!(world.link_stats(a, addr(9)), LinkStats::default());
        assert!(!world.step());
    }

    #[test]
    fn per_pair_overrides_per_node_overrides_default() {
        let t0 = Instant::now();
        let mut world = World::new(t0, 1);
        let (a, b, c) = (addr(1), addr(2), addr(3));
        world.set_default_link(LinkConfig::delayed(MS));
        world.set_node_link(b, LinkConfig::delayed(2 * MS));
        world.set_link(a, b, LinkConfig::delayed(3 * MS));
        assert_eq!(world.link_config(a, b).delay, 3 * MS);
        assert_eq!(world.link_config(b, a).delay, 2 * MS);
        assert_eq!(world.link_config(c, b).delay, 2 * MS);
        assert_eq!(world.link_config(a, c).delay, MS);

        world.add_node(a, Pinger::new(b, 1, None));
        world.add_node(b, Echo::default());
        world.with_node(a, Pinger::start);
        world.run_for(Duration::from_secs(1));
        assert_eq!(world.node::<Pinger>(a).received, vec![(t0 + 5 * MS, 0)]);
    }

    #[test]
    #[should_panic(expected = "is not a")]
    fn wrong_node_type_panics_clearly() {
        let mut world = World::new(Instant::now(), 1);
        let a = world.add_node(addr(1), Echo::default());
        let _ = world.node::<Pinger>(a);
    }

    /// Always asks to be woken at a fixed instant, even once it has passed.
    struct Stuck(Instant);

    impl Node for Stuck {
        fn handle_datagram(&mut self, _: Instant, _: SocketAddr, _: &[u8]) {}
        fn handle_timeout(&mut self, _: Instant) {}
        fn poll_timeout(&self) -> Option<Instant> {
            Some(self.0)
        }
        fn poll_transmit(&mut self, _: Instant) -> Option<Transmit> {
            None
        }
    }

    #[test]
    #[should_panic(expected = "no progress in virtual time")]
    fn a_node_that_never_settles_is_detected() {
        let t0 = Instant::now();
        let mut world = World::new(t0, 1);
        world.add_node(addr(1), Stuck(t0));
        world.run_for(MS);
    }
}
