//! A fault-injecting stream wrapper, for tests (feature `test-util`).

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// What a [`FaultyStream`] does wrong, and at which byte.
///
/// Byte offsets count from the start of each direction. An empty plan (the default) passes
/// everything through unchanged.
///
/// ```
/// use std::io::ErrorKind;
/// use fairio_fd::FaultPlan;
///
/// // Reads of at most 3 bytes, two Pending polls before each operation,
/// // and a connection reset once 100 bytes have been read.
/// let plan = FaultPlan::default()
///     .max_read(3)
///     .pending_polls(2)
///     .read_error_at(100, ErrorKind::ConnectionReset);
/// # let _ = plan;
/// ```
#[derive(Clone, Debug, Default)]
pub struct FaultPlan {
    max_read: Option<usize>,
    max_write: Option<usize>,
    pending_polls: u32,
    read_error_at: Option<(u64, io::ErrorKind)>,
    write_error_at: Option<(u64, io::ErrorKind)>,
    read_eof_at: Option<u64>,
    write_stall_at: Option<u64>,
}

impl FaultPlan {
    /// Each read returns at most `n` bytes (short reads). `n` is raised to 1.
    pub fn max_read(mut self, n: usize) -> Self {
        self.max_read = Some(n.max(1));
        self
    }

    /// Each write accepts at most `n` bytes (short writes). `n` is raised to 1.
    pub fn max_write(mut self, n: usize) -> Self {
        self.max_write = Some(n.max(1));
        self
    }

    /// Before each read or write completes, return `Pending` this many times (waking at once).
    pub fn pending_polls(mut self, n: u32) -> Self {
        self.pending_polls = n;
        self
    }

    /// Reads fail with `kind` once `at` bytes have been read; earlier reads stop short of it.
    pub fn read_error_at(mut self, at: u64, kind: io::ErrorKind) -> Self {
        self.read_error_at = Some((at, kind));
        self
    }

    /// Writes fail with `kind` once `at` bytes have been written.
    pub fn write_error_at(mut self, at: u64, kind: io::ErrorKind) -> Self {
        self.write_error_at = Some((at, kind));
        self
    }

    /// Reads return end-of-file once `at` bytes have been read.
    pub fn read_eof_at(mut self, at: u64) -> Self {
        self.read_eof_at = Some(at);
        self
    }

    /// Writes stay `Pending` forever, never waking, once `at` bytes have been written: a peer
    /// that never reads.
    pub fn write_stall_at(mut self, at: u64) -> Self {
        self.write_stall_at = Some(at);
        self
    }
}

/// Wraps a stream and injects the faults of a [`FaultPlan`].
#[derive(Debug)]
pub struct FaultyStream<S> {
    inner: S,
    plan: FaultPlan,
    read: u64,
    written: u64,
    read_pending_left: u32,
    write_pending_left: u32,
}

impl<S> FaultyStream<S> {
    /// Wraps `inner` with the faults of `plan`.
    pub fn new(inner: S, plan: FaultPlan) -> Self {
        let n = plan.pending_polls;
        Self {
            inner,
            plan,
            read: 0,
            written: 0,
            read_pending_left: n,
            write_pending_left: n,
        }
    }

    /// Bytes that went through the read side so far.
    pub fn bytes_read(&self) -> u64 {
        self.read
    }

    /// Bytes that went through the write side so far.
    pub fn bytes_written(&self) -> u64 {
        self.written
    }
}

/// Returns `Pending` (waking at once) while `left` is positive, counting it down.
fn injected_pending(left: &mut u32, cx: &mut Context<'_>) -> bool {
    if *left == 0 {
        return false;
    }
    *left -= 1;
    cx.waker().wake_by_ref();
    true
}

/// Distance from `pos` to a fault at `at`, if one lies ahead.
fn distance(pos: u64, at: Option<u64>) -> Option<usize> {
    at.map(|at| usize::try_from(at.saturating_sub(pos)).unwrap_or(usize::MAX))
}

impl<S: AsyncRead + Unpin> AsyncRead for FaultyStream<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        if injected_pending(&mut this.read_pending_left, cx) {
            return Poll::Pending;
        }
        let mut allowed = buf
            .remaining()
            .min(this.plan.max_read.unwrap_or(usize::MAX));
        if let Some(d) = distance(this.read, this.plan.read_error_at.map(|(at, _)| at)) {
            if d == 0 {
                let kind = this
                    .plan
                    .read_error_at
                    .map_or(io::ErrorKind::Other, |(_, k)| k);
                return Poll::Ready(Err(io::Error::new(kind, "injected read fault")));
            }
            allowed = allowed.min(d);
        }
        if let Some(d) = distance(this.read, this.plan.read_eof_at) {
            if d == 0 {
                return Poll::Ready(Ok(()));
            }
            allowed = allowed.min(d);
        }
        let dst = buf.initialize_unfilled_to(allowed);
        let mut sub = ReadBuf::new(&mut dst[..allowed]);
        let r = Pin::new(&mut this.inner).poll_read(cx, &mut sub);
        if let Poll::Ready(Ok(())) = r {
            let n = sub.filled().len();
            buf.advance(n);
            this.read += n as u64;
        }
        if r.is_ready() {
            this.read_pending_left = this.plan.pending_polls;
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for FaultyStream<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        if injected_pending(&mut this.write_pending_left, cx) {
            return Poll::Pending;
        }
        let mut allowed = buf.len().min(this.plan.max_write.unwrap_or(usize::MAX));
        if let Some(d) = distance(this.written, this.plan.write_error_at.map(|(at, _)| at)) {
            if d == 0 {
                let kind = this
                    .plan
                    .write_error_at
                    .map_or(io::ErrorKind::Other, |(_, k)| k);
                return Poll::Ready(Err(io::Error::new(kind, "injected write fault")));
            }
            allowed = allowed.min(d);
        }
        if let Some(d) = distance(this.written, this.plan.write_stall_at) {
            if d == 0 {
                // A peer that never reads: no progress and no wake-up, ever.
                return Poll::Pending;
            }
            allowed = allowed.min(d);
        }
        let r = Pin::new(&mut this.inner).poll_write(cx, &buf[..allowed]);
        if let Poll::Ready(Ok(n)) = r {
            this.written += n as u64;
        }
        if r.is_ready() {
            this.write_pending_left = this.plan.pending_polls;
        }
        r
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    #[tokio::test]
    async fn short_reads_then_error_at_the_exact_byte() {
        let (mut a, b) = tokio::io::duplex(1024);
        a.write_all(&[7u8; 50]).await.unwrap();
        let plan = FaultPlan::default()
            .max_read(4)
            .pending_polls(3)
            .read_error_at(10, io::ErrorKind::ConnectionReset);
        let mut s = FaultyStream::new(b, plan);
        let mut buf = [0u8; 32];
        assert_eq!(s.read(&mut buf).await.unwrap(), 4);
        assert_eq!(s.read(&mut buf).await.unwrap(), 4);
        assert_eq!(s.read(&mut buf).await.unwrap(), 2);
        let err = s.read(&mut buf).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::ConnectionReset);
        assert_eq!(s.bytes_read(), 10);
    }

    #[tokio::test]
    async fn early_eof_and_short_writes() {
        let (a, mut b) = tokio::io::duplex(1024);
        let mut s = FaultyStream::new(a, FaultPlan::default().max_write(3).read_eof_at(2));
        assert_eq!(s.write(b"hello").await.unwrap(), 3);
        s.write_all(b"lo world").await.unwrap();
        b.write_all(b"xyz").await.unwrap();
        let mut got = Vec::new();
        s.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"xy");
        let mut peer = [0u8; 11];
        b.read_exact(&mut peer).await.unwrap();
        assert_eq!(&peer, b"hello world");
    }

    #[tokio::test(start_paused = true)]
    async fn write_error_and_stall() {
        let (a, _b) = tokio::io::duplex(1024);
        let plan = FaultPlan::default().write_error_at(5, io::ErrorKind::BrokenPipe);
        let mut s = FaultyStream::new(a, plan);
        assert_eq!(s.write(b"0123456789").await.unwrap(), 5);
        assert_eq!(
            s.write(b"x").await.unwrap_err().kind(),
            io::ErrorKind::BrokenPipe
        );

        let (c, _d) = tokio::io::duplex(1024);
        let mut stalled = FaultyStream::new(c, FaultPlan::default().write_stall_at(2));
        assert_eq!(stalled.write(b"abc").await.unwrap(), 2);
        let r = tokio::time::timeout(Duration::from_secs(60), stalled.write(b"c")).await;
        assert!(r.is_err(), "a stalled write never completes");
    }
}
