//! The command line as a person meets it: clear one-line errors with a non-zero exit, and a
//! clean shutdown on Ctrl-C that still writes the statistics.
#![cfg(feature = "jpeg")]

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn framecast() -> Command {
    Command::new(env!("CARGO_BIN_EXE_framecast"))
}

fn one_line_error(args: &[&str], must_contain: &str) {
    let out = framecast().args(args).output().unwrap();
    assert!(!out.status.success(), "{args:?} should fail");
    let err = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "{args:?}: one line expected, got:\n{err}");
    assert!(lines[0].contains(must_contain), "{args:?}: {err}");
    assert!(
        !err.contains("panicked") && !err.contains("RUST_BACKTRACE"),
        "{err}"
    );
}

#[test]
fn bad_input_gets_a_clear_one_line_error() {
    let taken = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    one_line_error(&["serve", "--listen", &addr], "address already in use");
    one_line_error(&["relay", "--listen", &addr], "address already in use");
    one_line_error(
        &["serve", "--listen", "127.0.0.1:0", "--source", "nosuch"],
        "--source nosuch",
    );
    one_line_error(
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--source",
            "test:10x@30",
        ],
        "--source test:10x@30",
    );
    one_line_error(
        &["serve", "--listen", "127.0.0.1:0", "--quality", "0"],
        "--quality",
    );
    one_line_error(
        &["play", "--from", "127.0.0.1:9", "--latency", "0"],
        "--latency",
    );
    one_line_error(
        &["play", "--from", "127.0.0.1:9", "--duration=-1"],
        "--duration",
    );
    one_line_error(&["serve", "--listen", "192.0.2.1:5000"], "no such address");
    // The watching outputs: a busy HTTP port, a picture RTP/JPEG cannot describe, a
    // subsampling it cannot carry.
    let http = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let http = http.local_addr().unwrap().to_string();
    one_line_error(
        &["relay", "--listen", "127.0.0.1:0", "--http", &http],
        "--http",
    );
    let rtp = [
        "--rtp-out",
        "127.0.0.1:5004",
        "--sdp",
        "/tmp/framecast-cli.sdp",
    ];
    let big = [
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--source",
            "test:2048x1080@5",
        ][..],
        &rtp,
    ]
    .concat();
    one_line_error(&big, "2040x2040 at most");
    let s444 = [
        &["serve", "--listen", "127.0.0.1:0", "--subsampling", "444"][..],
        &rtp,
    ]
    .concat();
    one_line_error(&s444, "4:2:0 and 4:2:2");
}

/// Waits (bounded) until process `pid` has a handler for SIGINT installed, by reading its
/// caught-signal mask: no sleep stands in for synchronisation.
fn wait_for_sigint_handler(pid: u32) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let caught = status
            .lines()
            .find_map(|l| l.strip_prefix("SigCgt:"))
            .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
            .unwrap_or(0);
        if caught & (1 << (libc::SIGINT - 1)) != 0 {
            return;
        }
        assert!(Instant::now() < deadline, "no SIGINT handler after 10 s");
        std::thread::yield_now();
    }
}

#[test]
fn ctrl_c_shuts_down_cleanly_and_writes_stats() {
    let dir = std::env::temp_dir().join(format!("framecast-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let stats = dir.join("relay.json");
    let mut child = framecast()
        .args([
            "relay",
            "--listen",
            "127.0.0.1:0",
            "--duration",
            "60",
            "--stats-json",
        ])
        .arg(&stats)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for_sigint_handler(child.id());
    // SAFETY: sending a signal to our own child process.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "relay did not stop on Ctrl-C");
        std::thread::yield_now();
    };
    assert!(status.success(), "{status:?}");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&stats).unwrap()).unwrap();
    assert_eq!(json["role"], "relay");
    assert_eq!(json["relay"]["subscribers"], 0);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn a_recording_survives_ctrl_c() {
    let dir = std::env::temp_dir().join(format!("framecast-rec-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let port = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let mut serve = framecast()
        .args([
            "serve",
            "--listen",
            &addr,
            "--source",
            "test:160x120@30",
            "--duration",
            "30",
        ])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let base = dir.join("rec");
    let mut play = framecast()
        .args([
            "play",
            "--from",
            &addr,
            "--no-video",
            "--duration",
            "30",
            "--record",
        ])
        .arg(&base)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for_sigint_handler(play.id());
    // Wait (bounded) until the recording holds a second of media.
    let mkv = base.with_extension("mkv");
    let deadline = Instant::now() + Duration::from_secs(20);
    // (About a second of 48 kHz stereo PCM and 160x120 JPEGs.)
    while std::fs::metadata(&mkv).map_or(0, |m| m.len()) < 300_000 {
        assert!(Instant::now() < deadline, "no recording after 20 s");
        std::thread::yield_now();
    }
    // SAFETY: signalling our own child.
    unsafe { libc::kill(play.id() as i32, libc::SIGINT) };
    let status = play.wait().unwrap();
    let _ = serve.kill();
    let _ = serve.wait();
    assert!(status.success(), "{status:?}");
    // The file was finished: ffprobe counts the frames, and finds the audio track and the
    // duration the trailer states.
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-count_frames", "-select_streams", "v:0"])
        .args([
            "-show_entries",
            "stream=nb_read_frames,codec_name",
            "-of",
            "csv=p=0",
        ])
        .arg(&mkv)
        .output()
        .expect("ffprobe (scripts/setup.sh installs ffmpeg)");
    let text = String::from_utf8_lossy(&out.stdout);
    let mut fields = text.trim().split(',');
    assert_eq!(fields.next(), Some("mjpeg"), "{text}");
    let frames: u64 = fields
        .next()
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0);
    assert!(frames >= 20, "{text}");
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", "a:0"])
        .args([
            "-show_entries",
            "stream=codec_name,sample_rate:format=duration",
        ])
        .args(["-of", "default=nw=1"])
        .arg(&mkv)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("codec_name=pcm_s16le"), "{text}");
    assert!(text.contains("sample_rate=48000"), "{text}");
    assert!(!text.contains("duration=N/A"), "{text}");
    std::fs::remove_dir_all(&dir).ok();
}

/// A relay on a free loopback port, stopped (by its id) when dropped.
struct Bg(std::process::Child);

impl Drop for Bg {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> String {
    let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    s.local_addr().unwrap().to_string()
}

fn spawn(args: &[&str], env: &[(&str, &str)]) -> Bg {
    let mut c = framecast();
    c.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    for (k, v) in env {
        c.env(k, v);
    }
    Bg(c.spawn().unwrap())
}

#[test]
fn keygen_writes_a_private_file_and_never_overwrites() {
    use std::os::unix::fs::PermissionsExt;
    let dir = std::env::temp_dir().join(format!("framecast-keygen-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let k = dir.join("k");
    let ks = k.to_str().unwrap();
    let out = framecast().args(["keygen", "--out", ks]).output().unwrap();
    assert!(out.status.success());
    let mode = std::fs::metadata(&k).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let text = std::fs::read_to_string(&k).unwrap();
    assert!(text.contains("publish ") && text.contains("view "));
    one_line_error(&["keygen", "--out", ks], "never overwrites");
    assert_eq!(std::fs::read_to_string(&k).unwrap(), text);
    let v = dir.join("v");
    let out = framecast()
        .args(["keygen", "--view-from", ks, "--out", v.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success());
    let view = std::fs::read_to_string(&v).unwrap();
    assert!(!view.contains("publish") && view.contains("view "));
    // A view-only file cannot push a stream.
    one_line_error(
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--relay",
            "127.0.0.1:9",
            "--key-file",
            v.to_str().unwrap(),
        ],
        "only the view key",
    );
    one_line_error(
        &[
            "play",
            "--from",
            "127.0.0.1:9",
            "--key-file",
            "/nonexistent/k",
        ],
        "--key-file /nonexistent/k",
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Keys from the environment: a viewer with the right key plays, one with a wrong key or
/// none is refused with one line naming the stream and the reason, within seconds.
#[test]
fn keyed_relay_plays_for_the_right_key_and_refuses_the_rest() {
    let key = format!("publish {}", "42".repeat(32));
    let wrong = format!("publish {}", "43".repeat(32));
    let relay = free_port();
    let _relay = spawn(
        &["relay", "--listen", &relay, "--duration", "30"],
        &[("FRAMECAST_KEY", &key)],
    );
    let _serve = spawn(
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--relay",
            &relay,
            "--name",
            "sec",
            "--source",
            "test:160x120@30",
            "--duration",
            "30",
        ],
        &[("FRAMECAST_KEY", &key)],
    );
    let play = |env: &[(&str, &str)], secs: &str| {
        let mut c = framecast();
        c.args([
            "play",
            "--from",
            &relay,
            "--stream",
            "sec",
            "--no-decode",
            "--duration",
            secs,
        ]);
        c.env_remove("FRAMECAST_KEY");
        for (k, v) in env {
            c.env(k, v);
        }
        let t = Instant::now();
        let out = c.output().unwrap();
        (out, t.elapsed())
    };
    let (ok, _) = play(&[("FRAMECAST_KEY", &key)], "2");
    let err = String::from_utf8_lossy(&ok.stderr);
    assert!(ok.status.success(), "{err}");
    let played: u64 = err
        .split("played ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(played >= 20, "{err}");
    for (env, reason) in [
        (vec![("FRAMECAST_KEY", wrong.as_str())], "wrong key"),
        (vec![], "auth_required"),
    ] {
        let (out, took) = play(&env, "20");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{err}");
        let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(lines.len(), 1, "{err}");
        assert!(
            lines[0].contains("\"sec\"") && lines[0].contains(reason),
            "{err}"
        );
        assert!(took < Duration::from_secs(10), "{took:?}");
    }
}

/// A second publisher of a taken name is told so and exits, instead of streaming to nobody.
#[test]
fn a_second_publisher_of_a_name_is_refused_with_one_line() {
    let relay = free_port();
    let _relay = spawn(&["relay", "--listen", &relay, "--duration", "30"], &[]);
    let _first = spawn(
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--relay",
            &relay,
            "--name",
            "live",
            "--source",
            "test:160x120@30",
            "--duration",
            "30",
        ],
        &[],
    );
    // The first publisher owns the name once a viewer gets its frames through the relay.
    let owned = (0..20).any(|_| {
        let out = framecast()
            .args(["play", "--from", &relay, "--stream", "live", "--no-decode"])
            .args(["--duration", "1"])
            .env_remove("FRAMECAST_KEY")
            .output()
            .unwrap();
        !String::from_utf8_lossy(&out.stderr).contains("played 0 frames")
    });
    assert!(owned, "the first publisher never got through");
    let t = Instant::now();
    let out = framecast()
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--relay",
            &relay,
            "--name",
            "live",
            "--source",
            "test:160x120@30",
            "--duration",
            "20",
        ])
        .env_remove("FRAMECAST_KEY")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(t.elapsed() < Duration::from_secs(10));
    let last = err.lines().rfind(|l| !l.trim().is_empty()).unwrap_or("");
    assert!(
        last.contains("\"live\"") && last.contains("name_taken"),
        "{err}"
    );
}
