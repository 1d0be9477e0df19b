//! Loss recovery at a real round trip (proto-spec.md §7.2, §7.6), in the simulated network:
//! 10 ms each way (a 20 ms RTT), independent loss in both directions, a 120 ms playout
//! latency, 10,000 frames of about 48 chunks each. Deterministic for the seeds used.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use framecast::proto::publisher::{Publisher, PublisherConfig};
use framecast::proto::relay::{Relay, RelayConfig};
use framecast::proto::viewer::{Viewer, ViewerConfig, ViewerEvent, ViewerStats};
use framecast::sim::World;
use framecast::sim::netem::LinkConfig;

const FRAME_BYTES: usize = 65_000;

struct Outcome {
    played: u64,
    corrupted: u64,
    dropped: u64,
    stats: ViewerStats,
    /// UDP payload bytes both ways over media bytes.
    overhead: f64,
    /// FEC request entries a relay sent its upstream (two hops).
    relay_fec_requests: u64,
}

fn frame(i: u64) -> Bytes {
    Bytes::from(
        (0..FRAME_BYTES)
            .map(|k| ((k as u64 * 31) ^ (i * 7)) as u8)
            .collect::<Vec<u8>>(),
    )
}

fn run(link: LinkConfig, latency_ms: u64, frames: u64, seed: u64) -> Outcome {
    run_hops(link, latency_ms, frames, seed, 1)
}

/// `hops` 2: the viewer pulls from a relay that pulls from the publisher, the same link on
/// both hops; the overhead is then the first hop's.
fn run_hops(link: LinkConfig, latency_ms: u64, frames: u64, seed: u64, hops: u8) -> Outcome {
    let start = Instant::now();
    let mut world = World::new(start, seed);
    world.set_default_link(link);
    let publisher: SocketAddr = "127.0.0.1:5000".parse().unwrap();
    let viewer: SocketAddr = "127.0.1.1:6000".parse().unwrap();
    let mut cfg = PublisherConfig::new("cam1", 960, 540, 30);
    cfg.randomize(&mut fastrand::Rng::with_seed(seed));
    world.add_node(publisher, Publisher::new(cfg));
    let relay: SocketAddr = "127.0.0.2:5000".parse().unwrap();
    let from = if hops >= 2 {
        let rcfg = RelayConfig {
            upstream: Some(publisher),
            ..RelayConfig::default()
        };
        world.add_node(relay, Relay::new(rcfg));
        relay
    } else {
        publisher
    };
    let mut vcfg = ViewerConfig::new(from, "cam1");
    vcfg.latency = Duration::from_millis(latency_ms);
    world.add_node(viewer, Viewer::new(vcfg));
    world.run_for(Duration::from_millis(300));
    let t0 = world.now();
    let mut out = Outcome {
        played: 0,
        corrupted: 0,
        dropped: 0,
        stats: ViewerStats::default(),
        overhead: 0.0,
        relay_fec_requests: 0,
    };
    // The content differs per frame (in its first bytes) so a frame played under the wrong
    // id would show; frames are built once and reused by index modulo 8 to keep it fast.
    let bank: Vec<Bytes> = (0..8).map(frame).collect();
    let collect = |world: &mut World, out: &mut Outcome| {
        while let Some(e) = world.node_mut::<Viewer>(viewer).poll_event() {
            match e {
                ViewerEvent::Frame(f) => {
                    out.played += 1;
                    if f.jpeg != bank[(f.frame_id % 8) as usize] {
                        out.corrupted += 1;
                    }
                }
                ViewerEvent::FrameDropped { .. } => out.dropped += 1,
                _ => {}
            }
        }
    };
    for i in 0..frames {
        world.run_until(t0 + Duration::from_nanos(i * 1_000_000_000 / 30));
        let now = world.now();
        world
            .node_mut::<Publisher>(publisher)
            .push_frame(now, 90_000 + i * 3000, &bank[(i % 8) as usize])
            .expect("frame fits");
        collect(&mut world, &mut out);
    }
    world.run_for(Duration::from_millis(latency_ms + 1000));
    collect(&mut world, &mut out);
    out.stats = world.node::<Viewer>(viewer).stats();
    if hops >= 2 {
        out.relay_fec_requests = world.node::<Relay>(relay).stats().upstream_fec_requests;
    }
    let p = world.node::<Publisher>(publisher).stats();
    out.overhead =
        (p.relay.bytes_out + p.relay.bytes_in) as f64 / (frames as f64 * FRAME_BYTES as f64);
    out
}

fn lossy(pct: f64) -> LinkConfig {
    LinkConfig {
        delay: Duration::from_millis(10),
        ..LinkConfig::lossy(pct)
    }
}

#[test]
fn ten_percent_loss_each_way_at_20_ms_rtt_keeps_every_frame() {
    let o = run(lossy(10.0), 120, 10_000, 11);
    assert_eq!(o.corrupted, 0);
    assert_eq!(o.played + o.dropped, 10_000, "every frame accounted for");
    assert_eq!(o.played, 10_000, "dropped {}: {:?}", o.dropped, o.stats);
    assert!(o.stats.fec.frames_repaired > 5_000, "{:?}", o.stats.fec);
    assert!(o.overhead <= 1.18, "overhead {:.3}", o.overhead);
}

#[test]
fn twenty_percent_loss_each_way_at_20_ms_rtt_keeps_995_per_mille() {
    let o = run(lossy(20.0), 120, 10_000, 12);
    assert_eq!(o.corrupted, 0);
    assert_eq!(o.played + o.dropped, 10_000, "every frame accounted for");
    assert!(o.played >= 9_950, "played {}: {:?}", o.played, o.stats);
    assert!(o.overhead <= 1.35, "overhead {:.3}", o.overhead);
}

#[test]
fn ten_percent_burst_loss_each_way_at_20_ms_rtt_keeps_999_per_mille() {
    // Gilbert-Elliott bursts of mean 4 in both directions: requests travel back on a sparse
    // flow that one burst can silence for several round trips, and answers sent back to
    // back are lost together. Copies spread over the RTT and burst-aware sizing cover both.
    let link = LinkConfig {
        delay: Duration::from_millis(10),
        ..LinkConfig::bursty(10.0, 4.0)
    };
    let o = run(link, 120, 10_000, 13);
    assert_eq!(o.corrupted, 0);
    assert_eq!(o.played + o.dropped, 10_000, "every frame accounted for");
    assert!(o.played >= 9_990, "played {}: {:?}", o.played, o.stats);
    assert!(o.stats.fec.request_copies > 0, "{:?}", o.stats.fec);
    assert!(o.overhead <= 1.22, "overhead {:.3}", o.overhead);
}

#[test]
fn ten_percent_loss_on_each_of_two_hops_through_a_relay_keeps_every_frame() {
    // The relay lacks some of what its viewer asks for, now and then a chunk lost on its
    // own hop again and again: it asks its upstream for parity (§7.3) instead of waiting
    // for NACKs, and a chunk that completes the code restores the rest at once.
    let o = run_hops(lossy(10.0), 120, 6_000, 2, 2);
    assert_eq!(o.corrupted, 0);
    assert_eq!(o.played + o.dropped, 6_000, "every frame accounted for");
    assert_eq!(o.played, 6_000, "dropped {}: {:?}", o.dropped, o.stats);
    // The first hop carries parity sized for the relay's third of the latency (§7.3).
    assert!(o.overhead <= 1.35, "overhead {:.3}", o.overhead);
    assert!(o.relay_fec_requests > 0);
}

#[test]
fn no_loss_costs_no_parity() {
    let o = run(lossy(0.0), 120, 600, 13);
    assert_eq!(o.played, 600);
    assert_eq!(o.stats.fec.parity_received, 0);
    assert_eq!(o.stats.fec_requests_sent, 0);
    assert!(o.overhead <= 1.04, "overhead {:.3}", o.overhead);
}

#[test]
fn reordering_without_loss_is_neither_loss_nor_repaired() {
    let link = LinkConfig {
        delay: Duration::from_millis(10),
        reorder: 0.05,
        reorder_delay: Duration::from_millis(4),
        ..LinkConfig::default()
    };
    let o = run(link, 120, 3_000, 14);
    assert_eq!(o.played, 3_000);
    assert_eq!(o.stats.nacks_sent, 0, "{:?}", o.stats.video);
    assert_eq!(o.stats.fec_requests_sent, 0);
    assert_eq!(o.stats.video.lost, 0);
    assert!(o.stats.video.reordered > 1_000, "{:?}", o.stats.video);
}

#[test]
fn a_latency_the_path_cannot_meet_is_raised_once_and_then_plays() {
    // 100 Mbit/s: a 65 kB frame takes 5.2 ms to cross, far more than 1 ms of latency.
    let link = LinkConfig {
        delay: Duration::from_millis(1),
        ..LinkConfig::rate_limited(100_000_000, 4 * 1024 * 1024)
    };
    let o = run(link, 1, 600, 15);
    assert_eq!(o.stats.latency_raises, 1, "{:?}", o.stats);
    assert!(
        (5.0..=15.0).contains(&o.stats.latency_ms),
        "raised to {} ms",
        o.stats.latency_ms
    );
    // Only the frames before the raise (at most its 30-frame window) are lost.
    assert!(o.played >= 570, "played {} of 600", o.played);
    assert_eq!(o.corrupted, 0);
}
