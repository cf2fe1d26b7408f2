//! How failures reach the user: an I/O error once, then a clean `ConnectionClosed`; the failed
//! connection leaves the scheduler; global statistics stay the sum over all connections.

use std::io::ErrorKind;
use std::time::Duration;

use bytes::Bytes;
use fairio::{Config, Error, Scheduler};
use fairio_fd::{FaultPlan, FaultyStream};
use tokio::io::AsyncWriteExt;

#[tokio::test(start_paused = true)]
async fn a_reset_is_reported_once_after_the_queued_data() {
    let sched = Scheduler::new(Config::new(1024).max_download_speed(Some(1 << 20))).unwrap();
    let (ours, mut theirs) = tokio::io::duplex(64 * 1024);
    let faulty = FaultyStream::new(
        ours,
        FaultPlan::default().read_error_at(3000, ErrorKind::ConnectionReset),
    );
    let conn = sched.register(faulty).unwrap();
    let (other, mut other_peer) = tokio::io::duplex(64 * 1024);
    let healthy = sched.register(other).unwrap();
    theirs.write_all(&[5u8; 10_000]).await.unwrap();
    other_peer.write_all(&[6u8; 10_000]).await.unwrap();

    let mut buf = vec![0u8; 3000];
    conn.read_full(&mut buf).await.unwrap();
    assert!(buf.iter().all(|&b| b == 5));
    let mut one = [0u8; 1];
    match conn.read(&mut one).await {
        Err(Error::Io(e)) => assert_eq!(e.kind(), ErrorKind::ConnectionReset),
        other => panic!("expected the reset, got {other:?}"),
    }
    assert!(matches!(
        conn.read(&mut one).await,
        Err(Error::ConnectionClosed)
    ));
    assert!(matches!(
        conn.read_now(&mut one),
        Some(Err(Error::ConnectionClosed))
    ));
    assert!(matches!(
        conn.write(Bytes::from_static(b"x")).await,
        Err(Error::ConnectionClosed)
    ));

    // It left the scheduler; the healthy one did not.
    for _ in 0..100 {
        if sched.connection_count() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut ids = Vec::new();
    sched.iter_connection(|c| ids.push(c.id()));
    assert_eq!(ids, vec![healthy.id()]);

    let mut buf = vec![0u8; 10_000];
    healthy.read_full(&mut buf).await.unwrap();
    let g = sched.global_stat();
    assert_eq!(
        g.total_recv,
        3000 + 10_000,
        "global sums live and closed connections"
    );
    assert_eq!(
        g.total_recv,
        conn.stat().total_recv + healthy.stat().total_recv
    );
    sched.shutdown(None).await;
}

#[tokio::test(start_paused = true)]
async fn iter_connection_callbacks_may_use_the_connection() {
    let sched = Scheduler::new(Config::new(1024)).unwrap();
    let mut keep = Vec::new();
    for _ in 0..3 {
        let (ours, _theirs) = tokio::io::duplex(1024);
        keep.push((sched.register(ours).unwrap(), _theirs));
    }
    let mut n = 0;
    sched.iter_connection(|c| {
        // Uses the connection inside the callback: no lock is held.
        assert!(c.write_now(Bytes::from_static(b"hi")));
        let _ = c.stat();
        n += 1;
    });
    assert_eq!(n, 3);
    assert_eq!(sched.connection_count(), 3);
    keep[0].0.close(None).await.unwrap();
    assert_eq!(sched.connection_count(), 2);
    sched.shutdown(None).await;
}

#[tokio::test]
async fn invalid_configuration_is_refused_not_panicked() {
    assert!(matches!(
        Scheduler::new(Config::new(0)),
        Err(Error::InvalidConfig(_))
    ));
    assert!(matches!(
        Scheduler::new(Config::new(1).max_upload_speed(Some(0))),
        Err(Error::InvalidConfig(_))
    ));
    assert!(matches!(
        fairio::Weight::new(0).map_err(Error::from),
        Err(Error::InvalidConfig(_))
    ));
    let sched = Scheduler::new(Config::new(1)).unwrap();
    assert!(sched.try_set_max_download_speed(Some(0)).is_err());
    sched.shutdown(None).await;
}
