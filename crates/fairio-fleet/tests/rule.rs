//! The lease rule as pure functions: the targets against an independent water-filling oracle
//! (bisection on the water level), and the no-overshoot invariant of the table over random
//! sequences of reports, deaths and a lost table; then the Lua script in a real Redis against
//! the Rust rule on the same inputs.

use fairio_fleet::share::{Want, targets};
use fairio_fleet::table::{Report, Table, Terms, decide};
use proptest::prelude::*;

/// The water level λ with Σ min(dᵢ, λ·wᵢ) = capacity, by bisection: the allocation
/// min(dᵢ, λ·wᵢ), plus what is left split by weight when every demand fits.
fn oracle(capacity: f64, wants: &[Want]) -> Vec<f64> {
    let total_demand: f64 = wants.iter().map(|w| w.demand).sum();
    if total_demand <= capacity {
        let wall: f64 = wants.iter().map(|w| w.weight).sum();
        return wants
            .iter()
            .map(|w| w.demand + (capacity - total_demand) * w.weight / wall)
            .collect();
    }
    let (mut lo, mut hi) = (
        0.0f64,
        capacity / wants.iter().map(|w| w.weight).fold(f64::MAX, f64::min),
    );
    for _ in 0..200 {
        let mid = (lo + hi) / 2.0;
        let s: f64 = wants.iter().map(|w| w.demand.min(mid * w.weight)).sum();
        if s > capacity { hi = mid } else { lo = mid }
    }
    wants.iter().map(|w| w.demand.min(lo * w.weight)).collect()
}

fn wants() -> impl Strategy<Value = Vec<Want>> {
    prop::collection::vec(
        (1u32..=10, prop_oneof![1.0f64..1e6, 1e6f64..1e9, Just(1e12)]),
        1..=12,
    )
    .prop_map(|v| {
        v.into_iter()
            .map(|(w, d)| Want {
                weight: f64::from(w),
                demand: d,
            })
            .collect()
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn targets_match_the_oracle(capacity in 1e3f64..1e10, ws in wants()) {
        let got = targets(capacity, &ws);
        let want = oracle(capacity, &ws);
        let sum: f64 = got.iter().sum();
        prop_assert!((sum - capacity).abs() <= 1e-6 * capacity, "sum {sum} of {capacity}");
        for (g, w) in got.iter().zip(&want) {
            prop_assert!((g - w).abs() <= 1e-6 * capacity, "{got:?} vs {want:?}");
        }
    }

    /// Members report in any order with any demand, hold what they were last given, die, and
    /// the table may be lost (Redis restarted empty); at every step, what the live members
    /// enforce (old leases of a lost table included, until they lapse) and what the table
    /// records stay within the capacity.
    #[test]
    fn leases_never_add_up_beyond_the_capacity(
        events in prop::collection::vec((0usize..5, 0u64..400, prop_oneof![Just(0.0f64), 1.0f64..2e6, Just(1e9)], 0u8..20), 1..300),
        weights in prop::collection::vec(1u32..=5, 5),
    ) {
        let terms = Terms { capacity: 1e6, ttl_ms: 1500, floor: 1e3 };
        let mut table = Table::default();
        let mut now = 0u64;
        // What each member enforces, and the epoch it last saw; `None`: dead.
        let mut held: Vec<Option<(f64, Option<u64>, u64)>> = vec![Some((1.0, None, 0)); 5];
        for (who, dt, demand, what) in events {
            now += dt;
            match what {
                // The table is lost (Redis restarted empty).
                0 => table = Table::default(),
                // The member dies: its limit is gone with it.
                1 => held[who] = None,
                _ => {
                    let Some((holding, epoch, until)) = held[who] else { continue };
                    // A member whose lease lapsed (it was stalled for a TTL) drops to the
                    // minimum before it reports, as a member does.
                    let holding = if until != 0 && until <= now { 1.0 } else { holding };
                    let name = format!("m{who}");
                    let v = decide(&mut table, now, &Report {
                        member: &name,
                        weight: f64::from(weights[who]),
                        demand,
                        holding,
                        last_epoch: epoch,
                        expected: 5,
                    }, &terms);
                    held[who] = Some((v.lease.max(1) as f64, Some(v.epoch), now + terms.ttl_ms));
                }
            }
            // Members whose lease lapsed stop using it (a member in this model always reaches
            // Redis, so it would have reported; a lapsed one is one that stopped).
            let enforced: f64 = held.iter().flatten().filter(|h| h.2 > now || h.2 == 0).map(|h| h.0).sum();
            // A scheduler's limit is at least 1 B/s: a member with a lease of 0 holds that much,
            // outside the budget (documented in the crate's worst cases).
            let minimums = held.len() as f64;
            let known: f64 = table.members.values().map(|r| r.holding.max(r.lease)).sum();
            prop_assert!(known <= terms.capacity + minimums, "recorded {known}");
            // What is enforced, old leases of a lost table included.
            prop_assert!(enforced <= terms.capacity + minimums, "enforced {enforced} at {now}");
        }
    }
}

/// The same reports through the Lua script in a real Redis and through the Rust rule give the
/// same leases, targets, counts and epochs (to a byte of rounding).
#[tokio::test]
async fn the_script_in_redis_agrees_with_the_rust_rule() {
    let redis = fairio_fleet::testing::Redis::start();
    let client = redis::Client::open(redis.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let keys = fairio_fleet::Keys::new("parity", "down");
    let terms = Terms {
        capacity: 8.0 * 1048576.0,
        ttl_ms: 1500,
        floor: 8192.0,
    };
    let mut table = Table::default();
    let mut epochs: Vec<Option<u64>> = vec![None; 4];
    let mut x = 12345u64;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut now = 1_000_000u64;
    for step in 0..400 {
        now += next() % 700;
        let who = (next() % 4) as usize;
        let demand = match next() % 4 {
            0 => 0.0,
            1 => (next() % 3_000_000) as f64,
            2 => 1e9,
            _ => (next() % 100_000) as f64,
        };
        let name = format!("member-{who}");
        let report = Report {
            member: &name,
            weight: (1 + who) as f64,
            demand,
            holding: (next() % 4_000_000) as f64,
            last_epoch: epochs[who],
            expected: 1 + (next() % 5) as u32,
        };
        let want = decide(&mut table, now, &report, &terms);
        let got = fairio_fleet::report_at(&mut conn, &keys, &report, &terms, Some(now))
            .await
            .unwrap();
        epochs[who] = Some(got.epoch);
        assert_eq!(
            (got.live, got.epoch),
            (want.live, want.epoch),
            "step {step}"
        );
        assert!(
            got.lease.abs_diff(want.lease) <= 1,
            "step {step}: {got:?} vs {want:?}"
        );
        assert!(
            got.target.abs_diff(want.target) <= 1,
            "step {step}: {got:?} vs {want:?}"
        );
    }
}
