//! The `scale` scenario's idle half: the resident memory of each connection fairio holds. (Its
//! active half, 1,000 connections moving bytes, is part of the fairness scenario.)

use std::time::Duration;

use fairio::Scheduler;
use serde_json::json;

use crate::args::Args;
use crate::contender::Contender;
use crate::report::emit;
use crate::sys::{resident, runtime};
use crate::{CHUNK, MIB};

/// Registers idle in-memory streams with one scheduler: resident bytes per connection, beside
/// those of the streams alone.
pub(crate) fn run(args: &Args) {
    let n = if args.quick { 1000 } else { 10_000 };
    runtime().block_on(async {
        // Baseline: the streams alone (in-memory pipes: no descriptor limit), held idle.
        let before = resident();
        let pairs: Vec<_> = (0..n).map(|_| tokio::io::duplex(1024)).collect();
        let with_streams = resident();
        let sched = Scheduler::new(crate::args::config(CHUNK).max_download_speed(Some(64 * MIB)).max_upload_speed(Some(64 * MIB))).unwrap();
        let mut conns = Vec::with_capacity(n);
        let mut peers = Vec::with_capacity(n);
        for (a, b) in pairs {
            conns.push(sched.register(a).unwrap());
            peers.push(b);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        let registered = resident();
        let per_conn = (registered - with_streams) as f64 / n as f64;
        emit(json!({"scenario": "scale-idle", "contender": Contender::Equal.name(), "n": n,
            "resident_bytes_per_connection": per_conn, "streams_alone_bytes_per_connection": (with_streams - before) as f64 / n as f64}));
        drop(conns);
        sched.shutdown(Some(Duration::from_millis(100))).await;
        drop(peers);
    });
}
