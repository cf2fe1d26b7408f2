//! One grant decision of the policy's arbiter with 1, 100 and 10,000 backlogged connections,
//! each alone, and 10,000 in 1,000 groups of 10; and of the HTB tree with 10,000 connections in
//! 1,000 addresses in 10 classes (three levels).
//!
//! The limit is high enough (1 TB/s) that the GCRA always has budget: each iteration is one
//! full decision (lane head, quantum, share credit, governor `check_n`), on a virtual clock
//! advanced by 1 µs per decision.
#![allow(missing_docs)]

use std::hint::black_box;
use std::num::NonZeroU64;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use fairio_policy::{Arbiter, Class, Decision, EqualShare, Htb, Policy, Weight, Weighted};

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

/// 10,000 backlogged connections in 1,000 addresses in 10 classes: class -> address ->
/// connection, as `fairio proxy` would shape them. Half the classes have a guarantee and all a
/// ceiling, so every level's rates are consulted.
fn decide_three_levels(c: &mut Criterion) {
    let mut g = c.benchmark_group("grant_three_levels/htb");
    g.throughput(Throughput::Elements(1));
    let t0 = Instant::now();
    let limit = 1_000_000_000_000u64;
    let mut htb = Htb::<Weight>::new(NonZeroU64::new(limit), t0);
    let w = |i: usize| Weight::new(1 + (i % 4) as u32).unwrap_or_default();
    let classes: Vec<_> = (0..10)
        .map(|i| {
            let guarantee = (i % 2 == 0).then(|| NonZeroU64::new(limit / 20)).flatten();
            let class = Class::new(guarantee, NonZeroU64::new(limit / 5));
            htb.add_group(None, w(i), class, t0).unwrap()
        })
        .collect();
    let addresses: Vec<_> = (0..1_000)
        .map(|i| {
            htb.add_group(Some(classes[i % 10]), w(i), Class::default(), t0)
                .unwrap()
        })
        .collect();
    for i in 0..10_000 {
        let k = htb.insert_into(addresses[i % 1_000], w(i / 1_000), None, t0);
        htb.set_demand(k, u64::MAX / 2, t0);
    }
    let mut now = t0 + Duration::from_secs(1);
    assert!(matches!(htb.next(now), Decision::Grant { .. }));
    g.bench_function("10000_in_1000_in_10", |b| {
        b.iter(|| {
            now += Duration::from_micros(1);
            black_box(htb.next(black_box(now)))
        });
    });
    g.finish();
}

criterion_group!(benches, grants, decide_three_levels);
criterion_main!(benches);
