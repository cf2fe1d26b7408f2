//! Work conservation with slow consumers, as a proptest on a virtual clock. Some connections
//! have a peer that takes bytes slower than their share: a consumer with a small buffer, not a
//! cap, so the arbiter only sees a connection with little demand. Such a connection must get all
//! it can take, the backlogged ones must split the rest as water-filling says, and the limit
//! must be used in full. The oracle (water-filling) is computed by the simulation module, never
//! by the policy under test.

mod sim;

use std::num::NonZeroU64;

use fairio_policy::tuning::burst;
use proptest::prelude::*;
use sim::{Conn, SEC, Scenario, Sink, Trace, jain, simulate, water_fill};

/// Simulated time before measuring: the start, where the round and the share credits settle.
const WARM_UP: u64 = SEC;

/// The measurement window, after the warm-up.
const MEASURE: u64 = 4 * SEC;

/// The smallest consumer buffer, in bytes: below this, a buffer sized in time of a very slow
/// rate would hold a few bytes, which no socket does.
const MIN_BUFFER: u64 = 64;

/// 64 KiB/s to 64 MiB/s, with the ends and the middle of the range drawn often.
fn limit() -> impl Strategy<Value = u64> {
    prop_oneof![
        Just(64u64 << 10),
        Just(1u64 << 20),
        Just(64u64 << 20),
        (64u64 << 10)..(1u64 << 20),
        (1u64 << 20)..=(64u64 << 20),
    ]
}

/// One connection: its weight, and if its consumer is slow, the consumer's rate in percent of
/// the connection's share and its buffer in milliseconds of that rate.
fn flow() -> impl Strategy<Value = (u32, Option<(u64, u64)>)> {
    (1u32..=8, prop::option::of((1u64..=90, 50u64..=500)))
}

/// 1 to 16 connections, backlogged or with a slow consumer, under one limit. A slow consumer's
/// rate is a fraction of the connection's share among all of them, so water-filling gives it
/// exactly its rate. Its reader takes 10 ms of its rate at a time (at most 4 KiB), and its
/// buffer holds 50 to 500 ms of its rate (at least four reads and [`MIN_BUFFER`]).
fn scenario(weighted: bool) -> impl Strategy<Value = Scenario> {
    (limit(), prop::collection::vec(flow(), 1..=16)).prop_map(move |(limit, flows)| {
        let weight = |w: u32| if weighted { w } else { 1 };
        let total: u64 = flows.iter().map(|f| u64::from(weight(f.0))).sum();
        let conns = flows
            .into_iter()
            .map(|(w, slow)| {
                let w = weight(w);
                let Some((pct, ms)) = slow else {
                    return Conn::backlogged(w);
                };
                let share = limit * u64::from(w) / total;
                let rate = (share * pct / 100).max(1);
                let chunk = (rate / 100).clamp(1, 4096);
                let buffer = (rate * ms / 1000).max(4 * chunk).max(MIN_BUFFER);
                Conn::slow_consumer(
                    w,
                    Sink {
                        rate,
                        buffer,
                        chunk,
                    },
                )
            })
            .collect();
        Scenario {
            limit,
            conns,
            duration: WARM_UP + MEASURE,
            limit_changes: vec![],
        }
    })
}

/// Over [`WARM_UP`, `WARM_UP` + `MEASURE`):
/// - at most limit × T + B bytes are moved, there and over the whole run;
/// - if the connections can take more than the limit together, at least 98% of limit × T is
///   moved (work conservation);
/// - each slow consumer consumes at least 95% of its rate × T (it gets all it can take);
/// - each backlogged connection moves its water-filling share × T, within 2%.
fn check(s: &Scenario, tr: &Trace) -> Result<(), TestCaseError> {
    let (a, b) = (WARM_UP, WARM_UP + MEASURE);
    let secs = MEASURE as f64 / SEC as f64;
    let limit = s.limit as f64;
    let bound = burst(NonZeroU64::new(s.limit).unwrap()) as f64;

    let moved = tr.total(a, b) as f64;
    let max = limit * secs + bound;
    prop_assert!(moved <= max, "moved {moved} in the window > {max:.0}");
    let whole = tr.total(0, s.duration) as f64;
    let max_whole = limit * s.duration as f64 / SEC as f64 + bound;
    prop_assert!(
        whole <= max_whole,
        "moved {whole} in the run > {max_whole:.0}"
    );

    let demands: Vec<(f64, f64)> = s
        .conns
        .iter()
        .map(|c| {
            let takes = c.sink.map_or(f64::INFINITY, |k| k.rate as f64);
            (f64::from(c.weight), takes)
        })
        .collect();
    let can_take: f64 = demands.iter().map(|d| d.1).sum();
    if can_take > limit {
        let min = 0.98 * limit * secs;
        prop_assert!(
            moved >= min,
            "moved {moved} in the window < {min:.0} (98% of the limit)"
        );
    }

    let shares = water_fill(limit, &demands);
    let ix = tr.index();
    let mut backlogged = Vec::new();
    for (i, (c, share)) in s.conns.iter().zip(&shares).enumerate() {
        let expected = share * secs;
        if c.sink.is_some() {
            // The reader's consumption is what the slow peer got; it is measured to within a
            // byte of rounding, hence the one byte.
            let got = tr.consumed(i, a, b) as f64;
            prop_assert!(
                got + 1.0 >= 0.95 * expected,
                "slow conn {i} consumed {got}, < 95% of its rate × T ({expected:.0})"
            );
        } else {
            backlogged.push((i, ix.bytes(i, a, b) as f64, expected));
        }
    }
    // Every backlogged connection's figures in the message, to tell a skew from noise.
    let ratios: Vec<(usize, u32, String)> = backlogged
        .iter()
        .map(|&(i, got, expected)| (i, s.conns[i].weight, format!("{:.4}", got / expected)))
        .collect();
    let per_weight: Vec<f64> = backlogged
        .iter()
        .map(|&(i, got, _)| got / f64::from(s.conns[i].weight))
        .collect();
    let fairness = jain(&per_weight);
    for &(i, got, expected) in &backlogged {
        let tol = 0.02 * expected;
        prop_assert!(
            (got - expected).abs() <= tol,
            "backlogged conn {i} moved {got}, oracle {expected:.0}, tolerance {tol:.0}; \
             backlogged (conn, weight, moved/oracle): {ratios:?}; \
             Jain's index of their bytes per weight: {fairness:.4}"
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn slow_consumers_equal_share(s in scenario(false)) {
        check(&s, &simulate(&s, false))?;
    }

    #[test]
    fn slow_consumers_weighted(s in scenario(true)) {
        check(&s, &simulate(&s, true))?;
    }
}

/// A fixed mix at 1 MiB/s: eight connections, four of them behind consumers at 10%, 30%, 60%
/// and 90% of an equal share, with 100 ms buffers.
#[test]
fn four_slow_consumers_of_eight_at_one_mib() {
    for weighted in [false, true] {
        let limit = 1u64 << 20;
        let weights: [u32; 8] = if weighted {
            [1, 2, 3, 4, 1, 2, 3, 4]
        } else {
            [1; 8]
        };
        let total: u64 = weights.iter().map(|&w| u64::from(w)).sum();
        let conns = weights
            .iter()
            .enumerate()
            .map(|(i, &w)| match [10, 30, 60, 90].get(i) {
                Some(pct) => {
                    let rate = limit * u64::from(w) / total * pct / 100;
                    let chunk = (rate / 100).clamp(1, 4096);
                    let buffer = rate / 10;
                    Conn::slow_consumer(
                        w,
                        Sink {
                            rate,
                            buffer,
                            chunk,
                        },
                    )
                }
                None => Conn::backlogged(w),
            })
            .collect();
        let s = Scenario {
            limit,
            conns,
            duration: WARM_UP + MEASURE,
            limit_changes: vec![],
        };
        check(&s, &simulate(&s, weighted)).unwrap();
    }
}
