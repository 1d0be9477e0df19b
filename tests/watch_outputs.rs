//! Watching a framecast stream with other tools, on loopback: RTP/JPEG + L16 read by ffprobe
//! and GStreamer from the SDP file (every frame and sample counted, A/V sync measured on the
//! test source's sync square and beep), MJPEG over HTTP byte-identical with what `play`
//! receives, a stalled HTTP client harming no one, `/metrics` parsed as OpenMetrics text, the
//! page rendered by headless Chromium, and a pulling relay tapping a stream on request. Each
//! test is bounded by its roles' `--duration` and by deadlines on every wait; polling a file
//! or a figure with a deadline is the only waiting done.
#![cfg(feature = "jpeg")]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use framecast::app::play::{Play, PlayArgs};
use framecast::app::relay::{RelayArgs, RelayRole};
use framecast::app::serve::{Serve, ServeArgs};

/// A fresh directory for one test, removed when dropped.
fn tmp(name: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(&format!("framecast-watch-{name}-"))
        .tempdir()
        .expect("a temporary directory")
}

fn lo() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

/// An even port with the three after it free too (video, its RTCP, audio, its RTCP).
fn free_rtp_base() -> u16 {
    for _ in 0..200 {
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        let p = s.local_addr().unwrap().port() & !1;
        if !(1024..=65_000).contains(&p) {
            continue;
        }
        drop(s);
        let held: Vec<_> = (p..p + 4)
            .map(|q| UdpSocket::bind(("127.0.0.1", q)))
            .collect();
        if held.iter().all(|h| h.is_ok()) {
            return p;
        }
    }
    panic!("no four free UDP ports in a row");
}

fn serve_args(source: &str, seconds: f64) -> ServeArgs {
    let mut s = ServeArgs::new(lo());
    s.source = source.into();
    s.duration = Some(seconds);
    s.seed = Some(11);
    s.name = "cam1".into();
    s
}

fn bind_serve(args: ServeArgs) -> Serve {
    let mut s = Serve::bind(args).unwrap();
    s.status = false;
    s
}

fn wait_for(what: &str, limit: Duration, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs a command with a time limit (coreutils `timeout`), giving its output.
fn run_limited(secs: u32, cmd: &str, args: &[&str]) -> std::process::Output {
    Command::new("timeout")
        .arg(secs.to_string())
        .arg(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{cmd}: {e} (scripts/setup.sh installs it)"))
}

// ---------------------------------------------------------------------------------------
// HTTP helpers: HTTP/1.0 requests, so that responses are close-delimited (no chunking).

fn http_get(addr: SocketAddr, path: &str) -> (u16, String, Vec<u8>) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").unwrap();
    let mut all = Vec::new();
    s.read_to_end(&mut all).unwrap();
    let end = all
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("response head");
    let head = String::from_utf8_lossy(&all[..end]).to_string();
    let status = head[9..12].parse().unwrap();
    (status, head, all[end + 4..].to_vec())
}

fn stats(addr: SocketAddr) -> serde_json::Value {
    let (status, _, body) = http_get(addr, "/stats.json");
    assert_eq!(status, 200);
    serde_json::from_slice(&body).unwrap()
}

fn stream_figure(addr: SocketAddr, key: &str) -> u64 {
    stats(addr)["streams"][0][key].as_u64().unwrap_or(0)
}

/// A multipart MJPEG reader: `/STREAM.mjpg` parsed part by part.
struct Mjpeg {
    r: BufReader<TcpStream>,
}

impl Mjpeg {
    fn open(addr: SocketAddr, path: &str) -> Mjpeg {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        write!(s, "GET {path} HTTP/1.0\r\n\r\n").unwrap();
        let mut r = BufReader::new(s);
        let mut head = String::new();
        loop {
            let mut line = String::new();
            assert!(r.read_line(&mut line).unwrap() > 0, "response head");
            if line == "\r\n" {
                break;
            }
            head += &line;
        }
        assert!(
            head.starts_with("HTTP/1.0 200") || head.starts_with("HTTP/1.1 200"),
            "{head}"
        );
        assert!(
            head.to_ascii_lowercase()
                .contains("content-type: multipart/x-mixed-replace; boundary=framecastframe"),
            "{head}"
        );
        Mjpeg { r }
    }

    /// The next part: (X-Frame-Id, the JPEG bytes).
    fn next(&mut self) -> (u32, Vec<u8>) {
        let mut len = None;
        let mut id = None;
        let mut seen_boundary = false;
        loop {
            let mut line = String::new();
            assert!(self.r.read_line(&mut line).unwrap() > 0, "stream ended");
            let l = line.trim_end();
            if l.is_empty() {
                if seen_boundary {
                    break;
                }
                continue; // the CRLF before a boundary
            }
            if l == "--framecastframe" {
                seen_boundary = true;
            } else if let Some((k, v)) = l.split_once(": ") {
                match k.to_ascii_lowercase().as_str() {
                    "content-length" => len = v.parse::<usize>().ok(),
                    "x-frame-id" => id = v.parse::<u32>().ok(),
                    "content-type" => assert_eq!(v, "image/jpeg"),
                    _ => {}
                }
            }
        }
        let mut jpeg = vec![0u8; len.expect("Content-Length")];
        self.r.read_exact(&mut jpeg).unwrap();
        (id.expect("X-Frame-Id"), jpeg)
    }
}

// ---------------------------------------------------------------------------------------
// RTP

fn rtp_serve(source: &str, seconds: f64, dir: &Path) -> (Serve, PathBuf, u16) {
    let base = free_rtp_base();
    let sdp = dir.join("stream.sdp");
    let mut a = serve_args(source, seconds);
    // Time for the receiver to start before the first packet, so it sees every one.
    a.start_delay_ms = 1500;
    a.outputs.rtp_out = Some(SocketAddr::from(([127, 0, 0, 1], base)));
    a.outputs.sdp = Some(sdp.clone());
    (bind_serve(a), sdp, base)
}

/// ffprobe opens the SDP file and decodes every frame and every audio sample sent: the
/// counts equal the sender's. It ends on the RTCP BYE sent when the stream stops.
#[test]
fn ffprobe_reads_the_sdp_and_counts_every_frame_and_sample() {
    let dir = tmp("ffprobe");
    let (serve, sdp, _) = rtp_serve("test:320x240@30", 3.0, dir.path());
    let (report, out) = std::thread::scope(|sc| {
        let t = sc.spawn(|| serve.run(&AtomicBool::new(false)).unwrap());
        wait_for("the SDP file", Duration::from_secs(5), || sdp.exists());
        let text = std::fs::read_to_string(&sdp).unwrap();
        assert!(
            text.contains("m=video") && text.contains("L16/48000/2"),
            "{text}"
        );
        let out = run_limited(
            30,
            "ffprobe",
            &[
                "-v",
                "error",
                "-protocol_whitelist",
                "file,udp,rtp",
                "-show_entries",
                "frame=media_type,nb_samples,width,height",
                "-of",
                "csv=p=0",
                sdp.to_str().unwrap(),
            ],
        );
        (t.join().unwrap(), out)
    });
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let mut frames = 0u64;
    let mut samples = 0u64;
    for line in text.lines() {
        let f: Vec<&str> = line.split(',').collect();
        match f[0] {
            "video" => {
                assert_eq!(&f[1..3], ["320", "240"], "{line}");
                frames += 1;
            }
            "audio" => samples += f[1].parse::<u64>().unwrap(),
            _ => {}
        }
    }
    let rtp = report.outputs.rtp.expect("rtp counters");
    assert!(rtp.frames >= 60, "{rtp:?}");
    assert_eq!(rtp.frames_refused, 0);
    assert_eq!(frames, rtp.frames, "every frame sent was decoded");
    assert_eq!(
        samples, rtp.audio_frames,
        "every audio sample sent was decoded"
    );
}

/// GStreamer receives both flows with plain `udpsrc` caps: RTP/JPEG decodes to 320x240
/// pictures, L16 to 48 kHz stereo.
#[test]
fn gstreamer_receives_video_and_audio() {
    let dir = tmp("gst");
    let (serve, sdp, base) = rtp_serve("test:320x240@30", 3.0, dir.path());
    let (video, audio) = std::thread::scope(|sc| {
        let t = sc.spawn(|| serve.run(&AtomicBool::new(false)).unwrap());
        wait_for("the SDP file", Duration::from_secs(5), || sdp.exists());
        let vcaps =
            "caps=application/x-rtp,media=video,clock-rate=90000,encoding-name=JPEG,payload=26";
        let acaps = "caps=application/x-rtp,media=audio,clock-rate=48000,encoding-name=L16,channels=2,payload=97";
        let vport = format!("port={base}");
        let aport = format!("port={}", base + 2);
        let a = sc.spawn(move || {
            run_limited(
                20,
                "gst-launch-1.0",
                &[
                    "-v",
                    "udpsrc",
                    &aport,
                    acaps,
                    "!",
                    "rtpL16depay",
                    "!",
                    "identity",
                    "eos-after=50",
                    "!",
                    "fakesink",
                ],
            )
        });
        let v = run_limited(
            20,
            "gst-launch-1.0",
            &[
                "-v",
                "udpsrc",
                &vport,
                vcaps,
                "!",
                "rtpjpegdepay",
                "!",
                "jpegdec",
                "!",
                "identity",
                "eos-after=30",
                "!",
                "fakesink",
            ],
        );
        let a = a.join().unwrap();
        t.join().unwrap();
        (v, a)
    });
    let v = String::from_utf8_lossy(&video.stdout);
    assert!(
        video.status.success(),
        "{v}{}",
        String::from_utf8_lossy(&video.stderr)
    );
    assert!(
        v.contains("video/x-raw") && v.contains("width=(int)320, height=(int)240"),
        "{v}"
    );
    let a = String::from_utf8_lossy(&audio.stdout);
    assert!(audio.status.success(), "{a}");
    assert!(a.contains("rate=(int)48000, channels=(int)2"), "{a}");
}

/// A/V sync as a player sees it: ffmpeg reads the SDP (timestamps lined up by the RTCP
/// sender reports) and records; each beep's onset and the sync square's frame must fall
/// within one frame interval (33 ms) of each other. Prints the measured offsets.
#[test]
fn rtp_audio_and_video_in_sync_within_one_frame() {
    let dir = tmp("avsync");
    let (serve, sdp, _) = rtp_serve("test:640x360@30", 4.6, dir.path());
    let mkv = dir.path().join("rec.mkv");
    let out = std::thread::scope(|sc| {
        let t = sc.spawn(|| serve.run(&AtomicBool::new(false)).unwrap());
        wait_for("the SDP file", Duration::from_secs(5), || sdp.exists());
        let out = run_limited(
            30,
            "ffmpeg",
            &[
                "-v",
                "error",
                "-protocol_whitelist",
                "file,udp,rtp",
                "-i",
                sdp.to_str().unwrap(),
                "-c",
                "copy",
                "-y",
                mkv.to_str().unwrap(),
            ],
        );
        t.join().unwrap();
        out
    });
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let offsets = av_offsets(&mkv);
    eprintln!("A/V offsets (beep onset - sync frame), ms: {offsets:.2?}");
    assert!(offsets.len() >= 3, "{offsets:?}");
    for o in &offsets {
        assert!(
            o.abs() < 1000.0 / 30.0,
            "A/V offset {o:.1} ms beyond one frame: {offsets:?}"
        );
    }
}

/// (beep onset time - time of the nearest frame showing the sync square) per beep, ms.
fn av_offsets(file: &Path) -> Vec<f64> {
    let f = file.to_str().unwrap();
    let probe = |stream: &str, entries: &str| -> String {
        let o = run_limited(
            30,
            "ffprobe",
            &[
                "-v",
                "error",
                "-select_streams",
                stream,
                "-show_entries",
                entries,
                "-of",
                "csv=p=0",
                f,
            ],
        );
        assert!(o.status.success());
        String::from_utf8_lossy(&o.stdout).to_string()
    };
    // Video: each frame's time and the brightness of the sync square (top right).
    let times: Vec<f64> = probe("v", "frame=pts_time")
        .lines()
        .map(|l| l.trim().parse().unwrap())
        .collect();
    let luma = run_limited(
        30,
        "ffmpeg",
        &[
            "-v",
            "error",
            "-i",
            f,
            "-map",
            "0:v",
            "-vf",
            "crop=10:10:605:25,scale=1:1,format=gray",
            "-fps_mode",
            "passthrough",
            "-f",
            "rawvideo",
            "-",
        ],
    )
    .stdout;
    assert_eq!(luma.len(), times.len());
    let sync: Vec<f64> = times
        .iter()
        .zip(&luma)
        .filter(|(_, l)| **l > 128)
        .map(|(t, _)| *t)
        .collect();
    // Audio: each packet's time and size, then the samples (mono mix) in order.
    let packets: Vec<(f64, usize)> = probe("a", "frame=pts_time,nb_samples")
        .lines()
        .map(|l| {
            let (t, n) = l.trim().split_once(',').unwrap();
            (t.parse().unwrap(), n.parse().unwrap())
        })
        .collect();
    let pcm = run_limited(
        30,
        "ffmpeg",
        &[
            "-v", "error", "-i", f, "-map", "0:a", "-ac", "1", "-f", "s16le", "-",
        ],
    )
    .stdout;
    let samples: Vec<i16> = pcm
        .chunks_exact(2)
        .map(|b| i16::from_le_bytes([b[0], b[1]]))
        .collect();
    let mut at = Vec::with_capacity(samples.len());
    for (t, n) in &packets {
        at.extend((0..*n).map(|k| t + k as f64 / 48_000.0));
    }
    assert_eq!(at.len(), samples.len());
    // A beep (-6 dBFS) peaks above 12000; the tone alone (-12 dBFS) stays near 8200.
    let mut onsets = Vec::new();
    let mut last_loud = f64::NEG_INFINITY;
    for (s, t) in samples.iter().zip(&at) {
        if s.unsigned_abs() > 12_000 {
            if t - last_loud > 0.5 {
                onsets.push(*t);
            }
            last_loud = *t;
        }
    }
    onsets
        .iter()
        .filter_map(|b| {
            let v = sync
                .iter()
                .min_by(|x, y| (*x - b).abs().total_cmp(&(*y - b).abs()))?;
            ((v - b).abs() < 0.5).then(|| (b - v) * 1000.0)
        })
        .collect()
}

// ---------------------------------------------------------------------------------------
// HTTP

/// serve -> relay (with --http and --rtp-out) -> play. An MJPEG client of the relay gets the
/// same JPEG bytes the publisher sent and `play` received; `/STREAM.jpg` gives a sent frame;
/// the page's figures count the viewer; unknown streams are a 404; the relay's RTP output
/// wrote its SDP and sent frames.
#[test]
fn relay_mjpeg_is_byte_identical_with_what_play_receives() {
    let dir = tmp("relay");
    let sdp = dir.path().join("relay.sdp");
    let mut r = RelayArgs::new(lo());
    r.duration = Some(5.0);
    r.outputs.http = Some(lo());
    r.outputs.rtp_out = Some(SocketAddr::from(([127, 0, 0, 1], free_rtp_base())));
    r.outputs.sdp = Some(sdp.clone());
    r.outputs.rtp_stream = Some("cam1".into());
    let mut relay = RelayRole::bind(r).unwrap();
    relay.status = false;
    let http = relay.http_addr().unwrap();
    let mut a = serve_args("test:320x240@30", 4.0);
    a.relay = Some(relay.local_addr());
    a.start_delay_ms = 300;
    let mut serve = bind_serve(a);
    serve.record_checksums = true;
    let mut p = PlayArgs::new(relay.local_addr(), "cam1");
    p.duration = Some(4.5);
    let mut play = Play::bind(p).unwrap();
    play.record_checksums = true;
    play.status = false;
    let (sent, played, parts, snapshot) = std::thread::scope(|sc| {
        let relay_t = sc.spawn(|| relay.run(&AtomicBool::new(false)).unwrap());
        let play_t = sc.spawn(|| play.run(&AtomicBool::new(false)).unwrap());
        let serve_t = sc.spawn(|| serve.run(&AtomicBool::new(false)).unwrap());
        wait_for(
            "the stream at the relay's HTTP side",
            Duration::from_secs(5),
            || stream_figure(http, "frames") > 0,
        );
        let mut m = Mjpeg::open(http, "/cam1.mjpg");
        let parts: Vec<(u32, Vec<u8>)> = (0..45).map(|_| m.next()).collect();
        drop(m);
        let (status, head, snapshot) = http_get(http, "/cam1.jpg");
        assert_eq!(status, 200, "{head}");
        assert_eq!(http_get(http, "/nope.mjpg").0, 404);
        wait_for(
            "the player counted as a viewer",
            Duration::from_secs(3),
            || stats(http)["streams"][0]["figures"]["viewers"] == 1,
        );
        let figures = stats(http)["streams"][0]["figures"].clone();
        let sent = serve_t.join().unwrap();
        let relayed = relay_t.join().unwrap();
        let rtp = relayed.outputs.rtp.expect("the relay's RTP counters");
        assert!(rtp.frames >= 60 && rtp.frames_refused == 0, "{rtp:?}");
        assert!(std::fs::read_to_string(&sdp).unwrap().contains("m=video"));
        let played = play_t.join().unwrap();
        // `play --stats-json` and the HTTP figures use the same names.
        let names = |v: &serde_json::Value| -> Vec<String> {
            v.as_object().unwrap().keys().cloned().collect()
        };
        let play_figures = serde_json::to_value(&played.figures).unwrap();
        assert_eq!(names(&play_figures), names(&figures));
        assert!(played.figures.fps > 20.0, "{:?}", played.figures);
        (sent, played, parts, snapshot)
    });
    let sent: std::collections::HashMap<u32, u32> = sent.frame_crcs.into_iter().collect();
    let played: std::collections::HashMap<u32, u32> = played.frame_crcs.into_iter().collect();
    let mut both = 0;
    for (id, jpeg) in &parts {
        let crc = crc32fast::hash(jpeg);
        assert_eq!(sent.get(id), Some(&crc), "frame {id} as sent");
        if let Some(p) = played.get(id) {
            assert_eq!(*p, crc, "frame {id} as played");
            both += 1;
        }
    }
    assert!(
        both >= 40,
        "{both} of {} MJPEG frames also played",
        parts.len()
    );
    let ids: Vec<u32> = parts.iter().map(|p| p.0).collect();
    assert!(
        ids.windows(2).all(|w| w[0] < w[1]),
        "newest frames, in order: {ids:?}"
    );
    assert!(
        sent.values().any(|&c| c == crc32fast::hash(&snapshot)),
        "snapshot is a sent frame"
    );
}

/// A client that stops reading holds its connection and nothing else: a reading client
/// keeps getting (nearly) every frame meanwhile, clients beyond `--http-max-clients` are
/// refused with 503, and the stalled client is cut off after `--http-stall-timeout`, which
/// frees its slot.
#[test]
fn a_stalled_http_client_affects_no_one_else() {
    let mut a = serve_args("test:640x360@30", 12.0);
    a.outputs.http = Some(lo());
    a.outputs.http_max_clients = 3;
    a.outputs.http_stall_timeout = 3.0;
    let serve = bind_serve(a);
    let http = serve.http_addr().unwrap();
    let stop = AtomicBool::new(false);
    std::thread::scope(|sc| {
        let t = sc.spawn(|| serve.run(&stop).unwrap());
        wait_for("frames", Duration::from_secs(5), || {
            stream_figure(http, "frames") > 0
        });
        // The stalled client: a small receive buffer, one request, never a read.
        let stalled = {
            let s =
                socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
            s.set_recv_buffer_size(4096).unwrap();
            s.connect(&http.into()).unwrap();
            let mut s: TcpStream = s.into();
            write!(s, "GET /cam1.mjpg HTTP/1.0\r\n\r\n").unwrap();
            s
        };
        let stalled_at = Instant::now();
        let mut reader = Mjpeg::open(http, "/cam1.mjpg");
        let holder = Mjpeg::open(http, "/cam1.mjpg");
        let (status, _, body) = http_get(http, "/cam1.mjpg");
        assert_eq!(status, 503, "{}", String::from_utf8_lossy(&body));
        assert!(
            stalled_at.elapsed() < Duration::from_secs(2),
            "the checks took too long"
        );
        assert_eq!(stream_figure(http, "http_clients"), 3);
        drop(holder);
        // Two seconds of reading while the stalled client's buffers are full.
        let before = stream_figure(http, "frames");
        let start = Instant::now();
        let mut got = std::collections::BTreeSet::new();
        while start.elapsed() < Duration::from_secs(2) {
            got.insert(reader.next().0);
        }
        let published = stream_figure(http, "frames") - before;
        assert!(published >= 45, "{published} frames in 2 s");
        assert!(
            got.len() as u64 * 10 >= published * 9,
            "the reading client got {} of {published} frames",
            got.len()
        );
        // The stalled client is cut off; the reader goes on.
        wait_for("the stalled client cut off", Duration::from_secs(8), || {
            stream_figure(http, "http_clients") == 1
        });
        assert!(stalled_at.elapsed() >= Duration::from_secs(3));
        let n = reader.next().0;
        assert!(got.iter().all(|&g| g < n));
        stop.store(true, Ordering::Relaxed);
        t.join().unwrap();
        drop(stalled);
    });
}

/// `/metrics` parses as OpenMetrics text (Python's prometheus_client parser, strict about
/// `# EOF`, types and `_total`), with the per-stream figures and per-subscriber series.
#[test]
fn metrics_parse_as_prometheus_text() {
    let mut a = serve_args("test:320x240@30", 3.0);
    a.outputs.http = Some(lo());
    let serve = bind_serve(a);
    let http = serve.http_addr().unwrap();
    let stop = AtomicBool::new(false);
    let text = std::thread::scope(|sc| {
        let t = sc.spawn(|| serve.run(&stop).unwrap());
        wait_for("figures", Duration::from_secs(5), || {
            stats(http)["streams"][0]["figures"]["fps"]
                .as_f64()
                .unwrap_or(0.0)
                > 0.0
        });
        let (status, head, body) = http_get(http, "/metrics");
        stop.store(true, Ordering::Relaxed);
        t.join().unwrap();
        assert_eq!(status, 200);
        assert!(head.contains("application/openmetrics-text"), "{head}");
        String::from_utf8(body).unwrap()
    });
    let python = if Path::new("/usr/bin/python3").exists() {
        "/usr/bin/python3"
    } else {
        "python3"
    };
    let script = "import sys\nfrom prometheus_client.openmetrics.parser import text_string_to_metric_families as p\nfor f in p(sys.stdin.read()):\n    for s in f.samples:\n        print(s.name, s.labels.get('stream', ''), s.value)\n";
    let mut child = Command::new(python)
        .args(["-c", script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python3 (scripts/setup.sh installs python3-prometheus-client)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let parsed = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    for name in [
        "framecast_stream_fps cam1",
        "framecast_stream_mbit_per_s cam1",
        "framecast_stream_viewers cam1",
        "framecast_stream_loss_percent cam1",
        "framecast_stream_recovered_total cam1",
        "framecast_stream_late_total cam1",
        "framecast_relay_datagrams_out_total",
    ] {
        assert!(
            parsed.lines().any(|l| l.starts_with(name)),
            "{name} missing in\n{parsed}"
        );
    }
    let fps: f64 = parsed
        .lines()
        .find_map(|l| l.strip_prefix("framecast_stream_fps cam1 "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(fps > 10.0, "{fps}");
}

/// Headless Chromium loads `/`: the screenshot shows the test pattern's colour bars (counted
/// by pixel colour), and the page's figures are filled in.
#[test]
fn browser_page_shows_the_picture_and_figures() {
    let dir = tmp("chromium");
    let mut a = serve_args("test:640x360@30", 12.0);
    a.outputs.http = Some(lo());
    let serve = bind_serve(a);
    let http = serve.http_addr().unwrap();
    let stop = AtomicBool::new(false);
    let shot = dir.path().join("page.png");
    let (dom, rgb) = std::thread::scope(|sc| {
        let t = sc.spawn(|| serve.run(&stop).unwrap());
        wait_for("figures", Duration::from_secs(5), || {
            stats(http)["streams"][0]["figures"]["fps"]
                .as_f64()
                .unwrap_or(0.0)
                > 0.0
        });
        let url = format!("http://{http}/");
        let profile = format!("--user-data-dir={}", dir.path().join("profile").display());
        let common = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            profile.as_str(),
            "--window-size=900,700",
            "--virtual-time-budget=3000",
        ];
        let shot_arg = format!("--screenshot={}", shot.display());
        let mut args: Vec<&str> = common.to_vec();
        args.extend([shot_arg.as_str(), url.as_str()]);
        let o = run_limited(40, "chromium", &args);
        assert!(
            shot.exists(),
            "no screenshot: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let mut args: Vec<&str> = common.to_vec();
        args.extend(["--dump-dom", url.as_str()]);
        let dom = String::from_utf8_lossy(&run_limited(40, "chromium", &args).stdout).to_string();
        stop.store(true, Ordering::Relaxed);
        t.join().unwrap();
        let rgb = run_limited(
            20,
            "ffmpeg",
            &[
                "-v",
                "error",
                "-i",
                shot.to_str().unwrap(),
                "-f",
                "rawvideo",
                "-pix_fmt",
                "rgb24",
                "-",
            ],
        )
        .stdout;
        (dom, rgb)
    });
    assert_eq!(rgb.len(), 900 * 700 * 3, "screenshot size");
    let count = |f: &dyn Fn(u8, u8, u8) -> bool| {
        rgb.chunks_exact(3).filter(|p| f(p[0], p[1], p[2])).count()
    };
    let yellow = count(&|r, g, b| r > 150 && g > 150 && b < 90);
    let cyan = count(&|r, g, b| r < 90 && g > 150 && b > 150);
    let magenta = count(&|r, g, b| r > 150 && g < 90 && b > 150);
    let blue = count(&|r, g, b| r < 60 && g < 60 && b > 130);
    // Each bar of a 640x360 picture is about 80x216 pixels, the page shows it at full size,
    // and the frame counter covers part of some; the page itself has none of these colours.
    for (name, n) in [
        ("yellow", yellow),
        ("cyan", cyan),
        ("magenta", magenta),
        ("blue", blue),
    ] {
        assert!(
            n > 4_000,
            "{name} bar: {n} pixels (yellow {yellow}, cyan {cyan}, magenta {magenta}, blue {blue})"
        );
    }
    assert!(dom.contains("cam1.mjpg"), "{dom}");
    let fps: f64 = dom
        .split("data-key=\"fps\">")
        .nth(1)
        .and_then(|s| s.split('<').next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no fps figure in the page:\n{dom}"));
    assert!(fps > 10.0, "fps {fps}");
}

/// A pulling relay learns of a stream only when asked: `/STREAM.jpg` starts its tap, which
/// pulls the stream from upstream, and the snapshot is a frame the server sent.
#[test]
fn pulling_relay_taps_a_stream_on_request() {
    let mut a = serve_args("test:320x240@30", 3.0);
    a.start_delay_ms = 200;
    let mut serve = bind_serve(a);
    serve.record_checksums = true;
    let mut r = RelayArgs::new(lo());
    r.duration = Some(3.5);
    r.upstream = Some(serve.local_addr());
    r.outputs.http = Some(lo());
    let mut relay = RelayRole::bind(r).unwrap();
    relay.status = false;
    let http = relay.http_addr().unwrap();
    let (sent, snapshot) = std::thread::scope(|sc| {
        let relay_t = sc.spawn(|| relay.run(&AtomicBool::new(false)).unwrap());
        let serve_t = sc.spawn(|| serve.run(&AtomicBool::new(false)).unwrap());
        assert_eq!(stats(http)["streams"].as_array().unwrap().len(), 0);
        let (status, head, snapshot) = http_get(http, "/cam1.jpg");
        assert_eq!(status, 200, "{head}");
        assert_eq!(stats(http)["streams"][0]["name"], "cam1");
        relay_t.join().unwrap();
        (serve_t.join().unwrap(), snapshot)
    });
    let crc = crc32fast::hash(&snapshot);
    assert!(sent.frame_crcs.iter().any(|&(_, c)| c == crc));
}
