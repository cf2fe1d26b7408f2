//! [`Tapped`]: an in-memory stream whose reads and writes a test watches or breaks.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, DuplexStream, ReadBuf};

/// A duplex stream with hooks: `on_read(n)` after each read that gave `n` bytes, `on_write()`
/// before each write is tried. A hook may count, or panic.
pub(crate) struct Tapped {
    pub(crate) inner: DuplexStream,
    pub(crate) on_read: Box<dyn FnMut(usize) + Send>,
    pub(crate) on_write: Box<dyn FnMut() + Send>,
}

impl Tapped {
    /// `inner` with hooks that do nothing.
    pub(crate) fn new(inner: DuplexStream) -> Self {
        Self {
            inner,
            on_read: Box::new(|_| {}),
            on_write: Box::new(|| {}),
        }
    }
}

impl AsyncRead for Tapped {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = r {
            let n = buf.filled().len() - before;
            (self.on_read)(n);
        }
        r
    }
}

impl AsyncWrite for Tapped {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        (self.on_write)();
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
