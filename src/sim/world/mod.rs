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
        // Nodes code FEC as deployed ones do, with the SIMD tables built before they stream
        // (the same bytes either way: `fec::tables_built`).
        crate::proto::fec::warm_up();
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
mod tests;
