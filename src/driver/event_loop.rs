//! The mio event loop that drives any sans-IO [`Node`] over one UDP socket.
//!
//! Per wake-up: take `now` once, drain reads into `handle_datagram` (until `WouldBlock`,
//! retrying on `Interrupted`), call `handle_timeout`, let the role's hook feed inputs and
//! take events, then drain `poll_transmit` (a datagram that meets `WouldBlock` is parked
//! until the socket is WRITABLE). Media threads wake the loop through a [`mio::Waker`].

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use mio::net::UdpSocket;
use mio::{Events, Interest, Poll, Token, Waker};
use serde::Serialize;

use super::batch::{BATCH, send_batch};
use crate::proto::node::{Node, Transmit, soonest};

const SOCKET: Token = Token(0);
const WAKER: Token = Token(1);
/// The loop wakes at least this often to check the stop flag.
const MAX_WAIT: Duration = Duration::from_millis(50);
/// Reads per wake-up before transmits get a turn.
const READ_BUDGET: usize = 4096;

/// Socket-level counters of a loop.
#[derive(Debug, Clone, Default, Serialize)]
pub struct IoStats {
    /// Datagrams received.
    pub received: u64,
    /// Datagrams sent.
    pub sent: u64,
    /// Sends that met a full socket buffer (the datagram waited).
    pub would_block: u64,
    /// Sends that failed (e.g. ICMP port unreachable from a departed viewer).
    pub send_errors: u64,
    /// `sendmmsg` calls (datagrams sent per call = sent / batches).
    pub batches: u64,
}

/// What the role's hook tells the loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoopControl {
    /// Keep running; wake the hook again by this instant at the latest.
    Continue(Option<Instant>),
    /// Stop the loop.
    Stop,
}

/// A node bound to a socket.
#[derive(Debug)]
pub struct EventLoop<N> {
    poll: Poll,
    socket: UdpSocket,
    waker: Arc<Waker>,
    node: N,
    parked: std::collections::VecDeque<Transmit>,
    batch_size: usize,
    writable_wanted: bool,
    buf: Vec<u8>,
    stats: IoStats,
}

impl<N: Node> EventLoop<N> {
    /// Wraps a bound socket and a node.
    pub fn new(mut socket: UdpSocket, node: N) -> io::Result<EventLoop<N>> {
        let poll = Poll::new()?;
        poll.registry()
            .register(&mut socket, SOCKET, Interest::READABLE)?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        Ok(EventLoop {
            poll,
            socket,
            waker,
            node,
            parked: std::collections::VecDeque::new(),
            batch_size: BATCH,
            writable_wanted: false,
            buf: vec![0u8; 65_536],
            stats: IoStats::default(),
        })
    }

    /// A handle media threads use to wake the loop after queueing input.
    pub fn waker(&self) -> Arc<Waker> {
        self.waker.clone()
    }

    /// The local address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.socket.local_addr()
    }

    /// The node.
    pub fn node(&self) -> &N {
        &self.node
    }

    /// The node, mutably.
    pub fn node_mut(&mut self) -> &mut N {
        &mut self.node
    }

    /// Datagrams per send system call, 1 to [`BATCH`] (1 turns batching off; for
    /// side-by-side comparisons).
    pub fn set_batch_size(&mut self, n: usize) {
        self.batch_size = n.clamp(1, BATCH);
    }

    /// Socket counters.
    pub fn io_stats(&self) -> &IoStats {
        &self.stats
    }

    /// Sends one datagram right away, outside the node (e.g. a BYE at shutdown).
    pub fn send_now(&mut self, t: &Transmit) {
        if self.socket.send_to(&t.payload, t.dest).is_ok() {
            self.stats.sent += 1;
        }
    }

    /// Runs until `stop` is set or the hook says stop. The hook runs after every wake-up,
    /// with the node and the wake-up's `now`.
    pub fn run(
        &mut self,
        stop: &AtomicBool,
        mut hook: impl FnMut(&mut N, Instant) -> LoopControl,
    ) -> io::Result<()> {
        let mut events = Events::with_capacity(256);
        loop {
            let now = Instant::now();
            self.read_all(now)?;
            self.node.handle_timeout(now);
            let hook_deadline = match hook(&mut self.node, now) {
                LoopControl::Stop => return Ok(()),
                LoopControl::Continue(t) => t,
            };
            self.flush(now)?;
            if stop.load(Ordering::Relaxed) {
                return Ok(());
            }
            let deadline = soonest(self.node.poll_timeout(), hook_deadline);
            let now = Instant::now();
            let wait =
                deadline.map_or(MAX_WAIT, |d| d.saturating_duration_since(now).min(MAX_WAIT));
            match self.poll.poll(&mut events, Some(wait)) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    fn read_all(&mut self, now: Instant) -> io::Result<()> {
        for _ in 0..READ_BUDGET {
            match self.socket.recv_from(&mut self.buf) {
                Ok((n, from)) => {
                    self.stats.received += 1;
                    self.node.handle_datagram(now, from, &self.buf[..n]);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                // ICMP errors surface on the next recv on Linux; they concern one peer.
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => continue,
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    fn flush(&mut self, now: Instant) -> io::Result<()> {
        let mut batch: Vec<Transmit> = Vec::with_capacity(BATCH);
        loop {
            // Parked datagrams first, in order, then whatever the node has ready.
            while batch.len() < self.batch_size {
                match self
                    .parked
                    .pop_front()
                    .or_else(|| self.node.poll_transmit(now))
                {
                    Some(t) => batch.push(t),
                    None => break,
                }
            }
            if batch.is_empty() {
                break;
            }
            match send_batch(&self.socket, &batch) {
                Ok(k) => {
                    self.stats.sent += k as u64;
                    self.stats.batches += 1;
                    batch.drain(..k);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    // The socket buffer is full: keep the rest, in order, for WRITABLE.
                    self.stats.would_block += 1;
                    for t in batch.drain(..).rev() {
                        self.parked.push_front(t);
                    }
                    break;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    // The first datagram's destination refused it (e.g. ICMP unreachable from
                    // a departed viewer); that concerns one peer only.
                    self.stats.send_errors += 1;
                    batch.remove(0);
                }
            }
        }
        let want = !self.parked.is_empty();
        if want != self.writable_wanted {
            let interest = if want {
                Interest::READABLE | Interest::WRITABLE
            } else {
                Interest::READABLE
            };
            self.poll
                .registry()
                .reregister(&mut self.socket, SOCKET, interest)?;
            self.writable_wanted = want;
        }
        Ok(())
    }
}
