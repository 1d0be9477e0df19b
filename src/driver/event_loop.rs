//! The mio event loop that drives any sans-IO [`Node`] over one UDP socket.
//!
//! Per wake-up: take `now` once, drain reads into `handle_datagram` (`recvmmsg` batches,
//! GRO super-datagrams cut back into datagrams by [`Receiver`]; until `WouldBlock`, retrying
//! on `Interrupted`; only when the socket was reported readable or the last drain stopped
//! at its budget, so a timer wake-up costs no `recvmmsg` that would return `EAGAIN`), call `handle_timeout`, let the role's hook feed inputs and take
//! events, then drain `poll_transmit` into a queue that [`Sender`] sends grouped by
//! destination, each destination's runs as GSO super-datagrams (what meets `WouldBlock`
//! stays queued until the socket is WRITABLE). Media threads wake the loop through a
//! [`mio::Waker`].

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use mio::net::UdpSocket;
use mio::{Events, Interest, Poll, Token, Waker};
use serde::Serialize;

use super::batch::{Flushed, SendStats, Sender};
use super::recv::Receiver;
use super::send_pool::{AutoScale, SendPool, thread_cpu_time};
use crate::proto::node::{Node, Transmit, soonest};

const SOCKET: Token = Token(0);
const WAKER: Token = Token(1);
/// The loop wakes at least this often to check the stop flag.
const MAX_WAIT: Duration = Duration::from_millis(50);
/// Datagrams read per wake-up before transmits get a turn.
const READ_BUDGET: usize = 4096;
/// Most datagrams taken from the node per send round. The relay core hands out a
/// subscriber's queued frame back to back (proto-spec.md §7.3), so a destination's run (a
/// GSO super-datagram) stays whole in a round of a few thousand. Only references are held
/// (64 bytes a datagram), and only until the kernel takes them.
const PULL_MAX: usize = 32_768;
/// Fewest datagrams taken per send round: enough that each of a few hundred subscribers'
/// datagrams leave a few at a time (GSO runs).
const PULL_MIN: usize = 1024;
/// What a send round may last, wall clock: what is taken from the node has passed its
/// queue-time checks (§7.3, overload) when it is taken, so a round that took longer than
/// this (a relay short of CPU, e.g. under a cgroup quota, sends slowly) would send frames
/// later than those checks allowed for. The round's size follows the send rate measured.
const PULL_SPAN: Duration = Duration::from_millis(8);
/// What one flush may last before the socket is read again (see [`EventLoop::flush`]).
const FLUSH_SPAN: Duration = Duration::from_millis(4);
/// Transmits pulled from the node between two clock reads while draining it.
const CLOCK_EVERY: usize = 64;

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
    /// GSO super-datagrams sent (several datagrams in one `sendmmsg` entry).
    pub gso_sends: u64,
    /// Whether sends still use GSO (false when off from the start or after a fallback).
    pub gso: bool,
    /// `recvmmsg` calls that returned something.
    pub recv_calls: u64,
    /// GRO super-datagrams received (several datagrams of one sender in one buffer).
    pub gro_receives: u64,
    /// Whether GRO is on for the socket.
    pub gro: bool,
    /// Most sender threads used at once (0: the loop always sent itself).
    pub send_threads: usize,
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
    /// Datagrams taken from the node and not yet sent (waiting for WRITABLE when the
    /// socket buffer is full).
    pending: Vec<Transmit>,
    sender: Sender,
    send_stats: SendStats,
    /// Sender threads, when sends are spread over more cores ([`EventLoop::set_send_threads`]).
    pool: Option<SendPool>,
    /// Most sender threads [`AutoScale`] may start (0: no automatic threads).
    auto_threads: usize,
    auto: AutoScale,
    /// When the loop's busy share was last measured, and its thread's CPU time then.
    busy_mark: Option<(Instant, Duration)>,
    threads_peak: usize,
    receiver: Receiver,
    writable_wanted: bool,
    stats: IoStats,
    /// Datagrams taken from the node per send round (what [`PULL_SPAN`] allows at the
    /// measured rate).
    pull: usize,
    /// Smoothed wall time per datagram sent, ns (0: not measured yet).
    send_ns: f64,
}

impl<N: Node> EventLoop<N> {
    /// Wraps a bound socket and a node. GSO and GRO are used where the kernel has them
    /// unless `FRAMECAST_NO_GSO` / `FRAMECAST_NO_GRO` say otherwise (see [`Sender`],
    /// [`Receiver`]).
    pub fn new(mut socket: UdpSocket, node: N) -> io::Result<EventLoop<N>> {
        let sender = Sender::new(&socket, true);
        let receiver = Receiver::new(&socket, true);
        // When each datagram reached the socket: a loaded node reads late, and the relay's
        // time bound on a frame's wait (proto-spec.md §7.3) counts from the arrival.
        crate::driver::recv::enable_timestamps(&socket);
        let poll = Poll::new()?;
        poll.registry()
            .register(&mut socket, SOCKET, Interest::READABLE)?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        Ok(EventLoop {
            poll,
            socket,
            waker,
            node,
            pending: Vec::new(),
            sender,
            send_stats: SendStats::default(),
            pool: None,
            auto_threads: 0,
            auto: AutoScale::default(),
            busy_mark: None,
            threads_peak: 0,
            receiver,
            writable_wanted: false,
            stats: IoStats::default(),
            pull: PULL_MAX / 8,
            send_ns: 0.0,
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

    /// Entries (GSO runs, or datagrams) per send system call, 1 to
    /// [`super::batch::BATCH`] (1 turns `sendmmsg` batching off; for side-by-side
    /// comparisons).
    pub fn set_batch_size(&mut self, n: usize) {
        self.sender.set_entries_per_call(n);
    }

    /// Turns GSO off for this socket (`false`); GSO cannot be turned back on once off.
    pub fn set_gso(&mut self, on: bool) {
        if !on {
            self.sender.disable_gso();
        }
    }

    /// Spreads sends over `threads` sender threads, each owning the destinations that hash
    /// to it (see [`SendPool`]); 0 sends on the loop's own thread (the default, and the
    /// cheapest while one core keeps up). The sans-IO node stays on the loop's thread.
    ///
    /// # Errors
    /// Duplicating the socket or starting a thread failed.
    pub fn set_send_threads(&mut self, threads: usize) -> io::Result<()> {
        if let Some(mut p) = self.pool.take() {
            let s = p.stop();
            self.send_stats.add(&s);
        }
        if threads > 0 {
            self.pool = Some(SendPool::start(&self.socket, threads, self.sender.gso())?);
        }
        self.threads_peak = self.threads_peak.max(self.send_threads());
        Ok(())
    }

    /// Starts sender threads as the load needs them, up to `max` (0: never): one more each
    /// time the loop's thread has been saturated for a while (see [`AutoScale`]). A loop
    /// one core carries never starts one.
    pub fn set_auto_send_threads(&mut self, max: usize) {
        self.auto_threads = max;
    }

    /// Sender threads now (0: the loop sends itself).
    pub fn send_threads(&self) -> usize {
        self.pool.as_ref().map_or(0, SendPool::threads)
    }

    /// Once a second: measures the loop thread's busy share and adds a sender thread when
    /// [`AutoScale`] says so.
    fn autoscale(&mut self, now: Instant) -> io::Result<()> {
        let threads = self.send_threads();
        if threads >= self.auto_threads {
            return Ok(());
        }
        let cpu = thread_cpu_time();
        let Some((t0, c0)) = self.busy_mark else {
            self.busy_mark = Some((now, cpu));
            return Ok(());
        };
        let wall = now.saturating_duration_since(t0);
        if wall < Duration::from_secs(1) {
            return Ok(());
        }
        self.busy_mark = Some((now, cpu));
        let busy = cpu.saturating_sub(c0).as_secs_f64() / wall.as_secs_f64();
        if self.auto.observe(busy) {
            self.set_send_threads(threads + 1)?;
            log::info!(
                "network loop busy {:.0}% of a core: sending on {} thread(s) now",
                busy * 100.0,
                threads + 1
            );
        }
        Ok(())
    }

    /// Socket counters.
    pub fn io_stats(&self) -> IoStats {
        let mut s = self.send_stats;
        if let Some(p) = &self.pool {
            s.add(&p.stats());
        }
        let s = &s;
        IoStats {
            sent: self.stats.sent + s.sent,
            would_block: s.would_block,
            send_errors: s.send_errors,
            batches: s.batches,
            gso_sends: s.gso_sends,
            gso: self.sender.gso() && self.pool.as_ref().is_none_or(|p| p.gso()),
            gro_receives: self.receiver.gro_receives(),
            gro: self.receiver.gro(),
            send_threads: self.threads_peak,
            ..self.stats.clone()
        }
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
        // Whether the socket may hold datagrams: at the start, after a readable (or error)
        // event, or after a drain that stopped at its budget. mio's readiness is
        // edge-triggered, so a drain to `WouldBlock` is followed by an event when more comes.
        let mut readable = true;
        loop {
            let now = Instant::now();
            if readable {
                readable = !self.read_all(now)?;
            }
            self.node.handle_timeout(now);
            let hook_deadline = match hook(&mut self.node, now) {
                LoopControl::Stop => return Ok(()),
                LoopControl::Continue(t) => t,
            };
            let more = self.flush(now)?;
            self.autoscale(now)?;
            if stop.load(Ordering::Relaxed) {
                return Ok(());
            }
            let deadline = soonest(self.node.poll_timeout(), hook_deadline);
            let now = Instant::now();
            // A flush cut short by its time bound goes on after a look at the socket.
            let wait = if more {
                Duration::ZERO
            } else {
                deadline.map_or(MAX_WAIT, |d| d.saturating_duration_since(now).min(MAX_WAIT))
            };
            match self.poll.poll(&mut events, Some(wait)) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
            readable |= events.iter().any(|e| {
                e.token() == SOCKET && (e.is_readable() || e.is_error() || e.is_read_closed())
            });
        }
    }

    /// Reads until `WouldBlock` or [`READ_BUDGET`] datagrams; true when drained.
    fn read_all(&mut self, now: Instant) -> io::Result<bool> {
        let mut read = 0;
        while read < READ_BUDGET {
            match self.receiver.recv(&self.socket) {
                Ok(_) => {
                    self.stats.recv_calls += 1;
                    let node = &mut self.node;
                    let n = self.receiver.for_each_at(|from, d, at| match at {
                        Some(at) => node.handle_datagram_at(now, at, from, d),
                        None => node.handle_datagram(now, from, d),
                    });
                    self.stats.received += n as u64;
                    read += n.max(1);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(true),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                // ICMP errors surface on the next recv on Linux; they concern one peer.
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => continue,
                Err(e) => return Err(e),
            }
        }
        Ok(false)
    }

    /// Learns the send rate from a round that sent `n` datagrams in `took`, and sizes the
    /// next rounds to last about [`PULL_SPAN`].
    fn measure_send(&mut self, n: usize, took: Duration) {
        // Small rounds say more about the call's fixed cost than about the rate.
        if n < 64 {
            return;
        }
        let ns = took.as_nanos() as f64 / n as f64;
        // Smoothed: a relay under a CPU quota stalls now and then, and one stalled round
        // says little about the next.
        self.send_ns = if self.send_ns == 0.0 {
            ns
        } else {
            (self.send_ns * 3.0 + ns) / 4.0
        };
        let fit = PULL_SPAN.as_nanos() as f64 / self.send_ns.max(1.0);
        self.pull = (fit as usize).clamp(PULL_MIN, PULL_MAX);
    }

    /// Sends what the node has, for at most about [`FLUSH_SPAN`]: true when it stopped
    /// there with more to send. What arrives meanwhile waits in the socket unstamped, and the
    /// node's time bound on a frame's wait (proto-spec.md §7.3) counts from when it reads
    /// it: a loaded relay that drained its queues for tens of milliseconds before reading
    /// again would send the frames behind them later than that bound allows.
    fn flush(&mut self, mut now: Instant) -> io::Result<bool> {
        let started = Instant::now();
        let mut more = false;
        loop {
            if started.elapsed() >= FLUSH_SPAN {
                more = true;
                break;
            }
            // What waited for WRITABLE goes first, on its own: while the socket is
            // congested the node keeps the rest, under its own (time-bounded) queues.
            if self.pending.is_empty() {
                while self.pending.len() < self.pull {
                    // The node sees the time each transmit leaves, not the wake-up's: a
                    // drain of a loaded relay's queues takes tens of milliseconds, and its
                    // time bound on a frame's wait (proto-spec.md §7.3) must see them.
                    if self.pending.len() % CLOCK_EVERY == 0 {
                        now = Instant::now().max(now);
                    }
                    match self.node.poll_transmit(now) {
                        Some(t) => self.pending.push(t),
                        None => break,
                    }
                }
            }
            if self.pending.is_empty() {
                break;
            }
            if let Some(pool) = &mut self.pool {
                pool.dispatch(&mut self.pending);
                continue;
            }
            let (before, t0) = (self.pending.len(), Instant::now());
            let flushed =
                self.sender
                    .send(&self.socket, &mut self.pending, &mut self.send_stats)?;
            self.measure_send(before - self.pending.len(), t0.elapsed());
            match flushed {
                Flushed::All => {}
                Flushed::Blocked => {
                    self.node.on_send_blocked(now);
                    break;
                }
            }
        }
        let want = !self.pending.is_empty();
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
        Ok(more && !want)
    }
}
