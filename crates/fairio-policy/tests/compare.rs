//! Tezos's window quota beside DRR, on the same simulated scenarios. WindowQuota is not expected
//! to be fair: its figures are measured and printed for the crate docs, not asserted. EqualShare's
//! are asserted against the targets, so this test can fail.
//!
//! `cargo test -p fairio-policy --test compare -- --nocapture` prints the table.

mod sim;

use std::num::NonZeroU64;
use std::time::Instant;

use fairio_policy::{EqualShare, Policy, WindowQuota};
use sim::{Conn, MS, SEC, Scenario, Trace, jain, run};

#[derive(Debug)]
struct Figures {
    /// Time from a newcomer's join to the start of the first 250 ms window in which it gets 90%
    /// of its share, in ms.
    convergence_ms: Option<u64>,
    /// A sparse connection's queueing delay among 64 backlogged ones, p50 / p99 / max, in ms.
    sparse_ms: (f64, f64, f64),
    /// The most bytes above the limit in any 100 ms window, in bytes (B at 100 ms).
    burst_100ms: i64,
    /// The smallest Jain index over 250 ms windows, 64 backlogged at 1 MiB/s.
    min_jain: f64,
    /// After the limit drops from 4 MiB/s to 1 MiB/s, time until the rate over a 250 ms window
    /// is within 10% of the new limit (above or below), in ms.
    limit_lag_ms: Option<u64>,
}

fn simulate<P: Policy<Params = ()>>(policy: &P, s: &Scenario) -> Trace {
    let t0 = Instant::now();
    let mut arb = policy.arbiter(NonZeroU64::new(s.limit), t0);
    run(&mut arb, |_| (), t0, s)
}

fn measure<P: Policy<Params = ()>>(policy: &P) -> Figures {
    // Convergence: 8 backlogged at 1 MiB/s, a 9th joins at 3 s.
    let limit = 1u64 << 20;
    let mut conns: Vec<Conn> = (0..8).map(|_| Conn::backlogged(1)).collect();
    let join = 3 * SEC;
    conns.push(Conn {
        join,
        ..Conn::backlogged(1)
    });
    let s = Scenario {
        limit,
        conns,
        duration: join + 10 * SEC,
        limit_changes: vec![],
    };
    let tr = simulate(policy, &s);
    let ix = tr.index();
    let share = limit as f64 / 9.0 * 0.25;
    let convergence_ms = (0..1000)
        .map(|k| join + k * 10 * MS)
        .find(|&a| ix.bytes(8, a, a + 250 * MS) as f64 >= 0.9 * share)
        .map(|a| (a - join) / MS);

    // Burst: the largest excess over the limit in any 100 ms window of the same run.
    let mut burst_100ms = i64::MIN;
    for (i, g) in tr.grants.iter().enumerate() {
        let end = g.0 + 100 * MS;
        let j = tr.grants.partition_point(|h| h.0 < end);
        let bytes: u64 = tr.grants[i..j].iter().map(|h| h.2).sum();
        burst_100ms = burst_100ms.max(bytes as i64 - (limit / 10) as i64);
    }

    // Isolation: 64 backlogged at 16 MiB/s, a sparse one sends 100 B every 10 ms from 1 s.
    let mut conns: Vec<Conn> = (0..64).map(|_| Conn::backlogged(1)).collect();
    conns.push(Conn {
        weight: 1,
        cap: None,
        rate: Some(10_000),
        chunk: 100,
        join: SEC,
        leave: None,
        sink: None,
    });
    let s = Scenario {
        limit: 16 << 20,
        conns,
        duration: 4 * SEC,
        limit_changes: vec![],
    };
    let tr = simulate(policy, &s);
    let mut waits: Vec<f64> = tr.waits[64]
        .iter()
        .map(|w| (w.1 - w.0) as f64 / MS as f64)
        .collect();
    waits.sort_by(f64::total_cmp);
    let pct = |p: f64| {
        waits
            .get(((waits.len() as f64 - 1.0) * p) as usize)
            .copied()
            .unwrap_or(f64::NAN)
    };
    let sparse_ms = (
        pct(0.5),
        pct(0.99),
        waits.last().copied().unwrap_or(f64::NAN),
    );

    // Fairness: 64 backlogged at 1 MiB/s, Jain over 250 ms windows after the first.
    let conns: Vec<Conn> = (0..64).map(|_| Conn::backlogged(1)).collect();
    let s = Scenario {
        limit,
        conns,
        duration: 5 * SEC,
        limit_changes: vec![],
    };
    let tr = simulate(policy, &s);
    let ix = tr.index();
    let min_jain = (1..20)
        .map(|k| {
            let a = k * 250 * MS;
            let xs: Vec<f64> = (0..64)
                .map(|i| ix.bytes(i, a, a + 250 * MS) as f64)
                .collect();
            jain(&xs)
        })
        .fold(1.0, f64::min);

    // Limit change: 8 backlogged at 4 MiB/s, the limit drops to 1 MiB/s at 2.5 s.
    let conns: Vec<Conn> = (0..8).map(|_| Conn::backlogged(1)).collect();
    let change = 2500 * MS;
    let s = Scenario {
        limit: 4 << 20,
        conns,
        duration: 8 * SEC,
        limit_changes: vec![(change, limit)],
    };
    let tr = simulate(policy, &s);
    let limit_lag_ms = (0..500)
        .map(|k| change + k * 10 * MS)
        .find(|&a| ((tr.total(a, a + 250 * MS) as f64) / (limit as f64 / 4.0) - 1.0).abs() <= 0.1)
        .map(|a| (a - change) / MS);

    Figures {
        convergence_ms,
        sparse_ms,
        burst_100ms,
        min_jain,
        limit_lag_ms,
    }
}

#[test]
fn window_quota_beside_equal_share() {
    let drr = measure(&EqualShare);
    let tezos = measure(&WindowQuota);
    println!("| measure | EqualShare | WindowQuota (Tezos) |");
    println!("|---|---|---|");
    let conv = |f: &Figures| {
        f.convergence_ms
            .map_or("never (10 s)".to_string(), |ms| format!("{ms} ms"))
    };
    println!(
        "| newcomer reaches 90% of its share (8 conns, 1 MiB/s) | {} | {} |",
        conv(&drr),
        conv(&tezos)
    );
    let sp = |f: &Figures| {
        format!(
            "{:.2} / {:.2} / {:.2} ms",
            f.sparse_ms.0, f.sparse_ms.1, f.sparse_ms.2
        )
    };
    println!(
        "| sparse conn delay p50 / p99 / max (64 conns, 16 MiB/s) | {} | {} |",
        sp(&drr),
        sp(&tezos)
    );
    println!(
        "| worst excess over the limit in 100 ms (1 MiB/s) | {} B | {} B |",
        drr.burst_100ms, tezos.burst_100ms
    );
    let lag = |f: &Figures| {
        f.limit_lag_ms
            .map_or("never (5 s)".to_string(), |ms| format!("{ms} ms"))
    };
    println!(
        "| limit 4 → 1 MiB/s: until the 250 ms rate is within 10% | {} | {} |",
        lag(&drr),
        lag(&tezos)
    );
    println!(
        "| smallest Jain index, 250 ms windows (64 conns, 1 MiB/s) | {:.4} | {:.4} |",
        drr.min_jain, tezos.min_jain
    );

    assert!(drr.convergence_ms.is_some_and(|ms| ms <= 100), "{drr:?}");
    assert!(drr.min_jain >= 0.99, "{drr:?}");
    assert!(drr.limit_lag_ms.is_some_and(|ms| ms <= 100), "{drr:?}");
    assert!(drr.sparse_ms.2 <= 5.0, "{drr:?}");
    assert!(
        drr.burst_100ms <= fairio_policy::tuning::burst(NonZeroU64::new(1 << 20).unwrap()) as i64,
        "{drr:?}"
    );
}
