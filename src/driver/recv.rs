//! Batched receives with UDP generic receive offload (GRO).
//!
//! `recvmmsg(2)` fills up to [`RECV_BATCH`] reusable buffers per system call. With the
//! `UDP_GRO` socket option (Linux ≥ 5.0) the kernel may also hand over several consecutive
//! datagrams of one flow as one super-datagram (a GSO send on loopback arrives that way
//! whole), with their segment size in a `UDP_GRO` control message; [`Receiver`] cuts it
//! back into the datagrams the sender sent before the sans-IO core sees any of them.
//! Buffers are 64 KiB with GRO (the largest super-datagram) and 16 KiB without: above
//! `MAX_DATAGRAM` (proto-spec.md §2), so an oversized datagram is still seen as too large
//! rather than cut to a plausible size.
//!
//! `FRAMECAST_NO_GRO=1` leaves GRO off (see [`gro_wanted`]).
//!
//! With [`enable_timestamps`] on a socket (`SO_TIMESTAMPNS`), each message also carries the
//! time the kernel queued it on the socket, which [`Receiver::for_each_at`] hands over as an
//! [`Instant`]: when a datagram reached the machine, not when a busy loop got round to it.

use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime};

/// `sendmmsg`/`recvmmsg` headers (Linux); elsewhere one datagram per call needs none.
#[cfg(target_os = "linux")]
type MsgHdr = libc::mmsghdr;
#[cfg(not(target_os = "linux"))]
type MsgHdr = ();

/// Messages (datagrams, or GRO super-datagrams) per `recvmmsg` call.
pub const RECV_BATCH: usize = 32;

/// Buffer per message with GRO: the largest UDP payload.
pub const GRO_BUFFER: usize = 65_536;

/// Buffer per message without GRO: above `MAX_DATAGRAM` (9000 bytes).
pub const PLAIN_BUFFER: usize = 16_384;

/// The environment variable that keeps GRO off when set to anything but `0` or empty.
pub const NO_GRO_ENV: &str = "FRAMECAST_NO_GRO";

/// Whether the environment allows GRO ([`NO_GRO_ENV`] unset, empty or `0`).
pub fn gro_wanted() -> bool {
    !matches!(std::env::var(NO_GRO_ENV), Ok(v) if !v.is_empty() && v != "0")
}

/// Turns `UDP_GRO` on for a socket; false if the kernel refuses (before Linux 5.0).
#[cfg(target_os = "linux")]
pub fn enable_gro(socket: &impl std::os::fd::AsRawFd) -> bool {
    let one: libc::c_int = 1;
    // SAFETY: setsockopt reads `size_of::<c_int>()` bytes from `one`.
    let r = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_UDP,
            libc::UDP_GRO,
            &one as *const libc::c_int as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    r == 0
}

/// GRO is Linux-only.
#[cfg(not(target_os = "linux"))]
pub fn enable_gro(_socket: &impl std::os::fd::AsRawFd) -> bool {
    false
}

/// Asks the kernel to stamp each datagram received on `socket` with the time it was queued
/// there (`SO_TIMESTAMPNS`, wall clock, ns); false if it refuses. Read the stamps with
/// [`Receiver::for_each_at`].
#[cfg(target_os = "linux")]
pub fn enable_timestamps(socket: &impl std::os::fd::AsRawFd) -> bool {
    let one: libc::c_int = 1;
    // SAFETY: setsockopt reads `size_of::<c_int>()` bytes from `one`.
    let r = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_TIMESTAMPNS,
            &one as *const libc::c_int as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    r == 0
}

/// Receive timestamps are Linux-only here.
#[cfg(not(target_os = "linux"))]
pub fn enable_timestamps(_socket: &impl std::os::fd::AsRawFd) -> bool {
    false
}

/// The most a kernel timestamp may lie before the moment it is read and still be believed:
/// an older one (or one from the future) means the wall clock was stepped in between.
pub const MAX_STAMP_AGE: Duration = Duration::from_secs(2);

/// The monotonic and the wall clock read together: the read of the wall clock with the
/// monotonic instant halfway through it, from the quickest of a few tries (a thread
/// preempted between the two reads would shift every stamp by as long).
fn clock_pair() -> (Instant, SystemTime) {
    let mut best: Option<(Duration, Instant, SystemTime)> = None;
    for _ in 0..4 {
        let a = Instant::now();
        let wall = SystemTime::now();
        let took = a.elapsed();
        if best.is_none_or(|(t, _, _)| took < t) {
            best = Some((took, a + took / 2, wall));
        }
        if took < Duration::from_micros(20) {
            break;
        }
    }
    let (_, mono, wall) = best.unwrap_or((Duration::ZERO, Instant::now(), SystemTime::now()));
    (mono, wall)
}

/// Room for the `UDP_GRO` control message (an `int`) and a `SO_TIMESTAMPNS` one (a
/// `timespec`), 8-aligned.
#[derive(Clone, Copy)]
#[repr(C, align(8))]
struct CmsgBuf([u8; 64]);

/// One received message: where from, how many bytes, the GRO segment size (0: one
/// datagram) and the kernel's receive timestamp (wall clock), if it gave one.
#[derive(Debug, Clone, Copy)]
struct Got {
    from: Option<SocketAddr>,
    len: usize,
    segment: usize,
    stamp: Option<SystemTime>,
}

/// Receives batches of datagrams from one socket into reusable buffers, GRO super-datagrams
/// cut back into datagrams.
pub struct Receiver {
    gro: bool,
    buf_size: usize,
    bufs: Vec<u8>,
    got: Vec<Got>,
    /// Super-datagrams of more than one datagram received.
    gro_receives: u64,
    /// Messages cut short by a too-small buffer.
    truncated: u64,
    /// Messages that carried a kernel receive timestamp.
    stamped: u64,
    /// The monotonic and wall clocks read together after the last `recv`, to turn kernel
    /// timestamps (wall clock) into [`Instant`]s.
    clocks: Option<(Instant, SystemTime)>,
    // Scratch for one system call (raw pointers written just before it).
    names: Vec<libc::sockaddr_storage>,
    iovs: Vec<libc::iovec>,
    cmsgs: Vec<CmsgBuf>,
    msgs: Vec<MsgHdr>,
}

// SAFETY: the raw pointers in the scratch vectors are written right before a system call
// and read only by the kernel during it; moving the receiver between threads is harmless.
unsafe impl Send for Receiver {}

impl std::fmt::Debug for Receiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Receiver")
            .field("gro", &self.gro)
            .field("buf_size", &self.buf_size)
            .finish_non_exhaustive()
    }
}

impl Receiver {
    /// A receiver for `socket`, turning GRO on when `gro` is set, the environment allows
    /// it ([`gro_wanted`]) and the kernel accepts it.
    pub fn new(socket: &impl std::os::fd::AsRawFd, gro: bool) -> Receiver {
        let gro = gro && gro_wanted() && enable_gro(socket);
        Receiver::shared(gro)
    }

    /// A receiver not tied to one socket, for a thread that serves many (e.g. a load
    /// generator's viewers): [`Receiver::recv`] reads whichever socket it is given. With
    /// `gro` its buffers are sized for super-datagrams; turn GRO on for each socket with
    /// [`enable_gro`].
    pub fn shared(gro: bool) -> Receiver {
        let buf_size = if gro { GRO_BUFFER } else { PLAIN_BUFFER };
        Receiver {
            gro,
            buf_size,
            bufs: vec![0u8; buf_size * RECV_BATCH],
            got: Vec::with_capacity(RECV_BATCH),
            gro_receives: 0,
            truncated: 0,
            stamped: 0,
            clocks: None,
            // SAFETY: an all-zero sockaddr_storage is a valid (unspecified) address.
            names: vec![unsafe { std::mem::zeroed() }; RECV_BATCH],
            iovs: Vec::with_capacity(RECV_BATCH),
            cmsgs: vec![CmsgBuf([0; 64]); RECV_BATCH],
            msgs: Vec::with_capacity(RECV_BATCH),
        }
    }

    /// Whether GRO is on for the socket.
    pub fn gro(&self) -> bool {
        self.gro
    }

    /// GRO super-datagrams (more than one datagram) received so far.
    pub fn gro_receives(&self) -> u64 {
        self.gro_receives
    }

    /// Messages that carried a kernel receive timestamp so far ([`enable_timestamps`]).
    pub fn stamped(&self) -> u64 {
        self.stamped
    }

    /// Messages cut short so far (larger than the buffer; the core sees a too-large
    /// datagram or the whole segments of a super-datagram).
    pub fn truncated(&self) -> u64 {
        self.truncated
    }

    /// One `recvmmsg`: the number of messages received (≥ 1), read through
    /// [`Receiver::for_each`].
    ///
    /// # Errors
    /// `WouldBlock` when nothing is waiting; any other socket error (e.g.
    /// `ConnectionRefused` from an earlier ICMP error) as the kernel reports it.
    #[cfg(target_os = "linux")]
    pub fn recv(&mut self, socket: &impl std::os::fd::AsRawFd) -> io::Result<usize> {
        self.got.clear();
        self.iovs.clear();
        self.msgs.clear();
        let base = self.bufs.as_mut_ptr();
        for i in 0..RECV_BATCH {
            self.iovs.push(libc::iovec {
                // SAFETY: `i * buf_size` is inside `bufs` (RECV_BATCH buffers).
                iov_base: unsafe { base.add(i * self.buf_size) } as *mut libc::c_void,
                iov_len: self.buf_size,
            });
        }
        for i in 0..RECV_BATCH {
            // SAFETY: an all-zero msghdr is valid; the pointers set below stay valid for
            // the call.
            let mut hdr: libc::msghdr = unsafe { std::mem::zeroed() };
            hdr.msg_name = &mut self.names[i] as *mut libc::sockaddr_storage as *mut libc::c_void;
            hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            hdr.msg_iov = &mut self.iovs[i];
            hdr.msg_iovlen = 1;
            hdr.msg_control = self.cmsgs[i].0.as_mut_ptr() as *mut libc::c_void;
            hdr.msg_controllen = std::mem::size_of::<CmsgBuf>() as _;
            self.msgs.push(libc::mmsghdr {
                msg_hdr: hdr,
                msg_len: 0,
            });
        }
        let fd = socket.as_raw_fd();
        // SAFETY: `msgs` holds RECV_BATCH headers pointing into our own buffers.
        let r = unsafe {
            libc::recvmmsg(
                fd,
                self.msgs.as_mut_ptr(),
                RECV_BATCH as libc::c_uint,
                0,
                std::ptr::null_mut(),
            )
        };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        for m in &self.msgs[..r as usize] {
            let hdr = &m.msg_hdr;
            let len = (m.msg_len as usize).min(self.buf_size);
            if hdr.msg_flags & libc::MSG_TRUNC != 0 {
                self.truncated += 1;
            }
            let mut segment = 0;
            let mut stamp = None;
            // SAFETY: the kernel wrote `msg_controllen` bytes of well-formed control
            // messages into our buffer; the CMSG_* macros walk exactly those.
            unsafe {
                let mut c = libc::CMSG_FIRSTHDR(hdr);
                while !c.is_null() {
                    if (*c).cmsg_level == libc::SOL_UDP && (*c).cmsg_type == libc::UDP_GRO {
                        let v = std::ptr::read_unaligned(libc::CMSG_DATA(c) as *const libc::c_int);
                        segment = v.max(0) as usize;
                    } else if (*c).cmsg_level == libc::SOL_SOCKET
                        && (*c).cmsg_type == libc::SCM_TIMESTAMPNS
                    {
                        let ts =
                            std::ptr::read_unaligned(libc::CMSG_DATA(c) as *const libc::timespec);
                        if ts.tv_sec >= 0 && (0..1_000_000_000).contains(&ts.tv_nsec) {
                            stamp = Some(
                                SystemTime::UNIX_EPOCH
                                    + Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32),
                            );
                        }
                    }
                    c = libc::CMSG_NXTHDR(hdr, c);
                }
            }
            // SAFETY: the kernel wrote a socket address of `msg_namelen` bytes.
            let from = unsafe {
                socket2::SockAddr::new(
                    std::ptr::read(hdr.msg_name as *const socket2::SockAddrStorage),
                    hdr.msg_namelen,
                )
            }
            .as_socket();
            if segment > 0 && len > segment {
                self.gro_receives += 1;
            }
            if stamp.is_some() {
                self.stamped += 1;
            }
            self.got.push(Got {
                from,
                len,
                segment,
                stamp,
            });
        }
        if self.stamped > 0 {
            self.clocks = Some(clock_pair());
        }
        Ok(r as usize)
    }

    /// Portable fallback: one `recv_from` per call.
    #[cfg(not(target_os = "linux"))]
    pub fn recv(&mut self, socket: &impl std::os::fd::AsRawFd) -> io::Result<usize> {
        use std::os::fd::BorrowedFd;
        self.got.clear();
        // SAFETY: the fd belongs to `socket`, borrowed for this call.
        let sock = socket2::SockRef::from(&unsafe { BorrowedFd::borrow_raw(socket.as_raw_fd()) });
        let buf = &mut self.bufs[..self.buf_size];
        // SAFETY: u8 and MaybeUninit<u8> have the same layout; recv_from only writes.
        let uninit = unsafe { &mut *(buf as *mut [u8] as *mut [std::mem::MaybeUninit<u8>]) };
        let (len, from) = sock.recv_from(uninit)?;
        self.got.push(Got {
            from: from.as_socket(),
            len,
            segment: 0,
            stamp: None,
        });
        Ok(1)
    }

    /// Calls `f` with each datagram of the last [`Receiver::recv`], in arrival order, a
    /// super-datagram cut at its segment size (the last piece may be shorter). Returns the
    /// number of datagrams.
    pub fn for_each(&self, mut f: impl FnMut(SocketAddr, &[u8])) -> usize {
        self.for_each_at(|from, d, _| f(from, d))
    }

    /// As [`Receiver::for_each`], with when each datagram reached the socket: the kernel's
    /// receive timestamp as an [`Instant`] (all datagrams of a super-datagram share it), or
    /// `None` when the message carried none ([`enable_timestamps`] not called or refused) or
    /// its stamp is not believable (more than [`MAX_STAMP_AGE`] old, or in the future by as
    /// much: the wall clock was stepped). A stamp is never later than the `recv` returned.
    pub fn for_each_at(&self, mut f: impl FnMut(SocketAddr, &[u8], Option<Instant>)) -> usize {
        let mut n = 0;
        for (i, g) in self.got.iter().enumerate() {
            let at = match (g.stamp, self.clocks) {
                (Some(stamp), Some((mono, wall))) => match wall.duration_since(stamp) {
                    Ok(age) if age <= MAX_STAMP_AGE => mono.checked_sub(age),
                    Ok(_) => None,
                    // Stamped after the wall clock was read: a clock step or rounding.
                    Err(e) if e.duration() <= MAX_STAMP_AGE => Some(mono),
                    Err(_) => None,
                },
                _ => None,
            };
            let Some(from) = g.from else { continue };
            let msg = &self.bufs[i * self.buf_size..i * self.buf_size + g.len];
            if g.segment == 0 || g.len <= g.segment {
                f(from, msg, at);
                n += 1;
            } else {
                for d in msg.chunks(g.segment) {
                    f(from, d, at);
                    n += 1;
                }
            }
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::driver::batch::{SendStats, Sender, pattern};
    use crate::proto::node::Transmit;

    /// Reads until `want` datagrams arrived, waiting on poll (bounded) between batches.
    fn collect(
        rx: &mut mio::net::UdpSocket,
        r: &mut Receiver,
        want: usize,
    ) -> Vec<(SocketAddr, Vec<u8>)> {
        let mut poll = mio::Poll::new().unwrap();
        poll.registry()
            .register(rx, mio::Token(0), mio::Interest::READABLE)
            .unwrap();
        let mut events = mio::Events::with_capacity(4);
        let mut out = Vec::new();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while out.len() < want && std::time::Instant::now() < deadline {
            match r.recv(rx) {
                Ok(_) => {
                    r.for_each(|from, d| out.push((from, d.to_vec())));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    poll.poll(&mut events, Some(std::time::Duration::from_millis(100)))
                        .unwrap();
                }
                Err(e) => panic!("{e}"),
            }
        }
        out
    }

    #[test]
    fn gso_to_a_gro_receiver_gives_back_the_exact_datagrams() {
        let mut rx = mio::net::UdpSocket::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        socket2::SockRef::from(&rx)
            .set_recv_buffer_size(4 << 20)
            .unwrap();
        let mut r = Receiver::new(&rx, true);
        assert!(r.gro(), "this kernel has UDP_GRO (Linux >= 5.0)");
        let tx = mio::net::UdpSocket::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let mut s = Sender::new(&tx, true);
        let dest = rx.local_addr().unwrap();
        // Frames of 20 full chunks and a short one, three times.
        let lens: Vec<usize> = (0..63)
            .map(|k| if k % 21 == 20 { 77 + k } else { 1316 })
            .collect();
        let mut q: Vec<Transmit> = lens
            .iter()
            .enumerate()
            .map(|(k, &len)| Transmit {
                dest,
                payload: pattern(k as u32, len),
            })
            .collect();
        let mut stats = SendStats::default();
        s.send(&tx, &mut q, &mut stats).unwrap();
        assert_eq!((stats.sent, stats.gso_sends), (63, 3));
        let got = collect(&mut rx, &mut r, 63);
        assert_eq!(got.len(), 63);
        let from = tx.local_addr().unwrap();
        for (k, (a, d)) in got.iter().enumerate() {
            assert_eq!(*a, from);
            assert_eq!(&d[..], &pattern(k as u32, lens[k])[..], "datagram {k}");
        }
        assert!(r.gro_receives() >= 1, "super-datagrams arrived whole");
    }

    #[test]
    fn plain_receiver_without_gro_gets_the_same_datagrams() {
        let mut rx = mio::net::UdpSocket::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let mut r = Receiver::new(&rx, false);
        assert!(!r.gro());
        let tx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let dest = rx.local_addr().unwrap();
        for k in 0..40u32 {
            tx.send_to(&pattern(k, 200 + k as usize), dest).unwrap();
        }
        // One datagram larger than the buffer: cut, and counted.
        tx.send_to(&vec![1u8; PLAIN_BUFFER + 10], dest).unwrap();
        let got = collect(&mut rx, &mut r, 41);
        assert_eq!(got.len(), 41);
        for (k, (_, d)) in got.iter().take(40).enumerate() {
            assert_eq!(&d[..], &pattern(k as u32, 200 + k)[..]);
        }
        assert_eq!(got[40].1.len(), PLAIN_BUFFER);
        assert_eq!(r.truncated(), 1);
        assert_eq!(r.gro_receives(), 0);
    }

    #[test]
    fn kernel_timestamps_tell_when_datagrams_arrived_not_when_they_were_read() {
        let rx = mio::net::UdpSocket::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        assert!(enable_timestamps(&rx), "Linux has SO_TIMESTAMPNS");
        let mut r = Receiver::new(&rx, false);
        let tx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let dest = rx.local_addr().unwrap();
        // The kernel turns arrival stamping on a moment after the first socket asks (a
        // deferred static key); until then it stamps datagrams when they are read. So a few
        // tries, bounded.
        let slack = Duration::from_millis(5);
        let mut arrival_stamped = false;
        for _ in 0..40 {
            let before = Instant::now();
            for k in 0..5u32 {
                tx.send_to(&pattern(k, 300), dest).unwrap();
            }
            // Loopback delivers within send_to: the datagrams are queued by now.
            let sent = Instant::now();
            // The reader comes 30 ms late (a busy loop), as a lagging load generator would.
            while sent.elapsed() < Duration::from_millis(30) {
                std::hint::spin_loop();
            }
            let mut stamps = Vec::new();
            let got = r.recv(&rx).expect("queued datagrams");
            assert_eq!(got, 5);
            r.for_each_at(|_, d, at| stamps.push((d.len(), at)));
            let read = Instant::now();
            // Each a kernel timestamp, never after the read; on arrival, within 5 ms of the
            // sending (the two clocks are read one after the other), 25 ms before the read.
            for &(len, at) in &stamps {
                assert_eq!(len, 300);
                assert!(at.expect("a kernel timestamp") <= read);
            }
            if stamps.iter().all(|&(_, at)| {
                let at = at.unwrap();
                at + slack >= before
                    && at <= sent + slack
                    && read.duration_since(at) >= Duration::from_millis(25)
            }) {
                arrival_stamped = true;
                break;
            }
        }
        assert!(arrival_stamped, "datagrams stamped when they arrived");
        // Without timestamps asked for there are none.
        let rx2 = mio::net::UdpSocket::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let mut r2 = Receiver::new(&rx2, false);
        tx.send_to(&pattern(9, 100), rx2.local_addr().unwrap())
            .unwrap();
        assert_eq!(r2.recv(&rx2).unwrap(), 1);
        let mut none = 0;
        r2.for_each_at(|_, _, at| none += usize::from(at.is_none()));
        assert_eq!((none, r2.stamped()), (1, 0));
    }
}
