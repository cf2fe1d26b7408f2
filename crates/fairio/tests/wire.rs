//! Fair at the wire, by byte counts over real loopback TCP with the kernel's default socket
//! buffers (127.0.0.1 only): what fairio hands to a socket whose peer reads slowly, or not at
//! all, stays within the documented bound of what the peer has read, and a connection's
//! statistics tell what the peer has acknowledged. Linux only (`TCP_NOTSENT_LOWAT`,
//! `SIOCOUTQ`).
#![cfg(target_os = "linux")]

use std::time::Duration;

use bytes::Bytes;
use fairio::{Config, Connection, DEFAULT_UNSENT_LIMIT, Scheduler, UnsentBound};
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};

/// What one write may add beyond the unsent bound: the kernel checks the bound before each
/// segment it builds, and a segment holds up to 64 KiB.
const ONE_SEGMENT: u64 = 64 * 1024;

const MESSAGE: usize = 64 * 1024;

async fn pair() -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (c, s) = tokio::join!(TcpStream::connect(addr), listener.accept());
    (c.unwrap(), s.unwrap().0)
}

/// The most fairio may have handed to the socket beyond what `peer` has read: the unsent
/// bound, one segment, and the peer's receive buffer (which only the peer sets).
fn bound(peer: &TcpStream) -> u64 {
    let rcvbuf = socket2::SockRef::from(peer).recv_buffer_size().unwrap() as u64;
    u64::from(DEFAULT_UNSENT_LIMIT.get()) + ONE_SEGMENT + rcvbuf
}

/// Queues `total` bytes (byte `i` of the stream is `i % 251`) on `conn`, in a task of its own.
fn send(conn: &Connection, total: usize) {
    let conn = conn.clone();
    let pattern: Bytes = (0..MESSAGE + 251).map(|i| (i % 251) as u8).collect();
    tokio::spawn(async move {
        let mut at = 0;
        while at < total {
            let n = MESSAGE.min(total - at);
            let msg = pattern.slice(at % 251..at % 251 + n);
            if conn.write(msg).await.is_err() {
                return;
            }
            at += n;
        }
    });
}

/// Waits (at most 10 s) until the connection has handed bytes to its socket and they stop
/// growing for 200 ms, and returns them.
async fn settled(conn: &Connection) -> u64 {
    let mut last = conn.stat().total_sent;
    let mut still = 0;
    for _ in 0..400 {
        tokio::time::sleep(Duration::from_millis(25)).await;
        let now = conn.stat().total_sent;
        still = if now == last && now > 0 { still + 1 } else { 0 };
        last = now;
        if still == 8 {
            break;
        }
    }
    last
}

/// Reads `n` bytes from `peer`, checking each against the pattern of [`send`] from `*at` on.
async fn take(peer: &mut TcpStream, n: usize, at: &mut usize) {
    let mut buf = vec![0u8; n];
    peer.read_exact(&mut buf).await.unwrap();
    for (k, b) in buf.iter().enumerate() {
        assert_eq!(
            *b,
            ((*at + k) % 251) as u8,
            "byte {} of the stream",
            *at + k
        );
    }
    *at += n;
}

async fn peer_that_reads_nothing(config: Config) {
    let sched = Scheduler::new(config).unwrap();
    let (ours, mut theirs) = pair().await;
    let conn = sched.register(ours).unwrap();
    let total = 32 << 20;
    send(&conn, total);
    let handed = settled(&conn).await;
    let stat = conn.stat();
    assert!(handed > 0);
    assert!(
        handed <= bound(&theirs),
        "{handed} bytes handed to a socket whose peer read nothing; bound {}",
        bound(&theirs)
    );
    // Not acknowledged: what waits unsent (the peer's window is closed).
    let unacked = stat.unacked.expect("a TCP connection on Linux tells");
    assert!(
        unacked <= u64::from(DEFAULT_UNSENT_LIMIT.get()) + ONE_SEGMENT,
        "{unacked} bytes unacknowledged"
    );
    assert_eq!(stat.acked(), Some(handed - unacked));

    // The peer reads it all: every byte arrives, and in the end every byte is acknowledged.
    let mut at = 0;
    while at < total {
        take(&mut theirs, MESSAGE, &mut at).await;
    }
    for _ in 0..400 {
        if conn.stat().unacked == Some(0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let end = conn.stat();
    assert_eq!(end.total_sent, total as u64);
    assert_eq!(end.unacked, Some(0));
    assert_eq!(end.acked(), Some(total as u64));
    sched.shutdown(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_reads_nothing_holds_at_most_the_bound_with_no_limit() {
    peer_that_reads_nothing(Config::new(64 * 1024)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_reads_nothing_holds_at_most_the_bound_under_a_limit() {
    peer_that_reads_nothing(Config::new(64 * 1024).max_upload_speed(Some(256 << 20))).await;
}

/// A peer reading 4 KiB at a time, 5 ms apart: at every read, what fairio handed to the
/// socket is within the bound of what the peer has read.
async fn slow_peer(config: Config) {
    let sched = Scheduler::new(config).unwrap();
    let (ours, mut theirs) = pair().await;
    let conn = sched.register(ours).unwrap();
    let total = 64 << 20;
    send(&conn, total);
    let mut at = 0;
    let mut worst = 0;
    for _ in 0..300 {
        take(&mut theirs, 4096, &mut at).await;
        let gap = conn.stat().total_sent.saturating_sub(at as u64);
        worst = worst.max(gap);
        assert!(
            gap <= bound(&theirs),
            "{gap} bytes between the socket and a slow peer; bound {}",
            bound(&theirs)
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(worst > 0);
    sched.shutdown(Some(Duration::ZERO)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_peer_holds_at_most_the_bound_with_no_limit() {
    slow_peer(Config::new(64 * 1024)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_peer_holds_at_most_the_bound_under_a_limit() {
    slow_peer(Config::new(64 * 1024).max_upload_speed(Some(64 << 20))).await;
}

#[tokio::test]
async fn what_each_stream_gets() {
    let sched = Scheduler::new(Config::new(1024)).unwrap();
    let limit = DEFAULT_UNSENT_LIMIT.get();
    let (ours, _theirs) = pair().await;
    let tcp = sched.register(ours).unwrap();
    assert_eq!(tcp.stat().unacked, Some(0));
    assert_eq!(tcp.unsent_bound(), UnsentBound::NotSentLowat(limit));
    let (a, _b) = tokio::io::duplex(64);
    let pipe = sched.register(a).unwrap();
    assert_eq!(pipe.stat().unacked, None);
    assert_eq!(pipe.unsent_bound(), UnsentBound::Unbounded);
    let (u, _v) = tokio::net::UnixStream::pair().unwrap();
    let unix = sched.register(u).unwrap();
    assert_eq!(unix.stat().unacked, None);
    assert_eq!(unix.unsent_bound(), UnsentBound::SendBuffer(limit));
    // With no bound asked for, the kernel's buffers stay as they are.
    let plain = Scheduler::new(Config::new(1024).unsent_limit(None)).unwrap();
    let (ours, _theirs) = pair().await;
    let tcp = plain.register(ours).unwrap();
    assert_eq!(tcp.unsent_bound(), UnsentBound::Unbounded);
    assert_eq!(tcp.stat().unacked, Some(0));
    plain.shutdown(None).await;
    // A zero bound is refused rather than read as "none".
    assert!(Scheduler::new(Config::new(1024).unsent_limit(Some(0))).is_err());
    sched.shutdown(None).await;
}
