//! The `stuck` scenario: connections whose peers read nothing, under an upload limit, cost no
//! CPU while they wait. Each keeps a full write queue; its peer accepts and never reads, so
//! its socket fills and stays full.

use std::time::{Duration, Instant};

use bytes::Bytes;
use fairio::Scheduler;
use serde_json::json;

use crate::args::Args;
use crate::contender::Contender;
use crate::report::emit;
use crate::sys::{runtime, thread_cpu_secs};
use crate::{CHUNK, MIB};

/// `n` TCP connections under a 1 GiB/s upload limit whose peers read nothing: the share of a
/// core the measured thread (the connections' tasks and the dispatcher) uses once their
/// sockets are full.
pub(crate) fn run(args: &Args) {
    let n = if args.quick { 100 } else { 1000 };
    let (settle, measure) = if args.quick { (0.5, 0.5) } else { (2.0, 5.0) };
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    // The peer holds every accepted socket and never reads.
    let peer = std::thread::spawn(move || {
        (0..n)
            .map(|_| listener.accept().unwrap().0)
            .collect::<Vec<_>>()
    });
    let figures = runtime().block_on(async move {
        let sched = Scheduler::new(
            crate::args::config(CHUNK)
                .max_upload_speed(Some(1024 * MIB))
                .write_queue_size(Some(256 * 1024)),
        )
        .unwrap();
        let msg = Bytes::from(vec![3u8; 256 * 1024]);
        let mut conns = Vec::with_capacity(n);
        for _ in 0..n {
            let sock = tokio::net::TcpStream::connect(addr).await.unwrap();
            let conn = sched.register(sock).unwrap();
            // Two writes: one in the socket (as much as it takes), one in the queue.
            let _ = conn.write_now(msg.clone());
            conns.push(conn);
        }
        for c in &conns {
            let _ = c.write_now(msg.clone());
        }
        tokio::time::sleep(Duration::from_secs_f64(settle)).await;
        let (cpu0, t0) = (thread_cpu_secs(), Instant::now());
        tokio::time::sleep(Duration::from_secs_f64(measure)).await;
        let (cpu, secs) = (thread_cpu_secs() - cpu0, t0.elapsed().as_secs_f64());
        let sent: u64 = conns.iter().map(|c| c.stat().total_sent).sum();
        sched.shutdown(Some(Duration::ZERO)).await;
        (cpu / secs, sent)
    });
    drop(peer.join());
    emit(
        json!({"scenario": "stuck", "contender": Contender::Equal.name(), "n": n,
        "limit": 1024 * MIB, "core_fraction": figures.0, "bytes_handed_to_sockets": figures.1}),
    );
}
