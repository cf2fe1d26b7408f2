//! Flooded members of groups and their rates, for the sharing tests (`groups.rs`,
//! `hierarchy.rs`).

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use fairio::{Config, Connection, Group, Policy, Scheduler};
use tokio::time::sleep;

use crate::common::{flood_with, reader, snapshot};

/// A config with a download limit and a bounded read queue.
pub(crate) fn config(limit: u64) -> Config {
    Config::new(16 * 1024)
        .max_download_speed(Some(limit))
        .read_queue_size(Some(64 * 1024))
}

/// A flooded connection in `group`, read as fast as it delivers.
pub(crate) fn member<P: Policy>(
    sched: &Scheduler<P>,
    group: &Group<P>,
    params: P::Params,
) -> (Connection<P>, Arc<AtomicU64>) {
    let (ours, theirs) = tokio::io::duplex(64 * 1024);
    flood_with(theirs, 64 * 1024);
    let conn = sched.register_in(group, ours, params).unwrap();
    (conn.clone(), reader(conn))
}

/// Bytes each counter gained per second over `secs` seconds, after `warmup` seconds.
pub(crate) async fn measure(counts: &[Arc<AtomicU64>], warmup: f64, secs: f64) -> Vec<f64> {
    sleep(Duration::from_secs_f64(warmup)).await;
    let before = snapshot(counts);
    sleep(Duration::from_secs_f64(secs)).await;
    snapshot(counts)
        .iter()
        .zip(before)
        .map(|(a, b)| (a - b) as f64 / secs)
        .collect()
}
