//! Reads with no limit take bytes from the stream in the reader's own task; under a limit,
//! through the pump and the read queue. Whatever the switches between the two, and whichever
//! read call is used, every byte arrives once, in order, and is counted once.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use fairio::{Config, Connection, Error, Scheduler};
use proptest::prelude::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::sleep;

fn pattern(i: usize) -> u8 {
    (i * 31 % 251) as u8
}

/// What the user does next.
#[derive(Clone, Debug)]
enum Op {
    ReadBytes(usize),
    Read(usize),
    ReadNow(usize),
    Io(usize),
    /// `None` lifts the download limit.
    Limit(Option<u64>),
    Sleep(u64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (1usize..40_000).prop_map(Op::ReadBytes),
        3 => (1usize..40_000).prop_map(Op::Read),
        1 => (1usize..40_000).prop_map(Op::ReadNow),
        2 => (1usize..40_000).prop_map(Op::Io),
        2 => prop::option::of(prop_oneof![Just(64 * 1024u64), Just(1 << 20), Just(16 << 20)])
            .prop_map(Op::Limit),
        1 => (1u64..50).prop_map(Op::Sleep),
    ]
}

/// One step of the user: the bytes it got (empty when nothing came or the connection ended).
async fn step(
    sched: &Scheduler,
    conn: &Connection,
    io: &mut fairio::ConnectionIo,
    op: &Op,
) -> Result<Vec<u8>, Error> {
    let mut buf = vec![0u8; 40_000];
    match *op {
        Op::ReadBytes(max) => Ok(conn.read_bytes(max).await?.to_vec()),
        Op::Read(len) => {
            let n = conn.read(&mut buf[..len]).await?;
            Ok(buf[..n].to_vec())
        }
        Op::ReadNow(len) => match conn.read_now(&mut buf[..len]) {
            None => {
                sleep(Duration::from_millis(1)).await;
                Ok(Vec::new())
            }
            Some(r) => {
                let n = r?;
                Ok(buf[..n].to_vec())
            }
        },
        Op::Io(len) => {
            let n = io.read(&mut buf[..len]).await?;
            if n == 0 {
                return Err(Error::ConnectionClosed);
            }
            Ok(buf[..n].to_vec())
        }
        Op::Limit(l) => {
            sched.set_max_download_speed(l);
            Ok(Vec::new())
        }
        Op::Sleep(ms) => {
            sleep(Duration::from_millis(ms)).await;
            Ok(Vec::new())
        }
    }
}

fn run_case(total: usize, pieces: Vec<(usize, u64)>, ops: Vec<Op>, queue: Option<usize>) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap();
    rt.block_on(async move {
        let sched = Scheduler::new(Config::new(8 * 1024).read_queue_size(queue)).unwrap();
        let (ours, mut peer) = tokio::io::duplex(16 * 1024);
        let conn = sched.register(ours).unwrap();
        let sent: Vec<u8> = (0..total).map(pattern).collect();
        let peer_task = {
            let sent = sent.clone();
            tokio::spawn(async move {
                // The peer writes in pieces, pausing between them: a reader often waits.
                let mut at = 0;
                for (len, pause) in pieces.iter().cycle() {
                    if at == sent.len() {
                        break;
                    }
                    let end = (at + len).min(sent.len());
                    peer.write_all(&sent[at..end]).await.unwrap();
                    at = end;
                    sleep(Duration::from_millis(*pause)).await;
                }
                peer.shutdown().await.unwrap();
            })
        };
        let mut io = conn.clone().into_io();
        let mut got = Vec::with_capacity(total);
        let mut ended = None;
        for op in &ops {
            match step(&sched, &conn, &mut io, op).await {
                Ok(bytes) => got.extend_from_slice(&bytes),
                Err(e) => {
                    ended = Some(e);
                    break;
                }
            }
        }
        // Then read the rest; bounded: each turn takes at least one byte or ends.
        if ended.is_none() {
            for _ in 0..=total {
                match conn.read_bytes(50_000).await {
                    Ok(chunk) => got.extend_from_slice(&chunk),
                    Err(e) => {
                        ended = Some(e);
                        break;
                    }
                }
            }
        }
        assert!(
            matches!(ended, Some(Error::ConnectionClosed)),
            "ended with {ended:?}"
        );
        assert_eq!(got.len(), sent.len(), "bytes received");
        assert!(got == sent, "the bytes differ from those sent");
        assert_eq!(conn.stat().total_recv, total as u64, "counted once each");
        assert_eq!(sched.global_stat().total_recv, total as u64);
        // Every later read reports the end too.
        assert!(matches!(
            conn.read_bytes(1).await,
            Err(Error::ConnectionClosed)
        ));
        assert_eq!(io.read(&mut [0u8; 4]).await.unwrap(), 0);
        peer_task.await.unwrap();
        drop(io);
        sched.shutdown(None).await;
    });
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Exact delivery whatever the reads and the limit changes: nothing lost, reordered or
    /// counted twice, with bounded and unbounded read queues.
    #[test]
    fn every_byte_arrives_once_in_order_through_limit_changes(
        total in 1usize..300_000,
        pieces in prop::collection::vec((1usize..50_000, 0u64..30), 1..8),
        ops in prop::collection::vec(op(), 0..60),
        queue in prop::option::of(prop_oneof![Just(4096usize), Just(64 * 1024)]),
    ) {
        run_case(total, pieces, ops, queue);
    }
}

/// The peer: `total` bytes in pieces of `piece`, a pause of `pause` after each, then its end.
fn paced_peer(
    mut peer: tokio::io::DuplexStream,
    total: u64,
    piece: usize,
    pause: Duration,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let bytes = vec![1u8; piece];
        for _ in 0..total / piece as u64 {
            peer.write_all(&bytes).await.unwrap();
            sleep(pause).await;
        }
        peer.shutdown().await.unwrap();
    })
}

/// Two tasks reading `conn` with `read_bytes(max)` until its end, each counting.
fn two_readers(
    conn: &Connection,
    max: usize,
) -> (Vec<Arc<AtomicU64>>, Vec<tokio::task::JoinHandle<()>>) {
    let counts: Vec<Arc<AtomicU64>> = (0..2).map(|_| Arc::new(AtomicU64::new(0))).collect();
    let readers = counts
        .iter()
        .map(|c| {
            let (c, conn) = (Arc::clone(c), conn.clone());
            tokio::spawn(async move {
                while let Ok(chunk) = conn.read_bytes(max).await {
                    c.fetch_add(chunk.len() as u64, Ordering::Relaxed);
                }
            })
        })
        .collect();
    (counts, readers)
}

/// Waits (bounded, on the paused clock) for every reader to reach the end.
async fn join_readers(readers: Vec<tokio::task::JoinHandle<()>>, what: &str) {
    for r in readers {
        tokio::time::timeout(Duration::from_secs(60), r)
            .await
            .expect(what)
            .unwrap();
    }
}

/// Two tasks read one connection at once, with no limit: both are woken as bytes come (a
/// stream remembers one waker; a reader whose waker was replaced would wait forever).
#[tokio::test(start_paused = true)]
async fn two_readers_of_one_connection_are_both_woken() {
    let sched = Scheduler::new(Config::new(4096)).unwrap();
    let (ours, peer) = tokio::io::duplex(8 * 1024);
    let conn = sched.register(ours).unwrap();
    let total = 400_000u64;
    // Both readers wait between pieces.
    let peer_task = paced_peer(peer, total, 1000, Duration::from_millis(1));
    let (counts, readers) = two_readers(&conn, 700);
    join_readers(readers, "a reader was never woken").await;
    peer_task.await.unwrap();
    let got: Vec<u64> = counts.iter().map(|c| c.load(Ordering::Relaxed)).collect();
    assert_eq!(got.iter().sum::<u64>(), total, "{got:?}");
    assert_eq!(conn.stat().total_recv, total);
    sched.shutdown(None).await;
}

/// With no limit, fairio reads only when the user does: bytes nobody reads stay in the stream
/// (the kernel's buffer, on TCP), and the peer is held back, as with no scheduler at all.
#[tokio::test(start_paused = true)]
async fn with_no_limit_unread_bytes_stay_in_the_stream() {
    let sched = Scheduler::new(Config::new(4096)).unwrap();
    let (ours, mut peer) = tokio::io::duplex(16 * 1024);
    let conn = sched.register(ours).unwrap();
    let written = Arc::new(AtomicU64::new(0));
    let w = Arc::clone(&written);
    let peer_task = tokio::spawn(async move {
        let piece = vec![3u8; 1024];
        for _ in 0..1024 {
            if peer.write_all(&piece).await.is_err() {
                return;
            }
            w.fetch_add(1024, Ordering::Relaxed);
        }
    });
    sleep(Duration::from_secs(1)).await;
    assert_eq!(
        written.load(Ordering::Relaxed),
        16 * 1024,
        "the pipe's worth"
    );
    assert_eq!(conn.stat().total_recv, 0);
    let chunk = conn.read_bytes(1 << 20).await.unwrap();
    assert_eq!(chunk.len(), 4096, "one read buffer at most");
    assert_eq!(conn.stat().total_recv, 4096);
    sleep(Duration::from_millis(10)).await;
    assert_eq!(written.load(Ordering::Relaxed), 20 * 1024);
    peer_task.abort();
    sched.shutdown(None).await;
}

/// A `read_now` that finds nothing does not take the wake-up of a reader that waits: the
/// stream remembers one waker, and a poll with a waker that never wakes would replace it.
#[tokio::test(start_paused = true)]
async fn a_read_now_does_not_steal_a_waiting_readers_wake_up() {
    let sched = Scheduler::new(Config::new(4096)).unwrap();
    let (ours, mut peer) = tokio::io::duplex(8 * 1024);
    let conn = sched.register(ours).unwrap();
    let waiting = {
        let conn = conn.clone();
        tokio::spawn(async move { conn.read_bytes(100).await })
    };
    // The reader is waiting on the stream now.
    sleep(Duration::from_millis(10)).await;
    assert!(conn.read_now(&mut [0u8; 16]).is_none());
    peer.write_all(b"hello").await.unwrap();
    let got = tokio::time::timeout(Duration::from_secs(10), waiting)
        .await
        .expect("the waiting reader was never woken")
        .unwrap()
        .unwrap();
    assert_eq!(&got[..], b"hello");
    sched.shutdown(None).await;
}

/// Two readers wait in the queue's line under a limit; the limit is lifted while the queue
/// holds bytes. Once it runs dry, both read the stream: neither is left waiting in the line.
#[tokio::test(start_paused = true)]
async fn readers_in_line_when_a_limit_is_lifted_go_on_reading() {
    let sched = Scheduler::new(Config::new(1024).max_download_speed(Some(64 * 1024))).unwrap();
    let (ours, peer) = tokio::io::duplex(64 * 1024);
    let conn = sched.register(ours).unwrap();
    let total = 200_000u64;
    let peer_task = paced_peer(peer, total, 500, Duration::from_millis(2));
    let (counts, readers) = two_readers(&conn, 300);
    // Both readers take from the queue, under the limit, for a while.
    sleep(Duration::from_millis(300)).await;
    sched.set_max_download_speed(None);
    join_readers(readers, "a reader was left waiting").await;
    peer_task.await.unwrap();
    let got: u64 = counts.iter().map(|c| c.load(Ordering::Relaxed)).sum();
    assert_eq!(got, total);
    sched.shutdown(None).await;
}

/// With no limit, a connection half-closed by the user ends when the peer closes, though
/// nobody reads: once nothing more is written, the peer's end is watched for.
#[tokio::test(start_paused = true)]
async fn a_half_closed_connection_ends_with_the_peer_unread() {
    let sched = Scheduler::new(Config::new(4096)).unwrap();
    let (ours, mut peer) = tokio::io::duplex(16 * 1024);
    let conn = sched.register(ours).unwrap();
    conn.write(bytes::Bytes::from_static(b"request"))
        .await
        .unwrap();
    conn.shutdown_write(None).await.unwrap();
    let mut got = Vec::new();
    peer.read_to_end(&mut got).await.unwrap();
    assert_eq!(got, b"request");
    peer.write_all(b"reply").await.unwrap();
    drop(peer);
    for _ in 0..100 {
        if conn.is_closed() {
            break;
        }
        sleep(Duration::from_millis(10)).await;
    }
    assert!(conn.is_closed(), "the connection did not end with its peer");
    // What came before the end is still there to read.
    assert_eq!(&conn.read_bytes(100).await.unwrap()[..], b"reply");
    assert!(matches!(
        conn.read_bytes(1).await,
        Err(Error::ConnectionClosed)
    ));
    sched.shutdown(None).await;
}

/// Records whether it was woken.
#[derive(Default)]
struct Flag(std::sync::atomic::AtomicBool);

impl std::task::Wake for Flag {
    fn wake(self: Arc<Self>) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// The same, step by step: R1 and R2 wait in line under a limit; two chunks are queued; the
/// limit is lifted; R1 takes the first and, reading again, joins the line behind R2; R2 takes
/// the second and empties the queue. R1 must then be woken to read the stream itself.
#[tokio::test(start_paused = true)]
async fn a_reader_behind_another_in_line_is_woken_when_the_queue_runs_dry() {
    use std::future::Future;
    use std::task::{Context, Poll, Waker};

    // At 1 MiB/s the smallest grant (262 bytes) is larger than a read buffer, so each read is
    // delivered whole: two 100-byte chunks. (At 1000 B/s grants are 16 bytes; the budget that
    // a new limit used to start with made the first 512 bytes go in whole reads.)
    let sched = Scheduler::new(Config::new(100).max_download_speed(Some(1 << 20))).unwrap();
    let (ours, mut peer) = tokio::io::duplex(64 * 1024);
    let conn = sched.register(ours).unwrap();
    let (f1, f2) = (Arc::new(Flag::default()), Arc::new(Flag::default()));
    let (w1, w2) = (Waker::from(Arc::clone(&f1)), Waker::from(Arc::clone(&f2)));
    let mut r1 = Box::pin(conn.read_bytes(100));
    let mut r2 = Box::pin(conn.read_bytes(100));
    assert!(r1.as_mut().poll(&mut Context::from_waker(&w1)).is_pending());
    assert!(r2.as_mut().poll(&mut Context::from_waker(&w2)).is_pending());
    peer.write_all(&[1u8; 200]).await.unwrap();
    // Two 100-byte chunks delivered into the queue under the limit.
    for _ in 0..100 {
        if conn.stat().total_recv >= 200 {
            break;
        }
        sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(conn.stat().total_recv, 200);
    sched.set_max_download_speed(None);
    tokio::task::yield_now().await;
    let Poll::Ready(Ok(c1)) = r1.as_mut().poll(&mut Context::from_waker(&w1)) else {
        panic!("R1, at the head of the line, takes the first chunk");
    };
    assert_eq!(c1.len(), 100);
    let f1b = Arc::new(Flag::default());
    let w1b = Waker::from(Arc::clone(&f1b));
    let mut r1b = Box::pin(conn.read_bytes(100));
    assert!(
        r1b.as_mut()
            .poll(&mut Context::from_waker(&w1b))
            .is_pending()
    );
    let Poll::Ready(Ok(c2)) = r2.as_mut().poll(&mut Context::from_waker(&w2)) else {
        panic!("R2 takes the second chunk");
    };
    assert_eq!(c2.len(), 100);
    peer.write_all(b"more").await.unwrap();
    tokio::task::yield_now().await;
    assert!(
        f1b.0.load(Ordering::SeqCst),
        "R1 was left waiting in the line"
    );
    let Poll::Ready(Ok(c3)) = r1b.as_mut().poll(&mut Context::from_waker(&w1b)) else {
        panic!("R1 reads the stream");
    };
    assert_eq!(&c3[..], b"more");
    drop((r1, r2, r1b));
    sched.shutdown(None).await;
}

/// A server that never reads a small request, writes a long reply and closes: the reply
/// arrives whole, then the end. (Closing a socket over unread bytes makes the kernel send a
/// reset instead of a FIN, which can cut the reply short: the close reads what is waiting.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_close_over_an_unread_request_delivers_the_whole_reply() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let sched = Scheduler::new(Config::new(16 * 1024)).unwrap();
    for round in 0..5 {
        let (client, accepted) =
            tokio::join!(tokio::net::TcpStream::connect(addr), listener.accept());
        let mut client = client.unwrap();
        let conn = sched.register(accepted.unwrap().0).unwrap();
        client.write_all(&[9u8; 2000]).await.unwrap();
        let reply = vec![4u8; 1 << 20];
        let server = {
            let reply = bytes::Bytes::from(reply.clone());
            tokio::spawn(async move {
                // The request has arrived, and is left unread.
                sleep(Duration::from_millis(20)).await;
                conn.write(reply).await.unwrap();
                conn.close(None).await
            })
        };
        // The client reads slowly: at the close, some of the reply still waits in the
        // server's socket for room at the client, and a reset would throw it away.
        let mut got = Vec::with_capacity(reply.len());
        let mut buf = vec![0u8; 16 * 1024];
        let mut read = Ok(());
        for _ in 0..=reply.len() {
            match client.read(&mut buf).await {
                Ok(0) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e) => {
                    read = Err(e);
                    break;
                }
            }
            sleep(Duration::from_millis(1)).await;
        }
        assert!(
            read.is_ok(),
            "round {round}: {read:?} after {} of {} bytes",
            got.len(),
            reply.len()
        );
        assert_eq!(got.len(), reply.len(), "round {round}");
        server.await.unwrap().unwrap();
    }
    sched.shutdown(None).await;
}

/// A limit that changes every 200 ms (as a fleet lease does) is used in full: backlogged
/// readers lose nothing to the changes.
#[tokio::test(start_paused = true)]
async fn a_limit_changed_every_200_ms_is_used_in_full() {
    let sched = Scheduler::new(Config::new(16 * 1024).read_queue_size(Some(64 * 1024))).unwrap();
    let mut counts = Vec::new();
    for _ in 0..4 {
        let (ours, mut theirs) = tokio::io::duplex(64 * 1024);
        let conn = sched.register(ours).unwrap();
        let c = Arc::new(AtomicU64::new(0));
        counts.push(Arc::clone(&c));
        tokio::spawn(async move {
            let mut buf = vec![0u8; 64 * 1024];
            while let Ok(n) = conn.read(&mut buf).await {
                c.fetch_add(n as u64, Ordering::Relaxed);
            }
        });
        tokio::spawn(async move {
            let chunk = vec![1u8; 16 * 1024];
            while theirs.write_all(&chunk).await.is_ok() {}
        });
    }
    let limits = [3_700_000u64, 3_900_000, 3_750_000, 3_800_000];
    sched.set_max_download_speed(Some(limits[0]));
    sleep(Duration::from_secs(1)).await;
    let total = |c: &[Arc<AtomicU64>]| c.iter().map(|c| c.load(Ordering::Relaxed)).sum::<u64>();
    let before = total(&counts);
    let mut allowed = 0u64;
    for step in 0..20 {
        let l = limits[step % limits.len()];
        sched.set_max_download_speed(Some(l));
        allowed += l / 5;
        sleep(Duration::from_millis(200)).await;
    }
    let moved = total(&counts) - before;
    println!(
        "{moved} B of {allowed} B allowed ({:.4})",
        moved as f64 / allowed as f64
    );
    assert!(
        moved as f64 >= 0.98 * allowed as f64,
        "{moved} of {allowed}"
    );
    sched.shutdown(None).await;
}
