//! Real quinn endpoints over loopback UDP, with a self-signed certificate made here: a server
//! whose streams go through one scheduler under an upload limit, and clients bound to
//! 127.0.0.2 and 127.0.0.3, each counting and checking every byte it receives.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use fairio::{Config, Scheduler};
use fairio_quinn::{FairEndpoint, Grouping, transport_config};
use quinn::rustls::pki_types::{CertificateDer, PrivatePkcs8KeyDer};
use tokio::time::Instant;

const LIMIT: u64 = 2 << 20;
const CHUNK: usize = 16 * 1024;

/// The n-th byte of the stream seeded `seed` is `(31 n + seed) mod 251`: the pattern repeats
/// every 251 bytes, so `cycle(seed)[n % 251..]` holds the stream's bytes from `n` on, for
/// 64 KiB.
fn cycle(seed: u64) -> Vec<u8> {
    (0..251 + 64 * 1024u64)
        .map(|j| (j.wrapping_mul(31).wrapping_add(seed) % 251) as u8)
        .collect()
}

/// The measuring tests run one at a time: each wants the machine's two cores.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

struct Tls {
    cert: CertificateDer<'static>,
    key: PrivatePkcs8KeyDer<'static>,
}

fn tls() -> Tls {
    let c = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    Tls {
        cert: CertificateDer::from(c.cert),
        key: PrivatePkcs8KeyDer::from(c.key_pair.serialize_der()),
    }
}

fn server_endpoint(tls: &Tls) -> quinn::Endpoint {
    let mut config =
        quinn::ServerConfig::with_single_cert(vec![tls.cert.clone()], tls.key.clone_key().into())
            .unwrap();
    config.transport_config(Arc::new(transport_config()));
    quinn::Endpoint::server(config, "127.0.0.1:0".parse().unwrap()).unwrap()
}

fn client_endpoint(tls: &Tls, ip: [u8; 4]) -> quinn::Endpoint {
    let mut roots = quinn::rustls::RootCertStore::empty();
    roots.add(tls.cert.clone()).unwrap();
    let mut config = quinn::ClientConfig::with_root_certificates(Arc::new(roots)).unwrap();
    config.transport_config(Arc::new(transport_config()));
    let mut e = quinn::Endpoint::client(SocketAddr::from((ip, 0))).unwrap();
    e.set_default_client_config(config);
    e
}

/// A connection from `client` to a new server endpoint: (the client's side, the server's,
/// and the server endpoint, which must outlive them).
async fn connected(
    tls: &Tls,
    client: &quinn::Endpoint,
) -> (quinn::Connection, quinn::Connection, quinn::Endpoint) {
    let endpoint = server_endpoint(tls);
    let server = endpoint.local_addr().unwrap();
    let (conn, incoming) = tokio::join!(
        async { client.connect(server, "localhost").unwrap().await.unwrap() },
        async { endpoint.accept().await.unwrap().await.unwrap() }
    );
    (conn, incoming, endpoint)
}

/// A server that, on each stream, reads an 8-byte seed and then writes the seed's pattern
/// until the stream fails. Every stream goes through `sched`, grouped by `grouping`.
fn flooding_server(tls: &Tls, sched: &Scheduler, grouping: Grouping) -> SocketAddr {
    let endpoint = server_endpoint(tls);
    let addr = endpoint.local_addr().unwrap();
    let fair = FairEndpoint::new(sched).grouping(grouping);
    tokio::spawn(async move {
        while let Some(incoming) = endpoint.accept().await {
            let fair = fair.clone();
            tokio::spawn(async move {
                let Ok(conn) = incoming.await else { return };
                let conn = Arc::new(fair.connection(conn));
                while let Ok(stream) = conn.accept_bi().await {
                    tokio::spawn(async move {
                        let mut seed = [0u8; 8];
                        let mut got = 0;
                        while got < 8 {
                            match stream.read(&mut seed[got..]).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => got += n,
                            }
                        }
                        let cyc = cycle(u64::from_be_bytes(seed));
                        let mut n = 0usize;
                        loop {
                            let at = n % 251;
                            let chunk = bytes::Bytes::copy_from_slice(&cyc[at..at + CHUNK]);
                            n += CHUNK;
                            if stream.write(chunk).await.is_err() {
                                return;
                            }
                        }
                    });
                }
            });
        }
    });
    addr
}

/// Opens `streams` streams on a new connection from `client` and reads them, checking every
/// byte: each stream's count of bytes received so far.
async fn download(
    client: &quinn::Endpoint,
    server: SocketAddr,
    streams: usize,
    seed: &AtomicU64,
) -> (quinn::Connection, Vec<Arc<AtomicU64>>) {
    let conn = client.connect(server, "localhost").unwrap().await.unwrap();
    let mut counts = Vec::new();
    for _ in 0..streams {
        let (mut send, mut recv) = conn.open_bi().await.unwrap();
        let s = seed.fetch_add(1, Ordering::Relaxed);
        send.write_all(&s.to_be_bytes()).await.unwrap();
        let count = Arc::new(AtomicU64::new(0));
        let c = Arc::clone(&count);
        tokio::spawn(async move {
            let cyc = cycle(s);
            let mut buf = vec![0u8; 64 * 1024];
            let mut n = 0usize;
            while let Ok(Some(k)) = recv.read(&mut buf).await {
                let at = n % 251;
                assert!(
                    buf[..k] == cyc[at..at + k],
                    "stream {s}: a wrong byte in {n}..{}",
                    n + k
                );
                n += k;
                c.store(n as u64, Ordering::Relaxed);
            }
            drop(send);
        });
        counts.push(count);
    }
    (conn, counts)
}

fn sum(c: &[Arc<AtomicU64>]) -> u64 {
    c.iter().map(|c| c.load(Ordering::Relaxed)).sum()
}

/// Bytes each group of streams received over `secs`, after a second of warm-up, and the
/// seconds measured.
async fn measure(groups: &[&[Arc<AtomicU64>]], secs: f64) -> (Vec<f64>, f64) {
    let (bytes, took, _) = measure_held(groups, secs, None).await;
    (bytes, took)
}

/// As [`measure`], and what `sched` had handed quinn beyond what the streams had received
/// when the window opened: bytes in flight then, which may arrive inside the window beside
/// its own share of the limit. Sampled at the window's start, where it counts (on a busy box
/// more is in flight then than a second before).
async fn measure_held(
    groups: &[&[Arc<AtomicU64>]],
    secs: f64,
    sched: Option<&Scheduler>,
) -> (Vec<f64>, f64, u64) {
    tokio::time::sleep(Duration::from_secs(1)).await;
    // What the receivers had first, then what was handed: every byte received was handed
    // before, so the difference never comes out short.
    let before: Vec<u64> = groups.iter().map(|g| sum(g)).collect();
    let handed = sched.map_or(0, |s| s.global_stat().total_sent);
    let held = handed.saturating_sub(before.iter().sum());
    let start = Instant::now();
    tokio::time::sleep(Duration::from_secs_f64(secs)).await;
    let after: Vec<u64> = groups.iter().map(|g| sum(g)).collect();
    let took = start.elapsed().as_secs_f64();
    let bytes = after
        .iter()
        .zip(before)
        .map(|(a, b)| (a - b) as f64)
        .collect();
    (bytes, took, held)
}

/// A scheduler under the limit, whose write queues are bounded as a server's would be: a
/// writer that outruns the limit waits instead of queueing without end.
fn limited() -> Scheduler {
    Scheduler::new(
        Config::new(64 * 1024)
            .max_upload_speed(Some(LIMIT))
            .write_queue_size(Some(256 * 1024)),
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn addresses_share_the_limit_whatever_their_connections() {
    let _one_at_a_time = SERIAL.lock().await;
    let tls = tls();
    let sched = limited();
    let server = flooding_server(&tls, &sched, Grouping::Address);
    let seed = AtomicU64::new(1);
    let (busy, lone) = (
        client_endpoint(&tls, [127, 0, 0, 2]),
        client_endpoint(&tls, [127, 0, 0, 3]),
    );
    let mut busy_counts = Vec::new();
    let mut conns = Vec::new();
    for _ in 0..4 {
        let (c, counts) = download(&busy, server, 1, &seed).await;
        conns.push(c);
        busy_counts.extend(counts);
    }
    let (lone_conn, lone_counts) = download(&lone, server, 1, &seed).await;
    let handed_before = sched.global_stat().total_sent;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (bytes, secs, held) = measure_held(&[&busy_counts, &lone_counts], 6.0, Some(&sched)).await;
    let received = (bytes[0] + bytes[1]) / secs;
    println!(
        "127.0.0.2 (4 connections) {:.0} B/s, 127.0.0.3 (1) {:.0} B/s, received {:.4} of the limit",
        bytes[0] / secs,
        bytes[1] / secs,
        received / LIMIT as f64
    );
    assert!(
        (bytes[1] / bytes[0] - 1.0).abs() <= 0.02,
        "{bytes:?}: the lone address got {:.3} of the busy one's",
        bytes[1] / bytes[0]
    );
    // The limit holds at the receivers, whatever the machine's load: the window's share and
    // the 40 ms burst, and what quinn held when it opened.
    assert!(
        received * secs <= LIMIT as f64 * (secs + 0.04) + held as f64,
        "received {:.4} of the limit, {held} B held at the start",
        received / LIMIT as f64
    );
    // Not asserted below: that the limit is used whole. On an idle machine the receivers get
    // 0.994-1.004 of it; beside a release build of the workspace (two compilers on the two
    // cores) the scheduler handed quinn 0.917-0.980 of it and the receivers got 0.887-0.967,
    // its tasks and quinn's driver waiting for a core. A lower bound on throughput is a bound
    // on the machine's spare CPU, not on fairio: work conservation is asserted where time is
    // the test's (fairio's paused-clock engine tests).
    let handed = (sched.global_stat().total_sent - handed_before) as f64 / (secs + 2.0);
    println!("handed over {:.4} of the limit", handed / LIMIT as f64);
    assert_eq!(sched.connection_count(), 5, "one stream per connection");
    drop((conns, lone_conn));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_streams_of_a_connection_share_its_part() {
    let _one_at_a_time = SERIAL.lock().await;
    let tls = tls();
    let sched = limited();
    let server = flooding_server(&tls, &sched, Grouping::Address);
    let seed = AtomicU64::new(100);
    let client = client_endpoint(&tls, [127, 0, 0, 2]);
    let (conn, counts) = download(&client, server, 3, &seed).await;
    let groups: Vec<&[Arc<AtomicU64>]> = counts.iter().map(std::slice::from_ref).collect();
    let (bytes, secs, held) = measure_held(&groups, 4.0, Some(&sched)).await;
    let mean = bytes.iter().sum::<f64>() / 3.0;
    println!(
        "three streams of one connection: {:.0?} B/s",
        bytes.iter().map(|b| b / secs).collect::<Vec<_>>()
    );
    for b in &bytes {
        assert!((b / mean - 1.0).abs() <= 0.02, "{bytes:?}");
    }
    // The limit holds at the receivers: the window's share, the 40 ms burst, and what quinn
    // held when the window opened.
    assert!(
        mean * 3.0 <= LIMIT as f64 * (secs + 0.04) + held as f64,
        "{bytes:?} in {secs} s, {held} B held at the start"
    );
    drop(conn);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grouped_by_connection_each_connection_gets_its_part() {
    let _one_at_a_time = SERIAL.lock().await;
    let tls = tls();
    let sched = limited();
    let server = flooding_server(&tls, &sched, Grouping::Connection);
    let seed = AtomicU64::new(200);
    let client = client_endpoint(&tls, [127, 0, 0, 2]);
    let (c1, one) = download(&client, server, 1, &seed).await;
    let (c2, three) = download(&client, server, 3, &seed).await;
    let (bytes, _) = measure(&[&one, &three], 4.0).await;
    println!(
        "one stream {:.0} B, three streams {:.0} B",
        bytes[0], bytes[1]
    );
    assert!((bytes[0] / bytes[1] - 1.0).abs() <= 0.02, "{bytes:?}");
    drop((c1, c2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reset_stream_and_a_closed_connection_are_reported_and_nothing_hangs() {
    let _one_at_a_time = SERIAL.lock().await;
    let tls = tls();
    let sched = limited();
    let fair = FairEndpoint::new(&sched);
    let client = client_endpoint(&tls, [127, 0, 0, 2]);
    let (conn, incoming, _endpoint) = connected(&tls, &client).await;
    let fair_conn = fair.connection(incoming);

    // The client sends some bytes, then resets the stream.
    let (mut send, _recv) = conn.open_bi().await.unwrap();
    send.write_all(b"partial").await.unwrap();
    let stream = fair_conn.accept_bi().await.unwrap();
    let mut buf = [0u8; 64];
    let n = stream.read(&mut buf).await.unwrap();
    assert_eq!(&buf[..n], b"partial");
    send.reset(quinn::VarInt::from_u32(7)).unwrap();
    let err = tokio::time::timeout(Duration::from_secs(30), stream.read(&mut buf))
        .await
        .expect("a read of a reset stream returned")
        .expect_err("a reset is no end of stream");
    assert_eq!(
        std::io::Error::from(err).kind(),
        std::io::ErrorKind::ConnectionReset
    );

    // The server writes on a second stream; the client closes the connection mid-transfer.
    let (mut send2, mut recv2) = conn.open_bi().await.unwrap();
    send2.write_all(b"go").await.unwrap();
    let stream2 = fair_conn.accept_bi().await.unwrap();
    let writer = tokio::spawn(async move {
        let chunk = bytes::Bytes::from(vec![9u8; CHUNK]);
        let mut written = 0u64;
        loop {
            if let Err(e) = stream2.write(chunk.clone()).await {
                return (written, e, stream2);
            }
            written += CHUNK as u64;
        }
    });
    let mut got = vec![0u8; 64 * 1024];
    let mut received = 0;
    while received < 256 * 1024 {
        received += recv2.read(&mut got).await.unwrap().unwrap();
    }
    conn.close(quinn::VarInt::from_u32(1), b"bye");
    let (written, err, stream2) = tokio::time::timeout(Duration::from_secs(30), writer)
        .await
        .expect("the writer saw the close")
        .unwrap();
    println!("closed after {received} B received, {written} B written: {err}");
    // The writer learns that the stream is over (the reason, the peer application's close, is
    // mapped in `halves.rs`'s tests); that the stream leaves the scheduler is awaited below.
    // Closing the stream of a closed connection reports it, and returns.
    let closed = tokio::time::timeout(
        Duration::from_secs(30),
        stream2.close(Some(Duration::from_secs(1))),
    )
    .await
    .expect("close returned");
    assert!(
        closed.is_err(),
        "a close over a lost connection reports the loss"
    );
    // Every stream leaves the scheduler.
    for _ in 0..300 {
        if sched.connection_count() == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(stream);
    assert_eq!(sched.connection_count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unidirectional_streams_close_once_acknowledged_and_refuse_the_wrong_direction() {
    let _one_at_a_time = SERIAL.lock().await;
    let tls = tls();
    let sched = limited();
    let fair = FairEndpoint::new(&sched);
    let client = client_endpoint(&tls, [127, 0, 0, 3]);
    let (conn, incoming, _endpoint) = connected(&tls, &client).await;
    // The server sends 1 MiB on a send-only stream, closes it, and drops its connection at
    // once: the close waited for the client's acknowledgements, so nothing is cut.
    let payload: Vec<u8> = (0..1u32 << 20).map(|i| (i % 253) as u8).collect();
    {
        let fair_conn = fair.connection(incoming);
        let up = fair_conn.open_uni().await.unwrap();
        up.write(bytes::Bytes::from(payload.clone())).await.unwrap();
        let mut recv = conn.accept_uni().await.unwrap();
        let reader = tokio::spawn(async move { recv.read_to_end(2 << 20).await });
        tokio::time::timeout(Duration::from_secs(30), up.close(None))
            .await
            .expect("the close returned")
            .expect("acknowledged in full");
        assert_eq!(up.stat().total_sent, 1 << 20);
        drop((up, fair_conn));
        let got = tokio::time::timeout(Duration::from_secs(30), reader)
            .await
            .expect("the client read to the end")
            .unwrap()
            .unwrap();
        assert!(got == payload, "{} bytes, not the ones sent", got.len());
    }
    // The client sends on a stream the server can only receive: the server reads it, and a
    // write to it fails rather than vanishing.
    let (conn2, incoming2, _endpoint2) = connected(&tls, &client).await;
    let fair_conn = fair.connection(incoming2);
    let mut send = conn2.open_uni().await.unwrap();
    send.write_all(b"one way").await.unwrap();
    send.finish().unwrap();
    let down = fair_conn.accept_uni().await.unwrap();
    let mut buf = [0u8; 16];
    let n = down.read(&mut buf).await.unwrap();
    assert_eq!(&buf[..n], b"one way");
    let _ = down.write(bytes::Bytes::from_static(b"back")).await;
    let err = tokio::time::timeout(Duration::from_secs(30), down.close(None))
        .await
        .expect("the close returned")
        .expect_err("a write to a receive-only stream is an error");
    println!("write to a receive-only stream: {err}");
    drop((conn, conn2));
}
