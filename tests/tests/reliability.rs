//! Faults, misuse and slow peers: the affected connection learns what happened, the others keep
//! their shares, nothing panics, statistics stay consistent, and nothing hangs. Paused clock.

use std::io::ErrorKind;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use fairio::{Config, Connection, Error, Scheduler};
use fairio_fd::{FaultPlan, FaultyStream};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::time::{sleep, timeout};

const LIMIT: u64 = 256 * 1024;

fn config() -> Config {
    Config::new(4096)
        .max_download_speed(Some(LIMIT))
        .max_upload_speed(Some(LIMIT))
        .read_queue_size(Some(64 * 1024))
        .write_queue_size(Some(64 * 1024))
}

/// The peer floods us and reads everything we send, until the stream ends.
fn peer(p: DuplexStream) {
    let (mut r, mut w) = tokio::io::split(p);
    tokio::spawn(async move {
        let chunk = vec![1u8; 8192];
        while w.write_all(&chunk).await.is_ok() {}
    });
    tokio::spawn(async move {
        let mut buf = vec![0u8; 8192];
        while matches!(r.read(&mut buf).await, Ok(n) if n > 0) {}
    });
}

/// The user: reads and writes as fast as the connection allows; records the first read error
/// and whether a second read says `ConnectionClosed`; closes the connection on a read end.
struct User {
    read: Arc<AtomicU64>,
    first_error: Arc<std::sync::Mutex<Option<String>>>,
}

fn user(conn: Connection) -> User {
    let read = Arc::new(AtomicU64::new(0));
    let first_error = Arc::new(std::sync::Mutex::new(None));
    let (r, e) = (Arc::clone(&read), Arc::clone(&first_error));
    let c = conn.clone();
    tokio::spawn(async move {
        let mut buf = vec![0u8; 8192];
        loop {
            match c.read(&mut buf).await {
                Ok(n) => {
                    r.fetch_add(n as u64, Ordering::Relaxed);
                }
                Err(err) => {
                    let then = c.read(&mut buf).await;
                    let clean_after = matches!(then, Err(Error::ConnectionClosed));
                    *e.lock().unwrap() = Some(format!("{err:?}|closed_after={clean_after}"));
                    let _ = c.close(Some(Duration::from_millis(100))).await;
                    return;
                }
            }
        }
    });
    tokio::spawn(async move {
        let msg = Bytes::from(vec![2u8; 16 * 1024]);
        while conn.write(msg.clone()).await.is_ok() {}
    });
    User { read, first_error }
}

#[derive(Clone, Copy, Debug)]
enum Expect {
    /// The error reaches the user once as this I/O error kind, then `ConnectionClosed`, and the
    /// connection leaves the scheduler.
    Fails(ErrorKind),
    /// The peer's end of stream reaches the user as `ConnectionClosed`; the user closes.
    Ends,
    /// Nothing fails: the fault only slows this connection.
    Survives,
}

async fn matrix_case(name: &str, plan: FaultPlan, expect: Expect) {
    let sched = Scheduler::new(config()).unwrap();
    let mut healthy = Vec::new();
    let mut conns = Vec::new();
    for _ in 0..4 {
        let (ours, theirs) = tokio::io::duplex(64 * 1024);
        peer(theirs);
        let conn = sched.register(ours).unwrap();
        conns.push(conn.clone());
        healthy.push(user(conn));
    }
    let (ours, theirs) = tokio::io::duplex(64 * 1024);
    peer(theirs);
    let faulty_conn = sched.register(FaultyStream::new(ours, plan)).unwrap();
    conns.push(faulty_conn.clone());
    let faulty = user(faulty_conn.clone());

    sleep(Duration::from_secs(2)).await;
    let before: Vec<u64> = healthy
        .iter()
        .map(|u| u.read.load(Ordering::Relaxed))
        .collect();
    sleep(Duration::from_secs(2)).await;
    let after: Vec<u64> = healthy
        .iter()
        .map(|u| u.read.load(Ordering::Relaxed))
        .collect();

    let err = faulty.first_error.lock().unwrap().clone();
    let sharers = match expect {
        Expect::Fails(kind) => {
            let e = err.unwrap_or_else(|| panic!("{name}: no error reached the user"));
            assert!(
                e.contains(&format!("{kind:?}")) && e.contains("closed_after=true"),
                "{name}: {e}"
            );
            4.0
        }
        Expect::Ends => {
            let e = err.unwrap_or_else(|| panic!("{name}: the end never reached the user"));
            assert!(e.starts_with("ConnectionClosed"), "{name}: {e}");
            4.0
        }
        Expect::Survives => {
            assert!(err.is_none(), "{name}: {err:?}");
            5.0
        }
    };
    if sharers == 4.0 {
        assert_eq!(
            sched.connection_count(),
            4,
            "{name}: the failed connection is still listed"
        );
        let mut listed = Vec::new();
        sched.iter_connection(|c| listed.push(c.id()));
        assert!(!listed.contains(&faulty_conn.id()), "{name}");
    }
    // The others keep their (now larger) fair shares.
    for (b, a) in before.iter().zip(&after) {
        let rate = (a - b) as f64 / 2.0;
        let share = LIMIT as f64 / sharers;
        assert!(
            rate >= 0.9 * share,
            "{name}: a healthy connection got {rate} B/s, share {share}"
        );
    }
    // Global statistics are the sum over live and closed connections.
    let g = sched.global_stat();
    let sum = conns.iter().fold((0, 0), |acc, c| {
        (acc.0 + c.stat().total_sent, acc.1 + c.stat().total_recv)
    });
    assert_eq!((g.total_sent, g.total_recv), sum, "{name}");
    timeout(
        Duration::from_secs(30),
        sched.shutdown(Some(Duration::from_millis(200))),
    )
    .await
    .unwrap_or_else(|_| panic!("{name}: shutdown hung"));
}

#[tokio::test(start_paused = true)]
async fn fault_matrix() {
    let cases: Vec<(&str, FaultPlan, Expect)> = vec![
        (
            "reset mid-read",
            FaultPlan::default().read_error_at(50_000, ErrorKind::ConnectionReset),
            Expect::Fails(ErrorKind::ConnectionReset),
        ),
        (
            "reset mid-write",
            FaultPlan::default().write_error_at(50_000, ErrorKind::ConnectionReset),
            Expect::Fails(ErrorKind::ConnectionReset),
        ),
        (
            "broken pipe",
            FaultPlan::default().write_error_at(1, ErrorKind::BrokenPipe),
            Expect::Fails(ErrorKind::BrokenPipe),
        ),
        (
            "early EOF",
            FaultPlan::default().read_eof_at(10_000),
            Expect::Ends,
        ),
        (
            "short reads and writes",
            FaultPlan::default().max_read(7).max_write(13),
            Expect::Survives,
        ),
        (
            "long runs of Pending",
            FaultPlan::default().pending_polls(50),
            Expect::Survives,
        ),
        (
            "peer never reads",
            FaultPlan::default().write_stall_at(20_000),
            Expect::Survives,
        ),
    ];
    for (name, plan, expect) in cases {
        matrix_case(name, plan, expect).await;
    }
}

#[tokio::test(start_paused = true)]
async fn misuse_is_answered_clearly() {
    let sched = Scheduler::new(config().write_queue_size(Some(16 * 1024))).unwrap();
    let (ours, mut theirs) = tokio::io::duplex(64 * 1024);
    let conn = sched.register(ours).unwrap();

    // A zero-length write is accepted; a read into an empty slice returns 0.
    conn.write(Bytes::new()).await.unwrap();
    assert_eq!(conn.read(&mut []).await.unwrap(), 0);
    assert!(matches!(conn.read_now(&mut []), Some(Ok(0))));

    // A 64 MiB message through a 16 KiB write queue goes through, in chunks.
    let big = Bytes::from(
        (0..64u32 << 20)
            .map(|i| (i % 251) as u8)
            .collect::<Vec<u8>>(),
    );
    let expected = big.clone();
    let reader = tokio::spawn(async move {
        let mut got = vec![0u8; 64 << 20];
        theirs.read_exact(&mut got).await.unwrap();
        (got, theirs)
    });
    sched.set_max_upload_speed(None);
    conn.write(big).await.unwrap();
    let (got, mut theirs) = reader.await.unwrap();
    assert!(got == expected[..], "the 64 MiB message arrived damaged");

    // read_full when the connection closes part-way: an error, and the bytes that arrived are
    // accounted for.
    theirs.write_all(&[9u8; 1000]).await.unwrap();
    theirs.shutdown().await.unwrap();
    let mut buf = vec![0u8; 5000];
    assert!(matches!(
        conn.read_full(&mut buf).await,
        Err(Error::ConnectionClosed)
    ));
    assert!(buf[..1000].iter().all(|&b| b == 9));
    assert_eq!(conn.stat().total_recv, 1000);

    // Close twice: Ok both times. Write after close: ConnectionClosed.
    conn.close(None).await.unwrap();
    conn.close(None).await.unwrap();
    assert!(matches!(
        conn.write(Bytes::from_static(b"x")).await,
        Err(Error::ConnectionClosed)
    ));
    assert!(!conn.write_now(Bytes::from_static(b"x")));
    drop(theirs);
    sched.shutdown(None).await;
}

#[tokio::test(start_paused = true)]
async fn concurrent_write_close_and_read_lose_nothing() {
    let sched = Scheduler::new(config()).unwrap();
    let (ours, mut theirs) = tokio::io::duplex(64 * 1024);
    let conn = sched.register(ours).unwrap();
    let accepted = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for t in 0..16u8 {
        let (c, acc) = (conn.clone(), Arc::clone(&accepted));
        tasks.push(tokio::spawn(async move {
            for i in 0..200u32 {
                let msg = Bytes::from(vec![t; 1 + (i as usize * 37 % 3000)]);
                let n = msg.len() as u64;
                match c.write(msg).await {
                    Ok(()) => {
                        acc.fetch_add(n, Ordering::Relaxed);
                    }
                    Err(Error::ConnectionClosed) => return,
                    Err(e) => panic!("{e:?}"),
                }
            }
        }));
    }
    for _ in 0..4 {
        let c = conn.clone();
        tasks.push(tokio::spawn(async move {
            let mut buf = [0u8; 512];
            while c.read(&mut buf).await.is_ok() {}
        }));
    }
    let peer = tokio::spawn(async move {
        let mut got = Vec::new();
        theirs.read_to_end(&mut got).await.unwrap();
        got.len() as u64
    });
    sleep(Duration::from_millis(500)).await;
    let closers: Vec<_> = (0..3)
        .map(|_| {
            let c = conn.clone();
            tokio::spawn(async move { c.close(None).await })
        })
        .collect();
    for c in closers {
        timeout(Duration::from_secs(60), c)
            .await
            .expect("close deadlocked")
            .unwrap()
            .unwrap();
    }
    for t in tasks {
        timeout(Duration::from_secs(60), t)
            .await
            .expect("a task deadlocked")
            .unwrap();
    }
    let delivered = timeout(Duration::from_secs(60), peer)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        delivered,
        accepted.load(Ordering::Relaxed),
        "every accepted byte is delivered, once"
    );
    sched.shutdown(None).await;
}

#[tokio::test(start_paused = true)]
async fn rapid_limit_changes_are_followed() {
    let sched = Scheduler::new(config()).unwrap();
    let mut users = Vec::new();
    for _ in 0..4 {
        let (ours, theirs) = tokio::io::duplex(64 * 1024);
        peer(theirs);
        users.push(user(sched.register(ours).unwrap()));
    }
    for i in 0..50u64 {
        sched.set_max_download_speed(Some(64 * 1024 * (1 + i % 7)));
        sleep(Duration::from_millis(20)).await;
    }
    let final_limit = 300 * 1024;
    sched.set_max_download_speed(Some(final_limit));
    sleep(Duration::from_millis(500)).await;
    let total = |u: &[User]| {
        u.iter()
            .map(|u| u.read.load(Ordering::Relaxed))
            .sum::<u64>()
    };
    let before = total(&users);
    sleep(Duration::from_secs(4)).await;
    let rate = (total(&users) - before) as f64 / 4.0;
    assert!(
        (rate / final_limit as f64 - 1.0).abs() <= 0.02,
        "rate {rate} after settling at {final_limit}"
    );
    sched.shutdown(None).await;
}

#[tokio::test(start_paused = true)]
async fn slow_reader_blocks_only_its_own_connection() {
    let sched = Scheduler::new(config()).unwrap();
    let (ours, _never_read) = tokio::io::duplex(8 * 1024);
    let slow = sched.register(ours).unwrap();
    let mut users = Vec::new();
    for _ in 0..3 {
        let (ours, theirs) = tokio::io::duplex(64 * 1024);
        peer(theirs);
        users.push(user(sched.register(ours).unwrap()));
    }
    // Fill the slow connection: the duplex buffer (8 KiB), then its write queue (64 KiB).
    let mut written = 0usize;
    for _ in 0..100 {
        let msg = Bytes::from(vec![3u8; 4096]);
        match timeout(Duration::from_millis(200), slow.write(msg)).await {
            Ok(r) => {
                r.unwrap();
                written += 4096;
            }
            Err(_) => break, // `write` waits: the queue is full
        }
    }
    assert!(
        (64 * 1024..100 * 4096).contains(&written),
        "wrote {written}"
    );
    assert!(!slow.write_now(Bytes::from(vec![3u8; 4096])));
    let before: Vec<u64> = users
        .iter()
        .map(|u| u.read.load(Ordering::Relaxed))
        .collect();
    sleep(Duration::from_secs(2)).await;
    for (u, b) in users.iter().zip(&before) {
        let rate = (u.read.load(Ordering::Relaxed) - b) as f64 / 2.0;
        assert!(
            rate >= 0.9 * LIMIT as f64 / 3.0,
            "a healthy connection slowed to {rate}"
        );
    }
    let err = slow
        .close(Some(Duration::from_millis(300)))
        .await
        .unwrap_err();
    let Error::Timeout { unsent } = err else {
        panic!("{err:?}")
    };
    assert_eq!(
        unsent + slow.stat().total_sent as usize,
        written,
        "unsent is exact"
    );
    sched.shutdown(None).await;
}

/// Shutdown returns under full load, with the quota exhausted, with a peer that never reads,
/// and while a `close` without timeout is pending.
#[tokio::test(start_paused = true)]
async fn shutdown_never_hangs() {
    let sched = Scheduler::new(
        config()
            .max_upload_speed(Some(1024))
            .max_download_speed(Some(1024)),
    )
    .unwrap();
    let mut keep = Vec::new();
    for _ in 0..8 {
        let (ours, theirs) = tokio::io::duplex(64 * 1024);
        peer(theirs);
        let conn = sched.register(ours).unwrap();
        keep.push(user(conn));
    }
    let (ours, never_reads) = tokio::io::duplex(1024);
    let stuck = sched
        .register(FaultyStream::new(
            ours,
            FaultPlan::default().write_stall_at(0),
        ))
        .unwrap();
    stuck
        .write(Bytes::from(vec![0u8; 64 * 1024]))
        .await
        .unwrap();
    let pending_close = {
        let s = stuck.clone();
        tokio::spawn(async move { s.close(None).await })
    };
    sleep(Duration::from_secs(3)).await;
    timeout(
        Duration::from_secs(30),
        sched.shutdown(Some(Duration::from_millis(500))),
    )
    .await
    .expect("shutdown hung");
    // The pending close returns too, with what it could not send.
    let r = timeout(Duration::from_secs(30), pending_close)
        .await
        .expect("close hung")
        .unwrap();
    assert!(r.is_err(), "{r:?}");
    assert_eq!(sched.connection_count(), 0);
    drop(never_reads);
}
