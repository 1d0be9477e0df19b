//! File streaming benchmark, framecast against GStreamer, side by side in one run.
//!
//! A 1280x720 30 fps H.264 + AAC clip (made with ffmpeg into target/bench-media if missing)
//! is streamed by `framecast serve --source file:` into `framecast relay`, to one headless
//! `framecast play` that decodes every frame. Each role is its own process; the benchmark
//! reads each one's CPU time (user + system, from wait4's rusage) and divides by the frames
//! it handled, and computes the end-to-end latency of every frame from capture (the instant
//! the source scheduled it: start + pts) to decoded, both on this host's clock.
//! The yardstick is GStreamer's equivalent pair of pipelines on the same clip:
//! `filesrc ! qtdemux ! h264parse ! avdec_h264 ! videoconvert ! jpegenc ! rtpjpegpay ! udpsink`
//! and `udpsrc ! rtpjitterbuffer ! rtpjpegdepay ! jpegdec ! fakesink`.
//!
//! Cases: 1280x720 and 1920x1080 H.264 + AAC (the sender decodes and encodes), and an MJPEG
//! pass-through (1280x720 JPEGs made by ffmpeg: `framecast serve --source mjpeg:PATH` reading
//! the raw concatenated JPEGs at 30 fps, against `filesrc ! matroskademux ! jpegparse !
//! rtpjpegpay ! udpsink` reading the same JPEGs from Matroska, whose timestamps pace it).
//!
//! Like for like: GStreamer's pipelines carry the video only, so for the H.264 + AAC cases
//! framecast runs twice: as it is used (`serve` decodes the AAC and sends it as PCM, the
//! player receives it), and with `serve --no-audio` (video only, the same work as
//! GStreamer's). Both rows are printed; the framecast/GStreamer ratios are computed on the
//! video-only row. That row and GStreamer's are run `--runs` times each (default 3), in turn,
//! and the table gives the medians of their CPU figures and of framecast's per-run latency
//! percentiles (GStreamer's latency comes from one probed run), and the frames of the run that
//! decoded fewest; each run's ratios are printed too: on a shared, noisy machine a single run
//! of either moves the ratio by several points.
//!
//! `cargo bench --bench file_pipeline -- [--seconds S] [--runs N] [--case 720|1080|mjpeg]...`
//! (traffic stays on 127.0.0.1).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

mod support;
use support::{framecast_release_bin, free_port, percentile, target_dir};

fn rusage_cpu(ru: &libc::rusage) -> Duration {
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// Waits for a child and returns its exit status and CPU time.
fn wait_cpu(child: std::process::Child) -> (i32, Duration) {
    let mut status = 0;
    // SAFETY: an all-zero rusage is valid; wait4 fills it for our own child.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    let pid = child.id() as libc::pid_t;
    // SAFETY: waiting on a child we spawned; status and ru are ours.
    unsafe { libc::wait4(pid, &mut status, 0, &mut ru) };
    std::mem::forget(child);
    (status, rusage_cpu(&ru))
}

fn ensure_clip(dir: &Path, seconds: f64, height: u32) -> PathBuf {
    let width = height * 16 / 9;
    let clip = dir.join(format!("clip{height}-{seconds}s.mp4"));
    if !clip.exists() {
        std::fs::create_dir_all(dir).unwrap();
        let status = Command::new("ffmpeg")
            .args([
                "-hide_banner",
                "-loglevel",
                "error",
                "-y",
                "-f",
                "lavfi",
                "-i",
                &format!("testsrc2=size={width}x{height}:rate=30"),
            ])
            .args([
                "-f",
                "lavfi",
                "-i",
                "sine=frequency=440:sample_rate=48000,aformat=channel_layouts=stereo",
            ])
            .args([
                "-t",
                &seconds.to_string(),
                "-c:v",
                "libx264",
                "-preset",
                "veryfast",
                "-crf",
                "23",
            ])
            .args([
                "-pix_fmt", "yuv420p", "-g", "30", "-c:a", "aac", "-b:a", "128k",
            ])
            .arg(&clip)
            .status()
            .expect("ffmpeg is needed to make the benchmark clip (scripts/setup.sh installs it)");
        assert!(status.success(), "ffmpeg failed");
    }
    clip
}

/// A concatenated MJPEG file of `seconds` of 720p30 (ffmpeg's encoder, quality ~80).
fn ensure_mjpeg(dir: &Path, seconds: f64) -> PathBuf {
    let clip = dir.join(format!("clip720-{seconds}s.mjpeg"));
    if !clip.exists() {
        std::fs::create_dir_all(dir).unwrap();
        let status = Command::new("ffmpeg")
            .args(["-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi"])
            .args([
                "-i",
                "testsrc2=size=1280x720:rate=30",
                "-t",
                &seconds.to_string(),
            ])
            .args(["-c:v", "mjpeg", "-q:v", "5", "-f", "mjpeg"])
            .arg(&clip)
            .status()
            .expect("ffmpeg is needed to make the benchmark clip");
        assert!(status.success(), "ffmpeg failed");
    }
    // GStreamer's jpegparse stamps only the first JPEG of a raw stream: it reads the same
    // JPEGs from Matroska, whose timestamps pace its udpsink.
    let mkv = clip.with_extension("mkv");
    if !mkv.exists() {
        let status = Command::new("ffmpeg")
            .args(["-hide_banner", "-loglevel", "error", "-y", "-f", "mjpeg"])
            .args(["-framerate", "30", "-i"])
            .arg(&clip)
            .args(["-c:v", "copy"])
            .arg(&mkv)
            .status()
            .expect("ffmpeg");
        assert!(status.success(), "ffmpeg failed");
    }
    clip
}

/// What the senders read.
#[derive(Clone, Copy, PartialEq)]
enum Input {
    H264,
    Mjpeg,
}

struct Side {
    sender_cpu_per_frame_ms: f64,
    player_cpu_per_frame_ms: f64,
    frames_sent: u64,
    frames_decoded: u64,
    latency_p50_ms: Option<f64>,
    latency_p99_ms: Option<f64>,
}

fn run_framecast(
    bin: &Path,
    clip: &Path,
    seconds: f64,
    dir: &Path,
    input: Input,
    audio: bool,
) -> Side {
    let relay_port = free_port();
    let relay_addr = format!("127.0.0.1:{relay_port}");
    let (sj, pj) = (dir.join("serve.json"), dir.join("play.json"));
    let relay = Command::new(bin)
        .args([
            "relay",
            "--listen",
            &relay_addr,
            "--duration",
            &(seconds + 4.0).to_string(),
        ])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let play = Command::new(bin)
        .args([
            "play",
            "--from",
            &relay_addr,
            "--stream",
            "live",
            "--no-video",
            "--no-audio",
        ])
        .args([
            "--duration",
            &(seconds + 3.0).to_string(),
            "--frame-times",
            "--stats-json",
        ])
        .arg(&pj)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut serve = Command::new(bin);
    serve
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--relay",
            &relay_addr,
            "--name",
            "live",
        ])
        .arg("--source")
        .arg(match input {
            Input::H264 => format!("file:{}", clip.display()),
            Input::Mjpeg => format!("mjpeg:{}", clip.display()),
        })
        .args([
            "--quality",
            "80",
            "--start-delay-ms",
            "500",
            "--duration",
            &(seconds + 0.5).to_string(),
            "--stats-json",
        ])
        .arg(&sj);
    if !audio {
        serve.arg("--no-audio");
    }
    let serve = serve.stderr(Stdio::null()).spawn().unwrap();
    let (_, serve_cpu) = wait_cpu(serve);
    let (_, play_cpu) = wait_cpu(play);
    let _ = wait_cpu(relay);
    let s: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&sj).expect("serve stats")).unwrap();
    let p: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&pj).expect("play stats")).unwrap();
    let sent = s["server"]["frames_sent"].as_u64().unwrap_or(0);
    let decoded = p["frames_decoded"].as_u64().unwrap_or(0);
    let start_us = s["start_unix_us"].as_f64().unwrap_or(0.0);
    let mut lat: Vec<f64> = p["frame_times"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|e| {
                    let pts = e[0].as_f64()?;
                    let at = e[1].as_f64()?;
                    Some((at - (start_us + pts / 0.09)) / 1000.0)
                })
                .collect()
        })
        .unwrap_or_default();
    lat.sort_by(|a, b| a.total_cmp(b));
    Side {
        sender_cpu_per_frame_ms: serve_cpu.as_secs_f64() * 1000.0 / sent.max(1) as f64,
        player_cpu_per_frame_ms: play_cpu.as_secs_f64() * 1000.0 / decoded.max(1) as f64,
        frames_sent: sent,
        frames_decoded: decoded,
        latency_p50_ms: (!lat.is_empty()).then(|| percentile(&lat, 0.5)),
        latency_p99_ms: (!lat.is_empty()).then(|| percentile(&lat, 0.99)),
    }
}

/// The GStreamer receiving pipeline up to `jpegdec`, then `sink` (the yardstick's receiver).
fn gst_receiver(port: &str, sink: &[&str]) -> Command {
    let caps = "application/x-rtp,media=video,clock-rate=90000,encoding-name=JPEG,payload=26";
    let mut c = Command::new("gst-launch-1.0");
    c.args([
        "-e",
        "-v",
        "udpsrc",
        &format!("port={port}"),
        &format!("caps={caps}"),
        "!",
    ])
    .args([
        "rtpjitterbuffer",
        "latency=100",
        "!",
        "rtpjpegdepay",
        "!",
        "jpegdec",
        "!",
    ])
    .args(sink);
    c
}

/// GStreamer's sending pipeline for `input`, with `probe` elements after the source's frames.
fn gst_sender(flag: &str, clip: &Path, input: Input, port: &str, probe: &[&str]) -> Command {
    let mut c = Command::new("gst-launch-1.0");
    // GStreamer's jpegparse stamps only the first JPEG of a raw stream: it reads the same
    // JPEGs from Matroska, whose timestamps pace its udpsink.
    let file = match input {
        Input::H264 => clip.to_path_buf(),
        Input::Mjpeg => clip.with_extension("mkv"),
    };
    c.args([
        flag,
        "filesrc",
        &format!("location={}", file.display()),
        "!",
    ]);
    match input {
        Input::H264 => {
            c.args([
                "qtdemux",
                "name=d",
                "d.video_0",
                "!",
                "queue",
                "!",
                "h264parse",
                "!",
            ])
            .args(["avdec_h264", "!"])
            .args(probe)
            .args(["videoconvert", "!", "jpegenc", "quality=80", "!"]);
        }
        Input::Mjpeg => {
            c.args(["matroskademux", "!", "jpegparse", "!"]).args(probe);
        }
    }
    c.args([
        "rtpjpegpay",
        "!",
        "udpsink",
        "host=127.0.0.1",
        &format!("port={port}"),
    ]);
    c
}

/// One run of GStreamer's pipelines (the caller has checked that gst-launch-1.0 exists);
/// `None` if they fail.
fn run_gstreamer(clip: &Path, seconds: f64, input: Input) -> Option<Side> {
    let port = free_port().to_string();
    let recv = gst_receiver(
        &port,
        &[
            "fpsdisplaysink",
            "name=fps",
            "text-overlay=false",
            "video-sink=fakesink",
            "sync=false",
        ],
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::null())
    .spawn()
    .ok()?;
    let send = gst_sender("-q", clip, input, &port, &[])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let (_, send_cpu) = wait_cpu(send);
    // The receiver never sees an end: stop it (gst-launch -e turns SIGINT into EOS) once
    // the sender is done and a jitter-buffer's worth has drained.
    std::thread::sleep(Duration::from_millis(500));
    // SAFETY: signalling our own child.
    unsafe { libc::kill(recv.id() as i32, libc::SIGINT) };
    let mut recv = recv;
    let mut text = String::new();
    if let Some(mut so) = recv.stdout.take() {
        use std::io::Read;
        let _ = so.read_to_string(&mut text);
    }
    let (_, recv_cpu) = wait_cpu(recv);
    // fpsdisplaysink reports "rendered: N" in its last-message.
    let rendered = text
        .lines()
        .filter_map(|l| l.split("rendered: ").nth(1))
        .filter_map(|r| r.split(',').next()?.trim().parse::<u64>().ok())
        .max()
        .unwrap_or(0);
    let frames = (seconds * 30.0).round() as u64;
    Some(Side {
        sender_cpu_per_frame_ms: send_cpu.as_secs_f64() * 1000.0 / frames as f64,
        player_cpu_per_frame_ms: recv_cpu.as_secs_f64() * 1000.0 / rendered.max(1) as f64,
        frames_sent: frames,
        frames_decoded: rendered,
        latency_p50_ms: None,
        latency_p99_ms: None,
    })
}

/// Reads a gst-launch `-v` stdout and stamps each identity "chain" line with the wall
/// clock as it arrives: (pts in seconds, µs since the Unix epoch).
fn stamp_chains(out: std::process::ChildStdout) -> std::thread::JoinHandle<Vec<(f64, u64)>> {
    std::thread::spawn(move || {
        use std::io::BufRead;
        let mut v = Vec::new();
        for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
            if !line.contains("chain") {
                continue;
            }
            let at = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_micros() as u64);
            // "... pts: 0:00:01.233333333, ..."
            let Some(p) = line.split("pts: ").nth(1).and_then(|r| r.split(',').next()) else {
                continue;
            };
            let parts: Vec<f64> = p.split(':').filter_map(|x| x.trim().parse().ok()).collect();
            if parts.len() == 3 {
                v.push((parts[0] * 3600.0 + parts[1] * 60.0 + parts[2], at));
            }
        }
        v
    })
}

/// GStreamer's capture-to-decoded latency, measured in a separate run (the probes print a
/// line per frame, which would distort the CPU figures): an `identity sync=true` after the
/// decoder marks when each frame is due (its capture time), an `identity` after `jpegdec`
/// marks when it is decoded; frames are matched by their timestamp relative to the first.
fn gstreamer_latency(clip: &Path, input: Input) -> Option<(f64, f64)> {
    let port = free_port().to_string();
    let mut recv = gst_receiver(
        &port,
        &[
            "identity",
            "name=rx",
            "silent=false",
            "!",
            "fakesink",
            "sync=false",
        ],
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::null())
    .spawn()
    .ok()?;
    let mut send = gst_sender(
        "-v",
        clip,
        input,
        &port,
        &["identity", "name=tx", "sync=true", "silent=false", "!"],
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::null())
    .spawn()
    .ok()?;
    let tx = stamp_chains(send.stdout.take()?);
    let rx = stamp_chains(recv.stdout.take()?);
    let _ = send.wait();
    std::thread::sleep(Duration::from_millis(500));
    // SAFETY: signalling our own child.
    unsafe { libc::kill(recv.id() as i32, libc::SIGINT) };
    let _ = recv.wait();
    let (tx, rx) = (tx.join().ok()?, rx.join().ok()?);
    let rx0 = rx.first()?.0;
    // The sender's timestamps start at 0; the receiver's at its first frame's.
    let due: std::collections::HashMap<i64, u64> = tx
        .iter()
        .map(|(p, at)| ((p * 30.0).round() as i64, *at))
        .collect();
    let mut lat: Vec<f64> = rx
        .iter()
        .filter_map(|(p, at)| {
            let k = ((p - rx0) * 30.0).round() as i64;
            due.get(&k).map(|d| (*at as f64 - *d as f64) / 1000.0)
        })
        .collect();
    lat.sort_by(|a, b| a.total_cmp(b));
    (!lat.is_empty()).then(|| (percentile(&lat, 0.5), percentile(&lat, 0.99)))
}

/// `cargo bench --bench file_pipeline -- [--seconds S] [--runs N] [--case 720|1080|mjpeg]...`
#[derive(clap::Parser)]
struct Args {
    /// Seconds of clip streamed per run.
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    /// Runs of each like-for-like side (framecast video only and GStreamer, taken in turn);
    /// the table gives their medians. The machine is shared and noisy: one run of either
    /// moves the ratio by several points.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Cases to run (repeatable; default all): 720, 1080 (H.264 + AAC), mjpeg (pass-through).
    #[arg(long = "case", value_parser = ["720", "1080", "mjpeg"])]
    cases: Vec<String>,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

fn main() {
    let args = <Args as clap::Parser>::parse();
    let seconds = args.seconds;
    assert!(
        seconds.is_finite() && seconds > 0.0,
        "--seconds {seconds}: expected a positive number"
    );
    let runs = args.runs;
    assert!(runs >= 1, "--runs {runs}: expected at least 1");
    let mut cases = args.cases;
    if cases.is_empty() {
        cases = vec!["720".into(), "1080".into(), "mjpeg".into()];
    }
    let dir = target_dir().join("bench-media");
    let bin = framecast_release_bin();
    for case in &cases {
        let (clip, input, title) = match case.as_str() {
            "720" => (
                ensure_clip(&dir, seconds, 720),
                Input::H264,
                "1280x720 30 fps H.264 + AAC",
            ),
            "1080" => (
                ensure_clip(&dir, seconds, 1080),
                Input::H264,
                "1920x1080 30 fps H.264 + AAC",
            ),
            _ => (
                ensure_mjpeg(&dir, seconds),
                Input::Mjpeg,
                "1280x720 30 fps MJPEG pass-through",
            ),
        };
        run_case(&bin, &clip, seconds, runs, &dir, input, title);
    }
}

/// The median of `v` (the mean of the middle two for an even count); `v` is not empty.
fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// One side of several runs: the median of each CPU and latency figure, the fewest frames
/// decoded (and the frames sent in that run).
fn median_side(runs: &[Side]) -> Side {
    let m = |f: &dyn Fn(&Side) -> f64| median(runs.iter().map(f).collect());
    let lat = |f: &dyn Fn(&Side) -> Option<f64>| {
        let v: Vec<f64> = runs.iter().filter_map(f).collect();
        (!v.is_empty()).then(|| median(v))
    };
    let fewest = runs
        .iter()
        .min_by_key(|s| s.frames_decoded)
        .expect("at least one run");
    Side {
        sender_cpu_per_frame_ms: m(&|s| s.sender_cpu_per_frame_ms),
        player_cpu_per_frame_ms: m(&|s| s.player_cpu_per_frame_ms),
        frames_sent: fewest.frames_sent,
        frames_decoded: fewest.frames_decoded,
        latency_p50_ms: lat(&|s| s.latency_p50_ms),
        latency_p99_ms: lat(&|s| s.latency_p99_ms),
    }
}

fn run_case(
    bin: &Path,
    clip: &Path,
    seconds: f64,
    runs: usize,
    dir: &Path,
    input: Input,
    title: &str,
) {
    // The like-for-like rows (video only, as GStreamer's pipelines), `runs` of each in turn,
    // so that a noisy spell of the machine falls on both; and for a clip with sound also
    // framecast as used, carrying the AAC as PCM (once: it is not compared).
    let have_gst = Command::new("gst-launch-1.0")
        .arg("--version")
        .output()
        .is_ok();
    if !have_gst {
        println!("GStreamer (gst-launch-1.0) not found: scripts/setup.sh installs it");
    }
    let mut fc_runs = Vec::new();
    let mut gst_runs = Vec::new();
    for _ in 0..runs {
        fc_runs.push(run_framecast(bin, clip, seconds, dir, input, false));
        if have_gst {
            gst_runs.extend(run_gstreamer(clip, seconds, input));
        }
    }
    let video_only = median_side(&fc_runs);
    let with_audio =
        (input == Input::H264).then(|| run_framecast(bin, clip, seconds, dir, input, true));
    let mut gst = (!gst_runs.is_empty()).then(|| median_side(&gst_runs));
    if let (Some(g), Some((p50, p99))) = (gst.as_mut(), gstreamer_latency(clip, input)) {
        g.latency_p50_ms = Some(p50);
        g.latency_p99_ms = Some(p99);
    }
    let fmt = |v: Option<f64>| v.map_or("-".to_string(), |x| format!("{x:.1}"));
    println!();
    println!(
        "{title} clip, {seconds} s, loopback, one player (headless decode); \"fc video\" and \
         GStreamer: medians of {} and {} runs (CPU, and fc's latency percentiles), the worst \
         run's frames",
        fc_runs.len(),
        gst_runs.len()
    );
    let mut columns: Vec<(&str, Option<&Side>)> = Vec::new();
    if let Some(a) = &with_audio {
        columns.push(("fc +audio", Some(a)));
    }
    columns.push(("fc video", Some(&video_only)));
    columns.push(("GStreamer", gst.as_ref()));
    let header: String = columns.iter().map(|(n, _)| format!(" {n:>12}")).collect();
    println!("{:<34}{header}", "");
    let row = |name: &str, f: &dyn Fn(&Side) -> String| {
        let cells: String = columns
            .iter()
            .map(|(_, s)| format!(" {:>12}", s.map_or("-".to_string(), f)))
            .collect();
        println!("{name:<34}{cells}");
    };
    row("sender CPU per frame (ms)", &|s| {
        format!("{:.2}", s.sender_cpu_per_frame_ms)
    });
    row("player CPU per frame (ms)", &|s| {
        format!("{:.2}", s.player_cpu_per_frame_ms)
    });
    row("frames sent / decoded", &|s| {
        format!("{}/{}", s.frames_sent, s.frames_decoded)
    });
    row("latency capture->decoded p50 (ms)", &|s| {
        fmt(s.latency_p50_ms)
    });
    row("latency capture->decoded p99 (ms)", &|s| {
        fmt(s.latency_p99_ms)
    });
    if let Some(g) = &gst {
        println!(
            "ratios framecast/GStreamer, like for like (video only, medians): sender CPU {:.2}, player CPU {:.2}",
            video_only.sender_cpu_per_frame_ms / g.sender_cpu_per_frame_ms,
            video_only.player_cpu_per_frame_ms / g.player_cpu_per_frame_ms
        );
        if fc_runs.len() == gst_runs.len() && runs > 1 {
            let each: Vec<String> = fc_runs
                .iter()
                .zip(&gst_runs)
                .map(|(f, g)| {
                    format!(
                        "{:.2}/{:.2}",
                        f.sender_cpu_per_frame_ms / g.sender_cpu_per_frame_ms,
                        f.player_cpu_per_frame_ms / g.player_cpu_per_frame_ms
                    )
                })
                .collect();
            println!("(each run in turn, sender/player: {})", each.join(", "));
        }
        if let Some(a) = &with_audio {
            println!(
                "(framecast with its audio against GStreamer's video only: sender CPU {:.2}, player CPU {:.2})",
                a.sender_cpu_per_frame_ms / g.sender_cpu_per_frame_ms,
                a.player_cpu_per_frame_ms / g.player_cpu_per_frame_ms
            );
        }
    }
    println!(
        "(\"fc video\" is framecast with `serve --no-audio`, the same work as GStreamer's \
         video-only pipelines{}; framecast runs a relay process, GStreamer's pipeline is direct; \
         GStreamer's latency comes from a second run with per-frame identity probes read from \
         gst-launch -v)",
        if input == Input::H264 {
            "; \"fc +audio\" also decodes the AAC and carries it as PCM"
        } else {
            ""
        }
    );
}
