//! The `sparse` scenario: the delays of a light sender beside 64 backlogged uploads.

use serde_json::json;

use crate::MIB;
use crate::args::Args;
use crate::contender::Contender;
use crate::dir::Dir;
use crate::measure::{self, Spec};
use crate::report::{emit, pct};

/// 64 uploads (limited to 16 MiB/s, raw tokio aside) and one sending 100 B every 10 ms: the
/// median and 99th percentile of its messages' delays at the peer.
pub(crate) fn run(args: &Args) {
    let secs = if args.quick { 0.6 } else { 5.0 };
    for c in Contender::ALL {
        let mut s = Spec::new(
            c,
            64,
            (c != Contender::Raw).then_some(16 * MIB),
            secs,
            Dir::Up,
        );
        s.sparse = true;
        let out = measure::run(&s);
        let mut d = out.sparse_delays_ms.clone();
        d.sort_by(f64::total_cmp);
        emit(
            json!({"scenario": "sparse", "contender": c.name(), "n": 64, "limit": 16 * MIB, "messages": d.len(),
            "p50_ms": pct(&d, 0.5), "p99_ms": pct(&d, 0.99)}),
        );
    }
}
