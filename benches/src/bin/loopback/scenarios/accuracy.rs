//! The `accuracy` scenario: how close each limiter's rate comes to its limit.

use serde_json::json;

use crate::MIB;
use crate::args::Args;
use crate::contender::Contender;
use crate::dir::Dir;
use crate::measure::{self, Spec};
use crate::report::emit;

/// Downloads at each limit and connection count: the rate reached, and its error to the limit.
pub(crate) fn run(args: &Args) {
    let quick = args.quick;
    let limits: &[u64] = if quick {
        &[16 * MIB]
    } else {
        &[MIB, 16 * MIB, 256 * MIB]
    };
    let ns: &[usize] = if quick { &[8] } else { &[1, 8, 64] };
    let secs = if quick { 0.5 } else { 5.0 };
    for &limit in limits {
        for &n in ns.iter().filter(|n| args.selected_n(**n)) {
            for c in args.chosen(Contender::LIMITERS) {
                let out = measure::run(&Spec::new(c, n, Some(limit), secs, Dir::Down));
                let bytes: u64 = out.bytes.iter().sum();
                let rate = bytes as f64 / out.elapsed;
                emit(
                    json!({"scenario": "accuracy", "contender": c.name(), "n": n, "limit": limit,
                    "rate": rate, "error": rate / limit as f64 - 1.0}),
                );
            }
        }
    }
}
