//! The loss-recovery figures of the protocol in the simulated network, in virtual time:
//! a publisher and one viewer (or a relay between them, `--hops 2`), random or burst loss in
//! both directions, a fixed delay each way; prints frames intact on time and the wire
//! overhead (UDP payload bytes both ways ÷ media bytes).
//!
//! `cargo run --release --example loss_sim -- --loss 20 --delay 10 --latency 120 --frames 3000`

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use framecast::proto::publisher::{Publisher, PublisherConfig};
use framecast::proto::relay::{Relay, RelayConfig};
use framecast::proto::viewer::{Viewer, ViewerConfig, ViewerEvent};
use framecast::sim::World;
use framecast::sim::netem::LinkConfig;

/// `cargo run --release --example loss_sim -- [OPTIONS]`
#[derive(Debug, clap::Parser)]
struct Args {
    /// Loss each way, percent.
    #[arg(long, default_value_t = 10.0)]
    loss: f64,
    /// Mean burst length (Gilbert-Elliott loss); independent loss without it.
    #[arg(long)]
    burst: Option<f64>,
    /// One-way delay, ms.
    #[arg(long = "delay", default_value_t = 10)]
    delay_ms: u64,
    /// The viewer's playout latency, ms.
    #[arg(long = "latency", default_value_t = 120)]
    latency_ms: u64,
    /// Frames sent.
    #[arg(long, default_value_t = 3000)]
    frames: u64,
    /// Bytes per frame.
    #[arg(long, default_value_t = 65_000)]
    frame_bytes: usize,
    /// 1: publisher to viewer; 2: through a relay, loss on both hops.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=2))]
    hops: u8,
    /// Seed of the simulated network.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

fn main() {
    let a = <Args as clap::Parser>::parse();
    let start = Instant::now();
    let mut world = World::new(start, a.seed);
    let mut link = match a.burst {
        Some(b) => LinkConfig::bursty(a.loss, b),
        None => LinkConfig::lossy(a.loss),
    };
    link.delay = Duration::from_millis(a.delay_ms);
    world.set_default_link(link);
    let publisher: SocketAddr = "127.0.0.1:5000".parse().expect("addr");
    let relay: SocketAddr = "127.0.0.2:5000".parse().expect("addr");
    let viewer: SocketAddr = "127.0.1.1:6000".parse().expect("addr");
    let mut cfg = PublisherConfig::new("cam1", 960, 540, 30);
    cfg.randomize(&mut fastrand::Rng::with_seed(a.seed));
    world.add_node(publisher, Publisher::new(cfg));
    let from = if a.hops >= 2 {
        world.add_node(
            relay,
            Relay::new(RelayConfig {
                upstream: Some(publisher),
                ..RelayConfig::default()
            }),
        );
        relay
    } else {
        publisher
    };
    let mut vcfg = ViewerConfig::new(from, "cam1");
    vcfg.latency = Duration::from_millis(a.latency_ms);
    world.add_node(viewer, Viewer::new(vcfg));
    world.run_for(Duration::from_millis(300));
    let t0 = world.now();
    let frame = Bytes::from(
        (0..a.frame_bytes)
            .map(|i| (i * 31 % 251) as u8)
            .collect::<Vec<u8>>(),
    );
    let mut drops: Vec<u32> = Vec::new();
    for i in 0..a.frames {
        world.run_until(t0 + Duration::from_nanos(i * 1_000_000_000 / 30));
        let now = world.now();
        world
            .node_mut::<Publisher>(publisher)
            .push_frame(now, 90_000 + i * 3000, &frame)
            .expect("frame fits");
        while let Some(e) = world.node_mut::<Viewer>(viewer).poll_event() {
            note_drop(&e, &mut drops);
        }
    }
    world.run_for(Duration::from_millis(a.latency_ms + 1000));
    while let Some(e) = world.node_mut::<Viewer>(viewer).poll_event() {
        note_drop(&e, &mut drops);
    }
    let v = world.node::<Viewer>(viewer).stats();
    let p = world.node::<Publisher>(publisher).stats();
    // UDP payload bytes both ways on the first hop; on a second, what the relay sent plus
    // what the viewer sent it (the relay's intake minus what came from the publisher).
    let mut wire = p.relay.bytes_out + p.relay.bytes_in;
    if a.hops >= 2 {
        let r = world.node::<Relay>(relay).stats();
        let from_publisher = p.relay.bytes_out as f64 * (1.0 - a.loss / 100.0);
        wire += r.bytes_out + (r.bytes_in as f64 - from_publisher).max(0.0) as u64;
    }
    let media = a.frames as f64 * a.frame_bytes as f64 * f64::from(a.hops.max(1));
    println!(
        "loss {}%{} | {} ms each way | latency {} ms | hops {} | seed {}",
        a.loss,
        a.burst
            .map_or(String::new(), |b| format!(" (bursts of {b})")),
        a.delay_ms,
        a.latency_ms,
        a.hops,
        a.seed
    );
    println!(
        "intact {:.3}% ({} of {}) | late {} | incomplete {} | overhead {:.3} per hop | rtt {:.1} ms | loss est {:.3}",
        100.0 * v.frames_played as f64 / a.frames as f64,
        v.frames_played,
        a.frames,
        v.frames_late,
        v.frames_incomplete,
        wire as f64 / media,
        v.rtt_ms,
        v.loss_estimate
    );
    if a.hops >= 2 {
        let r = world.node::<Relay>(relay).stats();
        println!(
            "relay: parity from origin {} | chunks restored {} | parity sent {} answered {} | upstream requests {} | cache hits {}",
            r.parity_from_origin,
            r.chunks_restored,
            r.parity_sent,
            r.parity_answered,
            r.upstream_requests,
            r.cache_hits
        );
    }
    if !drops.is_empty() {
        println!("frames dropped: {drops:?}");
    }
    println!(
        "fec: {:?} | requests {} | nacks {} | publisher parity sent {} answered {} | nack-recovered {} | lost {}",
        v.fec,
        v.fec_requests_sent,
        v.nacks_sent,
        p.relay.parity_sent,
        p.relay.parity_answered,
        v.video.recovered,
        v.video.lost
    );
}

fn note_drop(e: &ViewerEvent, drops: &mut Vec<u32>) {
    if let ViewerEvent::FrameDropped { frame_id, .. } = e {
        drops.push(*frame_id);
    }
}
