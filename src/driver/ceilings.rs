//! This machine's UDP ceilings on loopback, for benchmarks to print beside their figures:
//! how many 1316-byte datagrams a second one sending thread can deliver to one receiving
//! thread with plain `sendmmsg` → `recvmmsg`, with GSO sends, and with GSO sends into a GRO
//! receiver. A relay cannot pass these per core, whatever its own code costs.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::batch::{SendStats, Sender};
use super::recv::Receiver;
use crate::proto::node::Transmit;

/// Payload of each datagram measured, bytes (7 MPEG-TS packets; about a framecast chunk).
pub const CEILING_DATAGRAM: usize = 1316;

/// Datagrams a second delivered on loopback, one thread each side.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Ceilings {
    /// `sendmmsg` (64 datagrams a call) into `recvmmsg`.
    pub sendmmsg: f64,
    /// GSO sends (runs of 49 datagrams, 64 runs a call) into `recvmmsg` without GRO: the
    /// kernel cuts every run into datagrams on the way in.
    pub gso: f64,
    /// GSO sends into a GRO receiver (runs arrive whole and are cut in user space, as the
    /// framecast receivers do).
    pub gso_gro: f64,
}

/// Measures the three [`Ceilings`], each for `per_test` (about 1 s gives stable figures;
/// the whole call takes a little over three times that). Traffic stays on 127.0.0.1.
///
/// # Errors
/// Binding or configuring a loopback socket failed, or the kernel lacks GSO/GRO (then
/// that figure would mean nothing): the error names which.
pub fn measure_loopback_ceilings(per_test: Duration) -> io::Result<Ceilings> {
    Ok(Ceilings {
        sendmmsg: rate(per_test, false, false)?,
        gso: rate(per_test, true, false)?,
        gso_gro: rate(per_test, true, true)?,
    })
}

fn rate(per_test: Duration, gso: bool, gro: bool) -> io::Result<f64> {
    let lo: SocketAddr = ([127, 0, 0, 1], 0).into();
    let mut rx = mio::net::UdpSocket::bind(lo)?;
    socket2::SockRef::from(&rx).set_recv_buffer_size(4 << 20)?;
    let mut receiver = Receiver::new(&rx, gro);
    if gro && !receiver.gro() {
        return Err(io::Error::other("UDP_GRO is not available on this kernel"));
    }
    let tx = std::net::UdpSocket::bind(lo)?; // blocking: a full buffer waits, not spins
    socket2::SockRef::from(&tx).set_send_buffer_size(4 << 20)?;
    let mut sender = Sender::new(&tx, gso);
    if gso && !sender.gso() {
        return Err(io::Error::other("UDP GSO is not available on this kernel"));
    }
    let dest = rx.local_addr()?;
    let per_call = if gso { 64 * 49 } else { 64 };
    let template: Vec<Transmit> = (0..per_call)
        .map(|k| Transmit {
            dest,
            payload: super::batch::pattern(k as u32, CEILING_DATAGRAM),
        })
        .collect();
    let stop = AtomicBool::new(false);
    let mut poll = mio::Poll::new()?;
    poll.registry()
        .register(&mut rx, mio::Token(0), mio::Interest::READABLE)?;
    std::thread::scope(|sc| {
        let send = sc.spawn(|| -> io::Result<Duration> {
            let t0 = Instant::now();
            let mut q = Vec::with_capacity(per_call);
            let mut stats = SendStats::default();
            while t0.elapsed() < per_test {
                q.extend(template.iter().cloned());
                sender.send(&tx, &mut q, &mut stats)?;
                q.clear();
            }
            let took = t0.elapsed();
            stop.store(true, Ordering::Relaxed);
            Ok(took)
        });
        let mut got = 0u64;
        let mut events = mio::Events::with_capacity(4);
        let hard_end = Instant::now() + per_test + Duration::from_secs(2);
        loop {
            match receiver.recv(&rx) {
                Ok(_) => got += receiver.for_each(|_, _| {}) as u64,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if stop.load(Ordering::Relaxed) || Instant::now() > hard_end {
                        break;
                    }
                    poll.poll(&mut events, Some(Duration::from_millis(10)))?;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        let took = send
            .join()
            .map_err(|_| io::Error::other("sending thread panicked"))??;
        Ok(got as f64 / took.as_secs_f64())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ceilings_are_measured_and_ordered_plausibly() {
        let c = measure_loopback_ceilings(Duration::from_millis(150)).unwrap();
        eprintln!("{c:?}");
        // Loose bounds: any machine that runs the tests moves 10,000 datagrams a second
        // on loopback, and none moves a billion.
        for v in [c.sendmmsg, c.gso, c.gso_gro] {
            assert!((1e4..1e9).contains(&v), "{c:?}");
        }
    }
}
