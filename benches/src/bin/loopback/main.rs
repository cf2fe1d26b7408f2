//! Macro-benchmarks over loopback TCP, side by side in one run: raw tokio, fairio with each
//! policy, and one shared async-speed-limit limiter. Prints one JSON object per run.
//!
//! `cargo run --release -p fairio-benches --bin loopback -- <scenario|all> [--quick]`
//! `[--only CONTENDER]... [--n N]... [--msg BYTES] [--dir up|down]`
//!
//! Scenarios: overhead, accuracy, fairness, weighted, join, sparse, scale, slow, relimit, groups,
//! stuck; `all` (the default) runs them in that order. `--help` describes the options.
//!
//! Environment: `FAIRIO_BENCH_PIN=1` pins the peer and the measured side to a core each (the
//! full run in BENCHMARKS.md does); `FAIRIO_BENCH_DEBUG=1` prints every 250 ms window whose
//! Jain index is below 0.97, with its per-connection byte counts, to stderr (in the `slow`
//! scenario: every window, with its use of the limit at the peer and at the limiter).
//!
//! The peer (a flooding or draining server) runs on its own thread and runtime; the measured
//! side (clients and the limiter under test) on another, single-threaded, whose CPU time is read
//! from `/proc/thread-self/schedstat`.
//!
//! Layout: `args` (the command line), `contender` (the contenders, and `with_policy`, the one
//! place a contender becomes a fairio policy type), `peer`, `client` and `measure` (one run of
//! the measured scenarios), `lanes` and `limits` (the runs of `slow` and `relimit`), `report`
//! (rows and figures), `sys` (threads, `/proc`), and `scenarios/`, one file per scenario.

mod args;
mod client;
mod contender;
mod dir;
mod lanes;
mod limits;
mod measure;
mod peer;
mod report;
mod scenarios;
mod sys;

use clap::Parser;

use crate::args::Args;

const KIB: u64 = 1 << 10;
const MIB: u64 = 1 << 20;
/// The size of the buffers the peers and clients read and write with, and of fairio's chunks.
const CHUNK: usize = 64 * 1024;

/// A named scenario.
type Scenario = (&'static str, fn(&Args));

/// Every scenario, in the order `all` runs them.
const SCENARIOS: [Scenario; 11] = [
    ("overhead", scenarios::overhead::run),
    ("accuracy", scenarios::accuracy::run),
    ("fairness", scenarios::fairness::run),
    ("weighted", scenarios::weighted::run),
    ("join", scenarios::join::run),
    ("sparse", scenarios::sparse::run),
    ("scale", scenarios::scale::run),
    ("slow", scenarios::slow::run),
    ("relimit", scenarios::relimit::run),
    ("groups", scenarios::groups::run),
    ("stuck", scenarios::stuck::run),
];

fn main() {
    let args = Args::parse();
    args.apply_globals();
    let which = args.scenario.as_str();
    let mut ran = false;
    for (name, run) in SCENARIOS {
        if which == "all" || which == name {
            run(&args);
            ran = true;
        }
    }
    if !ran {
        let names: Vec<&str> = SCENARIOS.iter().map(|(name, _)| *name).collect();
        eprintln!(
            "unknown scenario '{which}': one of {}, all",
            names.join(", ")
        );
        std::process::exit(2);
    }
}
