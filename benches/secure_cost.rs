//! The CPU cost of the secure layer (proto-spec.md §8) at 720p30, for the sender and the
//! player.
//!
//! 1. Whole processes: `serve --source test:1280x720@30` and a decoding `play` on loopback,
//!    once without keys and once with, for `--seconds`; each process's CPU time (user +
//!    system, from `wait4`) per second of stream.
//! 2. The layer alone: sealing (the sender's share) and opening with the replay window (the
//!    player's share) the number of bytes per second the stream carried, in 1452-byte
//!    datagrams, timed on this thread.
//!
//! The figure that matters: 2's cost per second against 1's keyed CPU per second. Run it
//! under the shared lock: `flock /tmp/bench.lock cargo bench --bench secure_cost -- [--seconds S]`.
//! Traffic stays on 127.0.0.1.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use framecast::proto::node::{Node, Transmit};
use framecast::proto::secure::{Keys, Role, Secure};

#[allow(dead_code)] // `percentile` is for the other benches.
mod support;

fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// Waits for a child and returns its CPU time (user + system).
fn wait_cpu(child: std::process::Child) -> (bool, Duration) {
    let mut status = 0;
    // SAFETY: an all-zero rusage is valid; wait4 fills it for our own child.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: the pid is our child's; status and rusage are ours.
    unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut ru) };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    (
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        tv(ru.ru_utime) + tv(ru.ru_stime),
    )
}

struct Run {
    serve_cpu: Duration,
    play_cpu: Duration,
    bytes_per_s: f64,
    played: u64,
}

fn run_pair(bin: &std::path::Path, key: Option<&std::path::Path>, seconds: u64) -> Run {
    let port = support::free_port();
    let addr = format!("127.0.0.1:{port}");
    let dir = std::env::temp_dir();
    let sj = dir.join(format!("secure-cost-serve-{port}.json"));
    let pj = dir.join(format!("secure-cost-play-{port}.json"));
    let keyargs = |c: &mut Command| {
        c.env_remove("FRAMECAST_KEY");
        if let Some(k) = key {
            c.arg("--key-file").arg(k);
        }
    };
    let mut serve = Command::new(bin);
    serve.args([
        "serve",
        "--listen",
        &addr,
        "--source",
        "test:1280x720@30",
        "--no-audio",
    ]);
    serve
        .args(["--duration", &(seconds + 1).to_string(), "--stats-json"])
        .arg(&sj);
    keyargs(&mut serve);
    let serve = serve
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let mut play = Command::new(bin);
    play.args([
        "play",
        "--from",
        &addr,
        "--stream",
        "live",
        "--no-video",
        "--no-audio",
    ]);
    play.args(["--duration", &seconds.to_string(), "--stats-json"])
        .arg(&pj);
    keyargs(&mut play);
    let play = play
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (pok, play_cpu) = wait_cpu(play);
    let (sok, serve_cpu) = wait_cpu(serve);
    assert!(pok && sok, "serve or play failed");
    let read = |p: &std::path::Path| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
    };
    let (s, p) = (read(&sj), read(&pj));
    let _ = std::fs::remove_file(&sj);
    let _ = std::fs::remove_file(&pj);
    let bytes = s["server"]["relay"]["bytes_out"].as_f64().unwrap_or(0.0);
    Run {
        serve_cpu,
        play_cpu,
        bytes_per_s: bytes / (seconds + 1) as f64,
        played: p["client"]["frames_played"].as_u64().unwrap_or(0),
    }
}

/// A node that sends what it is given and counts what it receives.
#[derive(Default)]
struct Sink {
    out: Vec<Transmit>,
    got: u64,
}

impl Node for Sink {
    fn handle_datagram(&mut self, _: Instant, _: std::net::SocketAddr, _: &[u8]) {
        self.got += 1;
    }
    fn handle_timeout(&mut self, _: Instant) {}
    fn poll_timeout(&self) -> Option<Instant> {
        None
    }
    fn poll_transmit(&mut self, _: Instant) -> Option<Transmit> {
        self.out.pop()
    }
}

/// CPU time to seal, and to open, `bytes` in full datagrams on one session.
fn layer_cost(bytes: f64) -> (Duration, Duration) {
    let keys = Keys::from_publish([9; 32]);
    let (c_addr, s_addr) = (
        "127.0.0.1:1".parse().unwrap(),
        "127.0.0.1:2".parse().unwrap(),
    );
    let mut client = Secure::new(Sink::default(), Some(keys.view_part()), [1; 32]);
    client.connect(s_addr, Role::View);
    let mut server = Secure::new(Sink::default(), Some(keys), [2; 32]);
    let now = Instant::now();
    // Handshake: the client's SUBSCRIBE-like datagram opens the session.
    client.out.push(Transmit {
        dest: s_addr,
        payload: Bytes::from(vec![
            0x46, 0x43, 1, 16, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        ]),
    });
    for _ in 0..4 {
        while let Some(t) = client.poll_transmit(now) {
            server.handle_datagram(now, c_addr, &t.payload);
        }
        while let Some(t) = server.poll_transmit(now) {
            client.handle_datagram(now, s_addr, &t.payload);
        }
    }
    let size = framecast::proto::wire::DEFAULT_DATAGRAM - framecast::proto::secure::SEAL_OVERHEAD;
    let n = (bytes / size as f64).ceil() as usize;
    let plain = Bytes::from(vec![0x5a; size]);
    let mut sealed = Vec::with_capacity(n);
    let t = thread_cpu();
    for _ in 0..n {
        server.out.push(Transmit {
            dest: c_addr,
            payload: plain.clone(),
        });
        sealed.push(server.poll_transmit(now).unwrap().payload);
    }
    let seal = thread_cpu() - t;
    let t = thread_cpu();
    for d in &sealed {
        client.handle_datagram(now, s_addr, d);
    }
    let open = thread_cpu() - t;
    assert_eq!(client.got, n as u64, "every datagram opened");
    (seal, open)
}

/// `cargo bench --bench secure_cost -- [OPTIONS]`
#[derive(clap::Parser)]
struct Args {
    /// Seconds each streaming run lasts.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

fn main() {
    let Args { seconds, .. } = clap::Parser::parse();
    let bin = support::framecast_release_bin();
    let key = std::env::temp_dir().join(format!("secure-cost-{}.key", std::process::id()));
    let _ = std::fs::remove_file(&key);
    assert!(
        Command::new(&bin)
            .args(["keygen", "--out"])
            .arg(&key)
            .status()
            .unwrap()
            .success()
    );
    let plain = run_pair(&bin, None, seconds);
    let keyed = run_pair(&bin, Some(&key), seconds);
    let _ = std::fs::remove_file(&key);
    let per_s = |d: Duration, s: u64| d.as_secs_f64() * 1000.0 / s as f64;
    let s_total = seconds + 1;
    println!("720p30 test pattern, {seconds} s played, decoding player, loopback");
    println!("                   serve CPU ms/s   play CPU ms/s   Mbit/s   frames played");
    for (name, r) in [("without keys", &plain), ("with keys", &keyed)] {
        println!(
            "{name:<18} {:>14.1} {:>15.1} {:>8.2} {:>15}",
            per_s(r.serve_cpu, s_total),
            per_s(r.play_cpu, seconds),
            r.bytes_per_s * 8.0 / 1e6,
            r.played
        );
    }
    // The layer alone, for 10 s of the keyed stream's bytes (steadier than one second).
    let (seal, open) = layer_cost(keyed.bytes_per_s * 10.0);
    let seal_ms = seal.as_secs_f64() * 100.0;
    let open_ms = open.as_secs_f64() * 100.0;
    let serve_ms = per_s(keyed.serve_cpu, s_total);
    let play_ms = per_s(keyed.play_cpu, seconds);
    println!(
        "sealing  {seal_ms:.2} ms CPU per second of stream = {:.2} % of the keyed sender's CPU",
        100.0 * seal_ms / serve_ms
    );
    println!(
        "opening  {open_ms:.2} ms CPU per second of stream = {:.2} % of the keyed player's CPU",
        100.0 * open_ms / play_ms
    );
    println!(
        "process difference (keyed - plain, noisy): serve {:+.1} ms/s, play {:+.1} ms/s",
        serve_ms - per_s(plain.serve_cpu, s_total),
        play_ms - per_s(plain.play_cpu, seconds)
    );
    assert!(
        keyed.played >= (seconds * 30 * 8 / 10),
        "the keyed player played too little"
    );
}
