//! Small queued messages leave in vectored writes, not one system call each, and arrive whole
//! and in order; with a stream that does not take vectored writes, they leave one by one.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};

use bytes::Bytes;
use fairio::{Config, Scheduler};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, DuplexStream, ReadBuf};

/// A duplex stream that counts the writes made on it, and takes vectored writes if told to.
struct Counting {
    inner: DuplexStream,
    vectored: bool,
    writes: Arc<AtomicUsize>,
}

impl AsyncRead for Counting {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Counting {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if r.is_ready() {
            self.writes.fetch_add(1, Ordering::Relaxed);
        }
        r
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let flat: Vec<u8> = bufs.iter().flat_map(|b| b.iter().copied()).collect();
        self.as_mut().poll_write(cx, &flat)
    }

    fn is_write_vectored(&self) -> bool {
        self.vectored
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Queues 200 messages of 100 B before the connection's task first runs, reads them back, and
/// returns how many writes carried them.
async fn writes_for_200_messages(vectored: bool) -> usize {
    let (a, mut b) = tokio::io::duplex(1 << 20);
    let writes = Arc::new(AtomicUsize::new(0));
    let stream = Counting {
        inner: a,
        vectored,
        writes: Arc::clone(&writes),
    };
    let sched = Scheduler::new(Config::new(4096)).unwrap();
    let conn = sched.register(stream).unwrap();
    let mut sent = Vec::new();
    for i in 0..200u32 {
        let msg: Vec<u8> = (0..100).map(|k| (i * 7 + k) as u8).collect();
        sent.extend_from_slice(&msg);
        assert!(conn.write_now(Bytes::from(msg)), "the queue is unbounded");
    }
    let mut got = vec![0u8; sent.len()];
    b.read_exact(&mut got).await.unwrap();
    assert_eq!(got, sent, "bytes arrive whole and in order");
    conn.close(None).await.unwrap();
    sched.shutdown(None).await;
    writes.load(Ordering::Relaxed)
}

#[tokio::test(flavor = "current_thread")]
async fn small_messages_are_gathered_into_vectored_writes() {
    // 20,000 bytes in writes of at most 64 chunks each: 4 writes (200 / 64, rounded up).
    let n = writes_for_200_messages(true).await;
    assert!(n <= 4, "200 small messages took {n} writes");
}

#[tokio::test(flavor = "current_thread")]
async fn without_vectored_writes_each_message_is_written_alone() {
    let n = writes_for_200_messages(false).await;
    assert_eq!(n, 200);
}
