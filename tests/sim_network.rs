//! Network behaviour in a simulated network with virtual time and seeded impairments
//! (the `World` of `framecast::sim`): exact outcomes, deterministic for a seed.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use framecast::proto::jitter::DropReason;
use framecast::proto::node::Node;
use framecast::proto::publisher::{Publisher, PublisherConfig};
use framecast::proto::relay::{Relay, RelayConfig};
use framecast::proto::viewer::{Viewer, ViewerConfig, ViewerEvent};
use framecast::proto::wire::{self, AudioParams, Body, Packet, PacketType};
use framecast::sim::World;
use framecast::sim::netem::{GilbertElliott, LinkConfig};

const MS: Duration = Duration::from_millis(1);
const FPS: u64 = 30;
const AUDIO_BLOCK: usize = 240; // 5 ms at 48 kHz

fn addr(last: u8, port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, last], port))
}

/// A deterministic stand-in for a JPEG: size varies per frame, content encodes the index.
fn frame_bytes(i: u64) -> Bytes {
    let len = 12_000 + (i as usize * 7919) % 9000;
    Bytes::from(
        (0..len)
            .map(|k| (k as u64 ^ (i * 31)) as u8)
            .collect::<Vec<u8>>(),
    )
}

fn audio_block(i: u64) -> Vec<i16> {
    (0..AUDIO_BLOCK * 2)
        .map(|k| ((i as i64 * 977 + k as i64 * 13) % 30_000) as i16)
        .collect()
}

fn server_config(seed: u64) -> PublisherConfig {
    let mut cfg = PublisherConfig::new("cam1", 1280, 720, FPS as u16);
    cfg.audio = Some(AudioParams {
        sample_rate: 48_000,
        channels: 2,
        block_frames: AUDIO_BLOCK as u16,
    });
    cfg.randomize(&mut fastrand::Rng::with_seed(seed));
    cfg
}

#[derive(Default, Debug)]
struct Seen {
    played: BTreeMap<u32, (Instant, Bytes)>,
    dropped: BTreeMap<u32, DropReason>,
    audio: Vec<(u64, Bytes, bool)>,
    descriptions: usize,
    first_frame_at: Option<Instant>,
    latency_raises: usize,
    ended: Vec<Instant>,
}

struct Net {
    world: World,
    server: SocketAddr,
    relay: SocketAddr,
    clients: Vec<SocketAddr>,
    seen: BTreeMap<SocketAddr, Seen>,
    pushed_at: BTreeMap<u32, Instant>,
    next_frame: u64,
    next_audio: u64,
    start: Instant,
    audio: bool,
}

impl Net {
    /// server <- relay (pulls with --upstream) <- clients.
    fn new(seed: u64, n_clients: u8, link: LinkConfig) -> Net {
        Net::with(seed, n_clients, link, server_config(seed), false)
    }

    fn with(
        seed: u64,
        n_clients: u8,
        link: LinkConfig,
        mut scfg: PublisherConfig,
        push: bool,
    ) -> Net {
        let start = Instant::now();
        let mut world = World::new(start, seed);
        world.set_default_link(link);
        let server = addr(1, 5000);
        let relay = addr(2, 5000);
        let mut rcfg = RelayConfig::default();
        if push {
            scfg.push_to = Some(relay);
        } else {
            rcfg.upstream = Some(server);
        }
        world.add_node(server, Publisher::new(scfg));
        world.add_node(relay, Relay::new(rcfg));
        // Warm up: the handshakes settle before the source starts.
        let start = start + Duration::from_millis(20);
        let mut net = Net {
            world,
            server,
            relay,
            clients: Vec::new(),
            seen: BTreeMap::new(),
            pushed_at: BTreeMap::new(),
            next_frame: 0,
            next_audio: 0,
            start,
            audio: true,
        };
        for i in 0..n_clients {
            net.add_client(addr(10 + i, 6000), ViewerConfig::new(relay, "cam1"));
        }
        // In push mode the viewers were refused until the stream was announced; they ask
        // again after half a second.
        let warm = if push {
            Duration::from_millis(600)
        } else {
            Duration::ZERO
        };
        net.start += warm;
        net.world.run_until(net.start);
        net
    }

    fn add_client(&mut self, a: SocketAddr, cfg: ViewerConfig) {
        self.world.add_node(a, Viewer::new(cfg));
        self.clients.push(a);
        self.seen.insert(a, Seen::default());
    }

    fn frame_time(&self, i: u64) -> Instant {
        self.start + Duration::from_nanos(i * 1_000_000_000 / FPS)
    }

    fn audio_time(&self, i: u64) -> Instant {
        self.start + Duration::from_millis(i * 5)
    }

    /// Runs the source (frames and audio at their real times) until `frames` frames were
    /// pushed, then lets everything drain for `tail`.
    fn run(&mut self, frames: u64, tail: Duration) {
        let end = self.next_frame + frames;
        while self.next_frame < end {
            let tf = self.frame_time(self.next_frame);
            let ta = if self.audio {
                self.audio_time(self.next_audio)
            } else {
                tf + MS
            };
            let t = tf.min(ta);
            self.run_until(t);
            let now = self.world.now();
            let server = self.server;
            if ta <= tf {
                let i = self.next_audio;
                self.world
                    .node_mut::<Publisher>(server)
                    .push_audio(now, i * 450, &audio_block(i))
                    .unwrap();
                self.next_audio += 1;
            } else {
                let i = self.next_frame;
                let id = self
                    .world
                    .node_mut::<Publisher>(server)
                    .push_frame(now, i * 3000, &frame_bytes(i))
                    .unwrap();
                self.pushed_at.insert(id, now);
                self.next_frame += 1;
            }
            self.world.poll_all();
        }
        let until = self.world.now() + tail;
        while self.world.now() < until {
            let t = (self.world.now() + 50 * MS).min(until);
            self.run_until(t);
        }
    }

    /// Steps the world to `t`, collecting events after every step so that their times
    /// are exact.
    fn run_until(&mut self, t: Instant) {
        self.world.poll_all();
        while self.world.next_deadline().is_some_and(|d| d <= t) {
            self.world.step();
            self.collect();
        }
        self.world.run_until(t);
        self.collect();
    }

    fn collect(&mut self) {
        let now = self.world.now();
        for a in self.clients.clone() {
            let seen = self.seen.get_mut(&a).unwrap();
            let c = self.world.node_mut::<Viewer>(a);
            while let Some(e) = c.poll_event() {
                match e {
                    ViewerEvent::Frame(f) => {
                        seen.first_frame_at.get_or_insert(now);
                        assert!(
                            seen.played.insert(f.frame_id, (now, f.jpeg)).is_none(),
                            "frame played twice"
                        );
                    }
                    ViewerEvent::FrameDropped {
                        frame_id, reason, ..
                    } => {
                        assert!(
                            seen.dropped.insert(frame_id, reason).is_none(),
                            "frame dropped twice"
                        );
                    }
                    ViewerEvent::Audio(a) => seen.audio.push((a.pts, a.samples, a.concealed)),
                    ViewerEvent::Description(_) => seen.descriptions += 1,
                    ViewerEvent::Rejected(r) => panic!("rejected: {r:?}"),
                    ViewerEvent::LatencyRaised { .. } => seen.latency_raises += 1,
                    ViewerEvent::Ended => seen.ended.push(now),
                }
            }
        }
    }

    fn client(&self, a: SocketAddr) -> &Viewer {
        self.world.node::<Viewer>(a)
    }

    /// Every played frame is byte-identical to what was sent; no frame both played and
    /// dropped.
    fn check_integrity(&self) {
        for (a, s) in &self.seen {
            for (id, (_, jpeg)) in &s.played {
                assert_eq!(
                    jpeg,
                    &frame_bytes(*id as u64),
                    "client {a} frame {id} corrupted"
                );
                assert!(
                    !s.dropped.contains_key(id),
                    "frame {id} both played and dropped"
                );
            }
        }
    }
}

fn all_ids(n: u64) -> Vec<u32> {
    (0..n as u32).collect()
}

#[test]
fn lossless_delivery_is_byte_exact_with_constant_latency() {
    let mut net = Net::new(1, 2, LinkConfig::delayed(MS));
    net.run(90, Duration::from_millis(500));
    net.check_integrity();
    for a in net.clients.clone() {
        let s = &net.seen[&a];
        assert_eq!(
            s.played.keys().copied().collect::<Vec<_>>(),
            all_ids(90),
            "client {a}"
        );
        assert!(s.dropped.is_empty());
        // Latency: every frame plays 100 ms after the fastest transit (2 hops of 1 ms plus
        // pacing of the first chunk, which is zero), so exactly 102 ms after it was pushed.
        for (id, (t, _)) in &s.played {
            let d = t.saturating_duration_since(net.pushed_at[id]);
            assert!(d >= 100 * MS && d <= 103 * MS, "frame {id} latency {d:?}");
        }
        // Audio: every block, in order, bit-exact, nothing concealed.
        let blocks: Vec<_> = s.audio.iter().filter(|(_, _, c)| !c).collect();
        assert!(
            s.audio.iter().all(|(_, _, c)| !c),
            "no concealment on a clean link"
        );
        assert_eq!(blocks.len() as u64, net.next_audio);
        for (i, (pts, samples, _)) in blocks.iter().enumerate() {
            assert_eq!(*pts, i as u64 * 450);
            let want: Vec<u8> = audio_block(i as u64)
                .iter()
                .flat_map(|s| s.to_le_bytes())
                .collect();
            assert_eq!(samples.as_ref(), &want[..]);
        }
        assert_eq!(s.latency_raises, 0, "the latency fits a clean path");
        let st = net.client(a).stats();
        assert_eq!(st.video.detected, 0);
        assert_eq!(st.nacks_sent, 0);
        assert_eq!(st.frames_played, 90);
    }
    let r = net.world.node::<Relay>(net.relay).stats();
    assert_eq!(r.subscribers, 2);
    assert_eq!(r.cache_hits, 0);
    assert!(r.malformed.is_empty());
}

#[test]
fn five_percent_loss_everywhere_is_fully_recovered() {
    let mut net = Net::new(
        7,
        2,
        LinkConfig {
            delay: MS,
            ..LinkConfig::lossy(5.0)
        },
    );
    net.run(300, Duration::from_millis(500));
    net.check_integrity();
    for a in net.clients.clone() {
        let s = &net.seen[&a];
        assert_eq!(
            s.played.len(),
            300,
            "client {a}: dropped {:?} {:?}",
            s.dropped,
            net.client(a).stats()
        );
        let st = net.client(a).stats();
        assert!(st.video.recovered > 100, "{st:?}");
        assert_eq!(st.video.lost, 0);
        assert!(st.frames_recovered > 50);
        assert_eq!(st.audio_concealed, 0, "audio fully recovered too");
    }
    let r = net.world.node::<Relay>(net.relay).stats();
    assert!(r.cache_hits > 0 && r.upstream_requests > 0, "{r:?}");
}

#[test]
fn twenty_percent_loss_accounts_for_every_frame() {
    let mut net = Net::new(
        20,
        2,
        LinkConfig {
            delay: MS,
            ..LinkConfig::lossy(20.0)
        },
    );
    net.run(300, Duration::from_millis(500));
    net.check_integrity();
    for a in net.clients.clone() {
        let s = &net.seen[&a];
        // Every frame is either played intact or reported dropped, never both, never neither.
        // (At 20 % loss the handshake itself may need a few tries: frames sent before the
        // subscription took are not this viewer's.)
        let mut all: Vec<u32> = s.played.keys().chain(s.dropped.keys()).copied().collect();
        all.sort();
        let first = all[0];
        assert!(first <= 10, "subscribed late: {first}");
        assert_eq!(all, (first..300).collect::<Vec<u32>>(), "client {a}");
        eprintln!(
            "client {a}: first {first} played {} dropped {:?}",
            s.played.len(),
            s.dropped
        );
        let st = net.client(a).stats();
        assert_eq!(st.frames_played as usize, s.played.len());
        assert_eq!(
            (st.frames_incomplete + st.frames_late + st.frames_overflow) as usize,
            s.dropped.len()
        );
        // Five retries at 20 % loss per hop still recover nearly everything.
        assert!(
            s.played.len() as u32 >= 300 - first - 3,
            "client {a} played {}",
            s.played.len()
        );
    }
}

#[test]
fn burst_loss_is_recovered() {
    let link = LinkConfig {
        delay: MS,
        burst: Some(GilbertElliott::new(0.03, 8.0)),
        ..LinkConfig::default()
    };
    let mut net = Net::new(3, 2, link);
    net.run(300, Duration::from_millis(500));
    net.check_integrity();
    for a in net.clients.clone() {
        assert_eq!(
            net.seen[&a].played.len(),
            300,
            "client {a}: {:?}",
            net.seen[&a].dropped
        );
    }
}

#[test]
fn reorder_duplication_and_jitter_do_not_lose_or_double_frames() {
    let link = LinkConfig {
        delay: 2 * MS,
        jitter: 2 * MS,
        reorder: 0.05,
        reorder_delay: 3 * MS,
        duplicate: 0.05,
        ..LinkConfig::default()
    };
    let mut net = Net::new(11, 2, link);
    net.run(300, Duration::from_millis(500));
    net.check_integrity();
    for a in net.clients.clone() {
        assert_eq!(net.seen[&a].played.len(), 300);
        let st = net.client(a).stats();
        assert!(st.video.duplicates > 0, "duplicates seen and ignored");
    }
    let r = net.world.node::<Relay>(net.relay).stats();
    assert!(r.duplicates > 0, "relay drops upstream duplicates");
}

#[test]
fn late_joiner_gets_description_and_latest_frame_at_once() {
    let mut net = Net::new(5, 1, LinkConfig::delayed(MS));
    net.run(60, Duration::ZERO);
    let join_at = net.world.now();
    let late = addr(40, 6000);
    net.add_client(late, ViewerConfig::new(net.relay, "cam1"));
    net.world.poll_all();
    net.run(30, Duration::from_millis(300));
    net.check_integrity();
    let s = &net.seen[&late];
    assert!(s.descriptions >= 1);
    // The replayed frame is the last complete one before the join, and it plays first.
    let (&first_id, (t, _)) = s.played.iter().next().unwrap();
    // (Frame 59 was still being paced out at the join.)
    assert_eq!(first_id, 58);
    // It shows after the handshake (one round trip) plus the jitter-buffer latency.
    assert!(
        t.saturating_duration_since(join_at) <= 110 * MS,
        "{:?}",
        t.saturating_duration_since(join_at)
    );
    assert_eq!(
        net.world.node::<Relay>(net.relay).stats().late_join_frames,
        1
    );
    // Then it follows live without gaps.
    let ids: Vec<u32> = s.played.keys().copied().collect();
    assert_eq!(ids, (58..90).collect::<Vec<u32>>());
}

#[test]
fn relay_cache_answers_downstream_loss_without_asking_upstream() {
    let mut net = Net::new(9, 3, LinkConfig::delayed(MS));
    for c in net.clients.clone() {
        net.world.set_link(
            net.relay,
            c,
            LinkConfig {
                delay: MS,
                ..LinkConfig::lossy(10.0)
            },
        );
    }
    net.run(150, Duration::from_millis(500));
    net.check_integrity();
    for a in net.clients.clone() {
        assert_eq!(net.seen[&a].played.len(), 150);
    }
    let r = net.world.node::<Relay>(net.relay).stats();
    assert!(r.cache_hits > 100, "{r:?}");
    assert_eq!(
        r.upstream_requests, 0,
        "every loss was downstream of the cache"
    );
    let s = net.world.node::<Publisher>(net.server).stats();
    assert_eq!(s.relay.cache_hits, 0, "the server was never asked");
}

#[test]
fn relay_forwards_upstream_only_what_it_lacks_once() {
    let mut net = Net::new(13, 4, LinkConfig::delayed(MS));
    net.world.set_link(
        net.server,
        net.relay,
        LinkConfig {
            delay: MS,
            ..LinkConfig::lossy(5.0)
        },
    );
    net.run(150, Duration::from_millis(500));
    net.check_integrity();
    for a in net.clients.clone() {
        assert_eq!(net.seen[&a].played.len(), 150);
    }
    let r = net.world.node::<Relay>(net.relay).stats();
    let lost_upstream = net.world.link_stats(net.server, net.relay).lost;
    assert!(lost_upstream > 0);
    // Four subscribers asked for each loss, the relay asked upstream about once per loss
    // (a second time only if the answer itself was lost).
    eprintln!(
        "upstream requests {} lost upstream {lost_upstream}",
        r.upstream_requests
    );
    assert!(
        r.upstream_requests <= lost_upstream * 2,
        "{r:?} lost {lost_upstream}"
    );
    assert_eq!(r.cache_misses, 0);
}

#[test]
fn slow_subscriber_is_isolated() {
    let mut net = Net::new(17, 2, LinkConfig::delayed(MS));
    let slow = addr(50, 6000);
    let mut cfg = ViewerConfig::new(net.relay, "cam1");
    cfg.max_kbps = 1500; // the stream is about 4 Mbit/s
    net.add_client(slow, cfg);
    net.world.poll_all();
    let mut max_queue = 0;
    for _ in 0..10 {
        net.run(30, Duration::ZERO);
        max_queue = max_queue.max(
            net.world
                .node::<Relay>(net.relay)
                .queued_bytes(&slow)
                .unwrap_or(0),
        );
    }
    net.run(0, Duration::from_millis(500));
    net.check_integrity();
    for a in &net.clients[..2] {
        assert_eq!(
            net.seen[a].played.len(),
            300,
            "fast subscribers get everything"
        );
    }
    let r = net.world.node::<Relay>(net.relay).stats();
    // Its frames wait past its queue-delay budget and are skipped whole (§7.3), long before
    // its queue reaches the byte bound; none arrives late.
    assert!(r.frames_skipped_slow_subscriber > 0, "{r:?}");
    assert_eq!(r.frames_skipped_relay_cpu, 0);
    assert!(
        max_queue <= RelayConfig::default().queue_bytes / 8,
        "{max_queue}"
    );
    assert_eq!(net.client(slow).stats().frames_late, 0);
    let s = &net.seen[&slow];
    assert!(
        s.played.len() < 300 && !s.played.is_empty(),
        "slow one played {}",
        s.played.len()
    );
}

#[test]
fn silent_subscriber_times_out_and_bye_removes_at_once() {
    let mut net = Net::new(19, 2, LinkConfig::delayed(MS));
    net.run(30, Duration::ZERO);
    assert_eq!(net.world.node::<Relay>(net.relay).stats().subscribers, 2);
    // Viewer 0 goes dark (its link to the relay drops everything), client 1 says bye.
    let (c0, c1) = (net.clients[0], net.clients[1]);
    net.world.set_link(c0, net.relay, LinkConfig::lossy(100.0));
    let bye = net.world.node_mut::<Viewer>(c1).bye();
    let now = net.world.now();
    net.world
        .node_mut::<Relay>(net.relay)
        .handle_datagram(now, c1, &bye.payload);
    assert_eq!(net.world.node::<Relay>(net.relay).stats().subscribers, 1);
    net.run(0, Duration::from_secs(4));
    assert_eq!(net.world.node::<Relay>(net.relay).stats().subscribers, 1);
    net.run(0, Duration::from_millis(1500));
    let r = net.world.node::<Relay>(net.relay).stats();
    assert_eq!((r.subscribers, r.evicted, r.byes), (0, 1, 1));
}

#[test]
fn sequence_numbers_wrap_without_a_hiccup() {
    let mut scfg = server_config(23);
    scfg.video_seq = u32::MAX - 100;
    scfg.audio_seq = u32::MAX - 10;
    let mut net = Net::with(
        23,
        1,
        LinkConfig {
            delay: MS,
            ..LinkConfig::lossy(5.0)
        },
        scfg,
        false,
    );
    net.run(60, Duration::from_millis(500));
    net.check_integrity();
    assert_eq!(net.seen[&net.clients[0]].played.len(), 60);
    assert_eq!(net.client(net.clients[0]).stats().audio_concealed, 0);
}

#[test]
fn push_mode_serve_into_relay() {
    let mut net = Net::with(
        29,
        2,
        LinkConfig {
            delay: MS,
            ..LinkConfig::lossy(5.0)
        },
        server_config(29),
        true,
    );
    net.run(90, Duration::from_millis(500));
    net.check_integrity();
    for a in net.clients.clone() {
        assert_eq!(net.seen[&a].played.len(), 90);
    }
}

#[test]
fn an_hour_of_lossy_streaming_stays_bounded() {
    // Virtual time: an hour at 30 fps with 2 % loss runs in seconds.
    let mut net = Net::new(
        31,
        1,
        LinkConfig {
            delay: MS,
            ..LinkConfig::lossy(2.0)
        },
    );
    net.audio = false;
    let mut max_relay = 0;
    let mut max_client = 0;
    for _ in 0..60 {
        net.run(1800, Duration::ZERO);
        max_relay = max_relay.max(net.world.node::<Relay>(net.relay).memory_bytes());
        max_client = max_client.max(net.client(net.clients[0]).memory_bytes());
        net.seen.values_mut().for_each(|s| {
            s.played.clear();
            s.audio.clear();
        });
    }
    net.run(0, Duration::from_millis(500));
    let st = net.client(net.clients[0]).stats();
    assert_eq!(st.frames_played, 108_000, "{st:?}");
    assert!(
        max_relay <= 2 * 8192 * wire::MAX_DATAGRAM,
        "relay memory {max_relay}"
    );
    assert!(max_client <= 4 * 1024 * 1024, "client memory {max_client}");
}

#[test]
fn unproven_subscriber_gets_nothing_larger_than_its_request() {
    let t0 = Instant::now();
    let mut relay = Relay::new(RelayConfig::default());
    let mut server = Publisher::new(server_config(1));
    // Give the relay a stream via push so subscribing makes sense.
    let srv = addr(1, 5000);
    let _ = &mut server;
    let desc = Packet::new(
        PacketType::Description,
        9,
        0,
        Body::Description(wire::Description {
            name: "cam1".into(),
            width: 64,
            height: 64,
            fps_num: 30,
            fps_den: 1,
            audio: None,
            video_seq_base: 0,
        }),
    )
    .encode();
    relay.handle_datagram(t0, srv, &desc);
    let victim = addr(66, 6666);
    let sub = Packet::new(
        PacketType::Subscribe,
        0,
        1,
        Body::Subscribe {
            name: "cam1".into(),
            token: vec![],
            max_kbps: 0,
            latency_ms: 0,
        },
    )
    .encode();
    relay.handle_datagram(t0, victim, &sub);
    let mut out = Vec::new();
    while let Some(t) = relay.poll_transmit(t0) {
        out.push(t);
    }
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].dest, victim);
    assert!(out[0].payload.len() <= sub.len());
    assert!(matches!(
        Packet::decode(&out[0].payload).unwrap().body,
        Body::Retry { .. }
    ));
    // A forged token does not work either.
    let forged = Packet::new(
        PacketType::Subscribe,
        0,
        2,
        Body::Subscribe {
            name: "cam1".into(),
            token: vec![0; 16],
            max_kbps: 0,
            latency_ms: 0,
        },
    )
    .encode();
    relay.handle_datagram(t0, victim, &forged);
    let out: Vec<_> = std::iter::from_fn(|| relay.poll_transmit(t0)).collect();
    assert_eq!(out.len(), 1);
    assert!(matches!(
        Packet::decode(&out[0].payload).unwrap().body,
        Body::Retry { .. }
    ));
    assert_eq!(relay.stats().subscribers, 0);
    // An unpadded SUBSCRIBE is malformed and not answered at all.
    let short = &sub[..40];
    relay.handle_datagram(t0, victim, short);
    assert!(relay.poll_transmit(t0).is_none());
}

/// §6.9: the END reaches every viewer through the relay despite 20 % loss on every link
/// (the publisher sends it 5 times), once, after the last frame played; seeds pinned.
#[test]
fn end_of_stream_survives_loss_and_comes_after_the_last_frame() {
    for seed in [90, 91, 92, 93] {
        let mut net = Net::new(
            seed,
            3,
            LinkConfig {
                delay: MS,
                ..LinkConfig::lossy(20.0)
            },
        );
        net.run(60, Duration::ZERO);
        let server = net.server;
        let now = net.world.now();
        net.world.node_mut::<Publisher>(server).end(now);
        let until = now + Duration::from_secs(2);
        net.run_until(until);
        assert!(net.world.node::<Publisher>(server).end_sent());
        for a in net.clients.clone() {
            let s = &net.seen[&a];
            assert_eq!(s.ended.len(), 1, "seed {seed} client {a}: {:?}", s.ended);
            let last_played = s.played.values().map(|(t, _)| *t).max().unwrap();
            assert!(s.ended[0] >= last_played, "seed {seed} client {a}");
            assert!(net.client(a).ended());
        }
    }
}
