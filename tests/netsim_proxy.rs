//! The `netsim` impairment proxy on real loopback sockets: client -> proxy -> echo -> proxy
//! -> client. Bounded in time (socket read timeouts and an overall deadline), no sleeps.

use std::collections::BTreeSet;
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use framecast::driver::netsim::{Netsim, NetsimArgs, NetsimStats, run_netsim};

const LOCALHOST: &str = "127.0.0.1:0";
/// No test may take longer than this, whatever happens.
const OVERALL: Duration = Duration::from_secs(20);

/// An echo server on loopback; returns its address and a handle yielding how many it echoed.
fn echo_server(stop: Arc<AtomicBool>) -> io::Result<(SocketAddr, JoinHandle<u64>)> {
    let socket = UdpSocket::bind(LOCALHOST)?;
    socket.set_read_timeout(Some(Duration::from_millis(20)))?;
    let addr = socket.local_addr()?;
    let handle = std::thread::spawn(move || {
        let mut buf = [0u8; 2048];
        let mut echoed = 0;
        while !stop.load(Ordering::Relaxed) {
            if let Ok((n, from)) = socket.recv_from(&mut buf) {
                if socket.send_to(&buf[..n], from).is_ok() {
                    echoed += 1;
                }
            }
        }
        echoed
    });
    Ok((addr, handle))
}

struct Setup {
    proxy: SocketAddr,
    client: UdpSocket,
    stop: Arc<AtomicBool>,
    proxy_thread: JoinHandle<anyhow::Result<NetsimStats>>,
    echo_thread: JoinHandle<u64>,
}

impl Setup {
    fn new(configure: impl FnOnce(&mut NetsimArgs)) -> anyhow::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let (echo, echo_thread) = echo_server(stop.clone())?;
        let mut args = NetsimArgs::new(LOCALHOST.parse()?, echo);
        configure(&mut args);
        let netsim = Netsim::bind(&args)?;
        let proxy = netsim.local_addr();
        let proxy_stop = stop.clone();
        let proxy_thread = std::thread::spawn(move || netsim.run(&proxy_stop));
        let client = UdpSocket::bind(LOCALHOST)?;
        Ok(Self {
            proxy,
            client,
            stop,
            proxy_thread,
            echo_thread,
        })
    }

    fn finish(self) -> anyhow::Result<NetsimStats> {
        self.stop.store(true, Ordering::Relaxed);
        let echo = self.echo_thread.join();
        let stats = self
            .proxy_thread
            .join()
            .map_err(|_| anyhow::anyhow!("proxy thread panicked"))??;
        assert!(echo.is_ok(), "echo thread panicked");
        Ok(stats)
    }
}

fn datagram(n: u32) -> [u8; 4] {
    n.to_be_bytes()
}

/// Reads one numbered datagram, `None` on timeout.
fn recv_number(socket: &UdpSocket) -> anyhow::Result<Option<u32>> {
    let mut buf = [0u8; 64];
    match socket.recv(&mut buf) {
        Ok(4) => Ok(Some(u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]))),
        Ok(n) => anyhow::bail!("unexpected {n}-byte datagram"),
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ) =>
        {
            Ok(None)
        }
        Err(e) => Err(e.into()),
    }
}

#[test]
fn a_perfect_proxy_echoes_all_1000_datagrams() -> anyhow::Result<()> {
    let deadline = Instant::now() + OVERALL;
    let setup = Setup::new(|_| {})?;
    setup
        .client
        .set_read_timeout(Some(Duration::from_secs(5)))?;
    // Keep at most 32 in flight so no socket buffer on the path can overflow.
    const TOTAL: u32 = 1000;
    const WINDOW: u32 = 32;
    let mut next = 0;
    let mut got = BTreeSet::new();
    while got.len() < TOTAL as usize {
        assert!(
            Instant::now() < deadline,
            "timed out with {} back",
            got.len()
        );
        while next < TOTAL && next - got.len() as u32 <= WINDOW {
            setup.client.send_to(&datagram(next), setup.proxy)?;
            next += 1;
        }
        match recv_number(&setup.client)? {
            Some(n) => assert!(got.insert(n), "{n} came back twice"),
            None => panic!("no echo within 5 s ({} of {TOTAL} back)", got.len()),
        }
    }
    assert_eq!(got, (0..TOTAL).collect());
    let stats = setup.finish()?;
    assert_eq!(stats.datagrams_in, 2 * u64::from(TOTAL));
    assert_eq!(stats.datagrams_out, 2 * u64::from(TOTAL));
    assert_eq!(stats.upstream.delivered, u64::from(TOTAL));
    assert_eq!(stats.downstream.delivered, u64::from(TOTAL));
    assert_eq!((stats.lost, stats.queue_dropped, stats.clients), (0, 0, 1));
    Ok(())
}

/// Sends 100 numbered datagrams through a proxy losing 50 % each way, then marker datagrams
/// one at a time until one comes back: both links are FIFO (no jitter or reordering) and so
/// is loopback, so once a marker is back every surviving echo before it is back too. Returns
/// the numbers that came back and the proxy's counters.
fn lossy_round(seed: u64) -> anyhow::Result<(BTreeSet<u32>, NetsimStats)> {
    const TOTAL: u32 = 100;
    const MARKER: u32 = 1 << 20;
    let deadline = Instant::now() + OVERALL;
    let setup = Setup::new(|a| {
        a.loss = 50.0;
        a.seed = seed;
    })?;
    setup
        .client
        .set_read_timeout(Some(Duration::from_millis(100)))?;
    for n in 0..TOTAL {
        setup.client.send_to(&datagram(n), setup.proxy)?;
    }
    let mut got = BTreeSet::new();
    let mut marker = MARKER;
    'markers: loop {
        assert!(Instant::now() < deadline, "no marker came back");
        setup.client.send_to(&datagram(marker), setup.proxy)?;
        marker += 1;
        // Read until this marker's retry timer (the read timeout) fires.
        while let Some(n) = recv_number(&setup.client)? {
            if n >= MARKER {
                break 'markers;
            }
            assert!(got.insert(n), "{n} came back twice");
        }
    }
    let stats = setup.finish()?;
    let markers = u64::from(marker - MARKER);
    assert_eq!(stats.upstream.sent, u64::from(TOTAL) + markers);
    let up = stats.upstream;
    assert_eq!(up.sent, up.delivered + up.lost);
    Ok((got, stats))
}

#[test]
fn a_lossy_proxy_drops_some_deterministically() -> anyhow::Result<()> {
    let (got, stats) = lossy_round(7)?;
    assert!(
        !got.is_empty() && got.len() < 100,
        "{} came back",
        got.len()
    );
    assert!(stats.lost > 0);
    // The same seed and the same traffic give the same losses, even over real sockets.
    let (again, _) = lossy_round(7)?;
    assert_eq!(got, again);
    Ok(())
}

#[test]
fn a_taken_listen_port_is_a_clear_one_line_error() -> anyhow::Result<()> {
    let taken = UdpSocket::bind(LOCALHOST)?;
    let addr = taken.local_addr()?;
    let args = NetsimArgs::new(addr, "127.0.0.1:9".parse()?);
    let err = Netsim::bind(&args)
        .err()
        .map(|e| format!("{e:#}"))
        .unwrap_or_default();
    assert_eq!(
        err,
        format!("cannot listen on {addr}: address already in use; pick another --listen port")
    );
    Ok(())
}

#[test]
fn the_proxy_stops_after_its_duration() -> anyhow::Result<()> {
    let mut args = NetsimArgs::new(LOCALHOST.parse()?, "127.0.0.1:9".parse()?);
    args.duration = Some(0.2);
    let start = Instant::now();
    let stats = run_netsim(&args, &AtomicBool::new(false))?;
    let took = start.elapsed();
    assert!(took >= Duration::from_millis(200), "stopped after {took:?}");
    assert!(took < Duration::from_secs(5), "stopped after {took:?}");
    assert_eq!(stats, NetsimStats::default());
    Ok(())
}
