//! UDP socket setup with socket2: large buffers, read back and reported (the kernel clamps
//! them silently to net.core.rmem_max / wmem_max, the first cause of loss at high bitrates).

use std::io;
use std::net::SocketAddr;

use socket2::{Domain, Protocol, Socket, Type};

/// Socket buffer (send and receive, bytes) asked for by every role: several MB for video
/// (PROTOCOL-NOTES); the kernel may clamp it (see [`warn_if_clamped`]).
pub const SOCKET_BUFFER: usize = 4 * 1024 * 1024;

/// What the kernel granted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct BufferSizes {
    /// Receive buffer asked for, bytes.
    pub recv_wanted: usize,
    /// Receive buffer granted (Linux reports twice the usable size).
    pub recv_granted: usize,
    /// Send buffer asked for.
    pub send_wanted: usize,
    /// Send buffer granted.
    pub send_granted: usize,
}

impl BufferSizes {
    /// A one-line warning if the kernel gave less than asked, naming the sysctl to raise.
    pub fn clamp_warning(&self) -> Option<String> {
        // Linux stores (and reports) twice the value asked for, for its own bookkeeping,
        // capped at twice net.core.rmem_max / wmem_max.
        let factor = if cfg!(target_os = "linux") { 2 } else { 1 };
        let mut msgs = Vec::new();
        if self.recv_granted < self.recv_wanted * factor {
            msgs.push(format!(
                "receive buffer clamped to {} bytes (asked {}): raise it with `sysctl -w net.core.rmem_max={}`",
                self.recv_granted / factor,
                self.recv_wanted,
                self.recv_wanted
            ));
        }
        if self.send_granted < self.send_wanted * factor {
            msgs.push(format!(
                "send buffer clamped to {} bytes (asked {}): raise it with `sysctl -w net.core.wmem_max={}`",
                self.send_granted / factor,
                self.send_wanted,
                self.send_wanted
            ));
        }
        (!msgs.is_empty()).then(|| msgs.join("; "))
    }
}

/// Logs the clamp warning once per process (the demo binds several sockets).
pub fn warn_if_clamped(sizes: &BufferSizes) {
    static WARNED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    if let Some(w) = sizes.clamp_warning() {
        if !WARNED.swap(true, std::sync::atomic::Ordering::Relaxed) {
            log::warn!("{w}");
        }
    }
}

/// Errors binding a socket, worded for the person who typed the address.
#[derive(Debug, thiserror::Error)]
pub enum BindError {
    /// The port is taken.
    #[error(
        "cannot bind {addr}: address already in use (another framecast or program holds it); pick another port"
    )]
    InUse {
        /// The address.
        addr: SocketAddr,
    },
    /// The address is not on this machine.
    #[error(
        "cannot bind {addr}: no such address on this machine; use an address of one of its interfaces, or 0.0.0.0 / [::]"
    )]
    NotAvailable {
        /// The address.
        addr: SocketAddr,
    },
    /// Anything else.
    #[error("cannot bind {addr}: {source}")]
    Other {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        source: io::Error,
    },
}

/// Binds a non-blocking UDP socket with `buffer` bytes of send and receive buffer asked for.
pub fn bind_udp(
    addr: SocketAddr,
    buffer: usize,
) -> Result<(mio::net::UdpSocket, BufferSizes), BindError> {
    let wrap = |source: io::Error| match source.kind() {
        io::ErrorKind::AddrInUse => BindError::InUse { addr },
        io::ErrorKind::AddrNotAvailable => BindError::NotAvailable { addr },
        _ => BindError::Other { addr, source },
    };
    let socket =
        Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP)).map_err(wrap)?;
    let _ = socket.set_recv_buffer_size(buffer);
    let _ = socket.set_send_buffer_size(buffer);
    socket.set_nonblocking(true).map_err(wrap)?;
    socket.bind(&addr.into()).map_err(wrap)?;
    let sizes = BufferSizes {
        recv_wanted: buffer,
        recv_granted: socket.recv_buffer_size().unwrap_or(0),
        send_wanted: buffer,
        send_granted: socket.send_buffer_size().unwrap_or(0),
    };
    Ok((mio::net::UdpSocket::from_std(socket.into()), sizes))
}

/// The address to bind for talking to `peer` from an ephemeral port: loopback for a
/// loopback peer, the unspecified address otherwise, same family.
pub fn ephemeral_for(peer: SocketAddr) -> SocketAddr {
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
    let ip = match (peer.ip(), peer.ip().is_loopback()) {
        (IpAddr::V4(_), true) => IpAddr::V4(Ipv4Addr::LOCALHOST),
        (IpAddr::V4(_), false) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        (IpAddr::V6(_), true) => IpAddr::V6(Ipv6Addr::LOCALHOST),
        (IpAddr::V6(_), false) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    };
    SocketAddr::new(ip, 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn busy_port_is_a_clear_error_and_buffers_are_reported() {
        let (a, sizes) = bind_udp("127.0.0.1:0".parse().unwrap(), 1 << 20).unwrap();
        assert!(sizes.recv_granted > 0 && sizes.send_granted > 0);
        let taken = a.local_addr().unwrap();
        let err = bind_udp(taken, 1 << 16).unwrap_err();
        assert!(matches!(err, BindError::InUse { .. }), "{err}");
        assert!(err.to_string().contains(&taken.to_string()));
        let v6 = bind_udp("[::1]:0".parse().unwrap(), 1 << 16);
        if let Ok((s, _)) = v6 {
            assert!(s.local_addr().unwrap().is_ipv6());
        }
    }
}
