//! Splices over real loopback sockets, with the kernel's default buffers: every byte arrives
//! intact and in order, registered ends count exactly what they moved, limits hold while
//! bytes move through pipes, and what a splice took and could not deliver is known exactly.
#![cfg(target_os = "linux")]

use std::time::{Duration, Instant};

use fairio::{Config, Connection, End, Error, Pipes, Scheduler, Splice};
use proptest::prelude::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

fn pattern(seed: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u64 * 31 + u64::from(seed)) as u8 ^ (i >> 9) as u8)
        .collect()
}

/// A connected pair of TCP streams on loopback: (client side, accepted side).
async fn pair() -> (TcpStream, TcpStream) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let c = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
    (c, l.accept().await.unwrap().0)
}

/// Writes `data` in pieces of `piece` bytes with `pause` between them, then closes (FIN).
fn send(
    mut s: TcpStream,
    data: Vec<u8>,
    piece: usize,
    pause: Duration,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        for part in data.chunks(piece.max(1)) {
            if s.write_all(part).await.is_err() {
                return;
            }
            if !pause.is_zero() {
                tokio::time::sleep(pause).await;
            }
        }
        let _ = s.shutdown().await;
    })
}

/// Reads to the end.
fn receive(mut s: TcpStream) -> tokio::task::JoinHandle<Vec<u8>> {
    tokio::spawn(async move {
        let mut got = Vec::new();
        let _ = s.read_to_end(&mut got).await;
        got
    })
}

/// Which ends are registered.
#[derive(Clone, Copy, Debug)]
enum Route {
    ConnToTcp,
    TcpToConn,
    ConnToConn,
}

/// Runs one spliced transfer of `data` over `route`: what the far end received, and the
/// registered ends' counts (received by the source, sent by the destination).
async fn transfer(
    route: Route,
    data: Vec<u8>,
    piece: usize,
    limits: (Option<u64>, Option<u64>),
    pipes: &Pipes,
) -> (Vec<u8>, Option<u64>, Option<u64>, u64) {
    let config = Config::new(64 * 1024)
        .max_upload_speed(limits.0)
        .max_download_speed(limits.1);
    let sched = Scheduler::new(config).unwrap();
    let (peer_in, ours_in) = pair().await;
    let (ours_out, peer_out) = pair().await;
    let sender = send(peer_in, data, piece, Duration::from_micros(200));
    let receiver = receive(peer_out);
    let mut splice = Splice::new(pipes);
    let (recv, sent) = match route {
        Route::ConnToTcp => {
            let c = sched.register(ours_in).unwrap();
            splice.run((&c).into(), (&ours_out).into()).await.unwrap();
            drop(ours_out); // FIN, for the receiver
            (Some(c.stat().total_recv), None)
        }
        Route::TcpToConn => {
            let c = sched.register(ours_out).unwrap();
            splice.run((&ours_in).into(), (&c).into()).await.unwrap();
            c.close(Some(Duration::from_secs(10))).await.unwrap();
            (None, Some(c.stat().total_sent))
        }
        Route::ConnToConn => {
            let a = sched.register(ours_in).unwrap();
            let b = sched.register(ours_out).unwrap();
            splice.run((&a).into(), (&b).into()).await.unwrap();
            b.close(Some(Duration::from_secs(10))).await.unwrap();
            (Some(a.stat().total_recv), Some(b.stat().total_sent))
        }
    };
    assert_eq!(splice.held(), 0);
    let spliced = splice.spliced_bytes();
    drop(splice);
    sched.shutdown(Some(Duration::from_secs(1))).await;
    sender.await.unwrap();
    (receiver.await.unwrap(), recv, sent, spliced)
}

fn route() -> impl Strategy<Value = Route> {
    prop_oneof![
        Just(Route::ConnToTcp),
        Just(Route::TcpToConn),
        Just(Route::ConnToConn)
    ]
}

fn limit() -> impl Strategy<Value = Option<u64>> {
    prop::option::of(prop_oneof![Just(4u64 << 20), Just(32 << 20)])
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Random transfers over every route, with and without limits: intact, in order, counted
    /// exactly by each registered end, and moved through pipes.
    #[test]
    fn every_byte_arrives_intact(
        route in route(),
        len in 1usize..600_000,
        piece in 1usize..70_000,
        seed: u8,
        up in limit(),
        down in limit(),
    ) {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let data = pattern(seed, len);
        let pipes = Pipes::new(8);
        let (got, recv, sent, spliced) =
            rt.block_on(transfer(route, data.clone(), piece, (up, down), &pipes));
        prop_assert_eq!(got.len(), data.len());
        prop_assert!(got == data, "bytes differ");
        if let Some(r) = recv {
            prop_assert_eq!(r, len as u64);
        }
        if let Some(s) = sent {
            prop_assert_eq!(s, len as u64);
        }
        // Under a download limit, a registered source's pump reads ahead from the start (at
        // most two grants and a buffer): those bytes go first, by copy. The rest is spliced.
        let copied = len as u64 - spliced;
        if down.is_none() || matches!(route, Route::TcpToConn) {
            prop_assert_eq!(copied, 0, "every byte went through a pipe");
        } else {
            prop_assert!(copied <= 192 * 1024, "{} bytes copied", copied);
        }
        prop_assert_eq!(pipes.in_use(), 0);
    }
}

/// With no pipe to be had (a pool of 0), the same call copies, with the same result.
#[tokio::test]
async fn no_pipes_means_copies() {
    let data = pattern(9, 300_000);
    let pipes = Pipes::new(0);
    let (got, recv, sent, spliced) = transfer(
        Route::ConnToConn,
        data.clone(),
        50_000,
        (Some(8 << 20), None),
        &pipes,
    )
    .await;
    assert!(got == data);
    assert_eq!((recv, sent, spliced), (Some(300_000), Some(300_000), 0));
}

/// A stream that is not TCP (an in-memory pipe) copies too.
#[tokio::test]
async fn a_stream_that_is_not_tcp_copies() {
    let sched = Scheduler::new(Config::new(16 * 1024)).unwrap();
    let (ours, mut theirs) = tokio::io::duplex(8 * 1024);
    let conn = sched.register(ours).unwrap();
    let (out, peer_out) = pair().await;
    let receiver = receive(peer_out);
    let data = pattern(3, 100_000);
    let writer = tokio::spawn({
        let data = data.clone();
        async move {
            theirs.write_all(&data).await.unwrap();
            theirs.shutdown().await.unwrap();
            theirs
        }
    });
    let mut splice = Splice::new(&Pipes::new(4));
    let moved = splice.run((&conn).into(), (&out).into()).await.unwrap();
    drop(out);
    assert_eq!(moved, 100_000);
    assert_eq!(splice.spliced_bytes(), 0);
    assert!(receiver.await.unwrap() == data);
    drop(writer.await.unwrap());
}

/// A limit holds for spliced bytes, in each direction: a limit cannot be beaten, so 2 MiB
/// through 1 MiB/s takes at least about 2 s less the first burst; lifted, the bytes run free;
/// imposed again, it holds from there; and the counts are exact throughout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_hold_and_change_mid_transfer() {
    for upload in [false, true] {
        limit_changes(upload).await;
    }
}

/// [`limits_hold_and_change_mid_transfer`] for one direction: into a registered connection
/// under its upload limit (`upload`), or out of one under its download limit.
async fn limit_changes(upload: bool) {
    let limit = 1u64 << 20;
    let set = move |sched: &Scheduler, l: Option<u64>| {
        if upload {
            sched.set_max_upload_speed(l);
        } else {
            sched.set_max_download_speed(l);
        }
    };
    let sched = Scheduler::new(Config::new(64 * 1024)).unwrap();
    set(&sched, Some(limit));
    let (peer_in, ours_in) = pair().await;
    let (ours_out, peer_out) = pair().await;
    let data = pattern(1, 6 << 20);
    let sender = send(peer_in, data.clone(), 64 * 1024, Duration::ZERO);
    let receiver = receive(peer_out);
    let (conn, plain) = if upload {
        (sched.register(ours_out).unwrap(), ours_in)
    } else {
        (sched.register(ours_in).unwrap(), ours_out)
    };
    let moved = move |c: &Connection| {
        let s = c.stat();
        if upload { s.total_sent } else { s.total_recv }
    };
    let started = Instant::now();
    let changes = {
        let (sched, conn) = (sched.clone(), conn.clone());
        tokio::spawn(async move {
            // Limited for the first 2 MiB, lifted for the next 2, imposed again for the rest.
            wait_for(|| moved(&conn), 2 << 20).await;
            let limited_for = started.elapsed();
            set(&sched, None);
            wait_for(|| moved(&conn), 4 << 20).await;
            set(&sched, Some(limit));
            (limited_for, Instant::now(), moved(&conn))
        })
    };
    let mut splice = Splice::new(&Pipes::new(4));
    let r = if upload {
        splice.run(End::Tcp(&plain), (&conn).into()).await
    } else {
        splice.run((&conn).into(), End::Tcp(&plain)).await
    };
    assert_eq!(r.unwrap(), 6 << 20);
    if upload {
        conn.close(Some(Duration::from_secs(10))).await.unwrap();
    }
    let done = Instant::now();
    drop(plain);
    let (limited_for, imposed, before) = changes.await.unwrap();
    sender.await.unwrap();
    assert_eq!(moved(&conn), 6 << 20, "upload {upload}");
    assert!(receiver.await.unwrap() == data, "upload {upload}");
    // The limiter allows a burst of at most a few grants at the start; 2 MiB at 1 MiB/s.
    assert!(
        limited_for >= Duration::from_millis(1800),
        "upload {upload}: 2 MiB in {limited_for:?} under 1 MiB/s"
    );
    // What was left once the limit came back, at 1 MiB/s less a burst of 128 KiB.
    let rest = (6u64 << 20) - before;
    let least = rest.saturating_sub(128 << 10) as f64 / limit as f64;
    assert!(
        (done - imposed).as_secs_f64() >= least,
        "upload {upload}: the re-imposed limit let {rest} bytes through in {:?}",
        done - imposed
    );
    sched.shutdown(None).await;
}

async fn wait_for(moved: impl Fn() -> u64, bytes: u64) {
    for _ in 0..100_000 {
        if moved() >= bytes {
            return;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    panic!("never reached {bytes} bytes");
}

/// Two sources spliced under one download limit share it: the peers' bytes, counted where
/// they arrive, split within 10% of evenly, and together stay within the limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_splices_share_a_limit() {
    let limit = 2u64 << 20;
    let sched = Scheduler::new(Config::new(64 * 1024).max_download_speed(Some(limit))).unwrap();
    let pipes = Pipes::new(4);
    let mut counters = Vec::new();
    let mut tasks = Vec::new();
    for seed in 0..2u8 {
        let (peer_in, ours_in) = pair().await;
        let (ours_out, mut peer_out) = pair().await;
        tasks.push(send(
            peer_in,
            pattern(seed, 16 << 20),
            64 * 1024,
            Duration::ZERO,
        ));
        let counted = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        counters.push(std::sync::Arc::clone(&counted));
        tokio::spawn(async move {
            let mut buf = vec![0u8; 64 * 1024];
            while let Ok(n) = peer_out.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                counted.fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
            }
        });
        let conn = sched.register(ours_in).unwrap();
        let pipes = pipes.clone();
        tokio::spawn(async move {
            let mut splice = Splice::new(&pipes);
            let _ = splice.run((&conn).into(), (&ours_out).into()).await;
        });
    }
    let read = || snapshot(&counters);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (t0, before) = (Instant::now(), read());
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (t1, after) = (Instant::now(), read());
    let got: Vec<u64> = after.iter().zip(&before).map(|(a, b)| a - b).collect();
    let total: u64 = got.iter().sum();
    let secs = (t1 - t0).as_secs_f64();
    // Within the limit over the window, give or take what sat in pipes and sockets at its
    // edges (a pipe each and the receive buffers: well under 1 MiB).
    assert!(
        (total as f64) <= limit as f64 * secs + f64::from(1u32 << 20),
        "{total} bytes in {secs:.2} s under {limit} B/s"
    );
    let share = got[0] as f64 / total as f64;
    assert!((0.45..=0.55).contains(&share), "shares {got:?}");
    sched.shutdown(Some(Duration::from_millis(100))).await;
}

/// After a splice is dropped mid-transfer, the connection's reads go on where it stopped:
/// what the splice delivered, then what it held, then what the reads get, is the stream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_resume_after_a_dropped_splice() {
    for limit in [None, Some(2u64 << 20)] {
        let sched = Scheduler::new(Config::new(16 * 1024).max_download_speed(limit)).unwrap();
        let (peer_in, ours_in) = pair().await;
        let (ours_out, peer_out) = pair().await;
        let data = pattern(5, 1 << 20);
        // 128 pieces, 2 ms apart at least: longer than the cut below, however fast the machine.
        let sender = send(peer_in, data.clone(), 8 * 1024, Duration::from_millis(2));
        let receiver = receive(peer_out);
        let conn = sched.register(ours_in).unwrap();
        // Some bytes read the ordinary way first.
        let mut head = vec![0u8; 10_000];
        conn.read_full(&mut head).await.unwrap();
        let mut splice = Splice::new(&Pipes::new(2));
        let cut = tokio::time::timeout(
            Duration::from_millis(150),
            splice.run((&conn).into(), (&ours_out).into()),
        )
        .await;
        assert!(cut.is_err(), "the transfer outlasts the cut");
        // The rest is read by the connection itself; what the splice held is delivered after,
        // by a run that finds the source ended, and goes between the two in the stream.
        let held = splice.held();
        assert!(
            splice.spliced_bytes() > 0,
            "limit {limit:?}: nothing was spliced"
        );
        let mut rest = Vec::new();
        let mut buf = vec![0u8; 32 * 1024];
        for _ in 0..1_000_000 {
            match conn.read(&mut buf).await {
                Ok(n) => rest.extend_from_slice(&buf[..n]),
                Err(Error::ConnectionClosed) => break,
                Err(e) => panic!("{e}"),
            }
        }
        // Finish the held bytes to the sink: a run from an ended source delivers them.
        let moved = splice
            .run((&conn).into(), (&ours_out).into())
            .await
            .unwrap();
        assert_eq!(moved, held as u64);
        drop(ours_out);
        let mid = receiver.await.unwrap();
        sender.await.unwrap();
        let mut all = head;
        all.extend_from_slice(&mid);
        all.extend_from_slice(&rest);
        assert_eq!(all.len(), data.len(), "limit {limit:?}");
        assert!(all == data, "limit {limit:?}: bytes out of order");
        assert_eq!(conn.stat().total_recv, data.len() as u64);
        sched.shutdown(None).await;
    }
}

/// A destination that closes mid-transfer: the splice stops with `ConnectionClosed`, and
/// every byte the source received is either sent by the destination or held by the splice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_close_mid_transfer_is_accounted_exactly() {
    let sched = Scheduler::new(Config::new(64 * 1024)).unwrap();
    let (peer_in, ours_in) = pair().await;
    let (ours_out, peer_out) = pair().await;
    // The destination's peer reads nothing: the pipe fills and stays full.
    let sender = send(peer_in, pattern(2, 8 << 20), 64 * 1024, Duration::ZERO);
    let a = sched.register(ours_in).unwrap();
    let b = sched.register(ours_out).unwrap();
    let closer = {
        let (a, b) = (a.clone(), b.clone());
        tokio::spawn(async move {
            for _ in 0..300 {
                // Stalled: nothing more goes out for 200 ms, and the pipe holds bytes (what
                // `a` received and `b` has not sent is exactly what is in it).
                let before = b.stat().total_sent;
                tokio::time::sleep(Duration::from_millis(200)).await;
                let now = b.stat().total_sent;
                if before > 0 && now == before && a.stat().total_recv > now {
                    break;
                }
            }
            b.close(Some(Duration::from_millis(10))).await
        })
    };
    let mut splice = Splice::new(&Pipes::new(2));
    let r = splice.run((&a).into(), (&b).into()).await;
    assert!(matches!(r, Err(Error::ConnectionClosed)), "{r:?}");
    closer.await.unwrap().unwrap();
    let held = splice.held() as u64;
    assert!(held > 0, "the pipe held bytes when the destination went");
    assert_eq!(a.stat().total_recv, b.stat().total_sent + held);
    drop(peer_out);
    drop(a);
    sched.shutdown(Some(Duration::from_millis(100))).await;
    sender.abort();
}

/// A reset of the destination's peer fails the splice with the I/O error; the counts still
/// add up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reset_fails_the_splice() {
    let sched = Scheduler::new(Config::new(64 * 1024)).unwrap();
    let (peer_in, ours_in) = pair().await;
    let (ours_out, peer_out) = pair().await;
    let sender = send(peer_in, pattern(4, 32 << 20), 64 * 1024, Duration::ZERO);
    let a = sched.register(ours_in).unwrap();
    let resetter = tokio::spawn(async move {
        let mut peer_out = peer_out;
        let mut buf = vec![0u8; 100_000];
        peer_out.read_exact(&mut buf).await.unwrap();
        // SO_LINGER 0: the close sends a reset.
        socket2::SockRef::from(&peer_out)
            .set_linger(Some(Duration::ZERO))
            .unwrap();
        drop(peer_out);
    });
    let mut splice = Splice::new(&Pipes::new(2));
    let r = splice
        .run::<fairio::EqualShare>((&a).into(), End::Tcp(&ours_out))
        .await;
    resetter.await.unwrap();
    match r {
        Err(Error::Io(e)) => assert!(
            matches!(
                e.kind(),
                std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe
            ),
            "{e}"
        ),
        other => panic!("{other:?}"),
    }
    assert!(a.stat().total_recv >= 100_000);
    sender.abort();
    sched.shutdown(Some(Duration::from_millis(100))).await;
}

/// A second splice reading the same connection is refused while the first runs.
#[tokio::test]
async fn one_splice_reads_a_connection_at_a_time() {
    let sched = Scheduler::new(Config::new(64 * 1024)).unwrap();
    let (_peer_in, ours_in) = pair().await;
    let (ours_out, _peer_out) = pair().await;
    let conn = sched.register(ours_in).unwrap();
    let pipes = Pipes::new(4);
    let mut first = Splice::new(&pipes);
    let mut second = Splice::new(&pipes);
    let run = first.run((&conn).into(), (&ours_out).into());
    tokio::pin!(run);
    // Polled until it holds the stream (the read pump lets go at once: nothing is staged).
    for _ in 0..100 {
        assert!(futures_poll(run.as_mut()).await.is_none());
    }
    let r = second.run((&conn).into(), (&ours_out).into()).await;
    match r {
        Err(Error::Io(e)) => assert_eq!(e.kind(), std::io::ErrorKind::ResourceBusy),
        other => panic!("{other:?}"),
    }
}

/// Polls `f` once, after letting other tasks run.
async fn futures_poll<F: Future + Unpin>(f: F) -> Option<F::Output> {
    tokio::task::yield_now().await;
    let mut f = f;
    std::future::poll_fn(|cx| {
        std::task::Poll::Ready(match std::pin::Pin::new(&mut f).poll(cx) {
            std::task::Poll::Ready(v) => Some(v),
            std::task::Poll::Pending => None,
        })
    })
    .await
}

/// Writes through the handle and splices into the same connection take turns, as a server
/// writing each response's header and splicing its body does: the bytes arrive in order, and
/// each flush waits for the bytes written before it (the spliced bytes once counted as
/// flushed queue bytes, and a splice after a write spun for ever on a one-thread runtime).
#[tokio::test(flavor = "current_thread")]
async fn writes_and_splices_into_one_connection_take_turns() {
    let sched = Scheduler::new(Config::new(64 * 1024).max_upload_speed(Some(64 << 20))).unwrap();
    let (ours_out, peer_out) = pair().await;
    let receiver = receive(peer_out);
    let conn = sched.register(ours_out).unwrap();
    // Flushes through the byte-stream view of the same connection.
    let mut io = conn.clone().into_io();
    let pipes = Pipes::new(2);
    let mut want = Vec::new();
    for round in 0..4u8 {
        // The body waits in the source's socket already, so that the splice finds the header
        // still queued.
        let body = pattern(round, 50_000);
        let (peer_in, ours_in) = pair().await;
        send(peer_in, body.clone(), 50_000, Duration::ZERO)
            .await
            .unwrap();
        let header = vec![b'H'; 100 + usize::from(round)];
        // Not flushed: the splice waits for the header itself.
        conn.write(header.clone().into()).await.unwrap();
        want.extend_from_slice(&header);
        let mut splice = Splice::new(&pipes);
        let moved = splice
            .run::<fairio::EqualShare>(End::Tcp(&ours_in), (&conn).into())
            .await
            .unwrap();
        assert_eq!(moved, 50_000);
        assert!(splice.spliced_bytes() > 0);
        want.extend_from_slice(&body);
    }
    conn.write(bytes::Bytes::from_static(b"end")).await.unwrap();
    io.flush().await.unwrap();
    want.extend_from_slice(b"end");
    drop(io);
    conn.close(Some(Duration::from_secs(5))).await.unwrap();
    let got = receiver.await.unwrap();
    assert_eq!(got.len(), want.len());
    assert!(got == want, "bytes out of order");
    assert_eq!(conn.stat().total_sent, want.len() as u64);
}

/// More splices than pipes: four registered sources under one limit through a pool of one
/// pipe. Each round takes the pipe only while its bytes are in flight, and copies when
/// another has it: every stream arrives intact, the pool's one pipe carried some of the
/// bytes, and none is left taken.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_splices_than_pipes_take_turns_or_copy() {
    let sched = Scheduler::new(Config::new(64 * 1024).max_download_speed(Some(64 << 20))).unwrap();
    let pipes = Pipes::new(1);
    let mut runs = Vec::new();
    for seed in 0..4u8 {
        let (peer_in, ours_in) = pair().await;
        let (ours_out, peer_out) = pair().await;
        let data = pattern(seed, 2 << 20);
        let sender = send(peer_in, data.clone(), 32 * 1024, Duration::ZERO);
        let receiver = receive(peer_out);
        let conn = sched.register(ours_in).unwrap();
        let pipes = pipes.clone();
        runs.push(tokio::spawn(async move {
            let mut splice = Splice::new(&pipes);
            let moved = splice
                .run((&conn).into(), (&ours_out).into())
                .await
                .unwrap();
            drop(ours_out);
            sender.await.unwrap();
            assert!(receiver.await.unwrap() == data, "stream {seed} differs");
            assert_eq!(moved, 2 << 20);
            assert_eq!(conn.stat().total_recv, 2 << 20);
            splice.spliced_bytes()
        }));
    }
    let mut spliced = 0;
    for r in runs {
        spliced += r.await.unwrap();
    }
    assert!(spliced > 0, "the pipe carried nothing");
    assert_eq!(pipes.in_use(), 0);
}

/// A class of one spliced connection keeps its share beside a class of three on a loaded
/// machine (threads spinning beside the runtime's): the connection's demand does not lapse
/// between the splice's rounds, so its class does not lose its place at each of them. Gold
/// is guaranteed 6 MiB/s of 8 and gets half the rest, counted where its peer receives it,
/// within 1.5%. The loss it guards against was 4-7% through the proxy on a loaded machine,
/// and two changes answer it: the splice keeps its demand between rounds (`Ahead`), and the
/// tree serves a node back from idle first. Either alone brings gold within 1% here (a demand
/// that lapsed at every round: 0.9941-0.9954 with the lane; kept, without the lane:
/// 0.9998-1.0003; both: 0.9986-0.9995, and 0.9940 once under a whole test suite's load), so
/// this holds the outcome, not one of the two.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spliced_class_keeps_its_share_on_a_loaded_machine() {
    let limit = 8u64 << 20;
    let config = Config::new(64 * 1024).max_upload_speed(Some(limit));
    let sched = Scheduler::with_policy(config, fairio::Hierarchical).unwrap();
    let (gold, greedy) = (sched.group().unwrap(), sched.group().unwrap());
    gold.set_guarantees(Some(6 << 20), None).unwrap();
    let pipes = Pipes::new(8);
    let mut counters = Vec::new();
    let mut tasks = Vec::new();
    for class in [&gold, &greedy, &greedy, &greedy] {
        // A plain TCP source that floods, spliced into a registered connection.
        let (source_peer, source) = pair().await;
        tasks.push(flood(source_peer, 7));
        let (peer, ours) = pair().await;
        counters.push(read_on_thread(peer, 64 * 1024, Duration::ZERO));
        let conn = sched
            .register_in(class, ours, fairio::Weight::default())
            .unwrap();
        let pipes = pipes.clone();
        tasks.push(tokio::spawn(async move {
            let mut splice = Splice::new(&pipes);
            let _ = splice.run((&source).into(), (&conn).into()).await;
        }));
    }
    // The load: a thread per core, spinning, outside the runtime.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let spinners: Vec<_> = (0..2)
        .map(|_| {
            let stop = std::sync::Arc::clone(&stop);
            std::thread::spawn(move || {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    std::hint::spin_loop();
                }
            })
        })
        .collect();
    let read = || snapshot(&counters);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = read();
    // Long enough that a reader descheduled at either end (15 ms of gold's 7 MiB/s, about
    // 110 KB) moves the share by a fraction of the tolerance.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let after = read();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for s in spinners {
        s.join().unwrap();
    }
    let got: Vec<u64> = after.iter().zip(&before).map(|(a, b)| a - b).collect();
    let total: u64 = got.iter().sum();
    let share = got[0] as f64 / total as f64;
    println!("shares {got:?}: gold's {share:.4}");
    assert!((share / 0.875 - 1.0).abs() <= 0.015, "shares {got:?}");
    for t in tasks {
        t.abort();
    }
    sched.shutdown(Some(Duration::from_millis(100))).await;
}

/// What each counter holds now.
fn snapshot(counters: &[std::sync::Arc<std::sync::atomic::AtomicU64>]) -> Vec<u64> {
    counters
        .iter()
        .map(|c| c.load(std::sync::atomic::Ordering::Relaxed))
        .collect()
}

/// Writes `byte` to `s` in 64 KiB pieces until the peer goes (at most 6.5 GB).
fn flood(mut s: TcpStream, byte: u8) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let chunk = vec![byte; 64 * 1024];
        for _ in 0..100_000 {
            if s.write_all(&chunk).await.is_err() {
                break;
            }
        }
    })
}

/// Counts what a peer reads on a thread of its own, `piece` bytes at a time with `pause`
/// between reads (a slow reader), or as fast as it can (no pause).
fn read_on_thread(
    peer: TcpStream,
    piece: usize,
    pause: Duration,
) -> std::sync::Arc<std::sync::atomic::AtomicU64> {
    use std::io::Read;
    let counted = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let c = std::sync::Arc::clone(&counted);
    let mut peer = peer.into_std().unwrap();
    peer.set_nonblocking(false).unwrap();
    std::thread::spawn(move || {
        let mut buf = vec![0u8; piece];
        // Bounded: the peer's end comes when the test's runtime drops its sockets.
        for _ in 0..10_000_000 {
            match peer.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => c.fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed),
            };
            if !pause.is_zero() {
                std::thread::sleep(pause);
            }
        }
    });
    counted
}

/// Splices into two connections under one upload limit, one peer reading 20 KiB/s and the
/// other as fast as it can, with the kernel's default socket buffers: once the slow peer's
/// socket is full, the fast one gets the rest of the limit (the slow one's splice gives back
/// what it asked for its next bytes, and its stalled permit), counted where the peers receive
/// it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_peers_splice_leaves_the_rest_to_a_fast_one() {
    let limit = 1u64 << 20;
    let sched = Scheduler::new(Config::new(64 * 1024).max_upload_speed(Some(limit))).unwrap();
    let pipes = Pipes::new(4);
    let mut counters = Vec::new();
    let mut tasks = Vec::new();
    // 2 KiB every 100 ms: 20 KiB/s.
    for (piece, pause) in [
        (2048, Duration::from_millis(100)),
        (64 * 1024, Duration::ZERO),
    ] {
        let (source_peer, source) = pair().await;
        tasks.push(flood(source_peer, 5));
        let (peer, ours) = pair().await;
        counters.push(read_on_thread(peer, piece, pause));
        let conn = sched.register(ours).unwrap();
        let pipes = pipes.clone();
        tasks.push(tokio::spawn(async move {
            let mut splice = Splice::new(&pipes);
            let _ = splice.run((&source).into(), (&conn).into()).await;
        }));
    }
    let read = || snapshot(&counters);
    // The slow peer's socket fills first.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (t0, before) = (Instant::now(), read());
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (t1, after) = (Instant::now(), read());
    let secs = (t1 - t0).as_secs_f64();
    let rates: Vec<f64> = after
        .iter()
        .zip(&before)
        .map(|(a, b)| (a - b) as f64 / secs)
        .collect();
    println!("slow {:.0} B/s, fast {:.0} B/s", rates[0], rates[1]);
    let used = (rates[0] + rates[1]) / limit as f64;
    assert!(used >= 0.98, "{used:.4} of the limit used: {rates:?}");
    for t in tasks {
        t.abort();
    }
    sched.shutdown(Some(Duration::from_millis(100))).await;
}
