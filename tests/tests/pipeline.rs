//! The leaf crates composed by hand, as the scheduler composes them: a write queue pumped into
//! a stream, the peer's stream pumped into a read queue, meters counting both ways.

use std::num::NonZeroUsize;
use std::sync::Arc;

use bytes::Bytes;
use fairio_fd::{CloseReason, FaultPlan, FaultyStream, Fd};
use fairio_queue::ByteQueue;
use fairio_stats::{Registry, StatsConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A deterministic byte pattern, so that any reordering or loss shows up.
fn pattern(seed: u64, len: usize) -> Bytes {
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect::<Vec<u8>>()
        .into()
}

#[tokio::test]
async fn bytes_cross_queue_stream_queue_intact_through_faults() {
    let registry = Arc::new(Registry::new(StatsConfig::default()));
    let (a, b) = tokio::io::duplex(4096);
    let plan = FaultPlan::default()
        .max_write(1000)
        .max_read(777)
        .pending_polls(2);
    let sender = Fd::new(FaultyStream::new(a, plan.clone()));
    let receiver = Fd::new(FaultyStream::new(b, plan));
    let (send_info, recv_info) = (Arc::clone(sender.info()), Arc::clone(receiver.info()));
    let out_meter = registry.register();
    let in_meter = registry.register();

    let write_q = Arc::new(ByteQueue::bounded(NonZeroUsize::new(16 * 1024).unwrap()));
    let read_q = Arc::new(ByteQueue::bounded(NonZeroUsize::new(8 * 1024).unwrap()));

    // Writer pump: pops at most 4 KiB at a time, as a scheduler's grant would allow.
    let pump_out = {
        let q = Arc::clone(&write_q);
        let meter = Arc::clone(&out_meter);
        tokio::spawn(async move {
            let mut fd = sender;
            while let Some(chunk) = q.pop_max(NonZeroUsize::new(4096).unwrap()).await {
                fd.write_all(&chunk).await.unwrap();
                meter.add_sent(chunk.len() as u64);
            }
            fd.close(CloseReason::LocalClose).await.unwrap();
        })
    };
    // Reader pump: reads into a buffer, pushes the bytes read.
    let pump_in = {
        let q = Arc::clone(&read_q);
        let meter = Arc::clone(&in_meter);
        tokio::spawn(async move {
            let mut fd = receiver;
            let mut buf = vec![0u8; 3000];
            loop {
                let n = fd.read(&mut buf).await.unwrap();
                if n == 0 {
                    break;
                }
                meter.add_recv(n as u64);
                q.push(Bytes::copy_from_slice(&buf[..n])).await.unwrap();
            }
            q.close();
        })
    };

    let mut expected = Vec::new();
    let producer = {
        let q = Arc::clone(&write_q);
        let msgs: Vec<Bytes> = (0..200)
            .map(|i| pattern(i, (i as usize * 997) % 70_000))
            .collect();
        for m in &msgs {
            expected.extend_from_slice(m);
        }
        tokio::spawn(async move {
            for m in msgs {
                q.push(m).await.unwrap();
            }
            q.close();
        })
    };

    let mut got = Vec::with_capacity(expected.len());
    let mut buf = [0u8; 1500];
    for _ in 0..expected.len() + 1 {
        let n = read_q.read(&mut buf).await;
        if n == 0 {
            break;
        }
        got.extend_from_slice(&buf[..n]);
    }
    producer.await.unwrap();
    pump_out.await.unwrap();
    pump_in.await.unwrap();

    assert_eq!(got.len(), expected.len());
    assert!(got == expected, "bytes differ");
    assert_eq!(send_info.bytes_written(), expected.len() as u64);
    assert_eq!(recv_info.bytes_read(), expected.len() as u64);
    let g = registry.global_stat();
    assert_eq!(
        (g.total_sent, g.total_recv),
        (expected.len() as u64, expected.len() as u64)
    );
    assert_eq!(send_info.close_reason(), Some(CloseReason::LocalClose));
}
