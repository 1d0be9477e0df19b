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
//! The emulator stays sans-IO; this file is the thin mio driver: wait until the soonest link
//! deadline (at most [`MAX_POLL_WAIT`], so the stop flag is seen), take `Instant::now()` once
//! per wake-up, drain reads until `WouldBlock` into the links, then pop due items and send
//! them. A send that hits `WouldBlock` keeps its item and that direction waits for the
//! socket's WRITABLE event (it does not spin); while it waits, later items of that direction
//! wait behind it, as on a real FIFO path.

use std::collections::{BTreeSet, HashMap};
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use mio::net::UdpSocket;
use mio::{Events, Interest, Poll, Token};
use serde::Serialize;
use socket2::{Domain, Protocol, Socket, Type};

use crate::sim::netem::{GilbertElliott, Link, LinkConfig, LinkStats};

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

/// Command-line flags of `framecast netsim`. Percentages are `0..=100`.
#[derive(clap::Args, Debug, Clone, PartialEq)]
pub struct NetsimArgs {
    /// Address to receive client datagrams on (port 0 picks a free port).
    #[arg(long, value_name = "ADDR")]
    pub listen: SocketAddr,
    /// Address to forward client datagrams to; its replies go back to the client.
    #[arg(long, value_name = "ADDR")]
    pub forward: SocketAddr,
    /// Loss in percent, each direction.
    #[arg(long, default_value_t = 0.0, value_name = "PCT")]
    pub loss: f64,
    /// Mean loss burst length in datagrams: with it, `--loss` follows a Gilbert-Elliott
    /// burst model instead of independent losses.
    #[arg(long, value_name = "LEN")]
    pub burst: Option<f64>,
    /// One-way delay in milliseconds, each direction.
    #[arg(long, default_value_t = 0, value_name = "MS")]
    pub delay: u64,
    /// Jitter in milliseconds (uniform +/- around `--delay`; never reorders by itself).
    #[arg(long, default_value_t = 0, value_name = "MS")]
    pub jitter: u64,
    /// Percentage of datagrams held back by `--reorder-delay` so later ones overtake them.
    #[arg(long, default_value_t = 0.0, value_name = "PCT")]
    pub reorder: f64,
    /// Extra delay of a reordered datagram, in milliseconds.
    #[arg(long, default_value_t = 20, value_name = "MS")]
    pub reorder_delay: u64,
    /// Percentage of datagrams delivered twice.
    #[arg(long, default_value_t = 0.0, value_name = "PCT")]
    pub duplicate: f64,
    /// Bottleneck rate in kbit/s, each direction (unlimited when absent).
    #[arg(long, value_name = "N")]
    pub rate_kbps: Option<u64>,
    /// Bottleneck queue size in bytes (tail drop), used with `--rate-kbps`.
    #[arg(long, default_value_t = crate::sim::netem::DEFAULT_QUEUE_BYTES, value_name = "BYTES")]
    pub queue_bytes: usize,
    /// Seed of the impairments: the same seed and the same traffic give the same losses.
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub seed: u64,
    /// Stop after this many seconds (runs until interrupted when absent).
    #[arg(long, value_name = "S")]
    pub duration: Option<f64>,
    /// Write figures as JSON to this file at exit.
    #[arg(long, value_name = "FILE")]
    pub stats_json: Option<std::path::PathBuf>,
}

impl NetsimArgs {
    /// Flags for a perfect proxy from `listen` to `forward` (every impairment off, seed 1):
    /// the same values as the command-line defaults.
    pub fn new(listen: SocketAddr, forward: SocketAddr) -> Self {
        Self {
            listen,
            forward,
            loss: 0.0,
            burst: None,
            delay: 0,
            jitter: 0,
            reorder: 0.0,
            reorder_delay: 20,
            duplicate: 0.0,
            rate_kbps: None,
            queue_bytes: crate::sim::netem::DEFAULT_QUEUE_BYTES,
            seed: 1,
            duration: None,
            stats_json: None,
        }
    }

    /// The emulator config both directions use, after checking the flags' ranges.
    pub fn link_config(&self) -> anyhow::Result<LinkConfig> {
        let loss = percent("--loss", self.loss)?;
        let reorder = percent("--reorder", self.reorder)?;
        let duplicate = percent("--duplicate", self.duplicate)?;
        let (loss, burst) = match self.burst {
            None => (loss, None),
            Some(len) if len.is_finite() && len >= 1.0 => {
                (0.0, Some(GilbertElliott::new(loss, len)))
            }
            Some(len) => bail!("--burst must be a mean burst length of at least 1, not {len}"),
        };
        let rate_bps = match self.rate_kbps {
            None => None,
            Some(0) => bail!("--rate-kbps must be above 0 (leave it out for no limit)"),
            Some(kbps) => Some(kbps.saturating_mul(1000)),
        };
        Ok(LinkConfig {
            delay: Duration::from_millis(self.delay),
            jitter: Duration::from_millis(self.jitter),
            loss,
            burst,
            reorder,
            reorder_delay: Duration::from_millis(self.reorder_delay),
            duplicate,
            rate_bps,
            queue_bytes: self.queue_bytes,
        })
    }

    /// `--duration` as a [`Duration`], after checking it.
    pub fn run_time(&self) -> anyhow::Result<Option<Duration>> {
        match self.duration {
            None => Ok(None),
            Some(s) => Duration::try_from_secs_f64(s).map(Some).map_err(|_| {
                anyhow::anyhow!("--duration must be a number of seconds >= 0, not {s}")
            }),
        }
    }
}

fn percent(flag: &str, pct: f64) -> anyhow::Result<f64> {
    if !(0.0..=100.0).contains(&pct) {
        bail!("{flag} must be a percentage between 0 and 100, not {pct}");
    }
    Ok(pct / 100.0)
}

/// What a proxy run did. The link counters are summed over both directions; the
/// per-direction ones are in `upstream` (client to `--forward`) and `downstream`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct NetsimStats {
    /// Datagrams put on a link, both directions.
    pub sent: u64,
    /// Datagrams (duplicates included) that left a link, both directions.
    pub delivered: u64,
    /// Random losses, both directions.
    pub lost: u64,
    /// Burst losses, both directions.
    pub burst_lost: u64,
    /// Bottleneck tail drops, both directions.
    pub queue_dropped: u64,
    /// Duplicates made, both directions.
    pub duplicated: u64,
    /// Datagrams held back for reordering, both directions.
    pub reordered: u64,
    /// Datagrams read from the sockets and put on a link.
    pub datagrams_in: u64,
    /// Datagrams written to the sockets.
    pub datagrams_out: u64,
    /// UDP payload bytes of the datagrams counted in `datagrams_in` (both directions): what
    /// the endpoints put on the wire, before any loss.
    pub bytes_in: u64,
    /// Viewer mappings created.
    pub clients: u64,
    /// Viewer mappings removed after [`CLIENT_IDLE_TIMEOUT`].
    pub clients_expired: u64,
    /// Datagrams dropped because [`MAX_CLIENTS`] mappings existed or an upstream socket
    /// could not be opened.
    pub clients_rejected: u64,
    /// Datagrams reaching an upstream socket from an address other than `--forward`.
    pub foreign_dropped: u64,
    /// Upstream datagrams dropped because their client mapping had expired meanwhile.
    pub unmapped_dropped: u64,
    /// Datagrams dropped on a send error other than `WouldBlock`.
    pub send_errors: u64,
    /// Receive errors other than `WouldBlock` and `Interrupted`.
    pub recv_errors: u64,
    /// The client-to-`--forward` link.
    pub upstream: LinkStats,
    /// The `--forward`-to-client link.
    pub downstream: LinkStats,
}

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

    /// The counters so far.
    pub fn stats(&self) -> NetsimStats {
        let (up, down) = (self.up.stats(), self.down.stats());
        let mut both = up;
        both += down;
        NetsimStats {
            sent: both.sent,
            delivered: both.delivered,
            lost: both.lost,
            burst_lost: both.burst_lost,
            queue_dropped: both.queue_dropped,
            duplicated: both.duplicated,
            reordered: both.reordered,
            upstream: up,
            downstream: down,
            ..self.stats
        }
    }

    /// How long the next poll may wait: until the soonest link deadline of a direction that
    /// is not waiting for WRITABLE, at most [`MAX_POLL_WAIT`], not past the end of the run,
    /// and not at all when a socket still has unread datagrams.
    fn poll_wait(&self, now: Instant, end: Option<Instant>) -> Duration {
        if !self.unread.is_empty() {
            return Duration::ZERO;
        }
        let mut wait = MAX_POLL_WAIT;
        let deadlines = [
            self.pending_up.is_none().then(|| self.up.poll_timeout()),
            self.pending_down
                .is_none()
                .then(|| self.down.poll_timeout()),
            Some(end),
        ];
        for deadline in deadlines.into_iter().flatten().flatten() {
            wait = wait.min(deadline.saturating_duration_since(now));
        }
        wait
    }

    /// Drains the listen socket into the upstream link, opening mappings as needed.
    fn read_clients(&mut self, now: Instant) {
        for _ in 0..READ_BUDGET {
            let (len, from) = match self.listen.recv_from(&mut self.buf) {
                Ok(r) => r,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    self.stats.recv_errors += 1;
                    log::warn!("netsim: receive on {} failed: {e}", self.listen_addr);
                    return;
                }
            };
            if !self.ensure_client(from, now) {
                self.stats.clients_rejected += 1;
                continue;
            }
            self.stats.datagrams_in += 1;
            self.stats.bytes_in += len as u64;
            let payload = Bytes::copy_from_slice(&self.buf[..len]);
            self.up.send(now, (from, payload), len);
        }
        self.unread.insert(LISTEN);
    }

    /// Makes sure `client` has a mapping; `false` if it cannot get one.
    fn ensure_client(&mut self, client: SocketAddr, now: Instant) -> bool {
        if let Some(c) = self.clients.get_mut(&client) {
            c.last_seen = now;
            return true;
        }
        if self.clients.len() >= MAX_CLIENTS {
            self.expire_idle(now);
            if self.clients.len() >= MAX_CLIENTS {
                log::warn!("netsim: {MAX_CLIENTS} clients mapped already; dropping from {client}");
                return false;
            }
        }
        let local = upstream_bind_addr(self.forward);
        let mut socket = match bind_udp(local) {
            Ok(s) => s,
            Err(e) => {
                log::warn!(
                    "netsim: cannot bind an upstream socket on {local} for {client}: {}",
                    describe_bind_error(&e, "")
                );
                return false;
            }
        };
        let token = Token(self.next_token);
        self.next_token += 1;
        let interest = Interest::READABLE | Interest::WRITABLE;
        if let Err(e) = self.poll.registry().register(&mut socket, token, interest) {
            log::warn!("netsim: cannot register the upstream socket for {client}: {e}");
            return false;
        }
        log::debug!(
            "netsim: client {client} mapped to upstream {:?}",
            socket.local_addr().ok()
        );
        self.stats.clients += 1;
        self.by_token.insert(token, client);
        self.clients.insert(
            client,
            Viewer {
                socket,
                token,
                last_seen: now,
            },
        );
        true
    }

    /// Drains one client's upstream socket into the downstream link.
    fn read_upstream(&mut self, token: Token, now: Instant) {
        let Some(&client) = self.by_token.get(&token) else {
            return;
        };
        let Some(c) = self.clients.get_mut(&client) else {
            return;
        };
        for _ in 0..READ_BUDGET {
            let (len, from) = match c.socket.recv_from(&mut self.buf) {
                Ok(r) => r,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    self.stats.recv_errors += 1;
                    log::warn!("netsim: receive on the upstream socket of {client} failed: {e}");
                    return;
                }
            };
            if from != self.forward {
                self.stats.foreign_dropped += 1;
                continue;
            }
            c.last_seen = now;
            self.stats.datagrams_in += 1;
            self.stats.bytes_in += len as u64;
            let payload = Bytes::copy_from_slice(&self.buf[..len]);
            self.down.send(now, (client, payload), len);
        }
        self.unread.insert(token);
    }

    /// Sends every item due at `now`, both directions, parking one on `WouldBlock`.
    fn flush(&mut self, now: Instant) {
        // Upstream: through the client's own socket to --forward.
        while let Some((client, payload)) =
            self.pending_up.take().or_else(|| self.up.poll_recv(now))
        {
            let Some(c) = self.clients.get(&client) else {
                self.stats.unmapped_dropped += 1;
                continue;
            };
            match send(&c.socket, &payload, self.forward) {
                SendOutcome::Sent => self.stats.datagrams_out += 1,
                SendOutcome::Blocked => {
                    self.pending_up = Some((client, payload));
                    break;
                }
                SendOutcome::Failed(e) => {
                    self.stats.send_errors += 1;
                    log::warn!(
                        "netsim: send from {client}'s mapping to {} failed: {e}",
                        self.forward
                    );
                }
            }
        }
        // Downstream: through the listen socket back to the client.
        while let Some((client, payload)) = self
            .pending_down
            .take()
            .or_else(|| self.down.poll_recv(now))
        {
            match send(&self.listen, &payload, client) {
                SendOutcome::Sent => self.stats.datagrams_out += 1,
                SendOutcome::Blocked => {
                    self.pending_down = Some((client, payload));
                    break;
                }
                SendOutcome::Failed(e) => {
                    self.stats.send_errors += 1;
                    log::warn!("netsim: send to client {client} failed: {e}");
                }
            }
        }
    }

    /// Expires idle mappings, at most once per [`SWEEP_EVERY`].
    fn sweep(&mut self, now: Instant) {
        if self
            .last_sweep
            .is_some_and(|t| now.saturating_duration_since(t) < SWEEP_EVERY)
        {
            return;
        }
        self.last_sweep = Some(now);
        self.expire_idle(now);
    }

    fn expire_idle(&mut self, now: Instant) {
        let idle: Vec<SocketAddr> = self
            .clients
            .iter()
            .filter(|(_, c)| now.saturating_duration_since(c.last_seen) >= CLIENT_IDLE_TIMEOUT)
            .map(|(a, _)| *a)
            .collect();
        for client in idle {
            if let Some(mut c) = self.clients.remove(&client) {
                // Deregistering only fails if the socket was never registered.
                let _ = self.poll.registry().deregister(&mut c.socket);
                self.by_token.remove(&c.token);
                self.unread.remove(&c.token);
                self.stats.clients_expired += 1;
                log::debug!("netsim: client {client} idle, mapping removed");
            }
        }
    }
}

enum SendOutcome {
    Sent,
    Blocked,
    Failed(io::Error),
}

/// One `send_to`, retried on `Interrupted`.
fn send(socket: &UdpSocket, payload: &[u8], to: SocketAddr) -> SendOutcome {
    loop {
        match socket.send_to(payload, to) {
            Ok(_) => return SendOutcome::Sent,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return SendOutcome::Blocked,
            Err(e) => return SendOutcome::Failed(e),
        }
    }
}

/// A non-blocking UDP socket bound to `addr`, with large buffers when the kernel allows.
fn bind_udp(addr: SocketAddr) -> io::Result<UdpSocket> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    // Best effort: the kernel caps these (net.core.rmem_max), which is fine.
    let _ = socket.set_recv_buffer_size(SOCKET_BUFFER);
    let _ = socket.set_send_buffer_size(SOCKET_BUFFER);
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    Ok(UdpSocket::from_std(socket.into()))
}

/// Where an upstream socket binds: an ephemeral port on loopback when `--forward` is a
/// loopback address, else on the unspecified address, of the same family as `--forward`.
fn upstream_bind_addr(forward: SocketAddr) -> SocketAddr {
    let ip = match (forward.ip(), forward.ip().is_loopback()) {
        (IpAddr::V4(_), true) => IpAddr::V4(Ipv4Addr::LOCALHOST),
        (IpAddr::V4(_), false) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        (IpAddr::V6(_), true) => IpAddr::V6(Ipv6Addr::LOCALHOST),
        (IpAddr::V6(_), false) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    };
    SocketAddr::new(ip, 0)
}

fn describe_bind_error(e: &io::Error, in_use_hint: &str) -> String {
    match e.kind() {
        io::ErrorKind::AddrInUse => format!("address already in use{in_use_hint}"),
        io::ErrorKind::AddrNotAvailable => "address not available on this machine".into(),
        io::ErrorKind::PermissionDenied => "permission denied".into(),
        _ => e.to_string(),
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

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: NetsimArgs,
    }

    fn parse(extra: &[&str]) -> anyhow::Result<NetsimArgs> {
        let base = [
            "netsim",
            "--listen",
            "127.0.0.1:0",
            "--forward",
            "127.0.0.1:9",
        ];
        let argv = base.iter().chain(extra).copied();
        Ok(Cli::try_parse_from(argv)?.args)
    }

    #[test]
    fn flags_parse_into_a_link_config() -> anyhow::Result<()> {
        let args = parse(&[
            "--loss",
            "5",
            "--delay",
            "30",
            "--jitter",
            "4",
            "--reorder",
            "1",
            "--duplicate",
            "0.5",
            "--rate-kbps",
            "2000",
            "--seed",
            "9",
            "--duration",
            "1.5",
        ])?;
        let cfg = args.link_config()?;
        assert_eq!(cfg.loss, 0.05);
        assert_eq!(cfg.burst, None);
        assert_eq!(cfg.delay, Duration::from_millis(30));
        assert_eq!(cfg.jitter, Duration::from_millis(4));
        assert_eq!(cfg.reorder, 0.01);
        assert_eq!(cfg.duplicate, 0.005);
        assert_eq!(cfg.rate_bps, Some(2_000_000));
        assert_eq!(args.seed, 9);
        assert_eq!(args.run_time()?, Some(Duration::from_millis(1500)));

        let burst = parse(&["--loss", "10", "--burst", "4"])?.link_config()?;
        assert_eq!(burst.loss, 0.0);
        assert_eq!(burst.burst, Some(GilbertElliott::new(0.1, 4.0)));

        let defaults = parse(&[])?;
        assert_eq!(
            defaults,
            NetsimArgs::new(defaults.listen, defaults.forward),
            "NetsimArgs::new matches the command-line defaults"
        );
        assert_eq!(
            defaults.link_config()?,
            LinkConfig {
                reorder_delay: Duration::from_millis(20),
                ..LinkConfig::default()
            }
        );
        Ok(())
    }

    #[test]
    fn bad_flags_are_refused_with_the_flag_named() {
        let cases: [(&[&str], &str); 5] = [
            (&["--loss", "150"], "--loss"),
            (&["--duplicate=-1"], "--duplicate"),
            (&["--burst", "0.5"], "--burst"),
            (&["--rate-kbps", "0"], "--rate-kbps"),
            (&["--duration=-2"], "--duration"),
        ];
        for (flags, name) in cases {
            let err = parse(flags)
                .and_then(|a| Netsim::bind(&a).map(|_| ()))
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(err.contains(name), "{flags:?} gave {err:?}");
        }
    }

    #[test]
    fn upstream_sockets_follow_the_forward_family() -> anyhow::Result<()> {
        let bind_for = |forward: &str| -> anyhow::Result<String> {
            Ok(upstream_bind_addr(forward.parse()?).to_string())
        };
        assert_eq!(bind_for("127.0.0.1:5000")?, "127.0.0.1:0");
        assert_eq!(bind_for("[::1]:5000")?, "[::1]:0");
        assert_eq!(bind_for("192.0.2.1:5000")?, "0.0.0.0:0");
        assert_eq!(bind_for("[2001:db8::1]:5000")?, "[::]:0");
        Ok(())
    }
}
