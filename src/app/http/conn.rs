//! The HTTP server's connections: at most a fixed number at once (more are closed on
//! accept), and a client that takes nothing for a stall timeout (`--http-stall-timeout`,
//! default [`STALL_TIMEOUT`]) is cut off, so a stalled browser holds its slot and its buffers
//! for a bounded time only.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Sleep;

/// A connection whose writes have waited this long is closed (the default).
pub const STALL_TIMEOUT: Duration = Duration::from_secs(10);

/// A listener that bounds its connections.
#[derive(Debug)]
pub struct BoundedListener {
    inner: TcpListener,
    open: Arc<AtomicUsize>,
    max: usize,
    stall: Duration,
}

impl BoundedListener {
    /// At most `max` connections open at once; writes that wait `stall` fail.
    pub fn new(inner: TcpListener, max: usize, stall: Duration) -> BoundedListener {
        BoundedListener {
            inner,
            open: Arc::new(AtomicUsize::new(0)),
            max,
            stall,
        }
    }
}

impl axum::serve::Listener for BoundedListener {
    type Io = Conn;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Conn, SocketAddr) {
        loop {
            match self.inner.accept().await {
                Ok((s, a)) => {
                    if self.open.load(Ordering::Relaxed) >= self.max {
                        drop(s); // over the limit: closed at once
                        continue;
                    }
                    let _ = s.set_nodelay(true);
                    self.open.fetch_add(1, Ordering::Relaxed);
                    return (
                        Conn {
                            s,
                            open: self.open.clone(),
                            stall_after: self.stall,
                            stall: None,
                        },
                        a,
                    );
                }
                // Out of file descriptors and the like: wait a little rather than spin.
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }
}

/// One connection: a TCP stream with a write-stall timeout.
#[derive(Debug)]
pub struct Conn {
    s: TcpStream,
    open: Arc<AtomicUsize>,
    stall_after: Duration,
    stall: Option<Pin<Box<Sleep>>>,
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.open.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Conn {
    /// Arms the stall timer while a write waits; an expired timer fails the write.
    fn waited(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        let after = self.stall_after;
        let t = self
            .stall
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(after)));
        match t.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "client took nothing for the stall timeout",
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

use std::future::Future as _;

impl AsyncRead for Conn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.s).poll_read(cx, buf)
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match Pin::new(&mut self.s).poll_write(cx, buf) {
            Poll::Pending => self.waited(cx),
            r => {
                self.stall = None;
                r
            }
        }
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match Pin::new(&mut self.s).poll_write_vectored(cx, bufs) {
            Poll::Pending => self.waited(cx),
            r => {
                self.stall = None;
                r
            }
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.s.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.s).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.s).poll_shutdown(cx)
    }
}
