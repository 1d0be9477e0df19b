//! Sender threads: more than one core for a relay's fan-out when one is not enough.
//!
//! The sans-IO core stays on the event loop's thread (one state machine, no locks); what
//! leaves it is sharded by destination over N threads, each with its own [`Sender`] on a
//! duplicate of the loop's socket. Sharding by destination keeps every destination's
//! datagrams in order (one thread, one FIFO per destination) and lets each thread group a
//! destination's run into one GSO super-datagram.
//!
//! Why one shared socket rather than one `SO_REUSEPORT` socket per thread: sends through
//! one UDP socket from several threads take no socket lock in Linux (only corked sends do),
//! the datagrams keep the relay's one source address and port, and receiving stays on the
//! loop's thread; `SO_REUSEPORT` sockets would spread the *incoming* datagrams (publishers'
//! media, viewers' NACKs and reports) over the threads by address hash, which the single
//! core would then have to collect again.
//!
//! Back-pressure: each thread's queue holds at most [`QUEUED_BATCHES`] batches; when a
//! thread is that far behind, the loop waits for it, so the core's own bounded queues (and
//! their frame dropping) absorb the overload instead of an unbounded hand-off.

use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver as ChanRx, Sender as ChanTx};

use super::batch::{Flushed, SendStats, Sender};
use crate::proto::node::Transmit;

/// Share of one core the loop's thread may spend (measured over a second) before it counts
/// as saturated.
pub const SATURATED: f64 = 0.85;

/// Consecutive saturated seconds before [`AutoScale`] adds a sender thread.
pub const SATURATED_SECONDS: u32 = 2;

/// When to add a sender thread: after [`SATURATED_SECONDS`] seconds in a row in which the
/// loop's thread was busy more than [`SATURATED`] of the time. A relay that one core
/// carries never starts a thread (and pays nothing for the hand-off); once threads send,
/// the loop's own share falls, so it stops adding them when the core work fits again.
#[derive(Debug, Clone, Default)]
pub struct AutoScale {
    hot: u32,
}

impl AutoScale {
    /// Feeds one second's busy share (CPU time / wall time of the loop's thread, 0–1);
    /// true when a thread should be added now.
    pub fn observe(&mut self, busy: f64) -> bool {
        if busy > SATURATED {
            self.hot += 1;
        } else {
            self.hot = 0;
        }
        if self.hot >= SATURATED_SECONDS {
            self.hot = 0;
            return true;
        }
        false
    }
}

/// CPU time the calling thread has used.
pub fn thread_cpu_time() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(
        ts.tv_sec.max(0) as u64,
        ts.tv_nsec.clamp(0, 999_999_999) as u32,
    )
}

/// Batches queued per sender thread before the loop waits for it.
pub const QUEUED_BATCHES: usize = 4;

/// Most sender threads.
pub const MAX_SEND_THREADS: usize = 64;

/// How long a sender thread keeps trying one batch against a full socket buffer before
/// dropping what is left of it (counted in [`SendStats::dropped`]).
const BLOCKED_GIVE_UP: Duration = Duration::from_secs(1);

struct Shard {
    tx: Option<ChanTx<Vec<Transmit>>>,
    batch: Vec<Transmit>,
    stats: Arc<Mutex<SendStats>>,
    gso: Arc<std::sync::atomic::AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

/// N sender threads over one socket, each owning the destinations that hash to it.
pub struct SendPool {
    shards: Vec<Shard>,
    free: ChanRx<Vec<Transmit>>,
}

impl std::fmt::Debug for SendPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SendPool")
            .field("threads", &self.shards.len())
            .finish_non_exhaustive()
    }
}

impl SendPool {
    /// Starts `threads` (1 to [`MAX_SEND_THREADS`]) sender threads on duplicates of
    /// `socket`, GSO as `gso` allows (see [`Sender::new`]).
    ///
    /// # Errors
    /// Duplicating the socket or starting a thread failed.
    pub fn start(socket: &impl AsRawFd, threads: usize, gso: bool) -> io::Result<SendPool> {
        use std::os::fd::BorrowedFd;
        let threads = threads.clamp(1, MAX_SEND_THREADS);
        let (free_tx, free) = crossbeam_channel::bounded(threads * (QUEUED_BATCHES + 1));
        let mut shards = Vec::with_capacity(threads);
        for i in 0..threads {
            // SAFETY: the fd is the caller's open socket, borrowed only to duplicate it.
            let fd = unsafe { BorrowedFd::borrow_raw(socket.as_raw_fd()) };
            let sock = socket2::SockRef::from(&fd).try_clone()?;
            let mut sender = Sender::new(&sock, gso);
            let stats = Arc::new(Mutex::new(SendStats::default()));
            let gso_flag = Arc::new(std::sync::atomic::AtomicBool::new(sender.gso()));
            let (tx, rx) = crossbeam_channel::bounded::<Vec<Transmit>>(QUEUED_BATCHES);
            let (st, gf, back) = (stats.clone(), gso_flag.clone(), free_tx.clone());
            let thread = std::thread::Builder::new()
                .name(format!("send-{i}"))
                .spawn(move || {
                    for mut batch in rx {
                        let mut local = SendStats::default();
                        send_all(&sock, &mut sender, &mut batch, &mut local);
                        gf.store(sender.gso(), std::sync::atomic::Ordering::Relaxed);
                        st.lock().unwrap_or_else(|e| e.into_inner()).add(&local);
                        batch.clear();
                        let _ = back.try_send(batch);
                    }
                })?;
            shards.push(Shard {
                tx: Some(tx),
                batch: Vec::new(),
                stats,
                gso: gso_flag,
                thread: Some(thread),
            });
        }
        Ok(SendPool { shards, free })
    }

    /// Sender threads.
    pub fn threads(&self) -> usize {
        self.shards.len()
    }

    /// Hands every datagram of `queue` to the thread that owns its destination (queue is
    /// left empty). Waits while a thread already has [`QUEUED_BATCHES`] batches queued.
    pub fn dispatch(&mut self, queue: &mut Vec<Transmit>) {
        let n = self.shards.len();
        for t in queue.drain(..) {
            let s = &mut self.shards[shard_of(t.dest, n)];
            if s.batch.capacity() == 0 {
                s.batch = self.free.try_recv().unwrap_or_default();
            }
            s.batch.push(t);
        }
        for s in &mut self.shards {
            if s.batch.is_empty() {
                continue;
            }
            let batch = std::mem::take(&mut s.batch);
            if let Some(tx) = &s.tx {
                let _ = tx.send(batch);
            }
        }
    }

    /// The threads' counters so far, summed.
    pub fn stats(&self) -> SendStats {
        let mut sum = SendStats::default();
        for s in &self.shards {
            sum.add(&s.stats.lock().unwrap_or_else(|e| e.into_inner()));
        }
        sum
    }

    /// Whether every thread still sends with GSO.
    pub fn gso(&self) -> bool {
        self.shards
            .iter()
            .all(|s| s.gso.load(std::sync::atomic::Ordering::Relaxed))
    }
}

impl SendPool {
    /// Lets the threads send what they hold, ends them, and returns their counters.
    pub fn stop(&mut self) -> SendStats {
        // Closing the queues ends the threads once they have sent what they hold.
        for s in &mut self.shards {
            s.tx = None;
        }
        for s in &mut self.shards {
            if let Some(t) = s.thread.take() {
                let _ = t.join();
            }
        }
        self.stats()
    }
}

impl Drop for SendPool {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The thread that owns `dest`: a multiplicative hash of address and port.
fn shard_of(dest: SocketAddr, n: usize) -> usize {
    if n == 1 {
        return 0;
    }
    let ip = match dest.ip() {
        std::net::IpAddr::V4(a) => u64::from(u32::from(a)),
        std::net::IpAddr::V6(a) => {
            let v = u128::from(a);
            (v as u64) ^ ((v >> 64) as u64)
        }
    };
    let h = (ip ^ (u64::from(dest.port()) << 32)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    ((h >> 32) as usize) % n
}

/// Sends a whole batch, waiting (bounded) for room when the socket buffer is full.
fn send_all(
    sock: &socket2::Socket,
    sender: &mut Sender,
    batch: &mut Vec<Transmit>,
    stats: &mut SendStats,
) {
    let start = Instant::now();
    loop {
        match sender.send(sock, batch, stats) {
            Ok(Flushed::All) => return,
            Ok(Flushed::Blocked) if start.elapsed() < BLOCKED_GIVE_UP => wait_writable(sock, 10),
            Ok(Flushed::Blocked) | Err(_) => {
                stats.dropped += batch.len() as u64;
                batch.clear();
                return;
            }
        }
    }
}

/// Waits up to `ms` milliseconds for room in the socket's send buffer.
fn wait_writable(sock: &socket2::Socket, ms: i32) {
    let mut p = libc::pollfd {
        fd: sock.as_raw_fd(),
        events: libc::POLLOUT,
        revents: 0,
    };
    // SAFETY: one valid pollfd for the duration of the call.
    unsafe { libc::poll(&mut p, 1, ms) };
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::driver::batch::pattern;

    #[test]
    fn a_thread_is_added_only_after_two_saturated_seconds_in_a_row() {
        let mut a = AutoScale::default();
        let seen: Vec<bool> = [0.5, 0.9, 0.3, 0.9, 0.95, 0.9, 0.9, 0.9]
            .into_iter()
            .map(|b| a.observe(b))
            .collect();
        assert_eq!(
            seen,
            vec![false, false, false, false, true, false, true, false]
        );
    }

    #[test]
    fn sharded_sends_keep_every_destinations_order() {
        // Six receivers on ports the kernel picks; the sixth is taken from another shard
        // than the first five if they all share one (1 run in 243 otherwise).
        let shard = |s: &std::net::UdpSocket| shard_of(s.local_addr().unwrap(), 3);
        let mut rx: Vec<std::net::UdpSocket> = Vec::new();
        for _ in 0..1000 {
            if rx.len() == 6 {
                break;
            }
            let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
            let one_shard = rx.iter().all(|r| shard(r) == shard(&s));
            if rx.len() == 5 && one_shard {
                continue;
            }
            s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
            socket2::SockRef::from(&s)
                .set_recv_buffer_size(4 << 20)
                .unwrap();
            rx.push(s);
        }
        assert_eq!(rx.len(), 6);
        let tx = mio::net::UdpSocket::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let mut pool = SendPool::start(&tx, 3, true).unwrap();
        assert_eq!(pool.threads(), 3);
        let shards: std::collections::BTreeSet<usize> = rx
            .iter()
            .map(|r| shard_of(r.local_addr().unwrap(), 3))
            .collect();
        assert!(
            shards.len() > 1,
            "six ports spread over more than one thread"
        );
        // Round-robin, 3 rounds of 40 datagrams per destination.
        for round in 0..3u32 {
            let mut q: Vec<Transmit> = (0..40 * 6)
                .map(|i| Transmit {
                    dest: rx[i % 6].local_addr().unwrap(),
                    payload: pattern(round * 40 + (i / 6) as u32, 1316),
                })
                .collect();
            pool.dispatch(&mut q);
            assert!(q.is_empty());
        }
        let mut buf = vec![0u8; 2048];
        for r in &rx {
            for k in 0..120u32 {
                let (n, _) = r.recv_from(&mut buf).unwrap();
                assert_eq!(&buf[..n], &pattern(k, 1316)[..], "datagram {k}");
            }
        }
        let stats = pool.stop();
        assert_eq!(stats.sent, 720);
        assert!(stats.gso_sends > 0 && pool.gso());
        assert_eq!(stats.dropped, 0);
    }
}
