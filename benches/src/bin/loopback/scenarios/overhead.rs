//! The `overhead` scenario: throughput and CPU time without a limit, relative to raw tokio.

use serde_json::json;

use crate::args::Args;
use crate::contender::Contender;
use crate::dir::Dir;
use crate::measure::{self, Spec};
use crate::report::{emit, pct};
use crate::{CHUNK, MIB};

/// Overhead without a limit. This box is shared and noisy (raw tokio alone has varied by 2x
/// between runs, in phases lasting seconds), so each contender runs `reps` short times,
/// interleaved (raw, equal, ..., raw, equal, ...): each repetition's figures are divided by
/// those of the raw run just before, and the median of those ratios is reported.
pub(crate) fn run(args: &Args) {
    let quick = args.quick;
    // (connections, message size): 64 KiB writes as the issue asks, and one row of 1 KiB
    // messages, where per-message costs show.
    let up = |n, msg| Case {
        n,
        msg,
        dir: Dir::Up,
        zero_copy: false,
        limit: None,
    };
    let down = |n, zero_copy, limit| Case {
        n,
        msg: CHUNK,
        dir: Dir::Down,
        zero_copy,
        limit,
    };
    let mut cases: Vec<Case> = match (args.msg(), quick) {
        (Some(m), true) => vec![up(8, m)],
        (Some(m), false) => [1, 8, 64, 512].iter().map(|&n| up(n, m)).collect(),
        (None, true) => vec![up(8, CHUNK)],
        (None, false) => vec![
            up(1, CHUNK),
            up(8, CHUNK),
            up(64, CHUNK),
            up(512, CHUNK),
            up(8, 1024),
        ],
    };
    // Downloads too (the peer floods; clients take 64 KiB at a time): what reading through
    // the scheduler costs. fairio's clients take chunks with `read_bytes`, the way to receive
    // in bulk; one row copies with `read(&mut buf)` instead, to show what the copy costs. One
    // row runs fairio under a limit of 256 MiB/s, below what the box moves: the cost of the
    // grants, against raw tokio's unlimited CPU per GiB in the same repetition.
    if !quick && args.msg().is_none() {
        cases.extend([1, 8, 64, 512].map(|n| down(n, true, None)));
        cases.push(down(64, false, None));
        cases.push(down(64, true, Some(256 * MIB)));
        // Uploads under the same limit: the write side's cost of the grants.
        cases.push(Case {
            limit: Some(256 * MIB),
            ..up(64, CHUNK)
        });
    }
    let (secs, reps) = if quick { (0.5, 1) } else { (1.5, 9) };
    for Case {
        n,
        msg,
        dir,
        zero_copy,
        limit,
    } in cases.into_iter().filter(|c| {
        args.selected_n(c.n)
            && args.dir.is_none_or(|o| o == c.dir)
            && (!args.limited || c.limit.is_some())
    }) {
        // Under a limit, raw-paced too: what holding a limit costs at the least.
        let paced = limit.map(|_| Contender::Paced);
        let chosen: Vec<Contender> = args
            .chosen(Contender::ALL.into_iter().chain(paced))
            .collect();
        // (throughput, CPU seconds per GiB) of every repetition, per contender.
        let mut runs: Vec<Vec<(f64, f64)>> = vec![Vec::new(); chosen.len()];
        for _ in 0..reps {
            for (k, &c) in chosen.iter().enumerate() {
                let out = measure::run(&Spec {
                    msg,
                    zero_copy,
                    // Raw tokio has no limit to apply: it is the unlimited yardstick.
                    ..Spec::new(c, n, limit.filter(|_| c != Contender::Raw), secs, dir)
                });
                // Uploads: what the peer received; downloads: what the clients read.
                let bytes = match dir {
                    Dir::Up => out.peer_bytes,
                    Dir::Down => out.bytes.iter().sum(),
                };
                let gib = (bytes as f64 / (1u64 << 30) as f64).max(1e-9);
                runs[k].push((bytes as f64 / out.elapsed, out.cpu_secs / gib));
            }
        }
        let median = |mut xs: Vec<f64>| {
            xs.sort_by(f64::total_cmp);
            pct(&xs, 0.5)
        };
        let raw = chosen.iter().position(|c| *c == Contender::Raw);
        for (k, c) in chosen.iter().enumerate() {
            let ratio = |f: fn(&(f64, f64)) -> f64| {
                raw.map(|r| {
                    median(
                        runs[k]
                            .iter()
                            .zip(&runs[r])
                            .map(|(x, y)| f(x) / f(y))
                            .collect(),
                    )
                })
            };
            emit(
                json!({"scenario": "overhead", "contender": c.name(), "n": n, "reps": reps, "msg_bytes": msg,
                "direction": dir.name(),
                "fairio_reads": if dir == Dir::Up { None } else if zero_copy { Some("read_bytes") } else { Some("read") },
                "limit": limit.filter(|_| *c != Contender::Raw),
                "throughput_bytes_per_sec": median(runs[k].iter().map(|r| r.0).collect()),
                "cpu_secs_per_gib": median(runs[k].iter().map(|r| r.1).collect()),
                "throughput_vs_raw": ratio(|r| r.0), "cpu_vs_raw": ratio(|r| r.1),
                "throughput_runs": runs[k].iter().map(|r| r.0).collect::<Vec<_>>(),
                "cpu_secs_per_gib_runs": runs[k].iter().map(|r| r.1).collect::<Vec<_>>()}),
            );
        }
    }
}

/// One row of the table.
struct Case {
    n: usize,
    msg: usize,
    dir: Dir,
    /// fairio's clients read with `read_bytes` (else `read`).
    zero_copy: bool,
    limit: Option<u64>,
}
