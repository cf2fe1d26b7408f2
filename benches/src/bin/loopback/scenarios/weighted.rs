//! The `weighted` scenario: do fairio's Weighted policy's shares follow the weights?

use serde_json::json;

use crate::MIB;
use crate::args::Args;
use crate::contender::Contender;
use crate::dir::Dir;
use crate::measure::{self, Spec};
use crate::report::emit;

/// 8 downloads weighted 1, 2, 3, 4, 1, ...: the largest relative error of a share to its
/// weight's, over the whole run and after start-up.
pub(crate) fn run(args: &Args) {
    let secs = if args.quick { 0.6 } else { 5.0 };
    let mut s = Spec::new(Contender::Weighted, 8, Some(16 * MIB), secs, Dir::Down);
    s.weights = vec![1, 2, 3, 4];
    let out = measure::run(&s);
    let w: Vec<f64> = (0..8).map(|i| f64::from(s.weights[i % 4])).collect();
    let total: u64 = out.bytes.iter().sum();
    let wsum: f64 = w.iter().sum();
    let worst_of = |bytes: &[u64]| {
        let total: u64 = bytes.iter().sum();
        bytes
            .iter()
            .zip(&w)
            .map(|(&b, &wi)| ((b as f64 / total as f64) / (wi / wsum) - 1.0).abs())
            .fold(0.0, f64::max)
    };
    // Also from one second on: at start-up the first connection has the initial burst alone.
    let warm = out
        .samples
        .iter()
        .position(|(t, _)| *t >= (s.secs / 5.0).min(1.0))
        .unwrap_or(0);
    let steady: Vec<u64> = out
        .bytes
        .iter()
        .zip(&out.samples[warm].1)
        .map(|(b, a)| b - a)
        .collect();
    emit(
        json!({"scenario": "weighted", "contender": Contender::Weighted.name(), "n": 8,
        "weights": s.weights, "largest_relative_error": worst_of(&out.bytes),
        "largest_relative_error_after_warmup": worst_of(&steady),
        "shares": out.bytes.iter().map(|&b| b as f64 / total as f64).collect::<Vec<_>>()}),
    );
}
