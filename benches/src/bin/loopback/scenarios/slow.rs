//! The `slow` scenario: k of N lanes are read slowly, under a global limit.

use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use fairio_stats::jain;
use serde_json::json;

use crate::args::Args;
use crate::contender::Contender;
use crate::dir::Dir;
use crate::lanes::{Buffers, Lane, lanes, run_lanes, snapshot};
use crate::limits::{Limits, passed_both};
use crate::report::emit;
use crate::{KIB, MIB};

/// What the lanes moved over the measured interval of the `slow` scenario.
#[derive(Debug)]
struct SlowRun {
    /// Per lane.
    bytes: Vec<u64>,
    /// What the limiter let through, uploads and downloads.
    passed: [u64; 2],
    elapsed: f64,
    /// Cumulative bytes per lane since the interval began, every 250 ms, from 0.
    samples: Vec<Vec<u64>>,
    /// `passed_both` at each sample.
    passed_samples: Vec<[u64; 2]>,
}

/// k of N lanes are read slowly, under a global limit: is the limit still used in full (the
/// slow lanes' unused share going to the others), and shared fairly among the fast lanes? With
/// the kernel's own socket buffers first (as deployments run), then with fixed 64 KiB ones.
pub(crate) fn run(args: &Args) {
    let quick = args.quick;
    // (N, k slow, limit, slow rate); k = 0: every lane backlogged.
    let all: [(usize, usize, u64, u64); 3] = [
        (8, 4, 8 * MIB, 96 * KIB),
        (16, 14, 4 * MIB, 24 * KIB),
        (8, 0, 8 * MIB, 0),
    ];
    let settings = if quick { &all[..1] } else { &all[..] };
    let buffer_sets: &[Buffers] = if quick {
        &[Buffers::Kernel]
    } else {
        &[Buffers::Kernel, Buffers::Fixed]
    };
    // Full runs: seconds 2-6 (the first part) and 6-10 (steady).
    let (settle, measure) = if quick { (0.5, 0.5) } else { (2.0, 8.0) };
    for &(n, k, limit, rate) in settings.iter().filter(|s| args.selected_n(s.0)) {
        for &buffers in buffer_sets {
            for dirs in args.dir_sets() {
                for c in args.chosen(Contender::LIMITERS) {
                    let lanes = lanes(&dirs, n, c, |i| (i < k).then_some(rate));
                    let (s, m) = (
                        Duration::from_secs_f64(settle),
                        Duration::from_secs_f64(measure),
                    );
                    let run =
                        run_lanes(c, lanes.clone(), limit, buffers, async move |l, counts| {
                            timeline(l, counts, s, m).await
                        });
                    for &dir in &dirs {
                        let mut r = row(c, dir, &lanes, &run, limit, rate, dirs.len() > 1);
                        r["socket_buffers"] = buffers.name().into();
                        r["settle_secs"] = settle.into();
                        emit(r);
                    }
                }
            }
        }
    }
}

/// Lets the lanes settle, then samples them every 250 ms for `measure`.
async fn timeline(
    limits: &dyn Limits,
    counts: &[AtomicU64],
    settle: Duration,
    measure: Duration,
) -> SlowRun {
    tokio::time::sleep(settle).await;
    let (c0, p0, start) = (snapshot(counts), passed_both(limits), Instant::now());
    let since = |now: Vec<u64>| -> Vec<u64> { now.iter().zip(&c0).map(|(b, a)| b - a).collect() };
    let mut samples = vec![vec![0; counts.len()]];
    let mut passed_samples = vec![p0];
    let mut next = start;
    while next < start + measure {
        next += Duration::from_millis(250);
        tokio::time::sleep_until(next.into()).await;
        samples.push(since(snapshot(counts)));
        passed_samples.push(passed_both(limits));
    }
    let (c1, p1, elapsed) = (snapshot(counts), passed_both(limits), start.elapsed());
    SlowRun {
        bytes: since(c1),
        passed: [p1[0] - p0[0], p1[1] - p0[1]],
        elapsed: elapsed.as_secs_f64(),
        samples,
        passed_samples,
    }
}

/// The scenario's figures for the lanes of `dir`.
fn row(
    c: Contender,
    dir: Dir,
    lanes: &[Lane],
    run: &SlowRun,
    limit: u64,
    rate: u64,
    concurrent: bool,
) -> serde_json::Value {
    let idx: Vec<usize> = (0..lanes.len()).filter(|&i| lanes[i].dir == dir).collect();
    let (slow, fast): (Vec<usize>, Vec<usize>) =
        idx.iter().partition(|&&i| lanes[i].slow.is_some());
    let rate_of = |i: usize| run.bytes[i] as f64 / run.elapsed;
    let l = limit as f64;
    let total: f64 = idx.iter().map(|&i| rate_of(i)).sum();
    let slow_rates: Vec<f64> = slow.iter().map(|&i| rate_of(i)).collect();
    let slow_total: f64 = slow_rates.iter().sum();
    let slow_vs: Vec<f64> = slow_rates.iter().map(|r| r / rate as f64).collect();
    let w = |i: usize| f64::from(lanes[i].weight);
    let wsum: f64 = fast.iter().map(|&i| w(i)).sum();
    // Each fast lane's expected part of what the slow ones leave: (L - slow total) by weight.
    let fast_vs: Vec<f64> = fast
        .iter()
        .map(|&i| rate_of(i) / ((l - slow_total) * w(i) / wsum))
        .collect();
    let per_weight =
        |bytes: &[u64]| -> Vec<f64> { fast.iter().map(|&i| bytes[i] as f64 / w(i)).collect() };
    let mut min_window_jain: f64 = 1.0;
    for (k, pair) in run.samples.windows(2).enumerate() {
        let d: Vec<u64> = pair[1].iter().zip(&pair[0]).map(|(b, a)| b - a).collect();
        min_window_jain = min_window_jain.min(jain(&per_weight(&d)));
        if std::env::var_os("FAIRIO_BENCH_DEBUG").is_some() {
            let used = idx.iter().map(|&i| d[i]).sum::<u64>() as f64 / 0.25 / l;
            let at = usize::from(dir == Dir::Down);
            let (p0, p1) = (run.passed_samples[k][at], run.passed_samples[k + 1][at]);
            let at_limiter = (p1 - p0) as f64 / 0.25 / l;
            let per_lane: Vec<u64> = idx.iter().map(|&i| d[i]).collect();
            eprintln!(
                "slow {} {} window {k}: used {used:.3} (at the limiter {at_limiter:.3}), bytes \
                 per lane {per_lane:?}",
                c.name(),
                dir.name()
            );
        }
    }
    // Used over the first half of the samples and over the second (seconds 2-6 and 6-10 of a
    // full run), counted at the receivers.
    let half = run.samples.len() / 2;
    let used_between = |a: usize, b: usize| -> f64 {
        let bytes: u64 = idx
            .iter()
            .map(|&i| run.samples[b][i] - run.samples[a][i])
            .sum();
        bytes as f64 / (0.25 * (b - a) as f64) / l
    };
    let last = run.samples.len() - 1;
    let (used_first, used_steady) = if half > 0 {
        (used_between(0, half), used_between(half, last))
    } else {
        (total / l, total / l)
    };
    let fold = |xs: &[f64], f: fn(f64, f64) -> f64, init: f64| xs.iter().copied().fold(init, f);
    let passed = run.passed[usize::from(dir == Dir::Down)];
    json!({"scenario": "slow", "contender": c.name(), "direction": dir.name(),
    "n": idx.len(), "k": slow.len(), "limit": limit, "slow_rate": rate,
    "concurrent_directions": concurrent, "measure_secs": run.elapsed,
    "used": total / l, "used_first_half": used_first, "used_second_half": used_steady,
    "used_at_limiter": passed as f64 / run.elapsed / l,
    "slow_rates": slow_rates, "slow_vs_rate_min": fold(&slow_vs, f64::min, f64::INFINITY),
    "slow_vs_rate_max": fold(&slow_vs, f64::max, 0.0),
    "fast_weights": fast.iter().map(|&i| lanes[i].weight).collect::<Vec<_>>(),
    "fast_jain": jain(&per_weight(&run.bytes)), "fast_min_window_jain": min_window_jain,
    "fast_vs_expected": fast_vs,
    "fast_largest_error": fast_vs.iter().map(|v| (v - 1.0).abs()).fold(0.0, f64::max)})
}
