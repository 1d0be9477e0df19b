//! Batched sends: `sendmmsg(2)` hands the kernel up to [`BATCH`] datagrams with their own
//! destinations in one system call (socket2 has no wrapper; libc does). A relay fanning one
//! datagram out to many subscribers spends most of its time in system calls without it.

use std::io;

use crate::proto::node::Transmit;

/// Datagrams per system call.
pub const BATCH: usize = 64;

/// Sends the datagrams of `batch` in order with as few system calls as possible; returns
/// how many were sent. An error is returned only if the first datagram could not be sent.
#[cfg(target_os = "linux")]
pub fn send_batch(socket: &mio::net::UdpSocket, batch: &[Transmit]) -> io::Result<usize> {
    use std::os::fd::AsRawFd;

    use socket2::SockAddr;

    let n = batch.len().min(BATCH);
    if n == 0 {
        return Ok(0);
    }
    let addrs: Vec<SockAddr> = batch[..n].iter().map(|t| SockAddr::from(t.dest)).collect();
    let mut iovs: Vec<libc::iovec> = batch[..n]
        .iter()
        .map(|t| libc::iovec {
            iov_base: t.payload.as_ptr() as *mut libc::c_void,
            iov_len: t.payload.len(),
        })
        .collect();
    let mut msgs: Vec<libc::mmsghdr> = Vec::with_capacity(n);
    for i in 0..n {
        // SAFETY: an all-zero msghdr is a valid empty header; the fields set below point
        // into `addrs` and `iovs`, which outlive the system call.
        let mut hdr: libc::msghdr = unsafe { std::mem::zeroed() };
        hdr.msg_name = addrs[i].as_ptr() as *mut libc::c_void;
        hdr.msg_namelen = addrs[i].len();
        hdr.msg_iov = &mut iovs[i];
        hdr.msg_iovlen = 1;
        msgs.push(libc::mmsghdr {
            msg_hdr: hdr,
            msg_len: 0,
        });
    }
    // SAFETY: `msgs` holds `n` initialised headers whose pointers stay valid for the call.
    let r = unsafe { libc::sendmmsg(socket.as_raw_fd(), msgs.as_mut_ptr(), n as libc::c_uint, 0) };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r as usize)
    }
}

/// Portable fallback: one `send_to` per datagram.
#[cfg(not(target_os = "linux"))]
pub fn send_batch(socket: &mio::net::UdpSocket, batch: &[Transmit]) -> io::Result<usize> {
    let mut sent = 0;
    for t in batch.iter().take(BATCH) {
        match socket.send_to(&t.payload, t.dest) {
            Ok(_) => sent += 1,
            Err(e) if sent == 0 => return Err(e),
            Err(_) => break,
        }
    }
    Ok(sent)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    #[test]
    fn a_batch_reaches_several_destinations_in_order() {
        let tx = mio::net::UdpSocket::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let rx: Vec<std::net::UdpSocket> = (0..3)
            .map(|_| std::net::UdpSocket::bind("127.0.0.1:0").unwrap())
            .collect();
        let batch: Vec<Transmit> = (0..9u8)
            .map(|i| Transmit {
                dest: rx[i as usize % 3].local_addr().unwrap(),
                payload: Bytes::from(vec![i; 10 + i as usize]),
            })
            .collect();
        assert_eq!(send_batch(&tx, &batch).unwrap(), 9);
        let mut buf = [0u8; 64];
        for (k, r) in rx.iter().enumerate() {
            r.set_read_timeout(Some(std::time::Duration::from_secs(2)))
                .unwrap();
            for j in 0..3 {
                let (n, _) = r.recv_from(&mut buf).unwrap();
                let want = (k + 3 * j) as u8;
                assert_eq!(&buf[..n], &vec![want; 10 + want as usize][..]);
            }
        }
    }
}
