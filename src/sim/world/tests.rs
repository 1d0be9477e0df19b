//! Unit tests of the simulated network: delivery at exact virtual times, seeded determinism,
//! external input, unknown destinations and link overrides.

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
