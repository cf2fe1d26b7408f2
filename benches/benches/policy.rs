//! One grant decision of the policy's arbiter with 1, 100 and 10,000 backlogged connections,
//! each alone, and 10,000 in 1,000 groups of 10.
//!
//! The limit is high enough (1 TB/s) that the GCRA always has budget: each iteration is one
//! full decision (lane head, quantum, share credit, governor `check_n`), on a virtual clock
//! advanced by 1 µs per decision.
#![allow(missing_docs)]

use std::hint::black_box;
use std::num::NonZeroU64;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use fairio_policy::{Arbiter, Decision, EqualShare, Policy, Weight, Weighted};

fn decide<P: Policy>(
    c: &mut Criterion,
    name: &str,
    policy: P,
    params: impl Fn(usize) -> P::Params,
) {
    let mut g = c.benchmark_group(format!("grant/{name}"));
    g.throughput(Throughput::Elements(1));
    for n in [1usize, 100, 10_000] {
        let t0 = Instant::now();
        let mut arb = policy.arbiter(NonZeroU64::new(1_000_000_000_000), t0);
        for i in 0..n {
            let k = arb.insert(params(i), None, t0);
            arb.set_demand(k, u64::MAX / 2, t0);
        }
        let mut now = t0;
        now += Duration::from_secs(1);
        assert!(matches!(arb.next(now), Decision::Grant { .. }));
        g.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, _| {
            b.iter(|| {
                now += Duration::from_micros(1);
                black_box(arb.next(black_box(now)))
            });
        });
    }
    g.finish();
}

/// 10,000 backlogged connections in 1,000 groups of ten.
fn decide_grouped<P: Policy>(
    c: &mut Criterion,
    name: &str,
    policy: P,
    params: impl Fn(usize) -> P::Params,
) {
    let mut g = c.benchmark_group(format!("grant_grouped/{name}"));
    g.throughput(Throughput::Elements(1));
    let t0 = Instant::now();
    let mut arb = policy.arbiter(NonZeroU64::new(1_000_000_000_000), t0);
    let groups: Vec<_> = (0..1_000)
        .map(|i| arb.insert_group(params(i), None, t0))
        .collect();
    for i in 0..10_000 {
        let k = arb.insert_into(groups[i % 1_000], params(i / 1_000), None, t0);
        arb.set_demand(k, u64::MAX / 2, t0);
    }
    let mut now = t0 + Duration::from_secs(1);
    assert!(matches!(arb.next(now), Decision::Grant { .. }));
    g.bench_function("10000_in_1000", |b| {
        b.iter(|| {
            now += Duration::from_micros(1);
            black_box(arb.next(black_box(now)))
        });
    });
    g.finish();
}

fn grants(c: &mut Criterion) {
    decide_grouped(c, "equal_share", EqualShare, |_| ());
    decide_grouped(c, "weighted", Weighted, |i| {
        Weight::new(1 + (i % 4) as u32).unwrap_or_default()
    });
    decide(c, "equal_share", EqualShare, |_| ());
    decide(c, "weighted", Weighted, |i| {
        Weight::new(1 + (i % 4) as u32).unwrap_or_default()
    });
}

criterion_group!(benches, grants);
criterion_main!(benches);
