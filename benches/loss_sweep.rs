//! Loss-sweep benchmark: framecast against SRT (`srt-live-transmit`), side by side in one
//! run, both through the same `framecast netsim` impairment (independent loss, delay, in
//! BOTH directions: netsim runs one seeded link per direction).
//!
//! framecast: `framecast serve --source test:960x540@30 --no-audio --quality 80` (about
//! 68 KB of JPEG a frame) → netsim → `framecast play --latency L --frame-times` (headless:
//! `--no-video --no-audio`, DISPLAY unset). The two-hop point is serve → netsim → relay (pulling with `--upstream`) →
//! netsim → play, each hop impaired alike.
//!
//! SRT: this bench makes 30 fps frames of the size framecast's JPEGs had at that point,
//! chunks each into UDP datagrams of at most 1316 bytes (a 16-byte header: frame number,
//! chunk index, chunk count, capture time in µs, then filler) spread over half a frame
//! interval (as framecast's pacer does), into `srt-live-transmit udp://… srt://NETSIM
//! (caller)`; netsim forwards to `srt-live-transmit srt://… (listener) udp://…`, and the
//! bench reassembles what comes out. At the two-hop point SRT runs end to end through two
//! netsims in series (srt-live-transmit is no relay).
//!
//! The rule, the same for both tools: a frame counts as *intact on time* (ok%) when all of
//! it reaches the receiving application no later than `capture + D + L + one frame
//! interval`, where capture is the instant the source scheduled it, D the path's one-way
//! delay (netsim `--delay` times the hops) and L the configured latency. "Reaches" means
//! played by `play` (released by its jitter buffer at the frame's playout time, the
//! `playout_times` of its `--frame-times`) for framecast, the last chunk delivered to the
//! bench's socket for SRT (which delivers at its playout time). D is in the rule because both tools add their latency on top of
//! the path: framecast plays a frame L after its first chunk arrived, SRT delivers each
//! packet L after it was sent plus the one-way delay it measured at connection; without D
//! (strict%, also reported) SRT at 10 ms each way sits right on the boundary and the figure
//! measures the delay, not loss recovery. The ratios are over the frames captured in the
//! measured window (start-up and tail excluded); p50/p99 latency is capture → that instant,
//! over the frames of the window that arrived whole (late ones included); neither includes
//! decoding. Wire overhead = UDP payload bytes
//! the endpoints put into netsim, both directions, per hop ÷ media bytes (JPEG bytes for
//! framecast, frame bytes for SRT, whose 16-byte bench header counts as overhead) over the
//! whole run.
//!
//! `cargo bench --bench loss_sweep -- [--seconds S] [--points LIST] [--json FILE]`
//! (S defaults to 30 per point and tool; LIST is comma-separated point names from
//! [`POINTS`]: 0,1,5,10,20 (random loss %), b5,b10 (bursts), far10,far20 (50 ms each way,
//! latency 300), hop2-10; CI runs `--seconds 3 --points 5`). Everything stays on 127.0.0.1; every
//! process has its own `--duration`/`-t:` and is killed if it outlives it.

use std::collections::HashMap;
use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

#[path = "support/procs.rs"]
mod procs;
#[path = "support/srt.rs"]
mod srt;
mod support;
use procs::{Procs, netsim_figures, read_json};
use srt::{srt_receive, srt_send};
use support::{framecast_release_bin, free_port, percentile, target_dir};

const FPS: f64 = 30.0;
/// Source seconds before the measured window (start-up: subscription, first keyframes).
const WARMUP_S: f64 = 2.0;
/// Source seconds after the measured window (the last frames' recovery is not judged).
const TAIL_S: f64 = 1.0;
/// Time given to processes to come up before the source's first frame.
const START_DELAY: Duration = Duration::from_millis(1000);
/// JPEG quality of the test pattern at 960x540: about 68 KB a frame.
const QUALITY: &str = "80";
/// Largest datagram the SRT side writes (SRT's live payload size).
const SRT_DATAGRAM: usize = 1316;
/// Bench header of each SRT-side datagram: frame u32, chunk u16, count u16, capture µs u64.
const HEADER: usize = 16;

/// One operating point of the sweep.
#[derive(Debug, Clone, Copy)]
struct Point {
    name: &'static str,
    /// Loss in percent, each direction, each hop.
    loss: f64,
    /// Mean burst length (Gilbert-Elliott) when bursty.
    burst: Option<f64>,
    /// One-way delay, each direction, each hop, ms.
    delay_ms: u64,
    /// Receiver latency (framecast `--latency`, SRT `latency=`), ms.
    latency_ms: u64,
    hops: usize,
}

const fn pt(name: &'static str, loss: f64, burst: Option<f64>, delay_ms: u64) -> Point {
    let latency_ms = if delay_ms >= 50 { 300 } else { 120 };
    Point {
        name,
        loss,
        burst,
        delay_ms,
        latency_ms,
        hops: 1,
    }
}

/// The sweep: random loss, burst loss (mean burst 4), long delay, two hops.
const POINTS: &[Point] = &[
    pt("0", 0.0, None, 10),
    pt("1", 1.0, None, 10),
    pt("5", 5.0, None, 10),
    pt("10", 10.0, None, 10),
    pt("20", 20.0, None, 10),
    pt("b5", 5.0, Some(4.0), 10),
    pt("b10", 10.0, Some(4.0), 10),
    pt("far10", 10.0, None, 50),
    pt("far20", 20.0, None, 50),
    Point {
        hops: 2,
        ..pt("hop2-10", 10.0, None, 10)
    },
];

impl Point {
    fn describe(&self) -> String {
        let kind = match self.burst {
            Some(b) => format!("{}% burst (mean {b})", self.loss),
            None => format!("{}% random", self.loss),
        };
        format!(
            "{kind} loss, {} ms each way{}, latency {} ms",
            self.delay_ms,
            if self.hops > 1 {
                ", on each of 2 hops"
            } else {
                ""
            },
            self.latency_ms
        )
    }

    /// A table label, e.g. `10% rand 10ms L120 2hop`.
    fn short(&self) -> String {
        format!(
            "{}% {} {}ms L{}{}",
            self.loss,
            if self.burst.is_some() {
                "burst"
            } else {
                "rand"
            },
            self.delay_ms,
            self.latency_ms,
            if self.hops > 1 { " 2hop" } else { "" }
        )
    }

    /// Deadline after capture for "on time", µs: latency + one frame interval, plus (unless
    /// `strict`) the path's one-way delay (netsim `--delay` times the hops).
    fn on_time_us(&self, strict: bool) -> f64 {
        let path = if strict {
            0.0
        } else {
            (self.delay_ms * self.hops as u64) as f64
        };
        (path + self.latency_ms as f64) * 1000.0 + 1e6 / FPS
    }
}

/// What one tool achieved at one point.
#[derive(Debug, Clone, Default, serde::Serialize)]
struct Outcome {
    /// Frames intact by capture + path delay + latency + 1 frame interval, percent.
    on_time_pct: f64,
    /// Frames intact by capture + latency + 1 frame interval, percent.
    on_time_strict_pct: f64,
    p50_ms: f64,
    p99_ms: f64,
    overhead: f64,
    /// Measured loss on the path, forward and reverse (first hop), percent.
    loss_fwd_pct: f64,
    loss_rev_pct: f64,
    frames_window: u64,
    frame_bytes: f64,
}

/// A shell-ready rendering of a command line.
fn netsim(
    bin: &Path,
    p: &Point,
    listen: u16,
    forward: u16,
    seed: u64,
    secs: f64,
    json: &Path,
) -> Command {
    let mut c = Command::new(bin);
    c.args(["netsim", "--listen", &format!("127.0.0.1:{listen}")])
        .args(["--forward", &format!("127.0.0.1:{forward}")])
        .args(["--loss", &p.loss.to_string()]);
    if let Some(b) = p.burst {
        c.args(["--burst", &b.to_string()]);
    }
    c.args([
        "--delay",
        &p.delay_ms.to_string(),
        "--seed",
        &seed.to_string(),
    ])
    .args(["--duration", &format!("{secs:.1}"), "--stats-json"])
    .arg(json);
    c
}

/// Judges frames `k` of the window from (k, capture→arrival µs).
fn judge(p: &Point, seconds: f64, arrivals: &HashMap<u64, f64>, out: &mut Outcome) {
    let (k0, k1) = ((WARMUP_S * FPS) as u64, ((WARMUP_S + seconds) * FPS) as u64);
    let mut lat: Vec<f64> = (k0..k1).filter_map(|k| arrivals.get(&k).copied()).collect();
    let on_time = |strict| lat.iter().filter(|&&l| l <= p.on_time_us(strict)).count();
    let n = (k1 - k0) as f64;
    out.on_time_pct = 100.0 * on_time(false) as f64 / n;
    out.on_time_strict_pct = 100.0 * on_time(true) as f64 / n;
    lat.sort_by(f64::total_cmp);
    out.frames_window = k1 - k0;
    out.p50_ms = percentile(&lat, 0.5) / 1000.0;
    out.p99_ms = percentile(&lat, 0.99) / 1000.0;
}

fn run_framecast(
    bin: &Path,
    p: &Point,
    seconds: f64,
    dir: &Path,
    log: &mut Vec<String>,
) -> Outcome {
    let total = WARMUP_S + seconds + TAIL_S;
    let lat_s = p.latency_ms as f64 / 1000.0;
    let life = START_DELAY.as_secs_f64() + total + lat_s + 3.0;
    let serve_port = free_port();
    let launched = Instant::now();
    let mut procs = Procs {
        dir: dir.to_path_buf(),
        log,
        children: Vec::new(),
    };
    let n1 = free_port();
    let nj = [dir.join("netsim1.json"), dir.join("netsim2.json")];
    procs.spawn(
        "netsim1",
        netsim(bin, p, n1, serve_port, 1, life + 1.0, &nj[0]),
    );
    let mut from = n1;
    if p.hops == 2 {
        let (relay, n2) = (free_port(), free_port());
        let mut c = Command::new(bin);
        c.args(["relay", "--listen", &format!("127.0.0.1:{relay}")])
            .args(["--upstream", &format!("127.0.0.1:{n1}")])
            .args(["--duration", &format!("{:.1}", life + 0.5)]);
        procs.spawn("relay", c);
        procs.spawn("netsim2", netsim(bin, p, n2, relay, 2, life + 1.0, &nj[1]));
        from = n2;
    }
    let (sj, pj) = (dir.join("serve.json"), dir.join("play.json"));
    let mut c = Command::new(bin);
    c.args(["serve", "--listen", &format!("127.0.0.1:{serve_port}")])
        .args([
            "--source",
            "test:960x540@30",
            "--no-audio",
            "--quality",
            QUALITY,
        ])
        .args(["--seed", "1", "--start-delay-ms"])
        .arg(START_DELAY.as_millis().to_string())
        .args(["--duration", &format!("{total:.1}"), "--stats-json"])
        .arg(&sj);
    procs.spawn("serve", c);
    let mut c = Command::new(bin);
    c.args([
        "play",
        "--from",
        &format!("127.0.0.1:{from}"),
        "--stream",
        "live",
    ])
    .args([
        "--latency",
        &p.latency_ms.to_string(),
        "--no-video",
        "--no-audio",
    ])
    .args([
        "--duration",
        &format!("{life:.1}"),
        "--frame-times",
        "--stats-json",
    ])
    .arg(&pj);
    procs.spawn("play", c);
    // Serve ends after START_DELAY + total; its last frames need the latency and a margin.
    procs.finish(launched + START_DELAY + Duration::from_secs_f64(total + lat_s + 1.5));

    let (s, pl) = (read_json(&sj), read_json(&pj));
    let start_us = s["start_unix_us"].as_f64().unwrap();
    // Capture of frame k is start + k / FPS; pts is in 90 kHz units.
    let mut arrivals = HashMap::new();
    for e in pl["playout_times"].as_array().into_iter().flatten() {
        let (Some(pts), Some(at)) = (e[0].as_u64(), e[1].as_f64()) else {
            continue;
        };
        let k = (pts as f64 * FPS / 90_000.0).round() as u64;
        arrivals
            .entry(k)
            .or_insert(at - (start_us + k as f64 * 1e6 / FPS));
    }
    let mut out = Outcome::default();
    judge(p, seconds, &arrivals, &mut out);
    let media = s["server"]["frame_bytes"].as_f64().unwrap_or(0.0);
    let mut wire = 0.0;
    for (i, j) in nj.iter().take(p.hops).enumerate() {
        let (bytes, fwd, rev) = netsim_figures(&read_json(j), false);
        wire += bytes;
        if i == 0 {
            (out.loss_fwd_pct, out.loss_rev_pct) = (fwd, rev);
        }
    }
    out.overhead = wire / p.hops as f64 / media.max(1.0);
    out.frame_bytes = s["source"]["mean_jpeg_bytes"].as_f64().unwrap_or(0.0);
    let dropped = s["source"]["frames_dropped"].as_u64().unwrap_or(0);
    if dropped > 0 {
        println!("  (the serve source dropped {dropped} frames: the host was too busy)");
    }
    out
}

fn run_srt(
    bin: &Path,
    p: &Point,
    seconds: f64,
    size: usize,
    dir: &Path,
    log: &mut Vec<String>,
) -> Outcome {
    let total = WARMUP_S + seconds + TAIL_S;
    let lat_s = p.latency_ms as f64 / 1000.0;
    let life = START_DELAY.as_secs_f64() + total + lat_s + 3.0;
    let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
    let sock = socket2::SockRef::from(&rx);
    let _ = sock.set_recv_buffer_size(4 << 20);
    let c_port = rx.local_addr().unwrap().port();
    let (a, b) = (free_port(), free_port());
    let ns = [free_port(), free_port()];
    let nj = [dir.join("netsim1.json"), dir.join("netsim2.json")];
    let mut procs = Procs {
        dir: dir.to_path_buf(),
        log,
        children: Vec::new(),
    };
    let srt = |uri: String| {
        let mut c = Command::new("srt-live-transmit");
        c.args(["-a:no", &format!("-t:{}", life.ceil() as u64), "-q"]);
        (c, uri)
    };
    let (mut c, uri) = srt(format!(
        "srt://127.0.0.1:{b}?mode=listener&latency={}",
        p.latency_ms
    ));
    c.arg(uri).arg(format!("udp://127.0.0.1:{c_port}"));
    procs.spawn("srt-rx", c);
    // Hops in series: the caller sends to the last netsim, which forwards to the one
    // before, ..., the first forwards to the listener.
    for h in 0..p.hops {
        let fwd = if h == 0 { b } else { ns[h - 1] };
        let name = format!("netsim{}", h + 1);
        procs.spawn(
            &name,
            netsim(bin, p, ns[h], fwd, 1 + h as u64, life + 1.0, &nj[h]),
        );
    }
    std::thread::sleep(Duration::from_millis(200));
    let (mut c, uri) = srt(format!(
        "srt://127.0.0.1:{}?mode=caller&latency={}",
        ns[p.hops - 1],
        p.latency_ms
    ));
    c.arg(format!("udp://127.0.0.1:{a}")).arg(uri);
    procs.spawn("srt-tx", c);
    let origin = Instant::now();
    let first = origin + START_DELAY;
    let frames = (total * FPS).round() as u64;
    let until = first + Duration::from_secs_f64(total + lat_s + 1.0);
    let (sent, arrivals) = std::thread::scope(|sc| {
        let r = sc.spawn(|| srt_receive(rx, origin, until));
        let sent = srt_send(a, size, frames, origin, first);
        (sent, r.join().unwrap())
    });
    procs.finish(Instant::now());
    let mut out = Outcome::default();
    judge(p, seconds, &arrivals, &mut out);
    let mut wire = 0.0;
    for (i, j) in nj.iter().take(p.hops).enumerate() {
        let (bytes, fwd, rev) = netsim_figures(&read_json(j), true);
        wire += bytes;
        if i == 0 {
            (out.loss_fwd_pct, out.loss_rev_pct) = (fwd, rev);
        }
    }
    out.overhead = wire / p.hops as f64 / (sent as f64 * size as f64);
    out.frame_bytes = size as f64;
    out
}

fn median(mut v: Vec<f64>) -> f64 {
    v.retain(|x| x.is_finite());
    v.sort_by(f64::total_cmp);
    percentile(&v, 0.5)
}

/// `cargo bench --bench loss_sweep -- [OPTIONS]`
#[derive(clap::Parser)]
struct Args {
    /// Seconds measured per point and tool.
    #[arg(long, default_value_t = 30.0)]
    seconds: f64,
    /// Points to run, comma-separated names (default: all).
    #[arg(long, value_delimiter = ',')]
    points: Vec<String>,
    /// Also write the rows as JSON to this file.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

fn main() {
    let args = <Args as clap::Parser>::parse();
    let seconds = args.seconds;
    let points: Vec<Point> = if args.points.is_empty() {
        POINTS.to_vec()
    } else {
        args.points
            .iter()
            .map(|n| {
                *POINTS.iter().find(|p| p.name == n).unwrap_or_else(|| {
                    let names: Vec<_> = POINTS.iter().map(|p| p.name).collect();
                    eprintln!("unknown point {n:?}; points are {}", names.join(","));
                    std::process::exit(2)
                })
            })
            .collect()
    };
    let json_out = args.json;
    if Command::new("srt-live-transmit")
        .arg("-version")
        .output()
        .is_err()
    {
        panic!("srt-live-transmit not found: scripts/setup.sh installs it (Debian srt-tools)");
    }
    let bin = framecast_release_bin();
    let root = target_dir().join("loss-sweep");
    println!(
        "loss sweep: 960x540 30 fps, {seconds} s measured per point and tool \
         (+{WARMUP_S} s start-up, +{TAIL_S} s tail not judged), all on 127.0.0.1"
    );
    println!(
        "rule: a frame is intact on time (ok%) if whole at the receiving application by \
         capture + one-way path delay + latency + 1 frame interval ({:.1} ms); strict%: the \
         same without the path delay",
        1000.0 / FPS
    );
    let mut rows = Vec::new();
    let mut log = Vec::new();
    for p in &points {
        println!("point {}: {}", p.name, p.describe());
        let dir = root.join(p.name);
        std::fs::create_dir_all(dir.join("framecast")).unwrap();
        std::fs::create_dir_all(dir.join("srt")).unwrap();
        log.push(format!("# point {}: framecast", p.name));
        let fc = run_framecast(&bin, p, seconds, &dir.join("framecast"), &mut log);
        let size = fc.frame_bytes.round().max(1.0) as usize;
        log.push(format!("# point {}: SRT ({size}-byte frames; the bench sends to udp:// and reads the output udp://)", p.name));
        let srt = run_srt(&bin, p, seconds, size, &dir.join("srt"), &mut log);
        for (tool, o) in [("framecast", &fc), ("srt", &srt)] {
            println!(
                "  {tool:<9} ok {:6.2}%  strict {:6.2}%  p50 {:6.1} ms  p99 {:6.1} ms  \
                 overhead {:.3}  (netsim loss forward {:.1}%, reverse {:.1}%)",
                o.on_time_pct,
                o.on_time_strict_pct,
                o.p50_ms,
                o.p99_ms,
                o.overhead,
                o.loss_fwd_pct,
                o.loss_rev_pct
            );
        }
        // Nothing at all through means a broken setup, not a result: fail (the CI smoke run).
        for (tool, o) in [("framecast", &fc), ("SRT", &srt)] {
            assert!(
                o.p50_ms.is_finite(),
                "{tool} delivered no whole frame at point {}: see the logs in {}",
                p.name,
                dir.display()
            );
        }
        rows.push((*p, fc, srt));
    }
    println!();
    println!("commands run (per point; ports and paths vary):");
    for l in &log {
        println!("  {l}");
    }
    println!();
    println!(
        "{:<24} | {:^38} | {:^38}",
        "point", "framecast", "SRT (srt-live-transmit)"
    );
    let head = format!(
        "{:>6} {:>7} {:>6} {:>6} {:>6}",
        "ok%", "strict%", "p50", "p99", "ovh"
    );
    println!("{:<24} | {head:^38} | {head:^38}", "");
    let fig = |o: &Outcome| {
        [
            o.on_time_pct,
            o.on_time_strict_pct,
            o.p50_ms,
            o.p99_ms,
            o.overhead,
        ]
    };
    let cells = |f: [f64; 5]| {
        format!(
            "{:>6.2} {:>7.2} {:>6.1} {:>6.1} {:>6.3}",
            f[0], f[1], f[2], f[3], f[4]
        )
    };
    for (p, fc, srt) in &rows {
        println!(
            "{:<24} | {:^38} | {:^38}",
            p.short(),
            cells(fig(fc)),
            cells(fig(srt))
        );
    }
    let med = |pick: &dyn Fn(&(Point, Outcome, Outcome)) -> &Outcome| {
        let m: Vec<f64> = (0..5)
            .map(|i| median(rows.iter().map(|r| fig(pick(r))[i]).collect()))
            .collect();
        cells(m.try_into().unwrap())
    };
    println!(
        "{:<24} | {:^38} | {:^38}",
        "median of the points",
        med(&|r| &r.1),
        med(&|r| &r.2)
    );
    println!(
        "(ok%/strict% = frames intact on time, see the rule above; p50/p99 = capture -> \
         played (framecast) or delivered (SRT), ms; ovh = UDP payload bytes into netsim both \
         ways, per hop / media bytes)"
    );
    if let Some(path) = json_out {
        let v: Vec<_> = rows
            .iter()
            .map(|(p, fc, srt)| {
                serde_json::json!({
                    "point": p.name, "loss_pct": p.loss, "burst": p.burst,
                    "delay_ms": p.delay_ms, "latency_ms": p.latency_ms, "hops": p.hops,
                    "seconds": seconds, "framecast": fc, "srt": srt,
                })
            })
            .collect();
        let doc = serde_json::json!({ "points": v, "commands": log });
        std::fs::write(&path, serde_json::to_string_pretty(&doc).unwrap()).unwrap();
        println!("wrote {}", path.display());
    }
}
