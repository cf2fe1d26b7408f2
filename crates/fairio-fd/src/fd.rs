//! [`Fd`]: one owned stream of any transport, and its two halves.

use std::any::Any;
use std::fmt;
use std::io;
use std::num::NonZeroU32;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};

use crate::held::{Reading, Whole, Writing};
use crate::info::{Probe, ProbeGuard};
use crate::{CloseReason, FdInfo, UnsentBound};

/// Any byte stream an [`Fd`] can wrap. Implemented for every type with the bounds.
pub trait Stream: AsyncRead + AsyncWrite + Send + Unpin + 'static {}

impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Stream for T {}

/// Ids start at 1 and are never reused in a process, so 0 can never name a live stream.
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// One owned byte stream of any transport, with a unique id, byte counters and a closing reason.
///
/// `Fd` implements `AsyncRead` and `AsyncWrite` itself; [`Fd::split`] gives two halves that a
/// reader task and a writer task can own separately.
///
/// The stream is boxed once, at construction (a `TcpStream` is kept as it is, and splits into
/// tokio's owned halves); reads and writes allocate nothing.
pub struct Fd {
    // Drops before the stream: the probe's last reading needs the socket open.
    _probe: Arc<ProbeGuard>,
    stream: Whole,
    info: Arc<FdInfo>,
}

impl Fd {
    /// Wraps `stream`, giving it a fresh id. The stream's kernel buffers are left as they are.
    pub fn new<S: Stream>(stream: S) -> Self {
        Self::build(stream, UnsentBound::Unbounded)
    }

    /// Wraps `stream` as [`new`](Self::new) does, and bounds what its kernel takes ahead of the
    /// peer to `limit` bytes where it knows how: see [`UnsentBound`] for each kind of stream.
    /// [`FdInfo::unsent_bound`] says what was set.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> std::io::Result<()> {
    /// use fairio_fd::{DEFAULT_UNSENT_LIMIT, Fd, UnsentBound};
    ///
    /// let (a, _b) = tokio::io::duplex(64);
    /// let fd = Fd::with_unsent_limit(a, Some(DEFAULT_UNSENT_LIMIT));
    /// assert_eq!(fd.info().unsent_bound(), UnsentBound::Unbounded); // a pipe in memory
    /// # Ok(())
    /// # }
    /// ```
    pub fn with_unsent_limit<S: Stream>(stream: S, limit: Option<NonZeroU32>) -> Self {
        let bound = match limit {
            Some(limit) => crate::unsent::apply(&stream as &dyn Any, limit),
            None => UnsentBound::Unbounded,
        };
        Self::build(stream, bound)
    }

    fn build<S: Stream>(stream: S, bound: UnsentBound) -> Self {
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        let stream = Whole::new(stream);
        let probe = stream.probe().unwrap_or(Probe::Unknown);
        let info = Arc::new(FdInfo::new(id, bound, probe));
        Self {
            _probe: Arc::new(ProbeGuard(Arc::clone(&info))),
            stream,
            info,
        }
    }

    /// The stream's unique id.
    pub fn id(&self) -> u64 {
        self.info.id()
    }

    /// The shared counters and closing reason; stays valid after the `Fd` is gone.
    pub fn info(&self) -> &Arc<FdInfo> {
        &self.info
    }

    /// Splits the stream into a read half and a write half that can move to different tasks.
    pub fn split(self) -> (FdReadHalf, FdWriteHalf) {
        let (r, w) = self.stream.split();
        (
            FdReadHalf {
                _probe: Arc::clone(&self._probe),
                inner: r,
                info: Arc::clone(&self.info),
            },
            FdWriteHalf {
                _probe: self._probe,
                inner: w,
                info: self.info,
            },
        )
    }

    /// Records `reason` (unless a reason was recorded already), shuts down the write half (which
    /// sends a FIN on TCP), then drops the stream.
    ///
    /// # Errors
    /// Returns the error of the shutdown. The stream is dropped, and so closed, either way.
    ///
    /// # Cancel safety
    /// Dropping the future drops the stream: it closes, possibly without the FIN.
    pub async fn close(mut self, reason: CloseReason) -> io::Result<()> {
        self.info.set_close_reason(reason);
        self.shutdown().await
    }
}

impl fmt::Debug for Fd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Fd")
            .field("info", &self.info)
            .finish_non_exhaustive()
    }
}

/// Counts the bytes a read added to `buf` since it held `before` filled bytes.
fn count_read(info: &FdInfo, buf: &ReadBuf<'_>, before: usize, r: &io::Result<()>) {
    if r.is_ok() {
        info.add_read(buf.filled().len() - before);
    }
}

/// A shutdown that succeeded queued a FIN, which the kernel counts as one more byte.
fn count_shutdown(info: &FdInfo, r: &io::Result<()>) {
    if r.is_ok() {
        info.set_fin_sent();
    }
}

fn count_written(info: &FdInfo, r: &io::Result<usize>) {
    if let Ok(n) = r {
        info.add_written(*n);
    }
}

impl AsyncRead for Fd {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = ready!(Pin::new(self.stream.get()).poll_read(cx, buf));
        count_read(&self.info, buf, before, &r);
        Poll::Ready(r)
    }
}

impl AsyncWrite for Fd {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = ready!(Pin::new(self.stream.get()).poll_write(cx, buf));
        count_written(&self.info, &r);
        Poll::Ready(r)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = ready!(Pin::new(self.stream.get()).poll_write_vectored(cx, bufs));
        count_written(&self.info, &r);
        Poll::Ready(r)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.get_ref().is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(self.stream.get()).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let r = ready!(Pin::new(self.stream.get()).poll_shutdown(cx));
        count_shutdown(&self.info, &r);
        Poll::Ready(r)
    }
}

/// The read half of a split [`Fd`].
pub struct FdReadHalf {
    // Shared with the write half; whichever drops last takes the probe's last reading, before
    // its own half of the socket goes.
    _probe: Arc<ProbeGuard>,
    inner: Reading,
    info: Arc<FdInfo>,
}

impl FdReadHalf {
    /// The shared counters and closing reason of the whole stream.
    pub fn info(&self) -> &Arc<FdInfo> {
        &self.info
    }
}

#[cfg(all(target_os = "linux", not(loom)))]
impl FdReadHalf {
    /// The TCP stream under this half (whose write half shares it), if it is one: for
    /// `splice(2)`, and for waiting on its readiness.
    pub fn tcp(&self) -> Option<&tokio::net::TcpStream> {
        self.inner.tcp()
    }

    /// [`splice::poll_readable`](crate::splice::poll_readable) on this half's TCP stream.
    ///
    /// # Errors
    /// `Unsupported` for a stream that is not TCP, else the socket's error.
    pub fn poll_readable(&self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        crate::splice::poll_readable(self.tcp_or_err()?, cx)
    }

    /// [`splice::poll_splice_from`](crate::splice::poll_splice_from) this half's TCP stream,
    /// counted as read.
    ///
    /// # Errors
    /// `Unsupported` for a stream that is not TCP, else as `poll_splice_from`.
    pub fn poll_splice_into(
        &self,
        cx: &mut Context<'_>,
        pipe: &mut crate::splice::Pipe,
        max: usize,
    ) -> Poll<io::Result<usize>> {
        let r = ready!(crate::splice::poll_splice_from(
            self.tcp_or_err()?,
            cx,
            pipe,
            max
        ));
        if let Ok(n) = &r {
            self.info.add_read(*n);
        }
        Poll::Ready(r)
    }

    /// [`splice::poll_splice_to`](crate::splice::poll_splice_to) this half's TCP stream (the
    /// socket its write half writes to), counted as written.
    ///
    /// # Errors
    /// `Unsupported` for a stream that is not TCP, else as `poll_splice_to`.
    pub fn poll_splice_out_of(
        &self,
        pipe: &mut crate::splice::Pipe,
        cx: &mut Context<'_>,
        max: usize,
    ) -> Poll<io::Result<usize>> {
        let r = ready!(crate::splice::poll_splice_to(
            pipe,
            self.tcp_or_err()?,
            cx,
            max
        ));
        count_written(&self.info, &r);
        Poll::Ready(r)
    }

    fn tcp_or_err(&self) -> io::Result<&tokio::net::TcpStream> {
        self.tcp()
            .ok_or_else(|| io::Error::new(io::ErrorKind::Unsupported, "not a TCP stream"))
    }
}

impl fmt::Debug for FdReadHalf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FdReadHalf")
            .field("info", &self.info)
            .finish_non_exhaustive()
    }
}

impl AsyncRead for FdReadHalf {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = ready!(Pin::new(self.inner.get()).poll_read(cx, buf));
        count_read(&self.info, buf, before, &r);
        Poll::Ready(r)
    }
}

/// The write half of a split [`Fd`].
pub struct FdWriteHalf {
    // Drops before the half: the probe's last reading needs the socket open.
    _probe: Arc<ProbeGuard>,
    inner: Writing,
    info: Arc<FdInfo>,
}

impl FdWriteHalf {
    /// The shared counters and closing reason of the whole stream.
    pub fn info(&self) -> &Arc<FdInfo> {
        &self.info
    }

    /// Ready once the stream may take a write; for a TCP stream, once the kernel reports it
    /// writable (with `TCP_NOTSENT_LOWAT`, once the unsent bytes fall below half the bound).
    /// Other streams cannot tell without writing, and are always ready.
    ///
    /// A writer that found the stream full waits here without holding bytes it could not move.
    ///
    /// # Errors
    /// The socket's error, if it has one.
    pub fn poll_write_ready(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.inner.poll_write_ready(cx)
    }

    /// Whether [`poll_write_ready`](Self::poll_write_ready) tells anything: a TCP stream.
    pub fn reports_readiness(&self) -> bool {
        self.inner.is_tcp()
    }

    /// Records `reason` (unless one was recorded already) and shuts down the write half, which
    /// sends a FIN on TCP. The stream itself closes once the read half is dropped too.
    ///
    /// # Errors
    /// Returns the error of the shutdown.
    ///
    /// # Cancel safety
    /// Dropping the future drops this half; the FIN may not have been sent (a TCP write half
    /// sends it as it is dropped).
    pub async fn close(mut self, reason: CloseReason) -> io::Result<()> {
        self.info.set_close_reason(reason);
        self.shutdown().await
    }
}

impl Drop for FdWriteHalf {
    fn drop(&mut self) {
        // A TCP write half dropped without a shutdown sends its FIN as it goes. If the read
        // half outlives it, the probe's last reading comes later and counts that FIN: mark it.
        // (If this half goes last, its reading comes first, before the FIN.)
        if self.inner.is_tcp() && Arc::strong_count(&self._probe) > 1 {
            self.info.set_fin_sent();
        }
    }
}

impl fmt::Debug for FdWriteHalf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FdWriteHalf")
            .field("info", &self.info)
            .finish_non_exhaustive()
    }
}

impl AsyncWrite for FdWriteHalf {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = ready!(Pin::new(self.inner.get()).poll_write(cx, buf));
        count_written(&self.info, &r);
        Poll::Ready(r)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = ready!(Pin::new(self.inner.get()).poll_write_vectored(cx, bufs));
        count_written(&self.info, &r);
        Poll::Ready(r)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.get_ref().is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(self.inner.get()).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let r = ready!(Pin::new(self.inner.get()).poll_shutdown(cx));
        count_shutdown(&self.info, &r);
        Poll::Ready(r)
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    #[tokio::test]
    async fn ids_are_unique_and_counters_follow_both_halves() {
        let (a, b) = tokio::io::duplex(1024);
        let fa = Fd::new(a);
        let mut fb = Fd::new(b);
        assert_ne!(fa.id(), fb.id());
        assert_ne!(fa.id(), 0);
        let info = Arc::clone(fa.info());
        let (mut r, mut w) = fa.split();
        w.write_all(b"0123456789").await.unwrap();
        fb.write_all(b"abc").await.unwrap();
        let mut buf = [0u8; 3];
        r.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"abc");
        assert_eq!(info.bytes_written(), 10);
        assert_eq!(info.bytes_read(), 3);
        assert_eq!(fb.info().bytes_read(), 0);
        assert_eq!(fb.info().bytes_written(), 3);
    }

    #[tokio::test]
    async fn close_sends_eof_and_first_reason_wins() {
        let (a, b) = tokio::io::duplex(64);
        let fa = Fd::new(a);
        let info = Arc::clone(fa.info());
        info.set_close_reason(CloseReason::Io(io::ErrorKind::ConnectionReset));
        fa.close(CloseReason::LocalClose).await.unwrap();
        assert_eq!(
            info.close_reason(),
            Some(CloseReason::Io(io::ErrorKind::ConnectionReset))
        );
        let mut fb = Fd::new(b);
        let mut rest = Vec::new();
        assert_eq!(fb.read_to_end(&mut rest).await.unwrap(), 0);
    }

    #[tokio::test]
    async fn write_half_close_sends_fin_while_reading_goes_on() {
        let (a, b) = tokio::io::duplex(64);
        let (mut ra, wa) = Fd::new(a).split();
        let (mut rb, mut wb) = Fd::new(b).split();
        wa.close(CloseReason::LocalClose).await.unwrap();
        let mut rest = Vec::new();
        assert_eq!(rb.read_to_end(&mut rest).await.unwrap(), 0);
        // The other direction still works after our FIN.
        wb.write_all(b"late").await.unwrap();
        let mut buf = [0u8; 4];
        ra.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"late");
        assert_eq!(ra.info().close_reason(), Some(CloseReason::LocalClose));
    }

    #[tokio::test]
    async fn tcp_streams_work_too() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (client, server) =
            tokio::join!(tokio::net::TcpStream::connect(addr), listener.accept());
        let mut c = Fd::new(client.unwrap());
        let mut s = Fd::new(server.unwrap().0);
        c.write_all(b"over tcp").await.unwrap();
        c.close(CloseReason::LocalClose).await.unwrap();
        let mut got = Vec::new();
        s.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"over tcp");
    }
}
