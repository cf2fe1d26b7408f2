//! The `relimit` scenario: the limit is lifted briefly and imposed again, cycle after cycle.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::args::Args;
use crate::contender::Contender;
use crate::dir::Dir;
use crate::lanes::{Buffers, lanes, run_lanes};
use crate::limits::{Limits, passed_both};
use crate::report::emit;
use crate::{KIB, MIB};

/// One cycle of the `relimit` scenario: bytes let through per direction (uploads first) while
/// the limit was lifted and in the interval after it came back.
#[derive(Debug)]
struct Cycle {
    open: [u64; 2],
    open_secs: f64,
    after: [u64; 2],
    after_secs: f64,
}

/// Lifts the limit for 100 ms and imposes it again, cycle after cycle: how much more than the
/// limit passes in the interval after it came back?
pub(crate) fn run(args: &Args) {
    let (n, limit) = (4, MIB);
    let (settle, cycles, after) = if args.quick {
        (0.2, 2, 0.4)
    } else {
        (1.0, 5, 2.0)
    };
    let open = Duration::from_millis(100);
    // The most a limit may let through in T seconds: L·T + B.
    let allowance = (64 * KIB).max(limit / 20);
    for dirs in args.dir_sets() {
        for c in args.chosen(Contender::LIMITERS) {
            let lanes = lanes(&dirs, n, c, |_| None);
            let d = dirs.clone();
            let (s, a) = (
                Duration::from_secs_f64(settle),
                Duration::from_secs_f64(after),
            );
            let run = run_lanes(c, lanes, limit, Buffers::Kernel, async move |l, _| {
                timeline(l, &d, limit, s, cycles, open, a).await
            });
            for &dir in &dirs {
                let k = usize::from(dir == Dir::Down);
                let multiples: Vec<f64> = run
                    .iter()
                    .map(|y| y.after[k] as f64 / (limit as f64 * y.after_secs))
                    .collect();
                emit(
                    json!({"scenario": "relimit", "contender": c.name(), "direction": dir.name(),
                    "n": n, "limit": limit, "concurrent_directions": dirs.len() > 1,
                    "after_secs": after, "allowance_bytes": allowance,
                    "target_multiple": 1.0 + allowance as f64 / (limit as f64 * after),
                    "multiples": multiples,
                    "max_multiple": multiples.iter().copied().fold(0.0, f64::max),
                    "excess_bytes": run.iter().map(|y| y.after[k] as f64 - limit as f64 * y.after_secs).collect::<Vec<_>>(),
                    "open_multiples": run.iter().map(|y| y.open[k] as f64 / (limit as f64 * y.open_secs)).collect::<Vec<_>>()}),
                );
            }
        }
    }
}

/// Lets the lanes settle, then runs the cycles: the limit of `dirs` lifted for `open`, imposed
/// again and watched for `after`.
async fn timeline(
    limits: &dyn Limits,
    dirs: &[Dir],
    limit: u64,
    settle: Duration,
    cycles: usize,
    open: Duration,
    after: Duration,
) -> Vec<Cycle> {
    tokio::time::sleep(settle).await;
    let mut out = Vec::new();
    for _ in 0..cycles {
        let (p0, t0) = (passed_both(limits), Instant::now());
        for &d in dirs {
            limits.set(d, None);
        }
        tokio::time::sleep(open).await;
        for &d in dirs {
            limits.set(d, Some(limit));
        }
        let (p1, t1) = (passed_both(limits), Instant::now());
        tokio::time::sleep(after).await;
        let p2 = passed_both(limits);
        out.push(Cycle {
            open: [p1[0] - p0[0], p1[1] - p0[1]],
            open_secs: (t1 - t0).as_secs_f64(),
            after: [p2[0] - p1[0], p2[1] - p1[1]],
            after_secs: t1.elapsed().as_secs_f64(),
        });
    }
    out
}
