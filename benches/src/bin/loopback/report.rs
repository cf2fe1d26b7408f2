//! Printing a run's row, and the figures computed from samples.

use fairio_stats::jain;

use crate::measure::Outcome;

/// Prints one JSON row to stdout.
pub(crate) fn emit(v: serde_json::Value) {
    println!("{v}");
}

/// The `p` quantile (0 to 1) of `sorted`, nearest rank; NaN if empty.
pub(crate) fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// Jain's index over the first 250 ms window of the measured interval (by weight): start-up,
/// which [`min_window_jain`] skips.
pub(crate) fn first_window_jain(out: &Outcome, weights: &[f64], step: std::time::Duration) -> f64 {
    let per = (0.25 / step.as_secs_f64()).round().max(1.0) as usize;
    if per >= out.samples.len() {
        return f64::NAN;
    }
    jain(&window(out, weights, 0, per))
}

/// Bytes per weight moved between samples `k` and `k + per`.
fn window(out: &Outcome, weights: &[f64], k: usize, per: usize) -> Vec<f64> {
    let (a, b) = (&out.samples[k].1, &out.samples[k + per].1);
    a.iter()
        .zip(b)
        .zip(weights)
        .map(|((x, y), w)| (y - x) as f64 / w)
        .collect()
}

/// The smallest Jain index over consecutive 250 ms windows, from samples every `step`.
pub(crate) fn min_window_jain(out: &Outcome, weights: &[f64], step: std::time::Duration) -> f64 {
    let per = (0.25 / step.as_secs_f64()).round().max(1.0) as usize;
    let mut worst: f64 = 1.0;
    let mut k = per;
    // Skip the first window: start-up.
    while k + per < out.samples.len() {
        let xs = window(out, weights, k, per);
        worst = worst.min(jain(&xs));
        if std::env::var_os("FAIRIO_BENCH_DEBUG").is_some() && jain(&xs) < 0.97 {
            let mut h = std::collections::BTreeMap::new();
            for x in &xs {
                *h.entry(*x as u64).or_insert(0) += 1;
            }
            eprintln!(
                "window {:.3}-{:.3}: jain {:.4} bytes->count {:?}",
                out.samples[k].0,
                out.samples[k + per].0,
                jain(&xs),
                h
            );
        }
        k += per;
    }
    worst
}
