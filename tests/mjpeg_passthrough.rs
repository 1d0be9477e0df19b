//! `serve --source mjpeg:-` end to end on loopback: an ffmpeg MJPEG pipe (and camera-style
//! JPEGs with no Huffman tables) into `serve`, to `play --record`; the recording's JPEGs are
//! compared byte for byte with what went in (proto-spec.md §5.1, "Passed-through JPEGs").
#![cfg(feature = "jpeg")]

use std::io::Write;
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use framecast::media::mjpeg::{MjpegScanner, STANDARD_DHT, Scanned, strip_dht};

fn framecast() -> Command {
    Command::new(env!("CARGO_BIN_EXE_framecast"))
}

fn free_port() -> String {
    let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    format!("127.0.0.1:{}", s.local_addr().unwrap().port())
}

fn ffmpeg_mjpeg_cmd(realtime: bool) -> Command {
    let mut c = Command::new("ffmpeg");
    c.args(["-hide_banner", "-loglevel", "error"]);
    if realtime {
        c.arg("-re");
    }
    c.args(["-f", "lavfi", "-i", "testsrc2=s=320x240:r=30"])
        .args(["-frames:v", "30", "-c:v", "mjpeg", "-huffman", "default"])
        .args(["-f", "mjpeg", "-"]);
    c
}

fn split(stream: &[u8]) -> Vec<Vec<u8>> {
    let mut s = MjpegScanner::new();
    s.push(stream)
        .into_iter()
        .map(|i| match i {
            Scanned::Jpeg(j) => j,
            other => panic!("{other:?}"),
        })
        .collect()
}

/// Waits for `child` (bounded by `limit`).
fn wait(child: &mut Child, limit: Duration, what: &str) -> std::process::ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("{what} still running after {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Streams what `feed` writes into `serve --source mjpeg:-` to one `play --record`; returns
/// the recorded JPEGs and serve's stats.
fn pass_through(
    dir: &Path,
    stdin: Stdio,
    feed: impl FnOnce(Option<ChildStdin>) + Send,
) -> (Vec<Vec<u8>>, serde_json::Value) {
    let addr = free_port();
    let rec = dir.join("rec");
    let mut play = framecast()
        .args([
            "play",
            "--from",
            &addr,
            "--stream",
            "cam",
            "--no-video",
            "--no-audio",
        ])
        .args(["--duration", "30", "--record"])
        .arg(&rec)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stats = dir.join("serve.json");
    let mut serve = framecast()
        .args([
            "serve", "--listen", &addr, "--name", "cam", "--source", "mjpeg:-",
        ])
        .args([
            "--start-delay-ms",
            "1000",
            "--duration",
            "30",
            "--stats-json",
        ])
        .arg(&stats)
        .stdin(stdin)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let input = serve.stdin.take();
    std::thread::scope(|s| {
        s.spawn(move || feed(input));
        assert!(wait(&mut serve, Duration::from_secs(30), "serve").success());
    });
    assert!(wait(&mut play, Duration::from_secs(30), "play").success());
    let out = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-i"])
        .arg(rec.with_extension("mkv"))
        .args(["-c:v", "copy", "-f", "mjpeg", "-"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json = serde_json::from_str(&std::fs::read_to_string(&stats).unwrap()).unwrap();
    (split(&out.stdout), json)
}

#[test]
fn an_ffmpeg_pipe_arrives_byte_identical() {
    let dir = tempfile::tempdir().unwrap();
    // ffmpeg's encoder is deterministic: the same command without -re gives the reference.
    let reference = ffmpeg_mjpeg_cmd(false).output().unwrap();
    assert!(reference.status.success());
    let want = split(&reference.stdout);
    assert_eq!(want.len(), 30);
    let mut ffmpeg = ffmpeg_mjpeg_cmd(true)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pipe = Stdio::from(ffmpeg.stdout.take().unwrap());
    let (got, stats) = pass_through(dir.path(), pipe, |_| {});
    let _ = ffmpeg.wait();
    assert_eq!(got.len(), 30, "every JPEG recorded");
    assert!(got == want, "byte-identical JPEGs");
    assert_eq!(stats["source"]["frames"], 30, "{stats}");
    assert_eq!(stats["source"]["frames_rejected"], 0, "{stats}");
    assert_eq!(stats["source"]["frames_repaired"], 0, "{stats}");
}

#[test]
fn camera_jpegs_without_huffman_tables_get_the_standard_ones() {
    let dir = tempfile::tempdir().unwrap();
    let reference = ffmpeg_mjpeg_cmd(false).output().unwrap();
    let originals = split(&reference.stdout);
    let stripped: Vec<Vec<u8>> = originals.iter().map(|j| strip_dht(j).unwrap()).collect();
    let to_send = stripped.clone();
    // Written as a camera would deliver them, at 30 fps with padding after each EOI.
    let (got, stats) = pass_through(dir.path(), Stdio::piped(), move |stdin| {
        let mut stdin = stdin.unwrap();
        for j in &to_send {
            if stdin.write_all(j).is_err() || stdin.write_all(&[0u8; 7]).is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(33)); // pacing, not synchronisation
        }
    });
    assert_eq!(got.len(), 30);
    assert_eq!(stats["source"]["frames_repaired"], 30, "{stats}");
    let mut dec = framecast::media::JpegDecoder::new().unwrap();
    for ((g, s), o) in got.iter().zip(&stripped).zip(&originals) {
        // The stripped JPEG with the tables inserted before its SOS, nothing else changed.
        assert_eq!(g.len(), s.len() + STANDARD_DHT.len());
        let at = g
            .windows(STANDARD_DHT.len())
            .position(|w| w == STANDARD_DHT)
            .unwrap();
        assert_eq!([&g[..at], &g[at + STANDARD_DHT.len()..]].concat(), *s);
        // And it decodes to the original's pixels.
        assert!(dec.decode_rgb_default(g).unwrap() == dec.decode_rgb_default(o).unwrap());
    }
}
