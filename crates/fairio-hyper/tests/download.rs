//! A hyper client whose pool goes through a `FairConnector` downloads four endless bodies at
//! once from a local axum server: the aggregate holds the scheduler's download limit, each
//! download gets a quarter, and every byte is the one sent.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use bytes::Bytes;
use fairio::{Config, Scheduler};
use fairio_hyper::FairConnector;
use http_body_util::BodyExt;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

const LIMIT: u64 = 4 << 20;
const CHUNK: usize = 64 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clients_pool_shares_one_download_limit_fairly() {
    // A plain server: chunk k of every body is CHUNK bytes of value k mod 256.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = Router::new().route(
        "/",
        get(|| async {
            Body::from_stream(futures_util::stream::unfold(0u64, |k| async move {
                let chunk = Bytes::from(vec![(k % 256) as u8; CHUNK]);
                Some((Ok::<_, std::io::Error>(chunk), k + 1))
            }))
        }),
    );
    let server = tokio::spawn(axum::serve(listener, app).into_future());

    let sched = Scheduler::new(
        Config::new(CHUNK)
            .max_download_speed(Some(LIMIT))
            .read_queue_size(Some(256 * 1024)),
    )
    .unwrap();
    let client: Client<_, http_body_util::Empty<Bytes>> =
        Client::builder(TokioExecutor::new()).build(FairConnector::new(&sched));
    let mut downloads = Vec::new();
    for _ in 0..4 {
        let client = client.clone();
        let (count, wrong) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let (c, w) = (Arc::clone(&count), Arc::clone(&wrong));
        let uri = format!("http://{addr}/").parse().unwrap();
        let task = tokio::spawn(async move {
            let response = client.get(uri).await.unwrap();
            let info = response
                .extensions()
                .get::<fairio_hyper::FairInfo>()
                .copied();
            assert!(info.is_some_and(|i| i.remote_addr.is_some()), "{info:?}");
            let mut body = response.into_body();
            let mut offset = 0u64;
            while let Some(frame) = body.frame().await {
                let Ok(data) = frame.unwrap().into_data() else {
                    continue;
                };
                for (i, b) in data.iter().enumerate() {
                    if u64::from(*b) != ((offset + i as u64) / CHUNK as u64) % 256 {
                        w.fetch_add(1, Ordering::Relaxed);
                    }
                }
                offset += data.len() as u64;
                c.store(offset, Ordering::Relaxed);
            }
        });
        downloads.push((count, wrong, task));
    }
    // The pool opens one connection per concurrent request, each registered as it comes
    // (bounded: a busy box may take a while).
    for _ in 0..300 {
        if sched.connection_count() >= 4 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(sched.connection_count(), 4);
    let before: Vec<u64> = downloads
        .iter()
        .map(|d| d.0.load(Ordering::Relaxed))
        .collect();
    let start = Instant::now();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let secs = start.elapsed().as_secs_f64();
    let rates: Vec<f64> = downloads
        .iter()
        .zip(before)
        .map(|(d, b)| (d.0.load(Ordering::Relaxed) - b) as f64 / secs)
        .collect();
    let total: f64 = rates.iter().sum();
    println!(
        "downloads {rates:.0?} B/s, total {:.4} of the limit",
        total / LIMIT as f64
    );
    assert!(
        (total / LIMIT as f64 - 1.0).abs() <= 0.02,
        "aggregate {total:.0}"
    );
    for r in &rates {
        assert!((r / (total / 4.0) - 1.0).abs() <= 0.05, "{rates:?}");
    }
    for (count, wrong, task) in downloads {
        task.abort();
        let _ = task.await;
        assert!(count.load(Ordering::Relaxed) > 0);
        assert_eq!(
            wrong.load(Ordering::Relaxed),
            0,
            "bytes that were not the ones sent"
        );
    }
    server.abort();
    sched.shutdown(None).await;
}
