//! The byte queue's hot path: one push and one pop or read of a chunk.
#![allow(missing_docs)]

use std::hint::black_box;
use std::num::NonZeroUsize;

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use fairio_queue::ByteQueue;

fn push_pop(c: &mut Criterion) {
    let mut g = c.benchmark_group("queue");
    for size in [64usize, 16 * 1024] {
        let q = ByteQueue::bounded(NonZeroUsize::new(1 << 20).unwrap());
        let chunk = Bytes::from(vec![7u8; size]);
        g.throughput(Throughput::Bytes(size as u64));
        g.bench_function(format!("push_now+try_pop/{size}"), |b| {
            b.iter(|| {
                assert!(q.push_now(chunk.clone()));
                black_box(q.try_pop().unwrap());
            });
        });
        let mut buf = vec![0u8; size];
        g.bench_function(format!("push_now+try_read/{size}"), |b| {
            b.iter(|| {
                assert!(q.push_now(chunk.clone()));
                black_box(q.try_read(&mut buf).unwrap());
            });
        });
    }
    g.finish();
}

criterion_group!(benches, push_pop);
criterion_main!(benches);
