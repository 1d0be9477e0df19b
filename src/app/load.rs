//! `framecast load`: a load generator for capacity tests of a relay or server. N viewers in
//! one process, each with its own UDP socket and its own [`Viewer`] state machine (the
//! protocol in full: handshake, jitter buffer, NACKs, receiver reports; no JPEG decoding),
//! spread over a few threads. Each reports frames played, late and incomplete; the summary
//! gives min/median/max over the viewers.
//!
//! The receive path is what limits a load generator next to the relay it measures, so each
//! socket is drained with `recvmmsg(2)`, with UDP GRO where the kernel offers it (a relay's
//! GSO runs arrive whole and are cut here): [`crate::driver::recv::Receiver`].
//!
//! Late means late because of what it measures, not because of the load generator: each
//! datagram is handed to its viewer with the time the kernel queued it on the viewer's
//! socket (`SO_TIMESTAMPNS`), so a viewer thread that falls behind (it shares the machine
//! with the relay) judges a frame by when its chunks reached the machine, not by when the
//! thread got round to them. Where the kernel gives no timestamps, or with `--loop-time`,
//! the thread's own clock at the wake-up is used, and its lag (`max_loop_lag_ms`) says how
//! far that can be off.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use mio::net::UdpSocket;
use mio::{Events, Interest, Poll, Token};
use serde::Serialize;

use crate::driver::recv::{Receiver, enable_gro, enable_timestamps, gro_wanted};
use crate::driver::udp::{bind_udp, ephemeral_for};
use crate::proto::jitter::DropReason;
use crate::proto::node::Node;
use crate::proto::viewer::{Viewer, ViewerConfig, ViewerEvent};
use crate::proto::wire::RejectReason;
/// Receive buffer asked for per viewer socket, bytes: a few frames of a 15 Mbit/s stream
/// (300 viewers × 2 MiB is what the kernel may hold for them at worst).
const VIEWER_SOCKET_BUFFER: usize = 2 * 1024 * 1024;
/// Most viewers in one process.
const MAX_VIEWERS: usize = 10_000;
/// The loop wakes at least this often (stop flag, duration).
const MAX_WAIT: Duration = Duration::from_millis(20);

/// `framecast load` options.
#[derive(clap::Args, Debug, Clone)]
pub struct LoadArgs {
    /// The relay or server to subscribe to.
    #[arg(long, value_name = "ADDR")]
    pub from: SocketAddr,
    /// Stream name.
    #[arg(long)]
    pub stream: String,
    /// Viewers, each with its own socket and protocol state.
    #[arg(long, default_value_t = 10)]
    pub viewers: usize,
    /// Seconds to watch.
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Each viewer's playout latency, ms (stated to the relay in SUBSCRIBE, §6.2).
    #[arg(long, default_value_t = 100)]
    pub latency_ms: u64,
    /// Threads the viewers are spread over (default: the machine's cores, at most 4).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Give up (exit non-zero) when no viewer has the stream's description after this many
    /// seconds.
    #[arg(long, default_value_t = 5.0)]
    pub wait: f64,
    /// Write the per-viewer figures and the summary as JSON to this file.
    #[arg(long, value_name = "FILE")]
    pub stats_json: Option<PathBuf>,
    /// Judge lateness by when a viewer thread got to a datagram, not by when the kernel
    /// received it (the default uses the kernel's receive timestamps, so that a load
    /// generator that falls behind does not count its own lag as the relay's).
    #[arg(long)]
    pub loop_time: bool,
    /// Seconds over which the viewers join, one after another at even intervals, as an
    /// audience does; 0 (the default) subscribes them all at once, a burst like the one after
    /// a relay restart. Each viewer's figures count from its first frame.
    #[arg(long, default_value_t = 0.0)]
    pub ramp: f64,
}

impl LoadArgs {
    /// `viewers` viewers of `stream` at `from` for `duration` seconds.
    pub fn new(from: SocketAddr, stream: &str, viewers: usize, duration: f64) -> LoadArgs {
        LoadArgs {
            from,
            stream: stream.into(),
            viewers,
            duration,
            latency_ms: 100,
            threads: None,
            wait: 5.0,
            stats_json: None,
            loop_time: false,
            ramp: 0.0,
        }
    }
}

/// One viewer's figures.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ViewerFigures {
    /// Its local address.
    pub addr: String,
    /// Frames played whole and on time.
    pub played: u64,
    /// Frames dropped because they completed after their playout time.
    pub late: u64,
    /// Frames dropped incomplete at their playout time.
    pub incomplete: u64,
    /// Frames of the stream between the first and the last it saw (frame ids are +1 per
    /// frame, §5.1): played + late + incomplete + never seen (skipped by the relay or lost).
    pub frames: u64,
    /// Frames the relay said it skipped for this viewer under overload (SKIP, §6.10):
    /// never sent, so neither lost nor late.
    pub skipped: u64,
    /// played / frames (0 when it saw none).
    pub on_time: f64,
    /// Datagrams received.
    pub datagrams: u64,
    /// Bytes received (UDP payload).
    pub bytes: u64,
    /// Video datagrams never recovered.
    pub lost: u64,
    /// NACK datagrams sent.
    pub nacks_sent: u64,
}

/// Min, median and max over the viewers.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Spread {
    /// Smallest.
    pub min: f64,
    /// Median (the upper one for an even count).
    pub median: f64,
    /// Largest.
    pub max: f64,
}

impl Spread {
    /// The spread of `values` (all zero when empty).
    pub fn of(mut values: Vec<f64>) -> Spread {
        if values.is_empty() {
            return Spread::default();
        }
        values.sort_by(f64::total_cmp);
        Spread {
            min: values[0],
            median: values[values.len() / 2],
            max: values[values.len() - 1],
        }
    }
}

/// The summary over all viewers.
#[derive(Debug, Clone, Default, Serialize)]
pub struct LoadSummary {
    /// Frames played.
    pub played: Spread,
    /// Frames late.
    pub late: Spread,
    /// Frames incomplete.
    pub incomplete: Spread,
    /// Frames the relay skipped (SKIP, §6.10).
    pub skipped: Spread,
    /// Share of frames played on time, 0..=1.
    pub on_time: Spread,
    /// Frames of the stream seen by a viewer, span of ids.
    pub frames: Spread,
}

/// What `load` reports (also its `--stats-json`).
#[derive(Debug, Clone, Serialize)]
pub struct LoadReport {
    /// Always "load".
    pub role: &'static str,
    /// The relay or server.
    pub from: String,
    /// Stream name.
    pub stream: String,
    /// Viewers.
    pub viewers: usize,
    /// Seconds watched.
    pub duration_s: f64,
    /// Threads used.
    pub threads: usize,
    /// CPU seconds the load generator used (user + system).
    pub cpu_s: f64,
    /// The largest lateness of a viewer thread waking for its timers, ms: tens of ms mean
    /// the load generator (or the machine) could not keep up, and its viewers' late frames
    /// are not the relay's (unless `receive_times` is "kernel").
    pub max_loop_lag_ms: f64,
    /// What a datagram's arrival time was taken from: "kernel" (the socket's receive
    /// timestamp, §7.2 lateness as the relay caused it) or "loop" (the viewer thread's
    /// clock when it woke: no timestamps from the kernel, or `--loop-time`).
    pub receive_times: &'static str,
    /// Min/median/max over the viewers.
    pub summary: LoadSummary,
    /// Per viewer.
    pub per_viewer: Vec<ViewerFigures>,
}

impl LoadReport {
    /// One line for people.
    pub fn line(&self) -> String {
        let s = &self.summary;
        format!(
            "load: {} viewers of {:?} from {} for {:.1} s: frames played min/median/max {:.0}/{:.0}/{:.0} of {:.0} ({:.1}%/{:.1}%/{:.1}% on time), late {:.0}/{:.0}/{:.0}, incomplete {:.0}/{:.0}/{:.0}, skipped by the relay {:.0}/{:.0}/{:.0}; {:.2} CPU-s, its own loop up to {:.0} ms late (arrival times: {})",
            self.viewers,
            self.stream,
            self.from,
            self.duration_s,
            s.played.min,
            s.played.median,
            s.played.max,
            s.frames.max,
            s.on_time.min * 100.0,
            s.on_time.median * 100.0,
            s.on_time.max * 100.0,
            s.late.min,
            s.late.median,
            s.late.max,
            s.incomplete.min,
            s.incomplete.median,
            s.incomplete.max,
            s.skipped.min,
            s.skipped.median,
            s.skipped.max,
            self.cpu_s,
            self.max_loop_lag_ms,
            self.receive_times
        )
    }
}

/// One viewer with its socket.
struct Slot {
    socket: UdpSocket,
    viewer: Viewer,
    /// The first frame id it saw, and the largest distance from it.
    first: Option<u32>,
    span: u32,
    described: bool,
    rejected: Option<RejectReason>,
    /// Its viewer's next timer (kept so that a wake-up need not ask every viewer).
    next: Option<Instant>,
    /// It received datagrams in this wake-up.
    touched: bool,
    /// When it subscribes, after the start (`--ramp`).
    join_after: Duration,
    /// It has subscribed.
    joined: bool,
}

impl Slot {
    /// Widens the span of frame ids seen to `id` (either end; ids wrap).
    fn saw(&mut self, id: u32) {
        let first = *self.first.get_or_insert(id);
        let d = id.wrapping_sub(first);
        if d < u32::MAX / 2 {
            self.span = self.span.max(d);
        } else {
            // Older than the first seen (e.g. a frame dropped late after a later one).
            self.span = self.span.saturating_add(first.wrapping_sub(id));
            self.first = Some(id);
        }
    }

    fn events(&mut self) {
        while let Some(e) = self.viewer.poll_event() {
            match e {
                ViewerEvent::Frame(f) => self.saw(f.frame_id),
                ViewerEvent::FrameDropped {
                    frame_id, reason, ..
                } if reason != DropReason::Overflow => self.saw(frame_id),
                ViewerEvent::Description(_) => self.described = true,
                ViewerEvent::Rejected(r) => self.rejected = Some(r),
                _ => {}
            }
        }
    }

    /// Subscribes: sends what the viewer has to say first (its SUBSCRIBE).
    fn join(&mut self, now: Instant) {
        self.joined = true;
        self.flush(now);
        self.next = self.viewer.poll_timeout();
    }

    fn flush(&mut self, now: Instant) {
        while let Some(t) = self.viewer.poll_transmit(now) {
            // A full send buffer loses a NACK or report; the viewer asks again.
            let _ = self.socket.send_to(&t.payload, t.dest);
        }
    }

    fn figures(&self) -> ViewerFigures {
        let s = self.viewer.stats();
        let frames = if self.first.is_some() {
            u64::from(self.span) + 1
        } else {
            0
        };
        ViewerFigures {
            addr: self
                .socket
                .local_addr()
                .map(|a| a.to_string())
                .unwrap_or_default(),
            played: s.frames_played,
            late: s.frames_late,
            incomplete: s.frames_incomplete,
            skipped: s.frames_skipped_by_relay,
            frames,
            on_time: if frames > 0 {
                s.frames_played as f64 / frames as f64
            } else {
                0.0
            },
            datagrams: s.datagrams,
            bytes: s.bytes,
            lost: s.video.lost,
            nacks_sent: s.nacks_sent,
        }
    }
}

/// Why a shard stopped early.
enum ShardEnd {
    /// The viewers' figures, the thread's largest lateness waking for a timer, and whether
    /// every datagram came with a kernel receive timestamp.
    Done(Vec<ViewerFigures>, Duration, bool),
    NoStream(Option<RejectReason>),
}

/// Runs one thread's viewers until `end` or `stop`.
fn run_shard(
    mut slots: Vec<Slot>,
    start: Instant,
    end: Instant,
    wait: Duration,
    loop_time: bool,
    stop: &AtomicBool,
    anyone_described: &AtomicBool,
) -> anyhow::Result<ShardEnd> {
    let mut poll = Poll::new()?;
    for (i, s) in slots.iter_mut().enumerate() {
        poll.registry()
            .register(&mut s.socket, Token(i), Interest::READABLE)?;
    }
    let mut events = Events::with_capacity(1024);
    // GRO is on for a socket only if the kernel took it: all or none, as they are alike.
    let gro = gro_wanted() && slots.iter().all(|s| enable_gro(&s.socket));
    let mut receiver = Receiver::shared(gro);
    // Kernel receive timestamps, where every socket takes them (else the loop's clock).
    let stamps = !loop_time && slots.iter().all(|s| enable_timestamps(&s.socket));
    let mut unstamped = false;
    let mut readable: Vec<usize> = Vec::new();
    let mut max_lag = Duration::ZERO;
    // Subscribe everyone due at the start; the rest join in the loop (`--ramp`).
    for s in slots.iter_mut().filter(|s| s.join_after.is_zero()) {
        s.join(start);
    }
    loop {
        let now = Instant::now();
        if now >= end || stop.load(Ordering::Relaxed) {
            break;
        }
        if now >= start + wait && !anyone_described.load(Ordering::Relaxed) {
            let rejected = slots.iter().find_map(|s| s.rejected);
            return Ok(ShardEnd::NoStream(rejected));
        }
        let deadline = slots
            .iter()
            .filter_map(|s| {
                if s.joined {
                    s.next
                } else {
                    Some(start + s.join_after)
                }
            })
            .min()
            .unwrap_or(now + MAX_WAIT)
            .min(end);
        let timeout = deadline.saturating_duration_since(now).min(MAX_WAIT);
        let due = (deadline < now + MAX_WAIT).then_some(deadline);
        match poll.poll(&mut events, Some(timeout)) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
        readable.clear();
        readable.extend(events.iter().map(|e| e.token().0));
        let now = Instant::now();
        // How late this thread woke for its timers: when the load generator itself falls
        // behind, its viewers' late frames are its own, not the relay's.
        if let Some(d) = due {
            max_lag = max_lag.max(now.saturating_duration_since(d));
        }
        // Edge-triggered: drain every readable socket.
        for &i in &readable {
            let s = &mut slots[i];
            s.touched = true;
            loop {
                match receiver.recv(&s.socket) {
                    Ok(_) => {
                        let v = &mut s.viewer;
                        receiver.for_each_at(|from, d, at| {
                            let at = match at {
                                Some(t) if stamps => t,
                                _ => {
                                    unstamped = true;
                                    now
                                }
                            };
                            v.handle_datagram(at, from, d)
                        });
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    // ICMP unreachable from a relay not (yet) there: the viewer asks again.
                    Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => break,
                    Err(e) => return Err(e).context("load: receive failed"),
                }
            }
        }
        // Only the viewers that received something or have a timer due: with hundreds a
        // thread, visiting all of them on every wake-up costs more than their datagrams.
        for s in &mut slots {
            if !s.joined {
                if now >= start + s.join_after {
                    s.join(now);
                }
                continue;
            }
            let due = s.next.is_some_and(|t| t <= now);
            if !due && !s.touched {
                continue;
            }
            if due {
                s.viewer.handle_timeout(now);
            }
            s.events();
            s.flush(now);
            s.next = s.viewer.poll_timeout();
            s.touched = false;
            if s.described && !anyone_described.load(Ordering::Relaxed) {
                anyone_described.store(true, Ordering::Relaxed);
            }
        }
    }
    let figures = slots.iter().map(Slot::figures).collect();
    for s in slots.iter_mut().filter(|s| s.joined) {
        let bye = s.viewer.bye();
        let _ = s.socket.send_to(&bye.payload, bye.dest);
    }
    Ok(ShardEnd::Done(figures, max_lag, !unstamped))
}

/// CPU seconds (user + system) this process has used.
fn process_cpu_s() -> f64 {
    // SAFETY: getrusage writes into the zeroed struct it is given.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: as above; RUSAGE_SELF is always valid.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) } != 0 {
        return 0.0;
    }
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// Runs `framecast load`: binds every viewer's socket, watches for `--duration`, then
/// summarises (and writes `--stats-json`).
///
/// # Errors
/// Bad options, a socket that cannot be bound, or no stream within `--wait` seconds.
pub fn run_load(args: &LoadArgs, stop: &AtomicBool) -> anyhow::Result<LoadReport> {
    super::check_name("stream", &args.stream)?;
    // The coder's tables now, not while the first frame to restore is due.
    crate::proto::fec::warm_up();
    if args.viewers == 0 || args.viewers > MAX_VIEWERS {
        anyhow::bail!(
            "--viewers {}: expected 1 to {MAX_VIEWERS} viewers",
            args.viewers
        );
    }
    let duration = super::duration_arg("duration", Some(args.duration))?.unwrap_or_default();
    let wait = super::duration_arg("wait", Some(args.wait))?.unwrap_or_default();
    if args.latency_ms == 0 || args.latency_ms > 10_000 {
        anyhow::bail!("--latency-ms {}: expected 1 to 10000 ms", args.latency_ms);
    }
    let ramp = if args.ramp == 0.0 {
        Duration::ZERO
    } else {
        super::duration_arg("ramp", Some(args.ramp))?.unwrap_or_default()
    };
    if ramp >= duration {
        anyhow::bail!(
            "--ramp {}: the viewers must all have joined before --duration {} ends",
            args.ramp,
            args.duration
        );
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let threads = args.threads.unwrap_or(cores.min(4)).clamp(1, args.viewers);
    let mut shards: Vec<Vec<Slot>> = (0..threads).map(|_| Vec::new()).collect();
    for i in 0..args.viewers {
        let (socket, sizes) = bind_udp(ephemeral_for(args.from), VIEWER_SOCKET_BUFFER)
            .with_context(|| format!("load: viewer {i} of {}", args.viewers))?;
        if i == 0 {
            crate::driver::udp::warn_if_clamped(&sizes);
        }
        let mut cfg = ViewerConfig::new(args.from, &args.stream);
        cfg.latency = Duration::from_millis(args.latency_ms);
        shards[i % threads].push(Slot {
            socket,
            viewer: Viewer::new(cfg),
            first: None,
            span: 0,
            described: false,
            rejected: None,
            next: None,
            touched: false,
            join_after: ramp.mul_f64(i as f64 / args.viewers as f64),
            joined: false,
        });
    }
    let cpu0 = process_cpu_s();
    let start = Instant::now();
    let end = start + duration;
    let anyone = AtomicBool::new(false);
    let results: Vec<anyhow::Result<ShardEnd>> = std::thread::scope(|sc| {
        let handles: Vec<_> = shards
            .into_iter()
            .map(|slots| {
                let anyone = &anyone;
                let loop_time = args.loop_time;
                sc.spawn(move || run_shard(slots, start, end, wait, loop_time, stop, anyone))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("load: a viewer thread panicked")))
            })
            .collect()
    });
    let mut per_viewer = Vec::new();
    let mut no_stream: Option<Option<RejectReason>> = None;
    let mut max_lag = Duration::ZERO;
    let mut kernel_times = true;
    for r in results {
        match r? {
            ShardEnd::Done(f, lag, stamped) => {
                per_viewer.extend(f);
                max_lag = max_lag.max(lag);
                kernel_times &= stamped;
            }
            ShardEnd::NoStream(why) => {
                no_stream = Some(no_stream.flatten().or(why));
            }
        }
    }
    if let Some(why) = no_stream {
        let why = match why {
            Some(r) => format!("it refused the subscription ({r:?})"),
            None => "no answer (is a relay or server running there, and the stream published?)"
                .to_owned(),
        };
        anyhow::bail!(
            "load: no stream {:?} from {} after {:.0} s: {why}",
            args.stream,
            args.from,
            wait.as_secs_f64()
        );
    }
    let cpu_s = process_cpu_s() - cpu0;
    let spread = |f: fn(&ViewerFigures) -> f64| Spread::of(per_viewer.iter().map(f).collect());
    let summary = LoadSummary {
        played: spread(|v| v.played as f64),
        late: spread(|v| v.late as f64),
        incomplete: spread(|v| v.incomplete as f64),
        skipped: spread(|v| v.skipped as f64),
        on_time: spread(|v| v.on_time),
        frames: spread(|v| v.frames as f64),
    };
    let report = LoadReport {
        role: "load",
        from: args.from.to_string(),
        stream: args.stream.clone(),
        viewers: args.viewers,
        duration_s: start.elapsed().as_secs_f64(),
        threads,
        cpu_s,
        max_loop_lag_ms: max_lag.as_secs_f64() * 1000.0,
        receive_times: if kernel_times && !args.loop_time {
            "kernel"
        } else {
            "loop"
        },
        summary,
        per_viewer,
    };
    if let Some(p) = &args.stats_json {
        super::write_stats_json(p, &report)?;
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spread_is_min_median_max() {
        let s = Spread::of(vec![3.0, 1.0, 2.0, 10.0]);
        assert_eq!((s.min, s.median, s.max), (1.0, 3.0, 10.0));
        let e = Spread::of(Vec::new());
        assert_eq!((e.min, e.median, e.max), (0.0, 0.0, 0.0));
    }

    #[test]
    fn no_relay_is_a_clear_error_within_the_wait() {
        // A bound socket that never answers stands for a relay that is not there.
        let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut args = LoadArgs::new(silent.local_addr().unwrap(), "cam1", 3, 30.0);
        args.wait = 0.3;
        let t = Instant::now();
        let err = run_load(&args, &AtomicBool::new(false)).unwrap_err();
        assert!(t.elapsed() < Duration::from_secs(5));
        let msg = err.to_string();
        assert!(msg.contains("no stream \"cam1\""), "{msg}");
        assert!(msg.contains("after 0 s") || msg.contains("after"), "{msg}");
    }

    #[test]
    fn the_span_of_frames_grows_at_both_ends_across_the_wrap() {
        let socket = bind_udp("127.0.0.1:0".parse().unwrap(), 1 << 16).unwrap().0;
        let cfg = ViewerConfig::new("127.0.0.1:9".parse().unwrap(), "cam1");
        let mut slot = Slot {
            socket,
            viewer: Viewer::new(cfg),
            first: None,
            span: 0,
            described: false,
            rejected: None,
            next: None,
            touched: false,
            join_after: Duration::ZERO,
            joined: true,
        };
        slot.saw(5);
        slot.saw(9);
        slot.saw(3);
        assert_eq!((slot.first, slot.span), (Some(3), 6));
        slot.saw(u32::MAX);
        slot.saw(1);
        assert_eq!((slot.first, slot.span), (Some(u32::MAX), 10));
        assert_eq!(slot.figures().frames, 11);
    }

    #[test]
    fn bad_options_are_refused() {
        let a: SocketAddr = "127.0.0.1:9".parse().unwrap();
        let stop = AtomicBool::new(false);
        let e = run_load(&LoadArgs::new(a, "cam1", 0, 1.0), &stop).unwrap_err();
        assert!(e.to_string().contains("--viewers 0"), "{e}");
        let e = run_load(&LoadArgs::new(a, "cam1", 1, -1.0), &stop).unwrap_err();
        assert!(e.to_string().contains("--duration"), "{e}");
        let e = run_load(&LoadArgs::new(a, "", 1, 1.0), &stop).unwrap_err();
        assert!(e.to_string().contains("--stream"), "{e}");
    }
}
