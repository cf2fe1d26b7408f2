//! Two `fairio proxy` processes share one download limit through one real `redis-server`:
//! clients of both, each proxy in front of its own flooding upstream.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::{client, flooding_upstream, free_port, http, start_proxy};
use fairio_fleet::testing::Redis;

#[test]
fn two_proxies_share_one_limit_through_redis() {
    let redis = Redis::start();
    let limit: u64 = 4 << 20;
    let (mut proxies, mut counts, mut metrics) = (Vec::new(), Vec::new(), Vec::new());
    for clients in [1, 3] {
        let up = flooding_upstream(9);
        let (port, mport) = (free_port(), free_port());
        proxies.push(start_proxy(
            port,
            up,
            &[
                "--max-to-clients",
                "4MiB",
                "--fleet",
                &redis.url(),
                "--fleet-budget",
                "cli-test",
                "--fleet-expected",
                "2",
                "--metrics",
                &format!("127.0.0.1:{mport}"),
            ],
        ));
        metrics.push(mport);
        counts.push((0..clients).map(|_| client(port)).collect::<Vec<_>>());
    }
    // Leases settle within a few intervals of 500 ms.
    std::thread::sleep(Duration::from_secs(3));
    let total = |c: &[Arc<AtomicU64>]| c.iter().map(|x| x.load(Ordering::Relaxed)).sum::<u64>();
    let before: Vec<u64> = counts.iter().map(|c| total(c)).collect();
    let start = Instant::now();
    std::thread::sleep(Duration::from_secs(4));
    let secs = start.elapsed().as_secs_f64();
    let rates: Vec<f64> = counts
        .iter()
        .zip(before)
        .map(|(c, b)| (total(c) - b) as f64 / secs)
        .collect();
    let sum: f64 = rates.iter().sum();
    println!(
        "proxy rates {rates:.0?}, total {:.4} of the fleet limit",
        sum / limit as f64
    );
    assert!((sum / limit as f64 - 1.0).abs() <= 0.03, "total {sum:.0}");
    // Both proxies are backlogged: half each, whatever their clients.
    for r in &rates {
        assert!((r / (limit as f64 / 2.0) - 1.0).abs() <= 0.05, "{rates:?}");
    }
    for m in metrics {
        let (_, text) = http(m, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(
            text.contains("fairio_fleet_members{direction=\"to_clients\"} 2"),
            "{text}"
        );
        let lease: f64 = text
            .lines()
            .find(|l| {
                l.starts_with("fairio_fleet_lease_bytes_per_second{direction=\"to_clients\"}")
            })
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{text}"));
        assert!(
            (lease / (limit as f64 / 2.0) - 1.0).abs() <= 0.05,
            "lease {lease}"
        );
    }
    drop(proxies);
}
