//! One grant decision of the policy's arbiter with 1, 100 and 10,000 backlogged connections.
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

fn grants(c: &mut Criterion) {
    decide(c, "equal_share", EqualShare, |_| ());
    decide(c, "weighted", Weighted, |i| {
        Weight::new(1 + (i % 4) as u32).unwrap_or_default()
    });
}

criterion_group!(benches, grants);
criterion_main!(benches);
