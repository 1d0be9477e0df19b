//! Relay fan-out benchmark: one 720p30 test stream (real JPEG, about 100 KB a frame)
//! served into a relay that feeds N viewers on loopback, for a fixed time. Reports the
//! relay's CPU time per second and per datagram, what the relay itself dropped (queue
//! overflow, send errors) and what each viewer played.
//!
//! `cargo bench --bench relay_fanout -- [--subscribers N] [--seconds S]`
//! Traffic stays on 127.0.0.1; the run is bounded by --seconds.

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

fn main() {
    let mut subscribers = 50usize;
    let mut seconds = 10.0f64;
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
            _ => {} // cargo bench passes --bench
        }
        i += 1;
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
