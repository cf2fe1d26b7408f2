//! A real axum server behind a `FairListener` sends endless bodies to real hyper clients, three
//! from 127.0.0.2 and one from 127.0.0.3: the aggregate holds the limit, each client address
//! gets half, every byte is the one sent, and graceful shutdown completes.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use bytes::Bytes;
use fairio::{Config, Scheduler};
use fairio_axum::FairListener;
use http_body_util::BodyExt;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

const LIMIT: u64 = 8 << 20;
const CHUNK: usize = 64 * 1024;

/// An endless body: chunk k is CHUNK bytes of value k mod 256.
async fn endless() -> Body {
    let chunks = futures_util::stream::unfold(0u64, |k| async move {
        let chunk = Bytes::from(vec![(k % 256) as u8; CHUNK]);
        Some((Ok::<_, std::io::Error>(chunk), k + 1))
    });
    Body::from_stream(chunks)
}

/// A client from `from` that streams `/` and counts the bytes it gets, checking each against
/// the pattern; returns its counter and a flag raised on any wrong byte.
fn client(
    from: [u8; 4],
    server: SocketAddr,
) -> (Arc<AtomicU64>, Arc<AtomicU64>, tokio::task::JoinHandle<()>) {
    let mut http = HttpConnector::new();
    http.set_local_address(Some(IpAddr::from(from)));
    let client: Client<_, http_body_util::Empty<Bytes>> =
        Client::builder(TokioExecutor::new()).build(http);
    let (count, wrong) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let (c, w) = (Arc::clone(&count), Arc::clone(&wrong));
    let task = tokio::spawn(async move {
        let uri = format!("http://{server}/").parse().unwrap();
        let mut body = client.get(uri).await.unwrap().into_body();
        let mut offset = 0u64;
        while let Some(frame) = body.frame().await {
            let Ok(data) = frame.unwrap().into_data() else {
                continue;
            };
            for (i, b) in data.iter().enumerate() {
                let at = offset + i as u64;
                if u64::from(*b) != (at / CHUNK as u64) % 256 {
                    w.fetch_add(1, Ordering::Relaxed);
                }
            }
            offset += data.len() as u64;
            c.store(offset, Ordering::Relaxed);
        }
    });
    (count, wrong, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_share_the_servers_upload_limit_fairly_per_address() {
    let sched = Scheduler::new(
        Config::new(CHUNK)
            .max_upload_speed(Some(LIMIT))
            .write_queue_size(Some(256 * 1024)),
    )
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = Router::new().route("/", get(endless));
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(
        axum::serve(FairListener::new(listener, &sched), app)
            .with_graceful_shutdown(async {
                let _ = stop_rx.await;
            })
            .into_future(),
    );

    let mut clients = Vec::new();
    for from in [
        [127, 0, 0, 2],
        [127, 0, 0, 2],
        [127, 0, 0, 2],
        [127, 0, 0, 3],
    ] {
        clients.push(client(from, addr));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before: Vec<u64> = clients
        .iter()
        .map(|c| c.0.load(Ordering::Relaxed))
        .collect();
    let start = Instant::now();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let secs = start.elapsed().as_secs_f64();
    let got: Vec<f64> = clients
        .iter()
        .zip(before)
        .map(|(c, b)| (c.0.load(Ordering::Relaxed) - b) as f64 / secs)
        .collect();
    let (busy, lone): (f64, f64) = (got[..3].iter().sum(), got[3]);
    let total = busy + lone;
    println!(
        "127.0.0.2 (3 connections) {busy:.0} B/s, 127.0.0.3 (1) {lone:.0} B/s, total {:.4} of the limit",
        total / LIMIT as f64
    );
    assert!(
        (total / LIMIT as f64 - 1.0).abs() <= 0.02,
        "aggregate {total:.0}"
    );
    assert!(
        (lone / total - 0.5).abs() <= 0.03,
        "127.0.0.3 got {:.3}",
        lone / total
    );
    for (c, wrong, task) in clients {
        task.abort();
        let _ = task.await;
        assert!(c.load(Ordering::Relaxed) > 0);
        assert_eq!(
            wrong.load(Ordering::Relaxed),
            0,
            "bytes that were not the ones sent"
        );
    }
    // Graceful shutdown, once the clients have gone.
    stop_tx.send(()).unwrap();
    let done = tokio::time::timeout(Duration::from_secs(30), server).await;
    assert!(
        matches!(done, Ok(Ok(Ok(())))),
        "graceful shutdown did not complete: {done:?}"
    );
    sched.shutdown(None).await;
}
