//! A stream that panics ends its own connection with an error, releases it from the scheduler,
//! and leaves the other connections (and the caller's task) running. Paused clock.

#[path = "common/tapped.rs"]
mod tapped;

use std::time::Duration;

use bytes::Bytes;
use fairio::{Config, Error, Scheduler};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::time::timeout;

use tapped::Tapped;

/// A duplex stream whose reads or writes panic.
fn panicky(on_read: bool, on_write: bool) -> (Tapped, DuplexStream) {
    let (inner, peer) = tokio::io::duplex(64 * 1024);
    let mut stream = Tapped::new(inner);
    if on_read {
        stream.on_read = Box::new(|_| panic!("a read that panics"));
    }
    if on_write {
        stream.on_write = Box::new(|| panic!("a write that panics"));
    }
    (stream, peer)
}

/// A healthy connection beside the broken one still moves bytes both ways.
async fn healthy_still_works(sched: &Scheduler) {
    let (ours, mut theirs) = tokio::io::duplex(1024);
    let good = sched.register(ours).unwrap();
    good.write(Bytes::from_static(b"ok")).await.unwrap();
    let mut buf = [0u8; 2];
    theirs.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"ok");
    theirs.write_all(b"back").await.unwrap();
    let mut buf = [0u8; 4];
    good.read_full(&mut buf).await.unwrap();
    assert_eq!(&buf, b"back");
}

async fn gone(sched: &Scheduler, count: usize) {
    for _ in 0..100 {
        if sched.connection_count() == count {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        sched.connection_count(),
        count,
        "the connection was not released"
    );
}

#[tokio::test(start_paused = true)]
async fn a_write_that_panics_ends_its_connection_only() {
    for limit in [None, Some(1 << 20)] {
        let sched = Scheduler::new(Config::new(1024).max_upload_speed(limit)).unwrap();
        let (stream, _peer) = panicky(false, true);
        let bad = sched.register(stream).unwrap();
        bad.write(Bytes::from_static(b"x")).await.unwrap();
        // It used to wait for ever: the task had gone without a word.
        let closed = timeout(
            Duration::from_secs(10),
            bad.close(Some(Duration::from_millis(100))),
        )
        .await
        .expect("close returns");
        assert!(closed.is_err(), "{closed:?}");
        gone(&sched, 0).await;
        assert!(bad.is_closed());
        healthy_still_works(&sched).await;
        timeout(
            Duration::from_secs(10),
            sched.shutdown(Some(Duration::from_millis(100))),
        )
        .await
        .expect("shutdown returns");
        assert_eq!(sched.connection_count(), 0);
    }
}

#[tokio::test(start_paused = true)]
async fn a_read_that_panics_ends_its_connection_with_an_error() {
    // Under a limit the connection's task reads; with none, the reader's own task does, and
    // it must survive.
    for limit in [Some(1 << 20), None] {
        let sched = Scheduler::new(Config::new(1024).max_download_speed(limit)).unwrap();
        let (stream, mut peer) = panicky(true, false);
        let bad = sched.register(stream).unwrap();
        peer.write_all(b"hello").await.unwrap();
        let mut buf = [0u8; 8];
        let r = timeout(Duration::from_secs(10), bad.read(&mut buf))
            .await
            .expect("read returns");
        assert!(matches!(r, Err(Error::Io(_))), "{limit:?}: {r:?}");
        gone(&sched, 0).await;
        healthy_still_works(&sched).await;
        sched.shutdown(Some(Duration::from_millis(100))).await;
        assert_eq!(sched.connection_count(), 0);
    }
}
