//! One measured run: the peer on one thread, the clients and the limiter under test on
//! another, single-threaded, whose bytes and CPU time are sampled.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fairio::{Connection, Policy, Scheduler};

use crate::CHUNK;
use crate::client::{client, sparse_client};
use crate::contender::{Contender, WithPolicy, with_policy};
use crate::dir::Dir;
use crate::peer::spawn_peer;
use crate::sys::{pin_thread, runtime, thread_cpu_secs};

/// What a run does.
#[derive(Clone, Debug)]
pub(crate) struct Spec {
    pub(crate) contender: Contender,
    pub(crate) n: usize,
    pub(crate) limit: Option<u64>,
    pub(crate) weights: Vec<u32>,
    pub(crate) secs: f64,
    pub(crate) dir: Dir,
    pub(crate) sample: Duration,
    /// One more connection joins after this many seconds.
    pub(crate) join_at: Option<f64>,
    /// One more connection sends 100 B every 10 ms (upload), its delays measured.
    pub(crate) sparse: bool,
    /// Upload message size.
    pub(crate) msg: usize,
    /// fairio's downloading clients take chunks with `read_bytes` (no copy) instead of
    /// copying with `read`.
    pub(crate) zero_copy: bool,
}

impl Spec {
    /// `n` connections of `contender` moving bytes in `dir` for `secs`, sampled every 250 ms,
    /// uploads in 64 KiB messages, equally weighted.
    pub(crate) fn new(
        contender: Contender,
        n: usize,
        limit: Option<u64>,
        secs: f64,
        dir: Dir,
    ) -> Self {
        Self {
            contender,
            n,
            limit,
            weights: vec![],
            secs,
            dir,
            sample: Duration::from_millis(250),
            join_at: None,
            sparse: false,
            msg: CHUNK,
            zero_copy: false,
        }
    }
}

/// What a run measured.
#[derive(Debug, Default)]
pub(crate) struct Outcome {
    pub(crate) bytes: Vec<u64>,
    /// (seconds since start, cumulative bytes per connection)
    pub(crate) samples: Vec<(f64, Vec<u64>)>,
    pub(crate) cpu_secs: f64,
    pub(crate) elapsed: f64,
    pub(crate) sparse_delays_ms: Vec<f64>,
    /// Bytes the peer received over the measured interval (uploads): the same yardstick for
    /// every contender, whatever each counts on its own side.
    pub(crate) peer_bytes: u64,
    /// How long downloads waited for every connection's first byte before measuring.
    pub(crate) warmup_secs: f64,
}

/// Runs `spec`: starts the peer, measures on a thread of its own, stops the peer.
pub(crate) fn run(spec: &Spec) -> Outcome {
    let epoch = Instant::now();
    let delays = Arc::new(Mutex::new(Vec::new()));
    let received = Arc::new(AtomicU64::new(0));
    let (addr, peer_stop) = spawn_peer(spec.dir, epoch, Arc::clone(&delays), Arc::clone(&received));
    let measure = Measure {
        spec: spec.clone(),
        addr,
        epoch,
        received,
    };
    let measured_side = std::thread::spawn(move || {
        pin_thread(0);
        runtime().block_on(with_policy(measure.spec.contender, measure))
    });
    let mut out = measured_side.join().unwrap();
    peer_stop.store(true, Ordering::Relaxed);
    out.sparse_delays_ms = std::mem::take(&mut *delays.lock().unwrap());
    std::thread::sleep(Duration::from_millis(150));
    out
}

/// The measured side of a run, generic over fairio's policy.
struct Measure {
    spec: Spec,
    addr: SocketAddr,
    epoch: Instant,
    /// What the peer received, for [`Outcome::peer_bytes`].
    received: Arc<AtomicU64>,
}

impl WithPolicy for Measure {
    type Output = Outcome;

    async fn call<P: Policy>(self, policy: P, params: fn(u32) -> P::Params) -> Self::Output {
        let Self {
            spec,
            addr,
            epoch,
            received,
        } = self;
        measured(spec, policy, params, addr, epoch, received).await
    }
}

/// Copies each fairio uploader's bytes written to the socket into its counter.
fn sync_writers<P: Policy>(writers: &[(usize, Connection<P>)], counts: &[Arc<AtomicU64>]) {
    for (i, w) in writers {
        counts[*i].store(w.stat().total_sent, Ordering::Relaxed);
    }
}

async fn measured<P: Policy>(
    spec: Spec,
    policy: P,
    params: impl Fn(u32) -> P::Params,
    addr: SocketAddr,
    epoch: Instant,
    received: Arc<AtomicU64>,
) -> Outcome {
    let sched = spec.contender.is_fairio().then(|| {
        let (up, down) = match spec.dir {
            Dir::Down => (None, spec.limit),
            Dir::Up => (spec.limit, None),
        };
        let config = crate::args::config(CHUNK)
            .max_upload_speed(up)
            .max_download_speed(down)
            .read_queue_size(Some(256 * 1024))
            .write_queue_size(Some(256 * 1024));
        Scheduler::with_policy(config, policy).unwrap()
    });
    let asl = (spec.contender == Contender::Asl)
        .then(|| async_speed_limit::Limiter::new(spec.limit.map_or(f64::INFINITY, |l| l as f64)));
    let total = spec.n + usize::from(spec.join_at.is_some());
    let counts: Vec<Arc<AtomicU64>> = (0..total).map(|_| Arc::new(AtomicU64::new(0))).collect();
    let stop = Arc::new(AtomicBool::new(false));
    let weight = |i: usize| {
        if spec.weights.is_empty() {
            1
        } else {
            spec.weights[i % spec.weights.len()]
        }
    };
    // Client `i`, counting into `counts[i]`: with its writer's connection when it uploads
    // through fairio.
    let open = |i: usize| {
        let writer = client(
            &spec,
            addr,
            sched.as_ref(),
            params(weight(i)),
            asl.as_ref(),
            Arc::clone(&counts[i]),
            Arc::clone(&stop),
        );
        async move { writer.await.map(|w| (i, w)) }
    };
    let mut writers: Vec<(usize, Connection<P>)> = Vec::new();
    for i in 0..spec.n {
        writers.extend(open(i).await);
    }
    if spec.sparse {
        sparse_client(
            addr,
            sched.as_ref(),
            params(weight(0)),
            asl.as_ref(),
            epoch,
            Arc::clone(&stop),
        )
        .await;
    }
    // The single-threaded peer accepts a connection only between polls of its busy flooding
    // tasks, so the last of 512 may wait a second for its first byte. Downloads are measured
    // once every connection has received something (at most 10 s), so that this start-up of
    // the harness is not counted as unfairness.
    let warm_from = Instant::now();
    if spec.dir == Dir::Down {
        let deadline = warm_from + Duration::from_secs(10);
        while Instant::now() < deadline
            && counts[..spec.n]
                .iter()
                .any(|c| c.load(Ordering::Relaxed) == 0)
        {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    let warmup_secs = warm_from.elapsed().as_secs_f64();
    // Everything is measured from here: what moved while connections were being set up
    // (connecting 1,000 clients takes a while) does not count.
    sync_writers(&writers, &counts);
    let start = Instant::now();
    let cpu0 = thread_cpu_secs();
    let received0 = received.load(Ordering::Relaxed);
    let at_start: Vec<u64> = counts.iter().map(|c| c.load(Ordering::Relaxed)).collect();
    let since_start = |counts: &[Arc<AtomicU64>]| -> Vec<u64> {
        counts
            .iter()
            .zip(&at_start)
            .map(|(c, a)| c.load(Ordering::Relaxed).saturating_sub(*a))
            .collect()
    };
    let mut samples = Vec::new();
    let mut joined = spec.join_at.is_none();
    let end = start + Duration::from_secs_f64(spec.secs);
    let mut next = start;
    while Instant::now() < end {
        next += spec.sample;
        tokio::time::sleep_until(next.into()).await;
        if !joined
            && spec
                .join_at
                .is_some_and(|j| start.elapsed().as_secs_f64() >= j)
        {
            writers.extend(open(spec.n).await);
            joined = true;
        }
        sync_writers(&writers, &counts);
        samples.push((start.elapsed().as_secs_f64(), since_start(&counts)));
    }
    let elapsed = start.elapsed().as_secs_f64();
    let cpu_secs = thread_cpu_secs() - cpu0;
    let peer_bytes = received.load(Ordering::Relaxed) - received0;
    sync_writers(&writers, &counts);
    stop.store(true, Ordering::Relaxed);
    drop(writers);
    let bytes = since_start(&counts);
    if let Some(s) = sched {
        s.shutdown(Some(Duration::from_millis(100))).await;
    }
    Outcome {
        bytes,
        samples,
        cpu_secs,
        elapsed,
        sparse_delays_ms: Vec::new(),
        peer_bytes,
        warmup_secs,
    }
}
