//! The relay's send paths on real loopback sockets: GSO (the default), GSO refused (forced
//! off, as after a kernel or route refusal) and sender threads. Each carries serve ->
//! relay -> two players with every frame byte-identical (CRC32 of the JPEG bytes) and in
//! order; the socket figures show which path was taken. Bounded by the roles' own
//! `--duration`; no sleep is used to synchronise anything.
#![cfg(feature = "jpeg")]

use std::net::SocketAddr;
use std::sync::atomic::AtomicBool;

use framecast::app::play::{Play, PlayArgs, PlayReport};
use framecast::app::relay::{RelayArgs, RelayReport, RelayRole, SendThreads};
use framecast::app::serve::{Serve, ServeArgs};

fn chain(tweak: impl FnOnce(&mut RelayArgs)) -> (RelayReport, Vec<PlayReport>) {
    let lo: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let mut s = ServeArgs::new(lo);
    s.source = "test:640x360@30".into();
    s.duration = Some(2.0);
    s.start_delay_ms = 300;
    s.seed = Some(9);
    s.name = "cam1".into();
    let mut serve = Serve::bind(s).unwrap();
    serve.record_checksums = true;
    serve.status = false;
    let mut r = RelayArgs::new(lo);
    r.duration = Some(3.2);
    r.upstream = Some(serve.local_addr());
    tweak(&mut r);
    let mut relay = RelayRole::bind(r).unwrap();
    relay.status = false;
    let relay_addr = relay.local_addr();
    let players: Vec<Play> = (0..2)
        .map(|_| {
            let mut p = PlayArgs::new(relay_addr, "cam1");
            p.duration = Some(3.0);
            let mut play = Play::bind(p).unwrap();
            play.record_checksums = true;
            play.status = false;
            play
        })
        .collect();
    std::thread::scope(|sc| {
        let relay_t = sc.spawn(|| relay.run(&AtomicBool::new(false)).unwrap());
        let player_t: Vec<_> = players
            .into_iter()
            .map(|p| sc.spawn(|| p.run(&AtomicBool::new(false)).unwrap()))
            .collect();
        let sent = serve.run(&AtomicBool::new(false)).unwrap();
        assert!(
            sent.frame_crcs.len() >= 55,
            "sent {}",
            sent.frame_crcs.len()
        );
        let played: Vec<PlayReport> = player_t.into_iter().map(|t| t.join().unwrap()).collect();
        for p in &played {
            // Pulled: the players subscribed before the first frame, so they get them all.
            assert_eq!(
                p.frame_crcs, sent.frame_crcs,
                "every frame, byte-identical, in order"
            );
            assert_eq!(p.client.frames_late + p.client.frames_incomplete, 0);
        }
        let relay = relay_t.join().unwrap();
        assert_eq!(relay.relay.queue_frames_dropped, 0);
        assert_eq!((relay.io.send_errors, relay.io.would_block), (0, 0));
        (relay, played)
    })
}

#[test]
fn gso_sends_reach_gro_players_whole() {
    let (relay, played) = chain(|r| r.send_threads = SendThreads::Fixed(0));
    assert_eq!(relay.io.send_threads, 0);
    assert!(relay.io.gso, "this kernel has UDP GSO");
    assert!(relay.io.gso_sends > 0, "{:?}", relay.io);
    assert_eq!(relay.io.sent, relay.relay.datagrams_out);
    for p in &played {
        assert!(p.io.gro, "this kernel has UDP GRO");
        assert!(p.io.gro_receives > 0, "{:?}", p.io);
    }
}

#[test]
fn a_relay_without_gso_still_delivers_every_frame() {
    let (relay, _) = chain(|r| r.no_gso = true);
    assert!(!relay.io.gso);
    assert_eq!(relay.io.gso_sends, 0);
    assert_eq!(relay.io.sent, relay.relay.datagrams_out);
}

#[test]
fn sender_threads_deliver_every_frame_in_order() {
    let (relay, _) = chain(|r| r.send_threads = SendThreads::Fixed(2));
    assert_eq!(relay.io.send_threads, 2);
    assert!(relay.io.gso_sends > 0, "{:?}", relay.io);
    assert_eq!(relay.io.sent, relay.relay.datagrams_out);
}

/// `FRAMECAST_NO_GSO=1` / `FRAMECAST_NO_GRO=1` turn the offloads off for a whole process.
#[test]
fn the_environment_turns_gso_and_gro_off() {
    let dir = tempfile::TempDir::new().unwrap();
    let io = |off: &str| {
        let json = dir.path().join(format!("relay-{off}.json"));
        let status = std::process::Command::new(env!("CARGO_BIN_EXE_framecast"))
            .args(["relay", "--listen", "127.0.0.1:0", "--duration", "0.2"])
            .arg("--stats-json")
            .arg(&json)
            .env("FRAMECAST_NO_GSO", off)
            .env("FRAMECAST_NO_GRO", off)
            .status()
            .unwrap();
        assert!(status.success());
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
        (v["io"]["gso"].as_bool(), v["io"]["gro"].as_bool())
    };
    assert_eq!(io("1"), (Some(false), Some(false)));
    assert_eq!(io("0"), (Some(true), Some(true)));
}
