//! `ConnectionIo`: a flush that has completed is seen before the end of the stream, as on a
//! socket, where the flush completes within the write.

use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use fairio::{Config, Scheduler};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};

/// The peer reads the reply and closes before the writer's task polls its flush again: a
/// protocol that polls its reads first (hyper's HTTP/1 server does) must not see the end of
/// the stream while its flush, already complete, is still pending to it.
#[tokio::test(start_paused = true)]
async fn a_completed_flush_is_seen_before_the_peers_close() {
    let sched = Scheduler::new(Config::new(4096)).unwrap();
    let (ours, mut peer) = tokio::io::duplex(64 * 1024);
    let mut io = sched.register(ours).unwrap().into_io();
    let mut cx = Context::from_waker(Waker::noop());
    let reply = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n";
    assert!(matches!(
        Pin::new(&mut io).poll_write(&mut cx, reply),
        Poll::Ready(Ok(n)) if n == reply.len()
    ));
    // The write pump has not run yet: the flush waits.
    assert!(Pin::new(&mut io).poll_flush(&mut cx).is_pending());
    let mut got = vec![0u8; reply.len()];
    peer.read_exact(&mut got).await.unwrap();
    assert_eq!(&got[..], reply);
    drop(peer);
    tokio::time::sleep(Duration::from_millis(10)).await;
    let mut buf = [0u8; 16];
    let mut rb = ReadBuf::new(&mut buf);
    assert!(
        Pin::new(&mut io).poll_read(&mut cx, &mut rb).is_pending(),
        "the end came before the completed flush"
    );
    assert!(matches!(
        Pin::new(&mut io).poll_flush(&mut cx),
        Poll::Ready(Ok(()))
    ));
    let mut rb = ReadBuf::new(&mut buf);
    assert!(matches!(
        Pin::new(&mut io).poll_read(&mut cx, &mut rb),
        Poll::Ready(Ok(()))
    ));
    assert!(rb.filled().is_empty(), "the end of the stream");
    drop(io);
    sched.shutdown(None).await;
}

/// A caller that dropped its flush gets the end at its next read: the end is held back once.
#[tokio::test(start_paused = true)]
async fn the_end_is_held_back_once_for_an_abandoned_flush() {
    let sched = Scheduler::new(Config::new(4096)).unwrap();
    let (ours, mut peer) = tokio::io::duplex(64 * 1024);
    let mut io = sched.register(ours).unwrap().into_io();
    let mut cx = Context::from_waker(Waker::noop());
    assert!(Pin::new(&mut io).poll_write(&mut cx, b"bye").is_ready());
    assert!(Pin::new(&mut io).poll_flush(&mut cx).is_pending());
    let mut got = [0u8; 3];
    peer.read_exact(&mut got).await.unwrap();
    drop(peer);
    tokio::time::sleep(Duration::from_millis(10)).await;
    let mut buf = [0u8; 16];
    let mut rb = ReadBuf::new(&mut buf);
    assert!(Pin::new(&mut io).poll_read(&mut cx, &mut rb).is_pending());
    let mut rb = ReadBuf::new(&mut buf);
    assert!(matches!(
        Pin::new(&mut io).poll_read(&mut cx, &mut rb),
        Poll::Ready(Ok(()))
    ));
    assert!(rb.filled().is_empty());
    drop(io);
    sched.shutdown(None).await;
}

/// A flush waits for the bytes written before it, not for an empty queue: another handle that
/// keeps the queue busy under a 64 KiB/s limit used to hold a 1-byte flush for over 60 s.
#[tokio::test(start_paused = true)]
async fn a_flush_waits_for_what_came_before_it_only() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};

    use bytes::Bytes;
    use tokio::io::AsyncWriteExt;

    let sched = Scheduler::new(
        Config::new(16 * 1024)
            .max_upload_speed(Some(64 * 1024))
            .write_queue_size(Some(64 * 1024)),
    )
    .unwrap();
    let (ours, mut peer) = tokio::io::duplex(1 << 20);
    let read = Arc::new(AtomicU64::new(0));
    let counted = Arc::clone(&read);
    tokio::spawn(async move {
        let mut buf = vec![0u8; 64 * 1024];
        while let Ok(n @ 1..) = peer.read(&mut buf).await {
            counted.fetch_add(n as u64, Ordering::Relaxed);
        }
    });
    let conn = sched.register(ours).unwrap();
    let mut io = conn.clone().into_io();
    let busy = {
        let conn = conn.clone();
        tokio::spawn(async move {
            // Bounded: 64 KiB/s for at most a minute of the paused clock.
            for _ in 0..256 {
                if let Err(e) = conn.write(Bytes::from(vec![1u8; 16 * 1024])).await {
                    panic!("busy: {e}");
                }
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    io.write_all(b"x").await.unwrap();
    let accepted_before = conn.pending_bytes() as u64 + conn.stat().total_sent;
    let start = tokio::time::Instant::now();
    tokio::time::timeout(Duration::from_secs(30), io.flush())
        .await
        .expect("the flush is over once what came before it is written")
        .unwrap();
    // Everything accepted up to the flush, the 1 byte included, went to the stream.
    assert!(conn.stat().total_sent >= accepted_before);
    // And no sooner than the limit allows: about 64 KiB queued plus the batch, at 64 KiB/s.
    assert!(
        start.elapsed() >= Duration::from_millis(500),
        "{:?}",
        start.elapsed()
    );
    assert!(
        !busy.is_finished(),
        "the other handle still keeps the queue busy: {:?} {} {}",
        start.elapsed(),
        conn.stat().total_sent,
        read.load(Ordering::Relaxed)
    );
    busy.abort();
    sched.shutdown(Some(Duration::ZERO)).await;
}

/// A `ConnectionIo` poll that its caller gave up on (a timeout) does not keep the head of the
/// write queue's line: another handle's `write_now` and `write` go through once there is room
/// (they used to wait until the `ConnectionIo` was dropped).
#[tokio::test(start_paused = true)]
async fn an_abandoned_write_poll_holds_up_no_one() {
    use bytes::Bytes;
    use tokio::io::AsyncWriteExt;

    let sched = Scheduler::new(Config::new(64).write_queue_size(Some(8))).unwrap();
    let (ours, mut peer) = tokio::io::duplex(8);
    let conn = sched.register(ours).unwrap();
    let mut io = conn.clone().into_io();
    // One lot in the pipe, one with the writer, one in the queue: full everywhere.
    for _ in 0..3 {
        conn.write(Bytes::from_static(b"01234567")).await.unwrap();
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let gave_up = tokio::time::timeout(Duration::from_millis(10), io.write_all(b"abcdefgh")).await;
    assert!(gave_up.is_err(), "the write waits for room");
    let mut got = vec![0u8; 24];
    peer.read_exact(&mut got).await.unwrap();
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert!(
        conn.write_now(Bytes::from_static(b"x")),
        "write_now is not held up"
    );
    tokio::time::timeout(Duration::from_secs(1), conn.write(Bytes::from_static(b"y")))
        .await
        .expect("write is not held up")
        .unwrap();
    let mut got = vec![0u8; 2];
    peer.read_exact(&mut got).await.unwrap();
    assert_eq!(&got, b"xy");
    drop(io);
    sched.shutdown(Some(Duration::ZERO)).await;
}

/// The same for reads under a limit: a `ConnectionIo` read given up on does not hold up
/// another handle's read.
#[tokio::test(start_paused = true)]
async fn an_abandoned_read_poll_holds_up_no_one() {
    use tokio::io::AsyncWriteExt;

    let sched = Scheduler::new(Config::new(64).max_download_speed(Some(1 << 20))).unwrap();
    let (ours, mut peer) = tokio::io::duplex(1024);
    let conn = sched.register(ours).unwrap();
    let mut io = conn.clone().into_io();
    let mut buf = [0u8; 8];
    let gave_up = tokio::time::timeout(Duration::from_millis(10), io.read(&mut buf)).await;
    assert!(gave_up.is_err(), "nothing to read yet");
    peer.write_all(b"data").await.unwrap();
    let mut got = [0u8; 4];
    tokio::time::timeout(Duration::from_secs(1), conn.read_full(&mut got))
        .await
        .expect("read is not held up")
        .unwrap();
    assert_eq!(&got, b"data");
    drop(io);
    sched.shutdown(Some(Duration::ZERO)).await;
}

/// A reader hands its turn to an abandoned `ConnectionIo` read behind it, with bytes still
/// queued and no more coming: the next reader gets them at once.
#[tokio::test(start_paused = true)]
async fn a_turn_handed_to_an_abandoned_read_holds_up_no_one() {
    use tokio::io::AsyncWriteExt;

    let sched = Scheduler::new(Config::new(256).max_download_speed(Some(1 << 20))).unwrap();
    let (ours, mut peer) = tokio::io::duplex(1024);
    let conn = sched.register(ours).unwrap();
    let mut io = conn.clone().into_io();
    let first = {
        let conn = conn.clone();
        tokio::spawn(async move {
            let mut buf = [0u8; 4];
            conn.read(&mut buf).await.map(|n| n as u64)
        })
    };
    tokio::time::sleep(Duration::from_millis(1)).await;
    let mut buf = [0u8; 8];
    let gave_up = tokio::time::timeout(Duration::from_millis(10), io.read(&mut buf)).await;
    assert!(gave_up.is_err(), "nothing to read yet");
    peer.write_all(&[3u8; 100]).await.unwrap();
    assert_eq!(first.await.unwrap().unwrap(), 4);
    let mut rest = [0u8; 96];
    tokio::time::timeout(Duration::from_secs(1), conn.read_full(&mut rest))
        .await
        .expect("the bytes still queued are read at once")
        .unwrap();
    drop(io);
    sched.shutdown(Some(Duration::ZERO)).await;
}

/// A flush polled again after more writes of the same handle (hyper's and the codecs' way)
/// waits for those writes too.
#[tokio::test(start_paused = true)]
async fn a_flush_polled_again_after_more_writes_waits_for_them() {
    use tokio::io::AsyncWriteExt;

    let sched = Scheduler::new(Config::new(1024).max_upload_speed(Some(4096))).unwrap();
    let (ours, mut peer) = tokio::io::duplex(64 * 1024);
    tokio::spawn(async move {
        let mut buf = vec![0u8; 4096];
        while let Ok(1..) = peer.read(&mut buf).await {}
    });
    let conn = sched.register(ours).unwrap();
    let mut io = conn.clone().into_io();
    let mut cx = Context::from_waker(Waker::noop());
    io.write_all(&[1u8; 8192]).await.unwrap();
    assert!(Pin::new(&mut io).poll_flush(&mut cx).is_pending());
    io.write_all(&[2u8; 8192]).await.unwrap();
    tokio::time::timeout(Duration::from_secs(30), io.flush())
        .await
        .expect("the flush completes")
        .unwrap();
    assert!(
        conn.stat().total_sent >= 16384,
        "{}",
        conn.stat().total_sent
    );
    sched.shutdown(Some(Duration::ZERO)).await;
}

/// A flush is over when the stream has flushed the bytes, not when it took them: a stream
/// that buffers (TLS does) used to report a flush done while the bytes sat in its buffer.
#[tokio::test(start_paused = true)]
async fn a_flush_waits_for_the_stream_to_flush() {
    use std::io;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    use tokio::io::AsyncWriteExt;

    /// Takes every write into a buffer; flushes it into `inner` only once `open` is set (and
    /// `gate` woken).
    struct Buffering {
        inner: tokio::io::DuplexStream,
        buf: Vec<u8>,
        open: Arc<AtomicBool>,
        gate: Arc<tokio::sync::Notify>,
        waiting: Option<Pin<Box<tokio::sync::futures::OwnedNotified>>>,
    }
    impl AsyncRead for Buffering {
        fn poll_read(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            Pin::new(&mut self.inner).poll_read(cx, buf)
        }
    }
    impl AsyncWrite for Buffering {
        fn poll_write(
            mut self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            self.buf.extend_from_slice(buf);
            Poll::Ready(Ok(buf.len()))
        }
        fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            while !self.open.load(Ordering::Relaxed) {
                let gate = Arc::clone(&self.gate);
                let w = self
                    .waiting
                    .get_or_insert_with(|| Box::pin(gate.notified_owned()));
                std::task::ready!(w.as_mut().poll(cx));
                self.waiting = None;
            }
            while !self.buf.is_empty() {
                let this = &mut *self;
                let n = std::task::ready!(Pin::new(&mut this.inner).poll_write(cx, &this.buf))?;
                this.buf.drain(..n);
            }
            Pin::new(&mut self.inner).poll_flush(cx)
        }
        fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Pin::new(&mut self.inner).poll_shutdown(cx)
        }
    }

    let sched = Scheduler::new(Config::new(1024)).unwrap();
    let (inner, mut peer) = tokio::io::duplex(64 * 1024);
    let open = Arc::new(AtomicBool::new(false));
    let gate = Arc::new(tokio::sync::Notify::new());
    let stream = Buffering {
        inner,
        buf: Vec::new(),
        open: Arc::clone(&open),
        gate: Arc::clone(&gate),
        waiting: None,
    };
    let conn = sched.register(stream).unwrap();
    let mut io = conn.clone().into_io();
    io.write_all(b"hello").await.unwrap();
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(conn.stat().total_sent, 5, "the stream took the bytes");
    let mut cx = Context::from_waker(Waker::noop());
    assert!(
        Pin::new(&mut io).poll_flush(&mut cx).is_pending(),
        "not flushed while the stream holds them"
    );
    open.store(true, Ordering::Relaxed);
    gate.notify_waiters();
    tokio::time::timeout(Duration::from_secs(5), io.flush())
        .await
        .expect("the flush completes once the stream has flushed")
        .unwrap();
    let mut got = [0u8; 5];
    peer.read_exact(&mut got).await.unwrap();
    assert_eq!(&got, b"hello");
    sched.shutdown(Some(Duration::ZERO)).await;
}
