//! The end of a stream as a person meets it, through the real binary (proto-spec.md §6.9):
//!
//! - `serve --source file:X` without `--duration` exits 0 at the file's end, and `play` of
//!   it, direct and through a relay, exits 0 within a second of the last frame with its
//!   recording finished (its index and duration written);
//! - a recorder killed with SIGKILL after 5 s leaves a file ffprobe reads, with about 5 s of
//!   frames;
//! - a player whose stream goes silent without ending (the server killed) says so and exits
//!   with code 3 after 5 s.
#![cfg(all(feature = "jpeg", feature = "ffmpeg"))]

use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

fn framecast() -> Command {
    Command::new(env!("CARGO_BIN_EXE_framecast"))
}

/// A fresh directory for one test, removed when dropped.
fn tmp(name: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(&format!("framecast-end-{name}-"))
        .tempdir()
        .expect("a temporary directory")
}

fn free_port() -> String {
    let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    format!("127.0.0.1:{}", s.local_addr().unwrap().port())
}

/// Waits (bounded) until some socket is bound to UDP `addr`'s port (per /proc/net/udp), so
/// that a player's first SUBSCRIBE finds the server.
fn wait_bound(addr: &str) {
    let port = addr.rsplit(':').next().unwrap().parse::<u16>().unwrap();
    let needle = format!(":{port:04X} ");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !std::fs::read_to_string("/proc/net/udp")
        .unwrap_or_default()
        .lines()
        .skip(1)
        .any(|l| {
            l.split_whitespace()
                .nth(1)
                .is_some_and(|a| format!("{a} ").contains(&needle))
        })
    {
        assert!(Instant::now() < deadline, "{addr} not bound after 10 s");
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Waits for `child` (bounded); returns its status and when it ended.
fn wait(child: &mut Child, limit: Duration, what: &str) -> (ExitStatus, Instant) {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return (s, Instant::now());
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("{what} still running after {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// (frames, last frame time in s, duration stated by the container or None) of a
/// recording's video track, per ffprobe.
fn probe(path: &Path) -> (u64, f64, Option<f64>) {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", "v:0"])
        .args([
            "-show_entries",
            "packet=pts_time:format=duration",
            "-of",
            "default=nw=1",
        ])
        .arg(path)
        .output()
        .expect("ffprobe (scripts/setup.sh installs it)");
    assert!(out.status.success(), "ffprobe {}", path.display());
    let text = String::from_utf8_lossy(&out.stdout);
    let times: Vec<f64> = text
        .lines()
        .filter_map(|l| l.strip_prefix("pts_time="))
        .map(|v| v.parse().unwrap())
        .collect();
    let duration = text
        .lines()
        .find_map(|l| l.strip_prefix("duration="))
        .and_then(|v| v.parse().ok());
    let last = times.iter().cloned().fold(0.0, f64::max);
    (times.len() as u64, last, duration)
}

#[test]
fn the_stream_ends_with_the_file_and_every_role_exits_0() {
    let dir = tmp("eof");
    let clip = dir.path().join("clip.mp4");
    let out = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi"])
        .args(["-i", "testsrc2=s=320x240:r=30:d=3", "-f", "lavfi"])
        .args([
            "-i",
            "sine=f=440:r=48000:d=3",
            "-c:v",
            "libx264",
            "-pix_fmt",
            "yuv420p",
        ])
        .args(["-c:a", "aac", "-ac", "2"])
        .arg(&clip)
        .output()
        .unwrap();
    assert!(out.status.success());
    let (serve_addr, relay_addr) = (free_port(), free_port());
    let mut relay = framecast()
        .args(["relay", "--listen", &relay_addr, "--duration", "30"])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let player = |from: &str, rec: &Path| {
        framecast()
            .args([
                "play",
                "--from",
                from,
                "--stream",
                "clip",
                "--no-video",
                "--no-audio",
            ])
            .args(["--duration", "30", "--record"])
            .arg(rec)
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    };
    let (direct, relayed) = (dir.path().join("direct"), dir.path().join("relayed"));
    let mut play_direct = player(&serve_addr, &direct);
    let mut play_relayed = player(&relay_addr, &relayed);
    // The players subscribe during the start delay; the file then plays for 3 s.
    let stats = dir.path().join("serve.json");
    let mut serve = framecast()
        .args(["serve", "--listen", &serve_addr, "--relay", &relay_addr])
        .args(["--name", "clip", "--start-delay-ms", "1500", "--stats-json"])
        .arg(&stats)
        .arg("--source")
        .arg(format!("file:{}", clip.display()))
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The three processes end on their own; each exit time is taken as it happens.
    let mut exits: [Option<(ExitStatus, Duration)>; 3] = [None; 3];
    let deadline = Instant::now() + Duration::from_secs(30);
    while exits.iter().any(Option::is_none) {
        for (i, child) in [&mut serve, &mut play_direct, &mut play_relayed]
            .into_iter()
            .enumerate()
        {
            if exits[i].is_none() {
                if let Some(st) = child.try_wait().unwrap() {
                    exits[i] = Some((st, SystemTime::now().duration_since(UNIX_EPOCH).unwrap()));
                }
            }
        }
        if Instant::now() >= deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    for child in [&mut serve, &mut play_direct, &mut play_relayed] {
        // Reaped already unless the bound ran out.
        let _ = child.kill();
        let _ = child.wait();
    }
    assert!(
        exits.iter().all(Option::is_some),
        "still running after 30 s: {exits:?}"
    );
    let [serve_exit, direct_exit, relayed_exit] = exits.map(Option::unwrap);
    assert!(serve_exit.0.success(), "serve: {:?}", serve_exit.0);
    let mut said = String::new();
    std::io::Read::read_to_string(serve.stderr.as_mut().unwrap(), &mut said).unwrap();
    assert!(said.contains("ended; ending the stream"), "{said}");
    // When the last frame was due: the source's start (wall clock) plus its pts.
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&stats).unwrap()).unwrap();
    let start_us = json["start_unix_us"].as_u64().unwrap();
    let last_frame = Duration::from_micros(start_us) + Duration::from_secs_f64(89.0 / 30.0);
    eprintln!(
        "serve exited {:?} after the last frame",
        serve_exit.1.saturating_sub(last_frame)
    );
    for ((status, at), rec, what) in [
        (direct_exit, &direct, "direct"),
        (relayed_exit, &relayed, "through the relay"),
    ] {
        assert!(status.success(), "play {what}: {status:?}");
        // Within a second of the last frame's send time (its playout is 100 ms later).
        let after = at.saturating_sub(last_frame);
        eprintln!("play {what} exited {after:?} after the last frame");
        assert!(
            after < Duration::from_secs(1),
            "play {what} exited {after:?} after the last frame"
        );
        let (frames, last, duration) = probe(&rec.with_extension("mkv"));
        assert_eq!(frames, 90, "{what}");
        assert!(
            (last - 89.0 / 30.0).abs() < 0.002,
            "{what}: last frame at {last}"
        );
        assert!(duration.is_some(), "{what}: the recording was not finished");
    }
    let _ = relay.kill();
    let _ = relay.wait();
}

#[test]
fn a_killed_recorder_leaves_a_readable_file_and_silence_is_reported() {
    let dir = tmp("kill");
    let addr = free_port();
    let mut serve = framecast()
        .args(["serve", "--listen", &addr, "--name", "cam"])
        .args(["--source", "test:320x240@30", "--duration", "60"])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_bound(&addr);
    let rec = dir.path().join("rec");
    let mut recorder = framecast()
        .args([
            "play",
            "--from",
            &addr,
            "--stream",
            "cam",
            "--no-video",
            "--no-audio",
        ])
        .arg("--record")
        .arg(&rec)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut watcher = framecast()
        .args([
            "play",
            "--from",
            &addr,
            "--stream",
            "cam",
            "--no-video",
            "--no-audio",
        ])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The scenario itself: record for 5 s, then SIGKILL the recorder.
    let started = Instant::now();
    std::thread::sleep(Duration::from_secs(5));
    recorder.kill().unwrap();
    let _ = recorder.wait();
    let ran = started.elapsed().as_secs_f64();
    let (frames, last, _) = probe(&rec.with_extension("mkv"));
    // About 5 s of frames: all but the last cluster (at most 0.1 s) and the start-up.
    assert!(
        frames as f64 >= 30.0 * (ran - 1.0),
        "{frames} frames, the last at {last:.2} s, after {ran:.1} s"
    );
    assert!(
        last >= ran - 1.0,
        "last frame at {last:.2} s after {ran:.1} s"
    );

    // The server dies without ending the stream: the watcher gives up after 5 s, code 3.
    serve.kill().unwrap();
    let _ = serve.wait();
    let killed = Instant::now();
    let (status, at) = wait(&mut watcher, Duration::from_secs(15), "the watcher");
    assert_eq!(status.code(), Some(3), "{status:?}");
    let waited = at.duration_since(killed);
    assert!(
        waited >= Duration::from_millis(4900) && waited < Duration::from_secs(7),
        "{waited:?}"
    );
    let mut said = String::new();
    std::io::Read::read_to_string(watcher.stderr.as_mut().unwrap(), &mut said).unwrap();
    assert!(said.contains("went silent"), "{said}");
}
