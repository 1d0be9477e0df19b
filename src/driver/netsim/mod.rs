//! `framecast netsim`: a UDP impairment proxy built on the sans-IO emulator
//! [`crate::sim::netem::Link`].
//!
//! ```text
//! client A ─┐                      ┌─ upstream socket for A ─┐
//! client B ─┼─► --listen ─► Link ──┼─ upstream socket for B ─┼─► --forward
//!           └──────────── ◄─ Link ◄┴─────────────────────────┘
//! ```
//!
//! Viewers send to `--listen`. For each distinct client address the proxy opens its own
//! upstream socket (an ephemeral port on the address family of `--forward`), so that replies
//! from `--forward` map back to that client, as through a NAT. Each direction goes through
//! its own [`Link`] (same impairments, different seeds), shared by all clients: it models one
//! path, bottleneck queue included. Replies reaching an upstream socket from anywhere but
//! `--forward` are dropped. At most [`MAX_CLIENTS`] mappings exist at once (datagrams from
//! further clients are dropped and counted); a mapping idle for [`CLIENT_IDLE_TIMEOUT`] is
//! removed. The rate limit (`--rate-kbps`) counts UDP payload bytes, not IP/UDP headers.
//!
//! The emulator stays sans-IO; this module is the thin mio driver: wait until the soonest link
//! deadline (at most [`MAX_POLL_WAIT`], so the stop flag is seen), take `Instant::now()` once
//! per wake-up, drain reads until `WouldBlock` into the links, then pop due items and send
//! them. A send that hits `WouldBlock` keeps its item and that direction waits for the
//! socket's WRITABLE event (it does not spin); while it waits, later items of that direction
//! wait behind it, as on a real FIFO path.
//!
//! # Layout
//!
//! `args` ([`NetsimArgs`]), `proxy` (the loop's read, map, send and sweep steps, and the
//! sockets), `stats` ([`NetsimStats`]); binding and the loop itself are here in [`Netsim`].

use std::collections::{BTreeSet, HashMap};
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use mio::net::UdpSocket;
use mio::{Events, Interest, Poll, Token};

use crate::sim::netem::Link;

mod args;
mod proxy;
mod stats;
#[cfg(test)]
mod tests;

pub use args::NetsimArgs;
pub use stats::NetsimStats;

use proxy::{bind_udp, describe_bind_error};

/// Most client mappings (upstream sockets) alive at once.
pub const MAX_CLIENTS: usize = 256;

/// A client mapping with no traffic in either direction for this long is removed.
pub const CLIENT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// Longest single wait in the event loop, so the stop flag and `--duration` are honoured.
pub const MAX_POLL_WAIT: Duration = Duration::from_millis(100);

/// Token of the listen socket; client sockets get tokens from 1 up.
const LISTEN: Token = Token(0);
/// Large enough for any UDP payload.
const MAX_DATAGRAM: usize = 1 << 16;
/// Socket buffer size asked for (the kernel may cap it); bursts then survive a slow wake-up.
const SOCKET_BUFFER: usize = 1 << 21;
/// Datagrams read from one socket per wake-up before the loop moves on to sending; the rest
/// are read on the next (immediate) wake-up, so a flood cannot starve the send side.
const READ_BUDGET: usize = 1024;
/// How often idle client mappings are looked for.
const SWEEP_EVERY: Duration = Duration::from_secs(1);
/// Mixed into `--seed` to get the downstream link's seed.
const DOWNSTREAM_SEED_MIX: u64 = 0x9e37_79b9_7f4a_7c15;

/// One client mapping: the client's own upstream socket.
struct Viewer {
    socket: UdpSocket,
    token: Token,
    last_seen: Instant,
}

/// A bound proxy, ready to [`Netsim::run`]. Binding first lets a caller learn the listen
/// address when port 0 was given.
pub struct Netsim {
    poll: Poll,
    events: Events,
    listen: UdpSocket,
    listen_addr: SocketAddr,
    forward: SocketAddr,
    run_time: Option<Duration>,
    clients: HashMap<SocketAddr, Viewer>,
    by_token: HashMap<Token, SocketAddr>,
    next_token: usize,
    /// Viewer to `--forward`; items are (client, payload).
    up: Link<(SocketAddr, Bytes)>,
    /// `--forward` to client; items are (client, payload).
    down: Link<(SocketAddr, Bytes)>,
    /// An item whose send hit `WouldBlock`, retried on the next wake-up.
    pending_up: Option<(SocketAddr, Bytes)>,
    pending_down: Option<(SocketAddr, Bytes)>,
    /// Sockets whose read budget ran out before `WouldBlock`.
    unread: BTreeSet<Token>,
    buf: Vec<u8>,
    last_sweep: Option<Instant>,
    stats: NetsimStats,
}

impl std::fmt::Debug for Netsim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Netsim")
            .field("listen", &self.listen_addr)
            .field("forward", &self.forward)
            .field("clients", &self.clients.len())
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl Netsim {
    /// Checks the flags and binds the listen socket. Errors are one line naming the
    /// address, e.g. `cannot listen on 127.0.0.1:5000: address already in use; pick another
    /// --listen port`.
    pub fn bind(args: &NetsimArgs) -> anyhow::Result<Self> {
        let cfg = args.link_config()?;
        let run_time = args.run_time()?;
        if args.forward.port() == 0 {
            bail!("--forward {} needs a port other than 0", args.forward);
        }
        if args.forward == args.listen {
            bail!(
                "--forward {} is the --listen address: that would loop",
                args.forward
            );
        }
        let poll = Poll::new().context("cannot create the event loop")?;
        let mut listen = bind_udp(args.listen).map_err(|e| {
            anyhow::anyhow!(
                "cannot listen on {}: {}",
                args.listen,
                describe_bind_error(&e, "; pick another --listen port")
            )
        })?;
        let listen_addr = listen
            .local_addr()
            .with_context(|| format!("cannot read the address bound for {}", args.listen))?;
        poll.registry()
            .register(&mut listen, LISTEN, Interest::READABLE | Interest::WRITABLE)
            .context("cannot register the listen socket")?;
        log::info!(
            "netsim: listening on {listen_addr}, forwarding to {}, impairments {cfg:?}, seed {}",
            args.forward,
            args.seed
        );
        Ok(Self {
            poll,
            events: Events::with_capacity(256),
            listen,
            listen_addr,
            forward: args.forward,
            run_time,
            clients: HashMap::new(),
            by_token: HashMap::new(),
            next_token: 1,
            up: Link::new(cfg.clone(), args.seed),
            down: Link::new(cfg, args.seed ^ DOWNSTREAM_SEED_MIX),
            pending_up: None,
            pending_down: None,
            unread: BTreeSet::new(),
            buf: vec![0; MAX_DATAGRAM],
            last_sweep: None,
            stats: NetsimStats::default(),
        })
    }

    /// The address clients should send to (the real port when `--listen` had port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.listen_addr
    }

    /// Runs the proxy until `--duration` elapses or `stop` is set (checked at least every
    /// [`MAX_POLL_WAIT`]), then returns the counters. Datagrams still in flight are dropped.
    pub fn run(mut self, stop: &AtomicBool) -> anyhow::Result<NetsimStats> {
        let start = Instant::now();
        let end = self.run_time.and_then(|d| start.checked_add(d));
        loop {
            let now = Instant::now();
            if stop.load(Ordering::Relaxed) || end.is_some_and(|e| now >= e) {
                break;
            }
            let timeout = self.poll_wait(now, end);
            if let Err(e) = self.poll.poll(&mut self.events, Some(timeout)) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e).context("netsim: waiting for socket events failed");
            }
            let now = Instant::now();
            let mut ready: BTreeSet<Token> = std::mem::take(&mut self.unread);
            ready.extend(
                self.events
                    .iter()
                    .filter(|e| e.is_readable())
                    .map(|e| e.token()),
            );
            for token in ready {
                if token == LISTEN {
                    self.read_clients(now);
                } else {
                    self.read_upstream(token, now);
                }
            }
            self.flush(now);
            self.sweep(now);
        }
        Ok(self.stats())
    }
}

/// Binds and runs the proxy until `--duration` elapses or `stop` is set.
pub fn run_netsim(args: &NetsimArgs, stop: &AtomicBool) -> anyhow::Result<NetsimStats> {
    Netsim::bind(args)?.run(stop)
}

/// Runs [`run_netsim`] on a new thread named `netsim`. To learn the bound address when
/// `--listen` has port 0, use [`Netsim::bind`] then [`Netsim::local_addr`] instead.
///
/// # Panics
/// If the OS cannot create a thread, as [`std::thread::spawn`] does.
pub fn spawn_netsim(
    args: NetsimArgs,
    stop: Arc<AtomicBool>,
) -> JoinHandle<anyhow::Result<NetsimStats>> {
    std::thread::Builder::new()
        .name("netsim".into())
        .spawn(move || run_netsim(&args, &stop))
        .expect("cannot spawn the netsim thread")
}
