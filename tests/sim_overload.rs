//! Overload in the simulated network (proto-spec.md §7.3): a relay that can send only so many
//! datagrams a second (a stand-in for its CPU), or a subscriber whose rate cap is below the
//! stream's rate, skips whole frames evenly (the frame rate drops, the newest frame wins) and
//! no viewer plays a frame late because of the relay; each viewer is told of the frames
//! skipped for it (SKIP, §6.10) and asks for none of them.

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use framecast::proto::node::{Node, Transmit, soonest};
use framecast::proto::publisher::{Publisher, PublisherConfig};
use framecast::proto::relay::{OverloadLimit, Relay, RelayConfig};
use framecast::proto::viewer::{Viewer, ViewerConfig, ViewerEvent};
use framecast::sim::World;
use framecast::sim::netem::LinkConfig;

const MS: Duration = Duration::from_millis(1);
const FPS: u64 = 30;

fn addr(last: u8, port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, last], port))
}

/// A deterministic stand-in for a JPEG of 14–18 kB (12–15 chunks).
fn frame_bytes(i: u64) -> Bytes {
    let len = 14_000 + (i as usize * 7919) % 4000;
    Bytes::from((0..len).map(|k| (k as u64 ^ i) as u8).collect::<Vec<u8>>())
}

/// A relay that can send at most `per_sec` datagrams a second (bursts of 64, one
/// `sendmmsg`): what a relay whose CPU is the limit looks like from outside. Like the event
/// loop, it takes what the relay has to send in rounds of up to `round` datagrams and hands
/// them to the network at that rate: a datagram taken at the start of a round leaves up to
/// `round / per_sec` later.
struct Throttled {
    relay: Relay,
    per_sec: f64,
    tokens: f64,
    last: Instant,
    /// It has datagrams it could not send yet.
    starved: bool,
    round: usize,
    taken: VecDeque<Transmit>,
}

impl Throttled {
    fn next_token(&self) -> Instant {
        // Rounded up to whole µs so that the wake-up finds the token there.
        let us = ((1.0 - self.tokens).max(0.0) / self.per_sec * 1e6).ceil() as u64 + 1;
        self.last + Duration::from_micros(us)
    }
}

impl Node for Throttled {
    fn handle_datagram(&mut self, now: Instant, from: SocketAddr, d: &[u8]) {
        self.relay.handle_datagram(now, from, d)
    }

    fn handle_timeout(&mut self, now: Instant) {
        self.relay.handle_timeout(now)
    }

    fn poll_timeout(&self) -> Option<Instant> {
        let own = self.starved.then(|| self.next_token());
        soonest(self.relay.poll_timeout(), own)
    }

    fn poll_transmit(&mut self, now: Instant) -> Option<Transmit> {
        let dt = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + dt * self.per_sec).min(64.0);
        self.last = now;
        if self.tokens < 1.0 {
            self.starved = true;
            return None;
        }
        if self.taken.is_empty() {
            while self.taken.len() < self.round {
                match self.relay.poll_transmit(now) {
                    Some(t) => self.taken.push_back(t),
                    None => break,
                }
            }
        }
        match self.taken.pop_front() {
            Some(t) => {
                self.tokens -= 1.0;
                Some(t)
            }
            None => {
                self.starved = false;
                None
            }
        }
    }
}

#[derive(Default)]
struct Seen {
    played: Vec<u32>,
    late: u64,
    incomplete: u64,
    skipped: u64,
    nacks: u64,
    /// `nacks` after the first second (the join, while the relay fills its cache).
    nacks_at_warmup: u64,
}

struct Net {
    world: World,
    server: SocketAddr,
    relay: SocketAddr,
    viewers: Vec<SocketAddr>,
    seen: BTreeMap<SocketAddr, Seen>,
    start: Instant,
}

impl Net {
    /// server <- relay (pulls, sends at most `relay_per_sec` datagrams/s) <- `n` viewers,
    /// the last `capped` of them with a rate cap of `cap_kbps`.
    fn new(seed: u64, n: u8, relay_per_sec: f64, capped: u8, cap_kbps: u32) -> Net {
        Net::with_rounds(seed, n, relay_per_sec, capped, cap_kbps, 1)
    }

    /// As [`Net::new`], the relay's datagrams taken in rounds of up to `round`.
    fn with_rounds(
        seed: u64,
        n: u8,
        relay_per_sec: f64,
        capped: u8,
        cap_kbps: u32,
        round: usize,
    ) -> Net {
        let start = Instant::now();
        let mut world = World::new(start, seed);
        world.set_default_link(LinkConfig::delayed(MS));
        let server = addr(1, 5000);
        let relay = addr(2, 5000);
        let mut scfg = PublisherConfig::new("cam1", 960, 540, FPS as u16);
        scfg.randomize(&mut fastrand::Rng::with_seed(seed));
        let rcfg = RelayConfig {
            upstream: Some(server),
            ..RelayConfig::default()
        };
        world.add_node(server, Publisher::new(scfg));
        world.add_node(
            relay,
            Throttled {
                relay: Relay::new(rcfg),
                per_sec: relay_per_sec,
                tokens: 64.0,
                last: start,
                starved: false,
                round,
                taken: VecDeque::new(),
            },
        );
        let mut net = Net {
            world,
            server,
            relay,
            viewers: Vec::new(),
            seen: BTreeMap::new(),
            start: start + 20 * MS,
        };
        for i in 0..n {
            let a = addr(10 + i, 6000);
            let mut cfg = ViewerConfig::new(relay, "cam1");
            if i >= n - capped {
                cfg.max_kbps = cap_kbps;
            }
            net.world.add_node(a, Viewer::new(cfg));
            net.viewers.push(a);
            net.seen.insert(a, Seen::default());
        }
        net.world.run_until(net.start);
        net
    }

    /// Pushes `frames` frames at 30 fps, then lets everything drain for 500 ms.
    fn run(&mut self, frames: u64) {
        for i in 0..frames {
            let t = self.start + Duration::from_nanos(i * 1_000_000_000 / FPS);
            self.run_until(t);
            let now = self.world.now();
            self.world
                .node_mut::<Publisher>(self.server)
                .push_frame(now, i * 3000, &frame_bytes(i))
                .unwrap();
            self.world.poll_all();
            if i == FPS {
                for s in self.seen.values_mut() {
                    s.nacks_at_warmup = s.nacks;
                }
            }
        }
        let end = self.world.now() + 500 * MS;
        self.run_until(end);
    }

    fn run_until(&mut self, t: Instant) {
        self.world.run_until(t);
        for a in self.viewers.clone() {
            let seen = self.seen.get_mut(&a).unwrap();
            let v = self.world.node_mut::<Viewer>(a);
            while let Some(e) = v.poll_event() {
                if let ViewerEvent::Frame(f) = e {
                    assert_eq!(f.jpeg, frame_bytes(f.frame_id as u64), "frame corrupted");
                    seen.played.push(f.frame_id);
                }
            }
            let s = v.stats();
            seen.late = s.frames_late;
            seen.incomplete = s.frames_incomplete;
            seen.skipped = s.frames_skipped_by_relay;
            seen.nacks = s.nacks_sent + s.fec_requests_sent;
        }
    }

    fn relay(&self) -> &Relay {
        &self.world.node::<Throttled>(self.relay).relay
    }
}

/// The longest run of frames skipped in a row among `played` (ids 0..frames), ignoring the
/// first `warmup` frames.
fn longest_gap(played: &[u32], warmup: u32, frames: u32) -> u32 {
    let mut ids: Vec<u32> = played.iter().copied().filter(|&f| f >= warmup).collect();
    ids.push(frames);
    let mut prev = warmup;
    let mut gap = 0;
    for f in ids {
        gap = gap.max(f.saturating_sub(prev));
        prev = f + 1;
    }
    gap
}

#[test]
fn relay_below_capacity_skips_nothing() {
    // 8 viewers × ~450 datagrams/s = 3600/s against 6000/s.
    let mut net = Net::new(3, 8, 6000.0, 0, 0);
    net.run(150);
    for (a, s) in &net.seen {
        assert_eq!(s.played.len(), 150, "viewer {a}");
        assert_eq!((s.late, s.incomplete), (0, 0), "viewer {a}");
    }
    let r = net.relay().stats();
    assert_eq!(r.frames_skipped_relay_cpu, 0);
    assert_eq!(r.overloaded, None);
}

#[test]
fn relay_at_twice_its_capacity_skips_whole_frames_evenly_none_late() {
    // 8 viewers × ~450 datagrams/s = 3600/s against 1800/s: twice the capacity.
    let frames = 300u32;
    let mut net = Net::new(5, 8, 1800.0, 0, 0);
    net.run(frames as u64);
    let r = net.relay().stats();
    assert!(r.frames_skipped_relay_cpu > 0, "{r:?}");
    assert_eq!(r.frames_skipped_slow_subscriber, 0);
    assert_eq!(r.frames_skipped_socket_buffer, 0);
    for (a, s) in &net.seen {
        let played = s.played.len() as u32;
        assert!(played * 100 >= frames * 40, "viewer {a} played {played}");
        assert!(played < frames, "viewer {a} played {played}");
        assert_eq!(s.late, 0, "viewer {a}: no frame late");
        assert_eq!(s.incomplete, 0, "viewer {a}: never half a frame");
        // Every frame not played was skipped by the relay, said so, and not asked for.
        assert_eq!(played as u64 + s.skipped, frames as u64, "viewer {a}");
        // After the join (a relay that joins a stream mid-frame may leave a viewer asking
        // for the rest of its first frames).
        assert_eq!(s.nacks - s.nacks_at_warmup, 0, "viewer {a}");
        // Evenly: never more than 3 frames in a row skipped after the first second (a turn
        // sends a subscriber's whole frame, and the one whose frame started longest ago goes
        // first, §7.3).
        let gap = longest_gap(&s.played, 30, frames);
        assert!(gap <= 3, "viewer {a} skipped {gap} frames in a row");
        // The newest frame wins: frames are skipped from the old end, so one of the last two
        // frames pushed is played.
        assert!(*s.played.last().unwrap() >= frames - 2, "viewer {a}");
    }
    // And evenly across viewers: within a tenth of the frames of each other.
    let played: Vec<u32> = net.seen.values().map(|s| s.played.len() as u32).collect();
    let (min, max) = (played.iter().min().unwrap(), played.iter().max().unwrap());
    assert!(max - min <= frames / 10, "uneven: {played:?}");
}

#[test]
fn one_slow_subscriber_skips_frames_alone_and_is_named() {
    // 4 viewers; the last asks for 2 Mbit/s of a ~4 Mbit/s stream.
    let frames = 300u32;
    let mut net = Net::new(7, 4, 20_000.0, 1, 2000);
    net.run(frames as u64);
    let slow = *net.viewers.last().unwrap();
    for (a, s) in &net.seen {
        assert_eq!(s.late, 0, "viewer {a}: no frame late");
        assert_eq!(s.incomplete, 0, "viewer {a}: never half a frame");
        if *a != slow {
            assert_eq!(s.played.len() as u32, frames, "viewer {a}");
        }
    }
    let s = &net.seen[&slow];
    let played = s.played.len() as u32;
    assert!(
        played * 100 >= frames * 30 && played < frames,
        "slow played {played}"
    );
    assert!(longest_gap(&s.played, 30, frames) <= 4);
    let r = net.relay().stats();
    assert!(r.frames_skipped_slow_subscriber > 0);
    assert_eq!(r.frames_skipped_relay_cpu, 0);
    assert_eq!(r.overloaded, Some(OverloadLimit::SlowSubscriber));
}

#[test]
fn frames_taken_in_short_rounds_are_not_late_at_twice_capacity_long_rounds_are() {
    // The event loop takes datagrams from the relay in rounds sized to last about 8 ms
    // (PULL_SPAN in src/driver/event_loop.rs): at 1800 datagrams/s, 15.
    let frames = 240u32;
    let mut net = Net::with_rounds(5, 8, 1800.0, 0, 0, 15);
    net.run(frames as u64);
    assert!(net.relay().stats().frames_skipped_relay_cpu > 0);
    for (a, s) in &net.seen {
        let played = s.played.len() as u32;
        assert!(played * 100 >= frames * 40, "viewer {a} played {played}");
        assert_eq!((s.late, s.incomplete), (0, 0), "viewer {a}");
    }
    // Rounds a third of a second long (a fixed 32,768-datagram round of a relay at a tenth
    // of a core) send what passed the relay's time bound long after: frames not whole by
    // their playout time (late, or dropped incomplete as their tails come after it).
    let mut slow = Net::with_rounds(5, 8, 1800.0, 0, 0, 600);
    slow.run(frames as u64);
    let behind: u64 = slow.seen.values().map(|s| s.late + s.incomplete).sum();
    assert!(
        behind > 0,
        "long rounds make frames miss their playout time"
    );
}
