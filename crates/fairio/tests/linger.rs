//! A connection whose last handle is dropped, or that `ConnectionIo::poll_shutdown` closes,
//! flushes for at most the linger, then drops and counts what is left, sends FIN and is
//! released: a peer that never reads cannot keep a connection (socket, queue, task) for ever.
//! Paused clock.

use std::io;
use std::time::Duration;

use bytes::Bytes;
use fairio::{Config, Error, Scheduler};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::{sleep, timeout};

const PIPE: usize = 1024;

/// What the peer finds once it reads: everything the pipe held, then the end.
async fn pipe_then_end(peer: &mut tokio::io::DuplexStream) {
    let mut got = Vec::new();
    timeout(Duration::from_secs(5), peer.read_to_end(&mut got))
        .await
        .expect("the end comes")
        .unwrap();
    assert_eq!(got.len(), PIPE);
}

#[tokio::test(start_paused = true)]
async fn a_dropped_handle_is_released_after_the_linger() {
    for (config, linger) in [
        (Config::new(4096), Duration::from_secs(30)),
        (
            Config::new(4096).linger(Duration::from_secs(1)),
            Duration::from_secs(1),
        ),
        (
            Config::new(4096).max_upload_speed(Some(1 << 20)),
            Duration::from_secs(30),
        ),
    ] {
        let sched = Scheduler::new(config).unwrap();
        let (ours, mut peer) = tokio::io::duplex(PIPE);
        let conn = sched.register(ours).unwrap();
        conn.write(Bytes::from(vec![5u8; 64 * 1024])).await.unwrap();
        drop(conn);
        sleep(linger - Duration::from_millis(500)).await;
        assert_eq!(
            sched.connection_count(),
            1,
            "still flushing within the linger"
        );
        sleep(Duration::from_secs(1)).await;
        assert_eq!(sched.connection_count(), 0, "released after {linger:?}");
        pipe_then_end(&mut peer).await;
        sched.shutdown(None).await;
    }
}

#[tokio::test(start_paused = true)]
async fn connection_io_shutdown_is_bounded_by_the_linger() {
    let sched = Scheduler::new(Config::new(4096)).unwrap();
    let (ours, mut peer) = tokio::io::duplex(PIPE);
    let conn = sched.register(ours).unwrap();
    let mut io = conn.clone().into_io();
    io.write_all(&[9u8; 64 * 1024]).await.unwrap();
    let e = timeout(Duration::from_secs(31), io.shutdown())
        .await
        .expect("shutdown returns within the linger")
        .unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::TimedOut, "{e}");
    let inner = e.get_ref().and_then(|e| e.downcast_ref::<Error>());
    assert!(
        matches!(inner, Some(Error::Timeout { unsent }) if *unsent == 64 * 1024 - PIPE),
        "{inner:?}"
    );
    assert!(conn.is_closed());
    assert_eq!(sched.connection_count(), 0);
    pipe_then_end(&mut peer).await;
    // A second shutdown answers at once.
    io.shutdown().await.unwrap();
    sched.shutdown(None).await;
}

#[tokio::test(start_paused = true)]
async fn a_released_connection_that_can_flush_flushes_everything() {
    let sched = Scheduler::new(Config::new(4096).max_upload_speed(Some(64 * 1024))).unwrap();
    let (ours, mut peer) = tokio::io::duplex(PIPE);
    let conn = sched.register(ours).unwrap();
    conn.write(Bytes::from(vec![5u8; 256 * 1024]))
        .await
        .unwrap();
    drop(conn);
    // 256 KiB at 64 KiB/s: 4 s, well within the linger; every byte, then the end.
    let mut got = Vec::new();
    timeout(Duration::from_secs(20), peer.read_to_end(&mut got))
        .await
        .expect("the end comes")
        .unwrap();
    assert_eq!(got.len(), 256 * 1024);
    sched.shutdown(None).await;
}
