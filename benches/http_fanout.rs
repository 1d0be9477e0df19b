//! What N viewers of one 720p30 stream cost the relay: N framecast viewers (UDP, with the
//! relay's per-subscriber queues, pacing and parity) against N HTTP MJPEG viewers of
//! `--http` (one local tap viewer, then TCP). The relay's CPU is every thread of the relay
//! role: its datagram loop, and with HTTP also its tap and its HTTP thread, read from
//! /proc/self/task over a window after a warm-up. Each viewer's frame count is reported too,
//! so a cheaper side cannot be cheaper by delivering less.
//!
//! `cargo bench --bench http_fanout -- [--viewers N] [--seconds S]`
//! Traffic stays on 127.0.0.1; each run is bounded by --seconds.

use std::io::{ErrorKind, Read, Write};
use std::net::SocketAddr;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use framecast::app::relay::{RelayArgs, RelayRole};
use framecast::app::serve::{Serve, ServeArgs};
use framecast::driver::udp::bind_udp;
use framecast::proto::node::{Node, soonest};
use framecast::proto::viewer::{Viewer, ViewerConfig};
use mio::{Events, Interest, Poll, Token};

const WARM_UP: Duration = Duration::from_millis(1500);

/// CPU seconds (user + system) of this process's threads whose name `keep` accepts.
fn threads_cpu(keep: &dyn Fn(&str) -> bool) -> f64 {
    let tick = 100.0; // USER_HZ on Linux
    let mut total = 0u64;
    for e in std::fs::read_dir("/proc/self/task")
        .into_iter()
        .flatten()
        .flatten()
    {
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
            continue;
        };
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        if !keep(&stat[open + 1..close]) {
            continue;
        }
        let f: Vec<&str> = stat[close + 2..].split_whitespace().collect();
        // After the name: state is field 3, utime 14 and stime 15 (1-based, whole line).
        total += f.get(11).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        total += f.get(12).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    }
    total as f64 / tick
}

fn relay_threads(name: &str) -> bool {
    name == "relay" || name == "http" || name.starts_with("tap ")
}

/// N framecast viewers in one thread: a mio poll over their sockets (no decoding).
fn framecast_viewers(n: usize, relay: SocketAddr, until: Instant) -> Vec<u64> {
    let mut poll = Poll::new().unwrap();
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
    let mut events = Events::with_capacity(1024);
    let mut buf = vec![0u8; 65536];
    while Instant::now() < until {
        let now = Instant::now();
        for ev in events.iter() {
            let i = ev.token().0;
            while let Ok((k, from)) = sockets[i].recv_from(&mut buf) {
                clients[i].handle_datagram(now, from, &buf[..k]);
            }
        }
        for (i, c) in clients.iter_mut().enumerate() {
            c.handle_timeout(now);
            while let Some(t) = c.poll_transmit(now) {
                let _ = sockets[i].send_to(&t.payload, t.dest);
            }
            while c.poll_event().is_some() {}
        }
        let next = clients.iter().filter_map(|c| c.poll_timeout()).min();
        let wait = soonest(next, Some(until)).map(|t| t.saturating_duration_since(Instant::now()));
        poll.poll(&mut events, wait.map(|w| w.min(Duration::from_millis(20))))
            .unwrap();
    }
    for (i, c) in clients.iter_mut().enumerate() {
        let bye = c.bye();
        let _ = sockets[i].send_to(&bye.payload, bye.dest);
    }
    clients.iter().map(|c| c.stats().frames_played).collect()
}

/// One MJPEG connection's parser: counts parts by their Content-Length, skipping the JPEG
/// bytes without looking at them.
struct Part {
    stream: mio::net::TcpStream,
    head: Vec<u8>,
    skip: usize,
    frames: u64,
    in_body: bool,
}

impl Part {
    fn feed(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            if self.skip > 0 {
                let k = self.skip.min(data.len());
                self.skip -= k;
                data = &data[k..];
                continue;
            }
            // Header bytes: up to the blank line.
            let b = data[0];
            data = &data[1..];
            self.head.push(b);
            if self.head.ends_with(b"\r\n\r\n") {
                let text = String::from_utf8_lossy(&self.head).to_ascii_lowercase();
                if let Some(v) = text.split("content-length: ").nth(1) {
                    let len: usize = v.split("\r\n").next().unwrap_or("0").parse().unwrap_or(0);
                    if self.in_body {
                        self.frames += 1;
                        self.skip = len;
                    }
                }
                self.in_body = true; // past the response head
                self.head.clear();
            }
        }
    }
}

/// N HTTP MJPEG viewers in one thread; gives each one's frame count.
fn http_viewers(n: usize, http: SocketAddr, until: Instant) -> Vec<u64> {
    let mut poll = Poll::new().unwrap();
    let mut conns = Vec::new();
    for i in 0..n {
        let mut s = std::net::TcpStream::connect(http).unwrap();
        s.write_all(b"GET /live.mjpg HTTP/1.0\r\n\r\n").unwrap();
        s.set_nonblocking(true).unwrap();
        let mut stream = mio::net::TcpStream::from_std(s);
        poll.registry()
            .register(&mut stream, Token(i), Interest::READABLE)
            .unwrap();
        conns.push(Part {
            stream,
            head: Vec::new(),
            skip: 0,
            frames: 0,
            in_body: false,
        });
    }
    let mut events = Events::with_capacity(1024);
    let mut buf = vec![0u8; 256 * 1024];
    while Instant::now() < until {
        poll.poll(&mut events, Some(Duration::from_millis(20)))
            .unwrap();
        for ev in events.iter() {
            let c = &mut conns[ev.token().0];
            loop {
                match c.stream.read(&mut buf) {
                    Ok(0) => break,
                    Ok(k) => c.feed(&buf[..k]),
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(_) => break,
                }
            }
        }
    }
    conns.iter().map(|c| c.frames).collect()
}

struct Outcome {
    cpu_s: f64,
    window_s: f64,
    frames: Vec<u64>,
}

fn run(viewers: usize, seconds: f64, http: bool) -> Outcome {
    let lo: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let mut r = RelayArgs::new(lo);
    r.duration = Some(seconds + 2.0);
    if http {
        r.outputs.http = Some(lo);
        r.outputs.http_max_clients = viewers.max(1);
    }
    let mut relay = RelayRole::bind(r).unwrap();
    relay.status = false;
    let relay_addr = relay.local_addr();
    let http_addr = relay.http_addr();
    let mut s = ServeArgs::new(lo);
    s.source = "test:1280x720@30".into();
    s.relay = Some(relay_addr);
    s.start_delay_ms = 500;
    s.duration = Some(seconds + 1.0);
    s.seed = Some(1);
    let mut serve = Serve::bind(s).unwrap();
    serve.status = false;
    let stop = AtomicBool::new(false);
    std::thread::scope(|sc| {
        let relay_t = std::thread::Builder::new()
            .name("relay".into())
            .spawn_scoped(sc, || relay.run(&AtomicBool::new(false)).unwrap())
            .unwrap();
        let serve_t = sc.spawn(|| serve.run(&stop).unwrap());
        let start = Instant::now();
        let until = start + WARM_UP + Duration::from_secs_f64(seconds);
        let measure = sc.spawn(move || {
            std::thread::sleep(WARM_UP.saturating_sub(start.elapsed()));
            let (c0, t0) = (threads_cpu(&relay_threads), Instant::now());
            std::thread::sleep(until.saturating_duration_since(Instant::now()));
            (threads_cpu(&relay_threads) - c0, t0.elapsed().as_secs_f64())
        });
        let frames = match http_addr {
            Some(h) => {
                // The page lists the stream once its publisher claimed it.
                let deadline = Instant::now() + Duration::from_secs(5);
                while Instant::now() < deadline
                    && std::net::TcpStream::connect(h)
                        .and_then(|mut c| {
                            c.write_all(b"GET /live.jpg HTTP/1.0\r\n\r\n")?;
                            let mut v = Vec::new();
                            c.read_to_end(&mut v)?;
                            Ok(!v.starts_with(b"HTTP/1.0 200") && !v.starts_with(b"HTTP/1.1 200"))
                        })
                        .unwrap_or(true)
                {
                    std::thread::sleep(Duration::from_millis(50));
                }
                http_viewers(viewers, h, until)
            }
            None => framecast_viewers(viewers, relay_addr, until),
        };
        let (cpu_s, window_s) = measure.join().unwrap();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        serve_t.join().unwrap();
        relay_t.join().unwrap();
        Outcome {
            cpu_s,
            window_s,
            frames,
        }
    })
}

/// `cargo bench --bench http_fanout -- [OPTIONS]`
#[derive(clap::Parser)]
struct Args {
    /// Viewers of each kind.
    #[arg(long, default_value_t = 50)]
    viewers: usize,
    /// Seconds measured after the warm-up.
    #[arg(long, default_value_t = 8.0)]
    seconds: f64,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

fn main() {
    let Args {
        viewers, seconds, ..
    } = clap::Parser::parse();
    println!(
        "one 720p30 test stream through a relay to {viewers} viewers on loopback, {seconds} s measured after {:.1} s warm-up",
        WARM_UP.as_secs_f64()
    );
    let mut results = Vec::new();
    for (name, http) in [("framecast (UDP)", false), ("HTTP MJPEG", true)] {
        let o = run(viewers, seconds, http);
        let mut f = o.frames.clone();
        f.sort();
        let fps = |x: u64| x as f64 / (seconds + WARM_UP.as_secs_f64());
        println!(
            "  {name:16} relay CPU {:.2} s over {:.2} s = {:.0}% of one core | frames per viewer min {} median {} max {} (~{:.1} fps median)",
            o.cpu_s,
            o.window_s,
            100.0 * o.cpu_s / o.window_s,
            f[0],
            f[f.len() / 2],
            f[f.len() - 1],
            fps(f[f.len() / 2])
        );
        results.push(o.cpu_s / o.window_s);
    }
    println!(
        "relay CPU, HTTP MJPEG / framecast viewers = {:.2}",
        results[1] / results[0]
    );
}
