//! `framecast load` on loopback: a relay fed by a test-source publisher, watched by the
//! load generator's viewers for a bounded time; the summary accounts for every viewer.
#![cfg(feature = "jpeg")]

use std::sync::atomic::{AtomicBool, Ordering};

use framecast::app::load::{LoadArgs, run_load};
use framecast::app::relay::{RelayArgs, RelayRole};
use framecast::app::serve::{Serve, ServeArgs};

/// A relay on loopback, and a publisher pushing `test:320x240@30` (no audio) into it as
/// "cam1"; both run up to 20 s once started.
fn relay_fed_by_a_publisher(seed: u64) -> (RelayRole, Serve, std::net::SocketAddr) {
    let lo = "127.0.0.1:0".parse().unwrap();
    let mut r = RelayArgs::new(lo);
    r.duration = Some(20.0);
    let mut relay = RelayRole::bind(r).unwrap();
    relay.status = false;
    let relay_addr = relay.local_addr();
    let mut s = ServeArgs::new(lo);
    s.source = "test:320x240@30".into();
    s.relay = Some(relay_addr);
    s.name = "cam1".into();
    s.no_audio = true;
    s.duration = Some(20.0);
    s.seed = Some(seed);
    let mut serve = Serve::bind(s).unwrap();
    serve.status = false;
    (relay, serve, relay_addr)
}

#[test]
fn load_generator_reports_every_viewer_against_a_relay() {
    let (relay, serve, relay_addr) = relay_fed_by_a_publisher(3);
    let stop = AtomicBool::new(false);
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("load.json");
    let report = std::thread::scope(|sc| {
        let relay_t = sc.spawn(|| relay.run(&stop).unwrap());
        let serve_t = sc.spawn(|| serve.run(&stop).unwrap());
        let mut args = LoadArgs::new(relay_addr, "cam1", 6, 3.0);
        args.threads = Some(2);
        args.stats_json = Some(json.clone());
        let report = run_load(&args, &AtomicBool::new(false));
        stop.store(true, Ordering::Relaxed);
        serve_t.join().unwrap();
        let relay_report = relay_t.join().unwrap();
        // Every viewer subscribed and said BYE at the end, or is still there.
        assert_eq!(relay_report.relay.subscribed, 6);
        report.unwrap()
    });
    assert_eq!(report.viewers, 6);
    assert_eq!(report.per_viewer.len(), 6);
    assert_eq!(report.threads, 2);
    assert!(
        (2.9..4.0).contains(&report.duration_s),
        "{}",
        report.duration_s
    );
    for v in &report.per_viewer {
        // About 90 frames in 3 s at 30 fps; the first ones arrive after the handshake.
        assert!(v.frames >= 60 && v.frames <= 95, "{v:?}");
        assert!(v.played + v.late + v.incomplete <= v.frames, "{v:?}");
        assert!(v.played * 100 >= v.frames * 95, "{v:?}");
        assert!(v.datagrams > 0);
    }
    let s = &report.summary;
    assert!(s.played.min <= s.played.median && s.played.median <= s.played.max);
    assert!(s.on_time.min >= 0.95, "{s:?}");
    let text = std::fs::read_to_string(&json).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["role"], "load");
    assert_eq!(v["per_viewer"].as_array().unwrap().len(), 6);
    assert_eq!(v["summary"]["played"]["min"], s.played.min);
    assert!(report.line().contains("6 viewers of \"cam1\""));
}

/// With `--ramp`, the viewers join one after another over the ramp: each plays from its own
/// first frame, so the last to join sees about a ramp's worth of frames fewer than the first.
#[test]
fn viewers_on_a_ramp_join_one_after_another_and_count_from_their_first_frame() {
    let (relay, serve, relay_addr) = relay_fed_by_a_publisher(4);
    let stop = AtomicBool::new(false);
    let report = std::thread::scope(|sc| {
        let relay_t = sc.spawn(|| relay.run(&stop).unwrap());
        let serve_t = sc.spawn(|| serve.run(&stop).unwrap());
        // The stream flows at the relay first (one viewer sees it), so that each viewer of
        // the ramp gets frames as it joins, not when the publisher's stream first arrives.
        let warm = run_load(
            &LoadArgs::new(relay_addr, "cam1", 1, 1.5),
            &AtomicBool::new(false),
        );
        assert!(warm.as_ref().unwrap().per_viewer[0].played > 0, "{warm:?}");
        let mut args = LoadArgs::new(relay_addr, "cam1", 4, 3.0);
        args.threads = Some(1);
        args.ramp = 1.6;
        let report = run_load(&args, &AtomicBool::new(false));
        stop.store(true, Ordering::Relaxed);
        serve_t.join().unwrap();
        assert_eq!(relay_t.join().unwrap().relay.subscribed, 5);
        report.unwrap()
    });
    // One thread: the viewers in the order they joined, at 0, 0.4, 0.8 and 1.2 s.
    let v = &report.per_viewer;
    assert_eq!(v.len(), 4);
    for w in v.windows(2) {
        assert!(w[0].frames > w[1].frames, "{v:?}");
    }
    // 1.2 s at 30 fps is 36 frames.
    assert!(v[0].frames >= v[3].frames + 25, "{v:?}");
    for x in v {
        assert!(x.played * 100 >= x.frames * 95, "{x:?}");
    }
    // A ramp as long as the run is refused.
    let mut bad = LoadArgs::new(relay_addr, "cam1", 4, 3.0);
    bad.ramp = 3.0;
    let e = run_load(&bad, &AtomicBool::new(false)).unwrap_err();
    assert!(e.to_string().contains("--ramp"), "{e}");
}
