//! The proxy loop's steps: reading clients and replies into the links, opening and expiring
//! client mappings, sending what the links release (waiting for WRITABLE on `WouldBlock`),
//! and the sockets themselves.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

use bytes::Bytes;
use mio::net::UdpSocket;
use mio::{Interest, Token};
use socket2::{Domain, Protocol, Socket, Type};

use super::{
    CLIENT_IDLE_TIMEOUT, LISTEN, MAX_CLIENTS, MAX_POLL_WAIT, Netsim, READ_BUDGET, SOCKET_BUFFER,
    SWEEP_EVERY, Viewer,
};

impl Netsim {
    /// How long the next poll may wait: until the soonest link deadline of a direction that
    /// is not waiting for WRITABLE, at most [`MAX_POLL_WAIT`], not past the end of the run,
    /// and not at all when a socket still has unread datagrams.
    pub(super) fn poll_wait(&self, now: Instant, end: Option<Instant>) -> Duration {
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
    pub(super) fn read_clients(&mut self, now: Instant) {
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
    pub(super) fn read_upstream(&mut self, token: Token, now: Instant) {
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
    pub(super) fn flush(&mut self, now: Instant) {
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
    pub(super) fn sweep(&mut self, now: Instant) {
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
pub(super) fn bind_udp(addr: SocketAddr) -> io::Result<UdpSocket> {
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
pub(super) fn upstream_bind_addr(forward: SocketAddr) -> SocketAddr {
    let ip = match (forward.ip(), forward.ip().is_loopback()) {
        (IpAddr::V4(_), true) => IpAddr::V4(Ipv4Addr::LOCALHOST),
        (IpAddr::V4(_), false) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        (IpAddr::V6(_), true) => IpAddr::V6(Ipv6Addr::LOCALHOST),
        (IpAddr::V6(_), false) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    };
    SocketAddr::new(ip, 0)
}

pub(super) fn describe_bind_error(e: &io::Error, in_use_hint: &str) -> String {
    match e.kind() {
        io::ErrorKind::AddrInUse => format!("address already in use{in_use_hint}"),
        io::ErrorKind::AddrNotAvailable => "address not available on this machine".into(),
        io::ErrorKind::PermissionDenied => "permission denied".into(),
        _ => e.to_string(),
    }
}
