//! The `groups` scenario: two-level sharing over loopback TCP. Clients connect from 127.0.0.2
//! and 127.0.0.3 (both reach loopback) to a server that floods them, through one scheduler's
//! download limit:
//! - `groups-per-host`: host A with 8 connections, host B with 1, grouped by host, and flat
//!   beside it;
//! - `groups-capped`: two groups of 4, one capped at 1/8 of the limit;
//! - `groups-join`: four groups of 2 saturate the limit, a fifth joins;
//! - `groups-idle`: the resident memory of idle groups.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use fairio::{Connection, EqualShare, Group, Scheduler};
use serde_json::json;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpSocket};
use tokio::time::{Instant, sleep};

use crate::args::Args;
use crate::report::emit;
use crate::sys::{resident, runtime};
use crate::{CHUNK, MIB};

const LIMIT: u64 = 16 * MIB;
const HOST_A: [u8; 4] = [127, 0, 0, 2];
const HOST_B: [u8; 4] = [127, 0, 0, 3];

/// A server on 127.0.0.1 that floods every connection.
async fn flood_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            tokio::spawn(async move {
                let chunk = vec![0x5au8; CHUNK];
                while sock.write_all(&chunk).await.is_ok() {}
            });
        }
    });
    addr
}

/// A connection from `host` to the server, registered (in `group`, if any) and read as fast as
/// it delivers; its byte count.
async fn client(
    sched: &Scheduler<EqualShare>,
    server: SocketAddr,
    host: [u8; 4],
    group: Option<&Group<EqualShare>>,
) -> (Connection<EqualShare>, Arc<AtomicU64>) {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::from((host, 0))).unwrap();
    let stream = socket.connect(server).await.unwrap();
    let conn = match group {
        Some(g) => sched.register_in(g, stream, ()).unwrap(),
        None => sched.register(stream).unwrap(),
    };
    let count = Arc::new(AtomicU64::new(0));
    let (reader, c) = (conn.clone(), Arc::clone(&count));
    tokio::spawn(async move {
        while let Ok(b) = reader.read_bytes(CHUNK).await {
            c.fetch_add(b.len() as u64, Ordering::Relaxed);
        }
    });
    (conn, count)
}

fn scheduler() -> Scheduler<EqualShare> {
    Scheduler::new(
        crate::args::config(CHUNK)
            .max_download_speed(Some(LIMIT))
            .read_queue_size(Some(256 * 1024)),
    )
    .unwrap()
}

fn total(counts: &[Arc<AtomicU64>]) -> u64 {
    counts.iter().map(|c| c.load(Ordering::Relaxed)).sum()
}

/// Host A's 8 connections and host B's 1: each host's share of what moved, grouped and flat.
fn per_host(quick: bool) {
    let secs = if quick { 1.0 } else { 5.0 };
    for grouped in [true, false] {
        runtime().block_on(async {
            let server = flood_server().await;
            let sched = scheduler();
            let (ga, gb) = (sched.group().unwrap(), sched.group().unwrap());
            let (mut a, mut b) = (Vec::new(), Vec::new());
            for _ in 0..8 {
                a.push(client(&sched, server, HOST_A, grouped.then_some(&ga)).await);
            }
            b.push(client(&sched, server, HOST_B, grouped.then_some(&gb)).await);
            let a: Vec<_> = a.into_iter().map(|(_, c)| c).collect();
            let b: Vec<_> = b.into_iter().map(|(_, c)| c).collect();
            sleep(Duration::from_secs(1)).await;
            let (a0, b0) = (total(&a), total(&b));
            sleep(Duration::from_secs_f64(secs)).await;
            let (da, db) = ((total(&a) - a0) as f64, (total(&b) - b0) as f64);
            let sum = da + db;
            emit(json!({"scenario": "groups-per-host",
                "contender": if grouped { "fairio-equal-by-host" } else { "fairio-equal-flat" },
                "limit": LIMIT, "secs": secs, "rate_vs_limit": sum / secs / LIMIT as f64,
                "host_a_share": da / sum, "host_b_share": db / sum,
                "jain_hosts": fairio_stats::jain(&[da, db])}));
            sched.shutdown(Some(Duration::from_millis(100))).await;
        });
    }
}

/// Two groups of 4; one capped at 2 MiB/s: it gets its cap, the other the rest.
fn capped(quick: bool) {
    let secs = if quick { 1.0 } else { 5.0 };
    let cap = 2 * MIB;
    runtime().block_on(async {
        let server = flood_server().await;
        let sched = scheduler();
        let (ga, gb) = (sched.group().unwrap(), sched.group().unwrap());
        ga.set_caps(None, Some(cap)).unwrap();
        let (mut a, mut b) = (Vec::new(), Vec::new());
        for _ in 0..4 {
            a.push(client(&sched, server, HOST_A, Some(&ga)).await.1);
            b.push(client(&sched, server, HOST_B, Some(&gb)).await.1);
        }
        sleep(Duration::from_secs(1)).await;
        let (a0, b0) = (total(&a), total(&b));
        sleep(Duration::from_secs_f64(secs)).await;
        let (ra, rb) = (
            (total(&a) - a0) as f64 / secs,
            (total(&b) - b0) as f64 / secs,
        );
        emit(
            json!({"scenario": "groups-capped", "contender": "fairio-equal-by-host",
            "limit": LIMIT, "cap": cap, "secs": secs, "capped_vs_cap": ra / cap as f64,
            "other_vs_rest": rb / (LIMIT - cap) as f64, "rate_vs_limit": (ra + rb) / LIMIT as f64}),
        );
        sched.shutdown(Some(Duration::from_millis(100))).await;
    });
}

/// Four groups of 2 saturate the limit; a fifth group of 2 joins: the time until its rate over
/// 20 ms windows first reaches 90% of its share (a fifth of the limit).
fn join(quick: bool) {
    runtime().block_on(async {
        let server = flood_server().await;
        let sched = scheduler();
        let mut keep = Vec::new();
        for g in 0..4 {
            let group = sched.group().unwrap();
            for _ in 0..2 {
                let host = if g % 2 == 0 { HOST_A } else { HOST_B };
                keep.push(client(&sched, server, host, Some(&group)).await);
            }
        }
        sleep(Duration::from_secs(if quick { 1 } else { 2 })).await;
        let newcomer = sched.group().unwrap();
        let joined = Instant::now();
        let mut counts = Vec::new();
        for _ in 0..2 {
            counts.push(client(&sched, server, HOST_B, Some(&newcomer)).await.1);
        }
        let share = LIMIT as f64 / 5.0;
        let window = Duration::from_millis(20);
        let mut last = total(&counts);
        let mut reached = None;
        for _ in 0..100 {
            sleep(window).await;
            let now = total(&counts);
            let rate = (now - last) as f64 / window.as_secs_f64();
            last = now;
            if rate >= 0.9 * share {
                reached = Some(joined.elapsed());
                break;
            }
        }
        emit(
            json!({"scenario": "groups-join", "contender": "fairio-equal-by-host",
            "limit": LIMIT, "groups_before": 4,
            "time_to_share_ms": reached.map(|d| d.as_secs_f64() * 1e3)}),
        );
        drop(keep);
        sched.shutdown(Some(Duration::from_millis(100))).await;
    });
}

/// The resident memory of idle groups (no members): 10,000 of them even in a quick run, since
/// fewer fit in pages the allocator already holds.
fn idle(_quick: bool) {
    let n = 10_000;
    runtime().block_on(async {
        let sched = scheduler();
        let before = resident();
        let groups: Vec<_> = (0..n).map(|_| sched.group().unwrap()).collect();
        let after = resident();
        emit(
            json!({"scenario": "groups-idle", "contender": "fairio-equal-by-host", "n": n,
            "resident_bytes_per_group": (after - before) as f64 / n as f64}),
        );
        drop(groups);
        sched.shutdown(Some(Duration::from_millis(100))).await;
    });
}

/// Every part of the scenario.
pub(crate) fn run(args: &Args) {
    let quick = args.quick;
    per_host(quick);
    capped(quick);
    join(quick);
    idle(quick);
}
