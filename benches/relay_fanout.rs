//! Relay fan-out benchmark: one 720p30 test stream (real JPEG, about 100 KB a frame)
//! served into a relay that feeds N viewers on loopback, for a fixed time. Reports the
//! relay's CPU time per second and per datagram, what the relay itself dropped (queue
//! overflow, send errors) and what each viewer played.
//!
//! `cargo bench --bench relay_fanout -- [--subscribers N] [--seconds S]`
//!
//! With `--viewers-list 50,150,300,600` it instead runs, for each N, side by side: the
//! `framecast relay` process carrying one ~15 Mbit/s stream (`test:960x540@30`, quality 80)
//! to N viewers of `framecast load` (a separate process), and GStreamer (`udpsrc !
//! multiudpsink`, N clients) carrying the same stream from the same `framecast serve` to N
//! plain receivers; then prints a table: relay CPU-seconds per delivered GB (wait4 rusage
//! of the relay process), share of a core, frames on time per viewer (framecast) or
//! datagrams delivered per receiver (GStreamer), late frames and what the relay skipped.
//! `--relay-args "--no-gso"` passes options to the relay process (e.g. to see it overloaded),
//! `--load-args "--ramp 1"` to the load generator (viewers joining over a second, not at once).
//! `--relay-cpu PCT` caps the relay process at PCT % of a core with a cgroup CPU quota
//! (root; cgroup v1 `/sys/fs/cgroup/cpu` or v2 `/sys/fs/cgroup`), in 10 ms periods: a
//! relay short of CPU, to see it at twice its capacity while the load generator keeps up.
//! (The default 100 ms period would freeze it for 90 ms at a time at 10 %: as long as a
//! viewer's whole latency, so frames already on their way would be late whatever it did.)
//! A quota on this kernel is enforced in bursts (a busy loop under 1 ms per 10 ms runs a few
//! ms, then stops for 35-40 ms), so `--relay-beside NICE` is the other way to starve it: the
//! relay runs pinned to CPU 1 beside a busy loop of that nice value (-9 leaves the relay about
//! an eighth of the core, handed out in scheduler slices), and serve and load to CPU 0.
//! `--relay-own-core` pins the relay alone to CPU 1 and serve and the viewers to CPU 0, as if
//! the viewers were on other machines.
//! `--no-gstreamer` leaves the GStreamer rows out.
//! Traffic stays on 127.0.0.1; every run is bounded by --seconds.

mod support;

use std::net::SocketAddr;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use framecast::app::relay::{RelayArgs, RelayRole};
use framecast::app::serve::{Serve, ServeArgs};
use framecast::driver::udp::bind_udp;
use framecast::proto::node::{Node, soonest};
use framecast::proto::viewer::{Viewer, ViewerConfig};
use mio::{Events, Interest, Poll, Token};

fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

fn udp_rcvbuf_errors() -> u64 {
    // /proc/net/snmp: the second "Udp:" line holds the values; RcvbufErrors is the 6th.
    let text = std::fs::read_to_string("/proc/net/snmp").unwrap_or_default();
    let udp: Vec<&str> = text.lines().filter(|l| l.starts_with("Udp:")).collect();
    if udp.len() < 2 {
        return 0;
    }
    let names: Vec<&str> = udp[0].split_whitespace().collect();
    let vals: Vec<&str> = udp[1].split_whitespace().collect();
    names
        .iter()
        .position(|n| *n == "RcvbufErrors")
        .and_then(|i| vals.get(i))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// All viewers in one thread (one host's worth of CPU for 50 viewers is the harsh case):
/// a mio poll over their sockets, each with its own client state machine (no decoding).
struct Viewers {
    poll: Poll,
    sockets: Vec<mio::net::UdpSocket>,
    clients: Vec<Viewer>,
}

impl Viewers {
    fn new(n: usize, relay: SocketAddr) -> Viewers {
        let poll = Poll::new().unwrap();
        let mut sockets = Vec::new();
        let mut clients = Vec::new();
        for i in 0..n {
            let (mut s, _) = bind_udp("127.0.0.1:0".parse().unwrap(), 4 << 20).unwrap();
            poll.registry()
                .register(&mut s, Token(i), Interest::READABLE)
                .unwrap();
            sockets.push(s);
            clients.push(Viewer::new(ViewerConfig::new(relay, "live")));
        }
        Viewers {
            poll,
            sockets,
            clients,
        }
    }

    fn run(&mut self, until: Instant) {
        let mut events = Events::with_capacity(1024);
        let mut buf = vec![0u8; 65536];
        loop {
            // As the event loop does: reads first, then timers, then sends.
            let now = Instant::now();
            if now >= until {
                break;
            }
            for ev in events.iter() {
                let i = ev.token().0;
                while let Ok((n, from)) = self.sockets[i].recv_from(&mut buf) {
                    self.clients[i].handle_datagram(now, from, &buf[..n]);
                }
            }
            for (i, c) in self.clients.iter_mut().enumerate() {
                c.handle_timeout(now);
                while let Some(t) = c.poll_transmit(now) {
                    let _ = self.sockets[i].send_to(&t.payload, t.dest);
                }
                while c.poll_event().is_some() {}
            }
            let next = self.clients.iter().filter_map(|c| c.poll_timeout()).min();
            let wait =
                soonest(next, Some(until)).map(|t| t.saturating_duration_since(Instant::now()));
            self.poll
                .poll(&mut events, wait.map(|w| w.min(Duration::from_millis(20))))
                .unwrap();
        }
        for (i, c) in self.clients.iter_mut().enumerate() {
            let bye = c.bye();
            let _ = self.sockets[i].send_to(&bye.payload, bye.dest);
        }
    }
}

struct Outcome {
    relay_cpu_s: f64,
    wall_s: f64,
    out: u64,
    us_per_datagram: f64,
}

fn run(subscribers: usize, seconds: f64, batch: usize) -> Outcome {
    let lo: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let mut r = RelayArgs::new(lo);
    r.duration = Some(seconds + 1.5);
    let mut relay = RelayRole::bind(r).unwrap();
    relay.status = false;
    relay.set_batch_size(batch);
    let relay_addr = relay.local_addr();
    let mut s = ServeArgs::new(lo);
    s.source = "test:1280x720@30".into();
    s.relay = Some(relay_addr);
    s.start_delay_ms = 700;
    s.duration = Some(seconds);
    s.no_audio = false;
    s.seed = Some(1);
    let mut serve = Serve::bind(s).unwrap();
    serve.status = false;
    let kernel_drops_before = udp_rcvbuf_errors();
    let stop = AtomicBool::new(false);
    std::thread::scope(|sc| {
        let relay_t = sc.spawn(|| {
            let c0 = thread_cpu();
            let t0 = Instant::now();
            let rep = relay.run(&AtomicBool::new(false)).unwrap();
            (rep, thread_cpu() - c0, t0.elapsed())
        });
        let serve_t = sc.spawn(|| serve.run(&stop).unwrap());
        let mut viewers = Viewers::new(subscribers, relay_addr);
        let vc0 = thread_cpu();
        viewers.run(Instant::now() + Duration::from_secs_f64(seconds + 1.2));
        let viewers_cpu = thread_cpu() - vc0;
        let viewers: Vec<_> = viewers.clients.iter().map(|c| c.stats()).collect();
        let sent = serve_t.join().unwrap();
        let (rep, relay_cpu, relay_wall) = relay_t.join().unwrap();
        let kernel_drops = udp_rcvbuf_errors().saturating_sub(kernel_drops_before);
        let mut played: Vec<u64> = viewers.iter().map(|v| v.frames_played).collect();
        played.sort();
        let r = &rep.relay;
        println!(
            "relay fan-out: 1 stream {} fps x {:.0} KB JPEG -> {} subscribers on loopback, {seconds} s",
            30,
            sent.source.mean_jpeg_bytes / 1000.0,
            subscribers
        );
        println!(
            "  frames sent by the server       {}",
            sent.server.frames_sent
        );
        println!(
            "  frames played per subscriber    min {} median {} max {}",
            played[0],
            played[played.len() / 2],
            played[played.len() - 1]
        );
        println!(
            "  relay datagrams in / out        {} / {} ({:.0} out/s)",
            r.datagrams_in,
            r.datagrams_out,
            r.datagrams_out as f64 / seconds
        );
        println!(
            "  relay CPU                       {:.2} s over {:.2} s wall = {:.0}% of one core; {:.2} us per datagram out",
            relay_cpu.as_secs_f64(),
            relay_wall.as_secs_f64(),
            100.0 * relay_cpu.as_secs_f64() / relay_wall.as_secs_f64(),
            relay_cpu.as_secs_f64() * 1e6 / r.datagrams_out.max(1) as f64
        );
        println!(
            "  lost to the relay itself        queue drops {} frames, send errors {}, would-block waits {}",
            r.queue_frames_dropped, rep.io.send_errors, rep.io.would_block
        );
        println!(
            "  relay cache hits / upstream     {} / {}",
            r.cache_hits, r.upstream_requests
        );
        println!(
            "  kernel receive-buffer drops     {kernel_drops} (all sockets on this host, /proc/net/snmp RcvbufErrors)"
        );
        let late: u64 = viewers.iter().map(|v| v.frames_late).sum();
        let incomplete: u64 = viewers.iter().map(|v| v.frames_incomplete).sum();
        let unseen: u64 = viewers
            .iter()
            .map(|v| {
                let s = v;
                sent.server.frames_sent
                    - s.frames_played
                    - s.frames_late
                    - s.frames_incomplete
                    - s.frames_overflow
            })
            .sum();
        println!(
            "  viewer thread CPU               {:.2} s",
            viewers_cpu.as_secs_f64()
        );
        let got: u64 = viewers.iter().map(|v| v.datagrams).sum();
        println!(
            "  datagrams the viewers received  {got} of {} the relay sent ({:.4}%)",
            r.datagrams_out,
            100.0 * got as f64 / r.datagrams_out.max(1) as f64
        );
        println!(
            "  viewers: frames late {late}, incomplete {incomplete}, never seen {unseen} (summed over all viewers)"
        );
        println!(
            "  relay send calls                {} ({:.1} datagrams per call)",
            rep.io.batches,
            rep.io.sent as f64 / rep.io.batches.max(1) as f64
        );
        Outcome {
            relay_cpu_s: relay_cpu.as_secs_f64(),
            wall_s: relay_wall.as_secs_f64(),
            out: r.datagrams_out,
            us_per_datagram: relay_cpu.as_secs_f64() * 1e6 / r.datagrams_out.max(1) as f64,
        }
    })
}

/// CPU seconds (user + system) of a child, reaped with wait4(2) once it has exited; killed
/// if it is still running 10 s from now.
fn reap_cpu_s(mut child: std::process::Child) -> f64 {
    let deadline = Instant::now() + Duration::from_secs(10);
    let pid = child.id() as libc::pid_t;
    loop {
        let mut status = 0;
        // SAFETY: wait4 writes into the zeroed rusage and the status we own; the pid is our
        // child's, not yet reaped.
        let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
        let r = unsafe { libc::wait4(pid, &mut status, libc::WNOHANG, &mut ru) };
        if r == pid {
            let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
            return tv(ru.ru_utime) + tv(ru.ru_stime);
        }
        if r < 0 {
            return f64::NAN;
        }
        if Instant::now() >= deadline {
            println!("  (a child outlived its time: killed)");
            let _ = child.kill();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn read_json(p: &std::path::Path) -> serde_json::Value {
    let text = std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    serde_json::from_str(&text).unwrap()
}

fn interrupt(child: &std::process::Child) {
    // SAFETY: signalling our own child, not yet reaped.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) };
}

/// One side's figures at one N.
struct Row {
    cpu_s: f64,
    gb: f64,
    /// Per viewer: share of frames played on time (framecast) or of datagrams delivered
    /// (GStreamer), min / median / max.
    share: (f64, f64, f64),
    late: f64,
    note: String,
}

const STREAM: &str = "test:960x540@30";

fn serve_cmd(
    bin: &std::path::Path,
    into: SocketAddr,
    seconds: f64,
    stats: &std::path::Path,
) -> std::process::Command {
    let mut c = std::process::Command::new(bin);
    c.args([
        "serve",
        "--source",
        STREAM,
        "--quality",
        "80",
        "--no-audio",
        "--seed",
        "1",
    ])
    .args(["--listen", &format!("127.0.0.1:{}", support::free_port())])
    .args(["--relay", &into.to_string(), "--name", "cam1"])
    .args(["--duration", &format!("{seconds}")])
    .arg("--stats-json")
    .arg(stats);
    c
}

fn spawn_logged(mut c: std::process::Command, log: &std::path::Path) -> std::process::Child {
    c.stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", c.get_program().to_string_lossy()))
}

/// A cgroup that caps a process at a share of a core, removed on drop.
struct CpuCap(std::path::PathBuf);

impl CpuCap {
    /// Moves process `pid` into a new cgroup allowed `pct` % of a core per 10 ms period.
    fn apply(pid: u32, pct: f64) -> Result<CpuCap, String> {
        let name = format!("framecast-bench-{}", std::process::id());
        let period = 10_000u64;
        let quota = ((pct / 100.0) * period as f64).round().max(1000.0) as u64;
        let v1 = std::path::Path::new("/sys/fs/cgroup/cpu");
        let (dir, files): (std::path::PathBuf, Vec<(&str, String)>) =
            if v1.join("cpu.cfs_quota_us").exists() {
                (
                    v1.join(&name),
                    vec![
                        ("cpu.cfs_period_us", period.to_string()),
                        ("cpu.cfs_quota_us", quota.to_string()),
                    ],
                )
            } else {
                (
                    std::path::Path::new("/sys/fs/cgroup").join(&name),
                    vec![("cpu.max", format!("{quota} {period}"))],
                )
            };
        let err = |what: &str, e: std::io::Error| {
            format!(
                "--relay-cpu: cannot {what} in {} ({e}); it needs root and the cgroup CPU controller",
                dir.display()
            )
        };
        std::fs::create_dir_all(&dir).map_err(|e| err("create a cgroup", e))?;
        let cap = CpuCap(dir.clone());
        for (f, v) in files {
            std::fs::write(dir.join(f), v).map_err(|e| err(&format!("write {f}"), e))?;
        }
        std::fs::write(dir.join("cgroup.procs"), pid.to_string())
            .map_err(|e| err("move the relay", e))?;
        Ok(cap)
    }
}

impl Drop for CpuCap {
    fn drop(&mut self) {
        // Empty once the process has exited.
        let _ = std::fs::remove_dir(&self.0);
    }
}

/// Runs the child on CPU `cpu` only (the machine has at least 2).
fn pin(c: &mut std::process::Command, cpu: usize) {
    use std::os::unix::process::CommandExt;
    // SAFETY: between fork and exec only async-signal-safe calls on the child's own state.
    unsafe {
        c.pre_exec(move || pin_this_thread(cpu));
    }
}

/// Pins the calling thread (a child between fork and exec: the whole process) to `cpu`.
fn pin_this_thread(cpu: usize) -> std::io::Result<()> {
    // SAFETY: an all-zero cpu_set_t is valid; sched_setaffinity reads it for this thread.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// A busy loop on CPU 1 at nice `nice`, for `seconds` at most, killed on drop.
struct Hog(std::process::Child);

impl Hog {
    fn start(nice: i32, seconds: f64) -> Hog {
        use std::os::unix::process::CommandExt;
        // Bounded in time by itself, killed on drop, and with the bench if it dies.
        let mut c = std::process::Command::new("python3");
        c.args([
            "-c",
            &format!("import time\nt = time.time() + {seconds}\nwhile time.time() < t: pass"),
        ]);
        pin(&mut c, 1);
        // SAFETY: as in `pin`.
        unsafe {
            c.pre_exec(move || {
                if libc::setpriority(libc::PRIO_PROCESS, 0, nice) != 0
                    || libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0
                {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        Hog(c
            .spawn()
            .expect("--relay-beside: cannot start the busy loop"))
    }
}

impl Drop for Hog {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// How the relay is starved of CPU, or placed apart from the load.
#[derive(Clone, Copy)]
enum Starve {
    /// A cgroup quota, % of a core.
    Quota(f64),
    /// Pinned beside a busy loop of this nice value.
    Beside(i32),
    /// Not starved: pinned alone to CPU 1, serve and the viewers pinned to CPU 0, as if the
    /// viewers were on other machines (on a 2-core machine they otherwise take the relay's
    /// CPU: 300 viewers cost `framecast load` more than a core).
    OwnCore,
}

/// framecast relay + framecast load (N viewers) + framecast serve, as three processes.
fn framecast_side(
    bin: &std::path::Path,
    dir: &std::path::Path,
    n: usize,
    seconds: f64,
    relay_args: &[String],
    load_args: &[String],
    starve: Option<Starve>,
) -> Row {
    let relay_cpu = match starve {
        Some(Starve::Quota(p)) => Some(p),
        _ => None,
    };
    let beside = match starve {
        Some(Starve::Beside(nice)) => Some(nice),
        _ => None,
    };
    let _hog = beside.map(|nice| Hog::start(nice, seconds + 6.0));
    let pinned = beside.is_some() || matches!(starve, Some(Starve::OwnCore));
    let relay_addr: SocketAddr = format!("127.0.0.1:{}", support::free_port())
        .parse()
        .unwrap();
    let mut c = std::process::Command::new(bin);
    c.args(["relay", "--listen", &relay_addr.to_string()])
        .args(relay_args)
        .args(["--duration", &format!("{}", seconds + 3.0)])
        .arg("--stats-json")
        .arg(dir.join("relay.json"));
    if pinned {
        pin(&mut c, 1);
    }
    let relay = spawn_logged(c, &dir.join("relay.log"));
    let cap = match relay_cpu.map(|pct| CpuCap::apply(relay.id(), pct)) {
        Some(Err(e)) => panic!("{e}"),
        Some(Ok(c)) => Some(c),
        None => None,
    };
    let mut sc = serve_cmd(bin, relay_addr, seconds + 2.0, &dir.join("serve.json"));
    if pinned {
        pin(&mut sc, 0);
    }
    let serve = spawn_logged(sc, &dir.join("serve.log"));
    std::thread::sleep(Duration::from_millis(700));
    let mut c = std::process::Command::new(bin);
    c.args([
        "load",
        "--from",
        &relay_addr.to_string(),
        "--stream",
        "cam1",
    ])
    .args([
        "--viewers",
        &n.to_string(),
        "--duration",
        &format!("{seconds}"),
    ])
    .args(load_args)
    .arg("--stats-json")
    .arg(dir.join("load.json"));
    if pinned {
        pin(&mut c, 0);
    }
    let mut load = spawn_logged(c, &dir.join("load.log"));
    let ok = load.wait().map(|s| s.success()).unwrap_or(false);
    let relay_cpu_s = reap_cpu_s(relay);
    drop(cap);
    let _ = reap_cpu_s(serve);
    if !ok {
        let why = std::fs::read_to_string(dir.join("load.log")).unwrap_or_default();
        return Row {
            cpu_s: relay_cpu_s,
            gb: 0.0,
            share: (0.0, 0.0, 0.0),
            late: 0.0,
            note: format!("load failed: {}", why.trim()),
        };
    }
    let l = read_json(&dir.join("load.json"));
    let r = read_json(&dir.join("relay.json"));
    let views = l["per_viewer"].as_array().unwrap();
    let gb: f64 = views
        .iter()
        .map(|v| v["bytes"].as_f64().unwrap())
        .sum::<f64>()
        / 1e9;
    let s = &l["summary"];
    let f = |k: &str, m: &str| s[k][m].as_f64().unwrap();
    let rr = &r["relay"];
    let overloaded = std::fs::read_to_string(dir.join("relay.log"))
        .unwrap_or_default()
        .contains("OVERLOADED");
    Row {
        cpu_s: relay_cpu_s,
        gb,
        share: (
            f("on_time", "min"),
            f("on_time", "median"),
            f("on_time", "max"),
        ),
        late: views.iter().map(|v| v["late"].as_f64().unwrap()).sum(),
        note: format!(
            "{}skipped cpu/socket/slow {}/{}/{}{}; demand {:.2}x what went out in time (1 / mean on-time share); viewers told of skips min/max {}/{}; load {:.1} CPU-s, lag up to {:.0} ms, arrival times {}",
            match starve {
                Some(Starve::Quota(p)) => format!("relay capped at {p}% of a core; "),
                Some(Starve::Beside(nice)) =>
                    format!("relay on CPU 1 beside a busy loop of nice {nice}; "),
                Some(Starve::OwnCore) =>
                    "relay alone on CPU 1, serve and load on CPU 0; ".to_string(),
                None => String::new(),
            },
            rr["frames_skipped_relay_cpu"],
            rr["frames_skipped_socket_buffer"],
            rr["frames_skipped_slow_subscriber"],
            if overloaded {
                ", status said OVERLOADED"
            } else {
                ""
            },
            views.len() as f64
                / views
                    .iter()
                    .map(|v| v["on_time"].as_f64().unwrap_or(0.0))
                    .sum::<f64>()
                    .max(1e-9),
            s["skipped"]["min"],
            s["skipped"]["max"],
            l["cpu_s"].as_f64().unwrap_or(0.0),
            l["max_loop_lag_ms"].as_f64().unwrap_or(0.0),
            l["receive_times"].as_str().unwrap_or("?")
        ),
    }
}

/// GStreamer `udpsrc ! multiudpsink` to N plain receivers, fed by the same serve.
/// With `own_core`, placed as `--relay-own-core` places framecast: gst-launch alone on CPU 1,
/// serve and the receivers on CPU 0.
fn gstreamer_side(
    bin: &std::path::Path,
    dir: &std::path::Path,
    n: usize,
    seconds: f64,
    own_core: bool,
) -> Row {
    use framecast::driver::recv::Receiver;
    let mut poll = Poll::new().unwrap();
    let mut socks = Vec::new();
    for i in 0..n {
        let (mut s, _) = bind_udp("127.0.0.1:0".parse().unwrap(), 2 << 20).unwrap();
        poll.registry()
            .register(&mut s, Token(i), Interest::READABLE)
            .unwrap();
        socks.push(s);
    }
    let clients: Vec<String> = socks
        .iter()
        .map(|s| s.local_addr().unwrap().to_string())
        .collect();
    // The port is picked once the receivers hold theirs: picked before, one of them could
    // be given it, and gst-launch would fail to bind while serve fed that receiver alone.
    let port = support::free_port();
    let mut c = std::process::Command::new("gst-launch-1.0");
    c.arg("-q")
        .args([
            "udpsrc",
            "address=127.0.0.1",
            &format!("port={port}"),
            "buffer-size=4194304",
        ])
        .arg("!")
        .args(["multiudpsink", &format!("clients={}", clients.join(","))])
        .args(["sync=false", "async=false", "buffer-size=4194304"]);
    if own_core {
        pin(&mut c, 1);
    }
    let mut gst = spawn_logged(c, &dir.join("gst.log"));
    std::thread::sleep(Duration::from_millis(500));
    if let Ok(Some(status)) = gst.try_wait() {
        let why = std::fs::read_to_string(dir.join("gst.log")).unwrap_or_default();
        panic!("gst-launch-1.0 exited at start ({status}): {}", why.trim());
    }
    let gst_addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut sc = serve_cmd(bin, gst_addr, seconds, &dir.join("gserve.json"));
    if own_core {
        pin(&mut sc, 0);
    }
    let serve = spawn_logged(sc, &dir.join("gserve.log"));
    // Count what each receiver gets until the serve is done and the queues drained, on a
    // thread of its own (on CPU 0 with `own_core`, as `framecast load` is).
    let until = Instant::now() + Duration::from_secs_f64(seconds + 1.5);
    let got = std::thread::scope(|sc| {
        sc.spawn(|| {
            if own_core {
                pin_this_thread(0).expect("cannot pin the receivers' thread to CPU 0");
            }
            let mut got = vec![(0u64, 0u64); n];
            let mut events = Events::with_capacity(1024);
            // Plain receivers (no GRO: multiudpsink sends datagram by datagram).
            let mut rx = Receiver::shared(false);
            while Instant::now() < until {
                poll.poll(&mut events, Some(Duration::from_millis(20)))
                    .unwrap();
                for e in events.iter() {
                    let i = e.token().0;
                    while rx.recv(&socks[i]).is_ok() {
                        let mut bytes = 0;
                        got[i].0 += rx.for_each(|_, d| bytes += d.len() as u64) as u64;
                        got[i].1 += bytes;
                    }
                }
            }
            got
        })
        .join()
        .unwrap()
    });
    interrupt(&gst);
    let cpu = reap_cpu_s(gst);
    let _ = reap_cpu_s(serve);
    let sent = read_json(&dir.join("gserve.json"))["io"]["sent"]
        .as_f64()
        .unwrap_or(0.0)
        .max(1.0);
    let mut shares: Vec<f64> = got.iter().map(|g| g.0 as f64 / sent).collect();
    shares.sort_by(f64::total_cmp);
    Row {
        cpu_s: cpu,
        gb: got.iter().map(|g| g.1 as f64).sum::<f64>() / 1e9,
        share: (shares[0], support::percentile(&shares, 0.5), shares[n - 1]),
        late: f64::NAN,
        note: format!("{sent:.0} datagrams from serve"),
    }
}

/// The side-by-side table for every N of `list`.
fn compare(
    list: &[usize],
    seconds: f64,
    (relay_args, load_args): (&[String], &[String]),
    starve: Option<Starve>,
    gst: bool,
) {
    let bin = support::framecast_release_bin();
    let have_gst = gst
        && std::process::Command::new("gst-launch-1.0")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
    if gst && !have_gst {
        println!("GStreamer (gst-launch-1.0) not found: scripts/setup.sh installs it");
    }
    let dir = tempfile::tempdir().unwrap();
    println!(
        "relay fan-out, side by side: one {STREAM} stream (quality 80) to N receivers on loopback, {seconds} s each"
    );
    println!(
        "{:>5} {:<10} {:>8} {:>9} {:>7} {:>26} {:>6}  notes",
        "N", "side", "CPU-s", "CPU-s/GB", "core%", "on time min/median/max %", "late"
    );
    for &n in list {
        let mut rows = vec![(
            "framecast",
            framecast_side(&bin, dir.path(), n, seconds, relay_args, load_args, starve),
        )];
        if have_gst {
            let own_core = matches!(starve, Some(Starve::OwnCore));
            rows.push((
                "gstreamer",
                gstreamer_side(&bin, dir.path(), n, seconds, own_core),
            ));
        }
        for (side, r) in rows {
            println!(
                "{:>5} {:<10} {:>8.2} {:>9.2} {:>6.0}% {:>8.2}/{:>7.2}/{:>7.2}  {:>6}  {}",
                n,
                side,
                r.cpu_s,
                r.cpu_s / r.gb.max(1e-9),
                // Share of a core while the stream flows (the processes idle around it).
                100.0 * r.cpu_s / seconds,
                100.0 * r.share.0,
                100.0 * r.share.1,
                100.0 * r.share.2,
                if r.late.is_nan() {
                    "-".into()
                } else {
                    format!("{:.0}", r.late)
                },
                r.note
            );
        }
    }
    match framecast::driver::ceilings::measure_loopback_ceilings(Duration::from_millis(700)) {
        Ok(c) => println!(
            "this machine's loopback ceilings (1316-byte datagrams, one thread each side): sendmmsg {:.0}/s, GSO {:.0}/s, GSO+GRO {:.0}/s; at 15 Mbit/s (~1400 datagrams/s a viewer) that is {:.0} / {:.0} / {:.0} viewers a core",
            c.sendmmsg,
            c.gso,
            c.gso_gro,
            c.sendmmsg / 1400.0,
            c.gso / 1400.0,
            c.gso_gro / 1400.0
        ),
        Err(e) => println!("loopback ceilings not measured: {e}"),
    }
    println!(
        "(framecast: frames played on time per viewer, from `framecast load`; GStreamer: datagrams delivered per receiver. CPU of the relay / gst-launch process from wait4 rusage; GB delivered to the receivers.)"
    );
}

fn main() {
    let mut subscribers = 50usize;
    let mut seconds = 10.0f64;
    let mut list: Option<Vec<usize>> = None;
    let mut relay_args: Vec<String> = Vec::new();
    let mut load_args: Vec<String> = Vec::new();
    let mut starve: Option<Starve> = None;
    let mut gst = true;
    let args: Vec<String> = std::env::args().collect();
    let mut i = 1;
    while i < args.len() {
        match args[i].as_str() {
            "--subscribers" => {
                subscribers = args[i + 1].parse().expect("--subscribers N");
                i += 1;
            }
            "--seconds" => {
                seconds = args[i + 1].parse().expect("--seconds S");
                i += 1;
            }
            // Extra options for the `framecast relay` process, e.g. "--no-gso".
            "--relay-args" => {
                relay_args = args[i + 1].split_whitespace().map(String::from).collect();
                i += 1;
            }
            // Extra options for `framecast load`, e.g. "--ramp 1".
            "--load-args" => {
                load_args = args[i + 1].split_whitespace().map(String::from).collect();
                i += 1;
            }
            // Cap the relay process at this % of a core (cgroup, root).
            "--relay-cpu" => {
                starve = Some(Starve::Quota(args[i + 1].parse().expect("--relay-cpu PCT")));
                i += 1;
            }
            // Pin the relay to CPU 1 beside a busy loop of this nice value.
            "--relay-beside" => {
                starve = Some(Starve::Beside(
                    args[i + 1].parse().expect("--relay-beside NICE"),
                ));
                i += 1;
            }
            // The relay alone on CPU 1, serve and the viewers on CPU 0.
            "--relay-own-core" => starve = Some(Starve::OwnCore),
            "--no-gstreamer" => gst = false,
            "--viewers-list" => {
                list = Some(
                    args[i + 1]
                        .split(',')
                        .map(|v| v.trim().parse().expect("--viewers-list N,N,..."))
                        .collect(),
                );
                i += 1;
            }
            _ => {} // cargo bench passes --bench
        }
        i += 1;
    }
    if let Some(list) = list {
        compare(&list, seconds, (&relay_args, &load_args), starve, gst);
        return;
    }
    // Side by side in one run: batched sends (sendmmsg, 64 a call) against one per call.
    let batched = run(subscribers, seconds, 64);
    let single = run(subscribers, seconds, 1);
    println!();
    println!(
        "relay CPU per datagram out: batched {:.2} us, unbatched {:.2} us (batched / unbatched = {:.2})",
        batched.us_per_datagram,
        single.us_per_datagram,
        batched.us_per_datagram / single.us_per_datagram
    );
    println!(
        "relay CPU share of one core: batched {:.0}%, unbatched {:.0}% ({} / {} datagrams out)",
        100.0 * batched.relay_cpu_s / batched.wall_s,
        100.0 * single.relay_cpu_s / single.wall_s,
        batched.out,
        single.out
    );
}
