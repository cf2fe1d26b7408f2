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
