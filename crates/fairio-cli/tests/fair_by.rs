//! `fairio proxy --fair-by host` (the default) against `--fair-by connection`, with real TCP
//! clients from two source addresses: 127.0.0.2 opens four connections, 127.0.0.3 one.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use common::{free_port, start_proxy};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket};

/// An upstream that floods every connection until it goes away.
async fn flooding_upstream() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            tokio::spawn(async move {
                let chunk = vec![0x42u8; 64 * 1024];
                while sock.write_all(&chunk).await.is_ok() {}
            });
        }
    });
    port
}

/// A client from `from` that counts what it downloads through the proxy.
async fn client(from: [u8; 4], proxy: u16, count: Arc<AtomicU64>) {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::from((from, 0))).unwrap();
    let mut stream = socket
        .connect(SocketAddr::from(([127, 0, 0, 1], proxy)))
        .await
        .unwrap();
    tokio::spawn(async move {
        let mut buf = vec![0u8; 64 * 1024];
        while let Ok(n) = stream.read(&mut buf).await {
            if n == 0 {
                break;
            }
            count.fetch_add(n as u64, Ordering::Relaxed);
        }
    });
}

/// Share of the bytes that went to the host with one connection.
async fn lone_hosts_share(extra: &[&str]) -> f64 {
    let up = flooding_upstream().await;
    let port = free_port();
    let mut args = vec!["--max-to-clients", "4MiB"];
    args.extend_from_slice(extra);
    let _proxy = start_proxy(port, up, &args);
    let (busy, lone) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    for _ in 0..4 {
        client([127, 0, 0, 2], port, Arc::clone(&busy)).await;
    }
    client([127, 0, 0, 3], port, Arc::clone(&lone)).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (b0, l0) = (busy.load(Ordering::Relaxed), lone.load(Ordering::Relaxed));
    let since = std::time::Instant::now();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (b, l) = (
        busy.load(Ordering::Relaxed) - b0,
        lone.load(Ordering::Relaxed) - l0,
    );
    // The time the bytes were counted over, as it passed: a sleep overshoots on a busy box.
    let secs = since.elapsed().as_secs_f64();
    let total = (b + l) as f64;
    println!("{extra:?}: 127.0.0.2 (4 connections) {b} B, 127.0.0.3 (1) {l} B in {secs:.3} s");
    // The limit holds (the time at 4 MiB/s, plus the burst), and is used.
    assert!(total <= secs * 4.0 * 1048576.0 * 1.02 + 262144.0, "{total}");
    assert!(total >= 3.0 * 4.0 * 1048576.0 * 0.9, "{total}");
    l as f64 / total
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn by_default_each_host_gets_half_whatever_its_connections() {
    let share = lone_hosts_share(&[]).await;
    assert!(
        (share - 0.5).abs() <= 0.05,
        "the host with one connection got {share:.3}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fair_by_connection_gives_each_connection_a_fifth() {
    let share = lone_hosts_share(&["--fair-by", "connection"]).await;
    assert!(
        (share - 0.2).abs() <= 0.05,
        "the lone connection got {share:.3}"
    );
}
