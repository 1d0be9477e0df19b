//! Runs the protocol in the deterministic simulated network: a server, a relay and three
//! viewers over links with 10 % loss and 5 ms of jitter, one minute of 30 fps video in
//! virtual time (it takes well under a second), then prints what each viewer got.
//!
//! `cargo run --example simulate_loss -- [loss-percent] [seed]`

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use framecast::proto::publisher::{Publisher, PublisherConfig};
use framecast::proto::relay::{Relay, RelayConfig};
use framecast::proto::viewer::{Viewer, ViewerConfig};
use framecast::sim::World;
use framecast::sim::netem::LinkConfig;

const JITTER_MS: u64 = 5;

/// `cargo run --example simulate_loss -- [LOSS] [SEED]`
#[derive(clap::Parser)]
struct Args {
    /// Loss each way, percent.
    #[arg(default_value_t = 10.0)]
    loss: f64,
    /// Seed of the simulated network.
    #[arg(default_value_t = 1)]
    seed: u64,
}

fn main() {
    let Args { loss, seed } = clap::Parser::parse();
    let start = Instant::now();
    let mut world = World::new(start, seed);
    world.set_default_link(LinkConfig {
        delay: Duration::from_millis(2),
        jitter: Duration::from_millis(JITTER_MS),
        ..LinkConfig::lossy(loss)
    });
    let server: SocketAddr = "127.0.0.1:5000".parse().unwrap();
    let relay: SocketAddr = "127.0.0.2:5000".parse().unwrap();
    let mut cfg = PublisherConfig::new("cam1", 1280, 720, 30);
    cfg.randomize(&mut fastrand::Rng::with_seed(seed));
    world.add_node(server, Publisher::new(cfg));
    world.add_node(
        relay,
        Relay::new(RelayConfig {
            upstream: Some(server),
            ..RelayConfig::default()
        }),
    );
    let viewers: Vec<SocketAddr> = (0..3)
        .map(|i| SocketAddr::from(([127, 0, 1, i], 6000)))
        .collect();
    for &v in &viewers {
        world.add_node(v, Viewer::new(ViewerConfig::new(relay, "cam1")));
    }
    world.run_for(Duration::from_millis(50));
    let frame = Bytes::from(vec![0x5a; 60_000]);
    for i in 0..1800u64 {
        let t = start + Duration::from_millis(50) + Duration::from_nanos(i * 1_000_000_000 / 30);
        world.run_until(t);
        let now = world.now();
        world
            .node_mut::<Publisher>(server)
            .push_frame(now, i * 3000, &frame)
            .expect("frame fits");
        for &v in &viewers {
            while world.node_mut::<Viewer>(v).poll_event().is_some() {}
        }
    }
    world.run_for(Duration::from_millis(500));
    println!("{loss}% loss per link, 5 ms jitter, 1800 frames, seed {seed}");
    for &v in &viewers {
        let s = world.node::<Viewer>(v).stats();
        println!(
            "viewer {v}: played {} | late {} | incomplete {} | recovered {} | unrecovered {} ({} too late) | rtt {:.1} ms | jitter {:.1} ms",
            s.frames_played,
            s.frames_late,
            s.frames_incomplete,
            s.video.recovered,
            s.video.lost,
            s.video.too_late,
            s.rtt_ms,
            s.jitter_ms
        );
    }
    let r = world.node::<Relay>(relay).stats();
    println!(
        "relay: cache hits {} | asked upstream {}",
        r.cache_hits, r.upstream_requests
    );
}
