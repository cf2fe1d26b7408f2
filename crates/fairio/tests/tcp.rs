//! The scheduler over real loopback TCP (127.0.0.1 only): byte integrity both ways for 1, 16
//! and 256 connections, messages from 1 B to 4 MiB, close with and without timeout, shutdown
//! under traffic, registration after shutdown, and no task left behind.

use std::collections::hash_map::DefaultHasher;
use std::hash::Hasher;
use std::time::Duration;

use bytes::Bytes;
use fairio::{Config, Error, Scheduler};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A connected pair of loopback sockets.
async fn pair() -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (c, s) = tokio::join!(TcpStream::connect(addr), listener.accept());
    (c.unwrap(), s.unwrap().0)
}

/// Deterministic pseudo-random bytes.
fn payload(seed: u64, len: usize) -> Bytes {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect::<Vec<u8>>()
        .into()
}

fn hash(bytes: &[u8]) -> u64 {
    let mut h = DefaultHasher::new();
    h.write(bytes);
    h.finish()
}

/// Sends `sizes` through a scheduled connection one way and through the raw peer the other
/// way, and checks both arrive intact.
async fn exchange(sched: &Scheduler, seed: u64, sizes: &[usize]) {
    let (ours, mut theirs) = pair().await;
    let conn = sched.register(ours).unwrap();
    let out: Vec<Bytes> = sizes
        .iter()
        .enumerate()
        .map(|(i, &n)| payload(seed * 1000 + i as u64, n))
        .collect();
    let total: usize = sizes.iter().sum();
    let expected: Vec<u8> = out.iter().flat_map(|b| b.iter().copied()).collect();

    let writer = {
        let conn = conn.clone();
        let out = out.clone();
        tokio::spawn(async move {
            for m in out {
                conn.write(m).await.unwrap();
            }
        })
    };
    let peer = tokio::spawn(async move {
        // Echo back what arrives, then close our side.
        let mut got = vec![0u8; total];
        theirs.read_exact(&mut got).await.unwrap();
        theirs.write_all(&got).await.unwrap();
        theirs.shutdown().await.unwrap();
        got
    });
    let mut back = vec![0u8; total];
    conn.read_full(&mut back).await.unwrap();
    writer.await.unwrap();
    let at_peer = peer.await.unwrap();
    assert_eq!(hash(&at_peer), hash(&expected), "bytes to the peer differ");
    assert_eq!(hash(&back), hash(&expected), "bytes from the peer differ");
    // After the peer's FIN, and with the queue drained: a clean end.
    let mut one = [0u8; 1];
    assert!(matches!(
        conn.read(&mut one).await,
        Err(Error::ConnectionClosed)
    ));
    conn.close(Some(Duration::from_secs(10))).await.unwrap();
}

async fn integrity(conns: usize, limited: bool) {
    let mut config = Config::new(32 * 1024)
        .read_queue_size(Some(256 * 1024))
        .write_queue_size(Some(256 * 1024));
    if limited {
        config = config
            .max_upload_speed(Some(64 << 20))
            .max_download_speed(Some(64 << 20));
    }
    let sched = Scheduler::new(config).unwrap();
    let mut tasks = Vec::new();
    for i in 0..conns {
        let sched = sched.clone();
        tasks.push(tokio::spawn(async move {
            exchange(&sched, i as u64, &[1, 100, 4096, 65_537, 200_000]).await;
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let g = sched.global_stat();
    let per_conn = (1 + 100 + 4096 + 65_537 + 200_000) as u64;
    assert_eq!(g.total_sent, per_conn * conns as u64);
    assert_eq!(g.total_recv, per_conn * conns as u64);
    sched.shutdown(Some(Duration::from_secs(5))).await;
    assert_eq!(sched.connection_count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_connection_intact_both_ways() {
    integrity(1, false).await;
    integrity(1, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixteen_connections_intact_both_ways() {
    integrity(16, false).await;
    integrity(16, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_fifty_six_connections_intact_both_ways() {
    integrity(256, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_from_one_byte_to_four_mib() {
    let sched = Scheduler::new(Config::new(64 * 1024).write_queue_size(Some(64 * 1024))).unwrap();
    exchange(&sched, 7, &[1, 2, 3, 1 << 10, 1 << 16, 1 << 20, 4 << 20, 1]).await;
    sched.shutdown(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_flushes_every_queued_byte() {
    let sched = Scheduler::new(Config::new(16 * 1024).max_upload_speed(Some(4 << 20))).unwrap();
    let (ours, mut theirs) = pair().await;
    let conn = sched.register(ours).unwrap();
    let msg = payload(1, 3 << 20);
    conn.write(msg.clone()).await.unwrap();
    let peer = tokio::spawn(async move {
        let mut got = Vec::new();
        theirs.read_to_end(&mut got).await.unwrap();
        got
    });
    conn.close(None).await.unwrap();
    assert!(conn.is_closed());
    assert!(matches!(
        conn.write(Bytes::from_static(b"late")).await,
        Err(Error::ConnectionClosed)
    ));
    assert!(!conn.write_now(Bytes::from_static(b"late")));
    let got = peer.await.unwrap();
    assert_eq!(hash(&got), hash(&msg));
    // Closing again is fine.
    conn.close(None).await.unwrap();
    sched.shutdown(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_with_timeout_reports_exactly_what_was_not_sent() {
    let sched = Scheduler::new(Config::new(16 * 1024)).unwrap();
    let (ours, theirs) = pair().await;
    let conn = sched.register(ours).unwrap();
    // The peer never reads: the kernel buffers fill, then nothing moves.
    let msg = payload(2, 32 << 20);
    conn.write(msg).await.unwrap();
    let err = conn
        .close(Some(Duration::from_millis(300)))
        .await
        .unwrap_err();
    let Error::Timeout { unsent } = err else {
        panic!("{err:?}")
    };
    let sent = conn.stat().total_sent as usize;
    assert!(unsent > 0);
    assert_eq!(sent + unsent, 32 << 20, "sent {sent} + unsent {unsent}");
    drop(theirs);
    sched.shutdown(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_during_traffic_returns_and_refuses_new_connections() {
    let config = Config::new(16 * 1024)
        .max_upload_speed(Some(1 << 20))
        .write_queue_size(Some(1 << 20));
    let sched = Scheduler::new(config).unwrap();
    let mut peers = Vec::new();
    for i in 0..8 {
        let (ours, theirs) = pair().await;
        let conn = sched.register(ours).unwrap();
        tokio::spawn(async move {
            let msg = payload(i, 1 << 20);
            while conn.write(msg.clone()).await.is_ok() {}
        });
        peers.push(theirs);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    tokio::time::timeout(
        Duration::from_secs(30),
        sched.shutdown(Some(Duration::from_millis(200))),
    )
    .await
    .expect("shutdown returned");
    assert_eq!(sched.connection_count(), 0);
    let (ours, mut theirs) = pair().await;
    assert!(matches!(sched.register(ours), Err(Error::SchedulerClosed)));
    // The refused stream was closed.
    let mut buf = [0u8; 1];
    assert_eq!(theirs.read(&mut buf).await.unwrap_or(0), 0);
    // Every other stream was closed too.
    for mut p in peers {
        let mut sink = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(10), p.read_to_end(&mut sink))
            .await
            .expect("closed");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_every_handle_leaves_no_task_and_no_socket() {
    let metrics = tokio::runtime::Handle::current().metrics();
    let before = metrics.num_alive_tasks();
    let mut peers = Vec::new();
    {
        let sched =
            Scheduler::new(Config::new(16 * 1024).max_download_speed(Some(1 << 20))).unwrap();
        for _ in 0..4 {
            let (ours, theirs) = pair().await;
            let conn = sched.register(ours).unwrap();
            conn.write(Bytes::from_static(b"bye")).await.unwrap();
            peers.push(theirs);
        }
        assert!(metrics.num_alive_tasks() > before);
    }
    // All handles are gone: every task ends and every stream closes (after flushing).
    for p in &mut peers {
        let mut got = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), p.read_to_end(&mut got))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(got, b"bye");
    }
    for _ in 0..1000 {
        if metrics.num_alive_tasks() == before {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(metrics.num_alive_tasks(), before, "tasks left behind");
}

#[tokio::test]
async fn outside_a_runtime_construction_is_an_error_not_a_panic() {
    let r = std::thread::spawn(|| Scheduler::new(Config::new(1024)).map(|_| ()))
        .join()
        .unwrap();
    assert!(matches!(r, Err(Error::NoRuntime)));
}
