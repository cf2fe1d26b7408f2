//! The `fairness` scenario: how evenly each limiter shares its limit among equal connections,
//! over the whole run and over 250 ms windows.

use std::time::Duration;

use fairio_stats::jain;
use serde_json::json;

use crate::MIB;
use crate::args::Args;
use crate::contender::Contender;
use crate::dir::Dir;
use crate::measure::{self, Spec};
use crate::report::{emit, first_window_jain, min_window_jain};

/// Downloads at each limit and connection count, then (full runs) 1,000 active connections.
pub(crate) fn run(args: &Args) {
    let quick = args.quick;
    let limits: &[u64] = if quick { &[MIB] } else { &[MIB, 64 * MIB] };
    let ns: &[usize] = if quick { &[8] } else { &[8, 64, 512] };
    let secs = if quick { 0.6 } else { 5.0 };
    for &limit in limits {
        for &n in ns.iter().filter(|n| args.selected_n(**n)) {
            for c in args.chosen(Contender::LIMITERS) {
                let out = measure::run(&Spec::new(c, n, Some(limit), secs, Dir::Down));
                let ones = vec![1.0; n];
                let xs: Vec<f64> = out.bytes.iter().map(|&b| b as f64).collect();
                emit(
                    json!({"scenario": "fairness", "contender": c.name(), "n": n, "limit": limit,
                    "jain": jain(&xs), "min_window_jain": min_window_jain(&out, &ones, Duration::from_millis(250)),
                    "first_window_jain": first_window_jain(&out, &ones, Duration::from_millis(250)),
                    "warmup_secs": out.warmup_secs,
                    "bytes": if n <= 8 { Some(&out.bytes) } else { None }}),
                );
            }
        }
    }
    // 1,000 active connections at 64 MiB/s (the scale scenario's second half).
    if !quick && args.selected_n(1000) {
        for c in args.chosen([Contender::Equal, Contender::Asl]) {
            let out = measure::run(&Spec::new(c, 1000, Some(64 * MIB), 5.0, Dir::Down));
            let xs: Vec<f64> = out.bytes.iter().map(|&b| b as f64).collect();
            emit(
                json!({"scenario": "scale-active", "contender": c.name(), "n": 1000, "limit": 64 * MIB,
                "jain": jain(&xs), "min_window_jain": min_window_jain(&out, &vec![1.0; 1000], Duration::from_millis(250))}),
            );
        }
    }
}
