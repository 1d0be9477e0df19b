//! The interface every sans-IO protocol node (publisher, relay, viewer) offers to its driver.
//!
//! The pattern follows quinn-proto and str0m: the driver feeds datagrams and the current
//! time in, then drains outputs until `None`, then sleeps until `poll_timeout`. Nothing in a
//! node reads a clock, touches a socket or sleeps, so the same node runs under the mio
//! driver ([`crate::driver`]) and inside the simulated network ([`crate::sim`]).

use std::net::SocketAddr;
use std::time::Instant;

use bytes::Bytes;

/// One datagram a node wants sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// Where the datagram goes.
    pub dest: SocketAddr,
    /// The whole UDP payload (header, body and CRC). Reference-counted so that a relay fans
    /// one datagram out to many subscribers without copying it.
    pub payload: Bytes,
}

/// A sans-IO protocol endpoint.
///
/// Call order for a driver: after any input (`handle_datagram`, `handle_timeout`, or a
/// node-specific input such as pushing a frame), drain [`Node::poll_transmit`] until it
/// returns `None`, then wait until [`Node::poll_timeout`] (or the next input).
pub trait Node {
    /// Feeds one received datagram. `now` must not go backwards between calls (a node
    /// clamps it if it does). Malformed datagrams are counted and dropped, never a panic.
    fn handle_datagram(&mut self, now: Instant, from: SocketAddr, datagram: &[u8]);

    /// As [`Node::handle_datagram`], for a datagram that reached the socket at `arrived`
    /// (the kernel's receive timestamp, no later than `now`): a node that bounds how long
    /// what it received may wait (the relay's fan-out, proto-spec.md §7.3) counts from then,
    /// so a driver that read late does not stretch the bound. The default ignores it.
    fn handle_datagram_at(
        &mut self,
        now: Instant,
        arrived: Instant,
        from: SocketAddr,
        datagram: &[u8],
    ) {
        let _ = arrived;
        self.handle_datagram(now, from, datagram);
    }

    /// Runs every timer that is due at `now`. Spurious calls are harmless.
    fn handle_timeout(&mut self, now: Instant);

    /// The soonest instant at which [`Node::handle_timeout`] has work to do.
    fn poll_timeout(&self) -> Option<Instant>;

    /// The next datagram to send, if any is ready at `now`.
    fn poll_transmit(&mut self, now: Instant) -> Option<Transmit>;

    /// The driver's socket refused a send at `now` (EAGAIN/ENOBUFS: its buffer is full).
    /// A relay puts the frames it then skips down to the socket buffer (proto-spec.md §7.3);
    /// other nodes ignore it. The driver calls it once per refused send call.
    fn on_send_blocked(&mut self, now: Instant) {
        let _ = now;
    }
}

/// The earliest of two optional deadlines (str0m's `soonest`).
pub fn soonest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, None) => a,
        (None, b) => b,
    }
}
