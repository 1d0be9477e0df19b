//! Batched sends with UDP generic segmentation offload (GSO).
//!
//! A relay fanning one stream out to many subscribers pays the kernel per datagram, not per
//! system call, so `sendmmsg(2)` alone saves little. With GSO (`UDP_SEGMENT`, Linux ≥ 4.18)
//! one `sendmmsg` entry carries a whole run of datagrams to one destination: the kernel
//! walks the routing, socket and netfilter paths once for the run and cuts it into datagrams
//! of the given segment size at the last moment (in the NIC, or on loopback at the
//! receiver). The datagrams on the wire are exactly those of a plain send.
//!
//! [`Sender`] regroups what a node queued by destination (each destination keeps its own
//! order; the relay core serves a subscriber's frame back to back, but other nodes and
//! interleaved queues need not), cuts each
//! destination's datagrams into runs the kernel accepts (same segment size, the last may be
//! shorter, at most [`MAX_SEGMENTS`] and [`MAX_SUPER_DATAGRAM`] bytes), and hands up to
//! [`BATCH`] runs per `sendmmsg`, each run as a list of `iovec`s pointing into the shared
//! [`Bytes`] payloads: nothing is copied, and its scratch vectors are reused between calls.
//!
//! When the kernel or the route refuses GSO (`EIO`: no checksum offload on the device, or
//! IPsec; `EINVAL`: segment above the path MTU; `ENOPROTOOPT`/`EOPNOTSUPP`), the sender
//! falls back to one datagram per entry for good, logs it once, and resends the refused run.
//! `FRAMECAST_NO_GSO=1` forces that fallback from the start (see [`gso_wanted`]).

use foldhash::HashMap;
use std::io;
use std::net::SocketAddr;

use bytes::Bytes;

use crate::proto::node::Transmit;

/// `sendmmsg`/`recvmmsg` headers (Linux); elsewhere one datagram per call needs none.
#[cfg(target_os = "linux")]
type MsgHdr = libc::mmsghdr;
#[cfg(not(target_os = "linux"))]
type MsgHdr = ();

/// Entries (runs, or datagrams without GSO) per `sendmmsg` call.
pub const BATCH: usize = 64;

/// Most datagrams in one GSO super-datagram (the kernel's `UDP_MAX_SEGMENTS` was 64 until
/// Linux 6.10).
pub const MAX_SEGMENTS: usize = 64;

/// Most payload bytes in one GSO super-datagram: the largest IPv4 UDP payload (65,535 −
/// 20 − 8), which the kernel checks for the whole run before cutting it.
pub const MAX_SUPER_DATAGRAM: usize = 65_507;

/// The environment variable that turns GSO off for every socket of the process when set to
/// anything but `0` or empty (for kernels or routes that misbehave, and for tests).
pub const NO_GSO_ENV: &str = "FRAMECAST_NO_GSO";

/// Whether the environment allows GSO ([`NO_GSO_ENV`] unset, empty or `0`).
pub fn gso_wanted() -> bool {
    !matches!(std::env::var(NO_GSO_ENV), Ok(v) if !v.is_empty() && v != "0")
}

/// Counters of a [`Sender`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct SendStats {
    /// Datagrams the kernel took.
    pub sent: u64,
    /// `sendmmsg` calls (datagrams per call = sent / batches).
    pub batches: u64,
    /// GSO super-datagrams sent (entries carrying more than one datagram).
    pub gso_sends: u64,
    /// Calls that met a full socket buffer (the rest waited for WRITABLE).
    pub would_block: u64,
    /// Entries the kernel refused for another reason (e.g. an unreachable destination);
    /// their datagrams are dropped.
    pub send_errors: u64,
    /// Datagrams dropped with those entries.
    pub dropped: u64,
}

impl SendStats {
    /// Adds `other`'s counts to these (several senders' figures in one).
    pub fn add(&mut self, other: &SendStats) {
        self.sent += other.sent;
        self.batches += other.batches;
        self.gso_sends += other.gso_sends;
        self.would_block += other.would_block;
        self.send_errors += other.send_errors;
        self.dropped += other.dropped;
    }
}

/// What [`Sender::send`] left behind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flushed {
    /// Everything went (or was dropped as refused).
    All,
    /// The socket buffer is full; what is left waits in the queue for WRITABLE.
    Blocked,
}

/// One entry: `count` datagrams to one destination from `start` in the grouped queue, cut
/// by the kernel at `segment` bytes when `count > 1`.
#[derive(Debug, Clone, Copy)]
struct Run {
    start: usize,
    count: usize,
    segment: usize,
}

/// Room for one `cmsghdr` carrying a `u16` (`CMSG_SPACE(2)` is 24 on 64-bit Linux), aligned
/// as `cmsghdr` needs.
#[derive(Clone, Copy)]
#[repr(C, align(8))]
struct CmsgBuf([u8; 32]);

/// Sends queues of datagrams through one UDP socket with GSO and `sendmmsg`, falling back
/// to plain `sendmmsg` when GSO is refused. One per socket: the fallback is remembered here.
pub struct Sender {
    gso: bool,
    entries_per_call: usize,
    /// Destination → group number, in order of first appearance in the queue.
    groups: HashMap<SocketAddr, u32>,
    /// Each queued datagram's group.
    keys: Vec<u32>,
    /// Per group: its size, then its next slot in the grouped order.
    starts: Vec<u32>,
    grouped: Vec<Transmit>,
    runs: Vec<Run>,
    // Scratch for one system call; the raw pointers in `iovs` and `msgs` are written just
    // before the call and never read after it.
    addrs: Vec<socket2::SockAddr>,
    iovs: Vec<libc::iovec>,
    cmsgs: Vec<CmsgBuf>,
    msgs: Vec<MsgHdr>,
    /// Test hook: the next GSO call fails with this errno.
    #[cfg(test)]
    fail_next_gso: Option<i32>,
}

// SAFETY: the raw pointers inside the scratch vectors are only written right before a
// system call and only read by the kernel during it; between calls they are dead values,
// so moving the sender to another thread cannot make anything dereference them.
unsafe impl Send for Sender {}

impl std::fmt::Debug for Sender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sender")
            .field("gso", &self.gso)
            .field("entries_per_call", &self.entries_per_call)
            .finish_non_exhaustive()
    }
}

impl Sender {
    /// A sender for `socket` that uses GSO if `gso` is set, the environment allows it
    /// ([`gso_wanted`]) and the kernel knows `UDP_SEGMENT`.
    pub fn new(socket: &impl std::os::fd::AsRawFd, gso: bool) -> Sender {
        Sender {
            gso: gso && gso_wanted() && kernel_has_gso(socket.as_raw_fd()),
            entries_per_call: BATCH,
            groups: HashMap::default(),
            keys: Vec::new(),
            starts: Vec::new(),
            grouped: Vec::new(),
            runs: Vec::with_capacity(BATCH),
            addrs: Vec::with_capacity(BATCH),
            iovs: Vec::new(),
            cmsgs: vec![CmsgBuf([0; 32]); BATCH],
            msgs: Vec::with_capacity(BATCH),
            #[cfg(test)]
            fail_next_gso: None,
        }
    }

    /// Whether runs go out as GSO super-datagrams (false after a fallback).
    pub fn gso(&self) -> bool {
        self.gso
    }

    /// Turns GSO off (it is never turned back on: a fallback is for good).
    pub fn disable_gso(&mut self) {
        self.gso = false;
    }

    /// Entries per `sendmmsg` call, 1 to [`BATCH`].
    pub fn set_entries_per_call(&mut self, n: usize) {
        self.entries_per_call = n.clamp(1, BATCH);
    }

    /// Sends the datagrams of `queue`, each destination's in their order (different
    /// destinations' datagrams may be reordered among themselves). Returns with the queue
    /// empty, or, when the socket buffer fills, holding what is left in an order that still
    /// keeps each destination's. Entries the kernel refuses are counted and dropped.
    ///
    /// # Errors
    /// None so far: every error is either a full buffer, a GSO refusal (fallback) or a
    /// refused entry (counted); the `Result` leaves room for fatal socket errors.
    pub fn send(
        &mut self,
        socket: &impl std::os::fd::AsRawFd,
        queue: &mut Vec<Transmit>,
        stats: &mut SendStats,
    ) -> io::Result<Flushed> {
        if queue.is_empty() {
            return Ok(Flushed::All);
        }
        if self.gso {
            self.group(queue);
        }
        let fd = socket.as_raw_fd();
        let mut pos = 0;
        while pos < queue.len() {
            self.plan(queue, pos);
            let (r, err) = self.call(fd, queue);
            if r > 0 {
                for run in &self.runs[..r] {
                    stats.sent += run.count as u64;
                    stats.gso_sends += u64::from(run.count > 1);
                    pos += run.count;
                }
                stats.batches += 1;
                continue;
            }
            let e = err.unwrap_or_else(|| io::Error::from(io::ErrorKind::WriteZero));
            let first = self.runs[0];
            match e.kind() {
                io::ErrorKind::WouldBlock => {
                    stats.would_block += 1;
                    queue.drain(..pos);
                    return Ok(Flushed::Blocked);
                }
                io::ErrorKind::Interrupted => {}
                _ if first.count > 1 && is_gso_refusal(&e) => {
                    self.gso = false;
                    log::warn!(
                        "UDP GSO refused by the kernel or route ({e}); sending one datagram per entry on this socket from now on"
                    );
                }
                _ => {
                    // Concerns this destination only (e.g. no route to it).
                    stats.send_errors += 1;
                    stats.dropped += first.count as u64;
                    pos += first.count;
                }
            }
        }
        queue.clear();
        Ok(Flushed::All)
    }

    /// Reorders `queue` so that each destination's datagrams are adjacent, destinations in
    /// order of first appearance, each destination's datagrams in their order. No
    /// allocation once the scratch vectors have grown; payloads are moved, not cloned.
    fn group(&mut self, queue: &mut Vec<Transmit>) {
        if queue.len() < 2 {
            return;
        }
        self.groups.clear();
        self.keys.clear();
        self.starts.clear();
        let mut last: Option<(SocketAddr, u32)> = None;
        // Whether each destination's datagrams are adjacent already (the fan-out sends a
        // subscriber's frame in one turn, so they mostly are).
        let mut adjacent = true;
        for t in queue.iter() {
            let g = match last {
                Some((d, g)) if d == t.dest => g,
                _ => {
                    let next = self.groups.len() as u32;
                    let g = *self.groups.entry(t.dest).or_insert(next);
                    if g == next {
                        self.starts.push(0);
                    } else {
                        adjacent = false;
                    }
                    g
                }
            };
            last = Some((t.dest, g));
            self.starts[g as usize] += 1;
            self.keys.push(g);
        }
        if adjacent {
            return; // nothing to move
        }
        // Counting sort, stable: each group's first slot, then every datagram to the next
        // slot of its group. Payloads are moved, not cloned.
        let mut at = 0;
        for n in self.starts.iter_mut() {
            let count = *n;
            *n = at;
            at += count;
        }
        let placeholder = Transmit {
            dest: queue[0].dest,
            payload: Bytes::new(),
        };
        self.grouped.clear();
        self.grouped.resize(queue.len(), placeholder);
        for (t, &g) in queue.iter_mut().zip(&self.keys) {
            let slot = &mut self.starts[g as usize];
            let to = &mut self.grouped[*slot as usize];
            to.dest = t.dest;
            to.payload = std::mem::take(&mut t.payload);
            *slot += 1;
        }
        queue.clear();
        std::mem::swap(queue, &mut self.grouped);
    }

    /// Cuts `queue[pos..]` into at most `entries_per_call` runs.
    fn plan(&mut self, queue: &[Transmit], mut pos: usize) {
        self.runs.clear();
        while pos < queue.len() && self.runs.len() < self.entries_per_call {
            let first = &queue[pos];
            let segment = first.payload.len();
            let mut count = 1;
            let mut total = segment;
            if self.gso && segment > 0 && segment <= u16::MAX as usize {
                while count < MAX_SEGMENTS {
                    let Some(next) = queue.get(pos + count) else {
                        break;
                    };
                    let len = next.payload.len();
                    if next.dest != first.dest
                        || len == 0
                        || len > segment
                        || total + len > MAX_SUPER_DATAGRAM
                    {
                        break;
                    }
                    count += 1;
                    total += len;
                    if len < segment {
                        break; // only the last segment may be shorter
                    }
                }
            }
            self.runs.push(Run {
                start: pos,
                count,
                segment,
            });
            pos += count;
        }
    }

    /// One `sendmmsg` over the planned runs: the number of entries sent, or 0 and the error.
    #[cfg(target_os = "linux")]
    fn call(&mut self, fd: std::os::fd::RawFd, queue: &[Transmit]) -> (usize, Option<io::Error>) {
        #[cfg(test)]
        if let Some(errno) = self.fail_next_gso {
            if self.runs.iter().any(|r| r.count > 1) {
                self.fail_next_gso = None;
                return (0, Some(io::Error::from_raw_os_error(errno)));
            }
        }
        self.addrs.clear();
        self.iovs.clear();
        for run in &self.runs {
            self.addrs
                .push(socket2::SockAddr::from(queue[run.start].dest));
            for t in &queue[run.start..run.start + run.count] {
                self.iovs.push(libc::iovec {
                    iov_base: t.payload.as_ptr() as *mut libc::c_void,
                    iov_len: t.payload.len(),
                });
            }
        }
        self.msgs.clear();
        let mut iov_at = 0;
        for (i, run) in self.runs.iter().enumerate() {
            // SAFETY: an all-zero msghdr is a valid empty header; the fields set below point
            // into `addrs`, `iovs` and `cmsgs`, which are not touched until the call returns.
            let mut hdr: libc::msghdr = unsafe { std::mem::zeroed() };
            hdr.msg_name = self.addrs[i].as_ptr() as *mut libc::c_void;
            hdr.msg_namelen = self.addrs[i].len();
            hdr.msg_iov = self.iovs[iov_at..].as_mut_ptr();
            hdr.msg_iovlen = run.count as _;
            iov_at += run.count;
            if run.count > 1 {
                let buf = &mut self.cmsgs[i];
                hdr.msg_control = buf.0.as_mut_ptr() as *mut libc::c_void;
                // SAFETY: CMSG_SPACE is a pure size computation.
                hdr.msg_controllen = unsafe { libc::CMSG_SPACE(2) } as _;
                // SAFETY: `buf` is 32 bytes, 8-aligned, at least CMSG_SPACE(2); the header
                // and its 2 data bytes are written inside it.
                unsafe {
                    let cmsg = libc::CMSG_FIRSTHDR(&hdr);
                    (*cmsg).cmsg_level = libc::SOL_UDP;
                    (*cmsg).cmsg_type = libc::UDP_SEGMENT;
                    (*cmsg).cmsg_len = libc::CMSG_LEN(2) as _;
                    std::ptr::write_unaligned(
                        libc::CMSG_DATA(cmsg) as *mut u16,
                        run.segment as u16,
                    );
                }
            }
            self.msgs.push(libc::mmsghdr {
                msg_hdr: hdr,
                msg_len: 0,
            });
        }
        // SAFETY: `msgs` holds initialised headers whose pointers stay valid for the call.
        let r = unsafe {
            libc::sendmmsg(
                fd,
                self.msgs.as_mut_ptr(),
                self.msgs.len() as libc::c_uint,
                0,
            )
        };
        if r < 0 {
            (0, Some(io::Error::last_os_error()))
        } else {
            (r as usize, None)
        }
    }

    /// Portable fallback: one `sendto` per datagram (no GSO: runs are single datagrams).
    #[cfg(not(target_os = "linux"))]
    fn call(&mut self, fd: std::os::fd::RawFd, queue: &[Transmit]) -> (usize, Option<io::Error>) {
        use std::os::fd::BorrowedFd;
        // SAFETY: `fd` belongs to the socket borrowed by `send` for this whole call.
        let sock = socket2::SockRef::from(&unsafe { BorrowedFd::borrow_raw(fd) });
        let mut sent = 0;
        for run in &self.runs {
            let t = &queue[run.start];
            match sock.send_to(&t.payload, &t.dest.into()) {
                Ok(_) => sent += 1,
                Err(e) if sent == 0 => return (0, Some(e)),
                Err(_) => break,
            }
        }
        (sent, None)
    }

    /// Test hook: the next call carrying a GSO run fails with `errno`.
    #[cfg(test)]
    pub(crate) fn fail_next_gso_with(&mut self, errno: i32) {
        self.fail_next_gso = Some(errno);
    }
}

/// Whether an error of a GSO send means "not this way" rather than "not this peer".
fn is_gso_refusal(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EIO | libc::EINVAL | libc::ENOPROTOOPT | libc::EOPNOTSUPP | libc::EMSGSIZE)
    )
}

/// Whether the kernel knows `UDP_SEGMENT` (the socket option came with the control
/// message in Linux 4.18; an older kernel would ignore the control message and send the
/// whole run as one oversized datagram, so asking first matters).
#[cfg(target_os = "linux")]
fn kernel_has_gso(fd: std::os::fd::RawFd) -> bool {
    let mut v: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `v`.
    let r = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_UDP,
            libc::UDP_SEGMENT,
            &mut v as *mut libc::c_int as *mut libc::c_void,
            &mut len,
        )
    };
    r == 0
}

#[cfg(not(target_os = "linux"))]
fn kernel_has_gso(_fd: std::os::fd::RawFd) -> bool {
    false
}

/// A payload of `len` bytes, for tests and measurements.
pub(crate) fn pattern(tag: u32, len: usize) -> Bytes {
    let mut v = vec![(tag % 251) as u8; len];
    v[..4].copy_from_slice(&tag.to_be_bytes());
    Bytes::from(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn receivers(n: usize) -> Vec<std::net::UdpSocket> {
        (0..n)
            .map(|_| {
                let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
                s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
                socket2::SockRef::from(&s)
                    .set_recv_buffer_size(4 << 20)
                    .unwrap();
                s
            })
            .collect()
    }

    /// Interleaved over `rx` (the worst case for grouping): datagram `i` goes to `rx[i % n]`; each
    /// destination's frames are 5 full 1316-byte chunks and one shorter one, repeated.
    fn fanout_queue(rx: &[std::net::UdpSocket], per_dest: u32) -> Vec<Transmit> {
        let n = rx.len() as u32;
        (0..per_dest * n)
            .map(|i| {
                let k = i / n; // index within its destination
                let len = if k % 6 == 5 { 300 + k as usize } else { 1316 };
                Transmit {
                    dest: rx[(i % n) as usize].local_addr().unwrap(),
                    payload: pattern(k, len),
                }
            })
            .collect()
    }

    /// Every destination gets its datagrams whole, separate and in order.
    fn check_arrivals(rx: &[std::net::UdpSocket], per_dest: u32) {
        let mut buf = vec![0u8; 65_536];
        for r in rx {
            for k in 0..per_dest {
                let (n, _) = r.recv_from(&mut buf).unwrap();
                let len = if k % 6 == 5 { 300 + k as usize } else { 1316 };
                assert_eq!(&buf[..n], &pattern(k, len)[..], "datagram {k}");
            }
        }
    }

    fn sender() -> (mio::net::UdpSocket, Sender) {
        let tx = mio::net::UdpSocket::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        socket2::SockRef::from(&tx)
            .set_send_buffer_size(8 << 20)
            .unwrap();
        let s = Sender::new(&tx, true);
        (tx, s)
    }

    #[test]
    fn gso_runs_arrive_as_the_separate_datagrams_at_plain_receivers() {
        let rx = receivers(5);
        let (tx, mut s) = sender();
        assert!(s.gso(), "this kernel has UDP_SEGMENT (Linux >= 4.18)");
        let mut q = fanout_queue(&rx, 90);
        let mut stats = SendStats::default();
        assert_eq!(s.send(&tx, &mut q, &mut stats).unwrap(), Flushed::All);
        assert!(q.is_empty());
        assert_eq!(stats.sent, 450);
        // Runs end at each short chunk: 15 runs of 6 per destination.
        assert_eq!(stats.gso_sends, 75);
        assert_eq!(stats.batches, 2);
        check_arrivals(&rx, 90);
    }

    #[test]
    fn forced_fallback_sends_every_datagram_intact_and_in_order() {
        let rx = receivers(3);
        let tx = mio::net::UdpSocket::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let mut s = Sender::new(&tx, false);
        assert!(!s.gso());
        let mut q = fanout_queue(&rx, 100);
        let mut stats = SendStats::default();
        assert_eq!(s.send(&tx, &mut q, &mut stats).unwrap(), Flushed::All);
        assert_eq!((stats.sent, stats.gso_sends, stats.batches), (300, 0, 5));
        check_arrivals(&rx, 100);
    }

    #[test]
    fn a_refused_gso_send_falls_back_for_good_and_loses_nothing() {
        let rx = receivers(2);
        let (tx, mut s) = sender();
        s.fail_next_gso_with(libc::EIO);
        let mut q = fanout_queue(&rx, 60);
        let mut stats = SendStats::default();
        assert_eq!(s.send(&tx, &mut q, &mut stats).unwrap(), Flushed::All);
        assert!(!s.gso());
        assert_eq!(
            (stats.sent, stats.gso_sends, stats.send_errors),
            (120, 0, 0)
        );
        check_arrivals(&rx, 60);
        // Later queues go plainly too.
        let mut q = fanout_queue(&rx, 12);
        s.send(&tx, &mut q, &mut stats).unwrap();
        assert_eq!((stats.sent, stats.gso_sends), (144, 0));
        check_arrivals(&rx, 12);
    }

    #[test]
    fn runs_respect_the_segment_byte_and_count_limits() {
        let rx = receivers(1);
        let (tx, mut s) = sender();
        let dest = rx[0].local_addr().unwrap();
        // 100 datagrams of 1452 bytes: 45 fit in 65,507 bytes, so runs of 45, 45, 10.
        let mut q: Vec<Transmit> = (0..100)
            .map(|k| Transmit {
                dest,
                payload: pattern(k, 1452),
            })
            .collect();
        s.plan(&q, 0);
        let counts: Vec<usize> = s.runs.iter().map(|r| r.count).collect();
        assert_eq!(counts, vec![45, 45, 10]);
        // 200 small ones: runs of 64.
        let small: Vec<Transmit> = (0..200)
            .map(|k| Transmit {
                dest,
                payload: pattern(k, 100),
            })
            .collect();
        s.plan(&small, 0);
        let counts: Vec<usize> = s.runs.iter().map(|r| r.count).collect();
        assert_eq!(counts, vec![64, 64, 64, 8]);
        let mut stats = SendStats::default();
        s.send(&tx, &mut q, &mut stats).unwrap();
        assert_eq!((stats.sent, stats.gso_sends), (100, 3));
        let mut buf = vec![0u8; 65_536];
        for k in 0..100 {
            let (n, _) = rx[0].recv_from(&mut buf).unwrap();
            assert_eq!(&buf[..n], &pattern(k, 1452)[..]);
        }
    }

    /// Runs already adjacent (a destination seen again only right after itself) stay as they
    /// are; one destination coming back after another is still grouped.
    #[test]
    fn adjacent_runs_stay_in_place_and_a_returning_destination_is_grouped() {
        let rx = receivers(3);
        let (_tx, mut s) = sender();
        let mut q = fanout_queue(&rx, 3);
        s.group(&mut q);
        let order = |q: &[Transmit]| -> Vec<(u16, Bytes)> {
            q.iter()
                .map(|t| (t.dest.port(), t.payload.clone()))
                .collect()
        };
        let before = order(&q);
        s.group(&mut q);
        assert_eq!(order(&q), before);
        let first = q.remove(0);
        q.push(first);
        s.group(&mut q);
        let dests: Vec<u16> = q.iter().map(|t| t.dest.port()).collect();
        let p: Vec<u16> = rx.iter().map(|r| r.local_addr().unwrap().port()).collect();
        assert_eq!(
            dests,
            [p[0], p[0], p[0], p[1], p[1], p[1], p[2], p[2], p[2]]
        );
    }

    #[test]
    fn grouping_keeps_each_destinations_order() {
        let rx = receivers(3);
        let (_tx, mut s) = sender();
        let mut q = fanout_queue(&rx, 4);
        s.group(&mut q);
        let dests: Vec<u16> = q.iter().map(|t| t.dest.port()).collect();
        let ports: Vec<u16> = rx.iter().map(|r| r.local_addr().unwrap().port()).collect();
        let want: Vec<u16> = ports.iter().flat_map(|p| [*p; 4]).collect();
        assert_eq!(dests, want);
        for (i, t) in q.iter().enumerate() {
            assert_eq!(t.payload[..4], ((i % 4) as u32).to_be_bytes());
        }
    }
}
