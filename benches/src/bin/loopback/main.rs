//! Macro-benchmarks over loopback TCP, side by side in one run: raw tokio, fairio with each
//! policy, and one shared async-speed-limit limiter. Prints one JSON object per run.
//!
//! `cargo run --release -p fairio-benches --bin loopback -- <scenario|all> [--quick]`
//! `[--only CONTENDER]... [--n N]... [--msg BYTES] [--dir up|down]`
//!
//! Environment: `FAIRIO_BENCH_PIN=1` pins the peer and the measured side to a core each (the
//! full run in BENCHMARKS.md does); `FAIRIO_BENCH_DEBUG=1` prints every 250 ms window whose
//! Jain index is below 0.97, with its per-connection byte counts, to stderr (in the `slow`
//! scenario: every window, with its use of the limit at the peer and at the limiter).
//!
//! The peer (a flooding or draining server) runs on its own thread and runtime; the measured
//! side (clients and the limiter under test) on another, single-threaded, whose CPU time is read
//! from `/proc/thread-self/schedstat`.

mod groups;

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use fairio::{Config, Connection, EqualShare, Policy, Scheduler, Weight, Weighted, WindowQuota};
use fairio_stats::jain;
use serde_json::json;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};

const KIB: u64 = 1 << 10;
const MIB: u64 = 1 << 20;
const CHUNK: usize = 64 * 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Contender {
    Raw,
    Equal,
    Weighted,
    Window,
    Asl,
}

impl Contender {
    const ALL: [Self; 5] = [
        Self::Raw,
        Self::Equal,
        Self::Weighted,
        Self::Window,
        Self::Asl,
    ];
    const LIMITERS: [Self; 4] = [Self::Equal, Self::Weighted, Self::Window, Self::Asl];

    fn name(self) -> &'static str {
        match self {
            Self::Raw => "raw-tokio",
            Self::Equal => "fairio-equal",
            Self::Weighted => "fairio-weighted",
            Self::Window => "fairio-window",
            Self::Asl => "async-speed-limit",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Dir {
    /// The peer floods; the measured clients read.
    Down,
    /// The measured clients write 64 KiB messages; the peer drains.
    Up,
}

#[derive(Clone, Debug)]
struct Spec {
    contender: Contender,
    n: usize,
    limit: Option<u64>,
    weights: Vec<u32>,
    secs: f64,
    dir: Dir,
    sample: Duration,
    /// One more connection joins after this many seconds.
    join_at: Option<f64>,
    /// One more connection sends 100 B every 10 ms (upload), its delays measured.
    sparse: bool,
    /// Upload message size.
    msg: usize,
    /// fairio's downloading clients take chunks with `read_bytes` (no copy) instead of
    /// copying with `read`.
    zero_copy: bool,
}

#[derive(Debug, Default)]
struct Outcome {
    bytes: Vec<u64>,
    /// (seconds since start, cumulative bytes per connection)
    samples: Vec<(f64, Vec<u64>)>,
    cpu_secs: f64,
    elapsed: f64,
    sparse_delays_ms: Vec<f64>,
    /// Bytes the peer received over the measured interval (uploads): the same yardstick for
    /// every contender, whatever each counts on its own side.
    peer_bytes: u64,
    /// How long downloads waited for every connection's first byte before measuring.
    warmup_secs: f64,
}

/// With `FAIRIO_BENCH_PIN=1`, pins the calling thread to `cpu`, so that the peer and the
/// measured side never share a core (`taskset` on the thread's id: no unsafe code needed).
fn pin_thread(cpu: usize) {
    if std::env::var_os("FAIRIO_BENCH_PIN").is_none() {
        return;
    }
    let Ok(link) = std::fs::read_link("/proc/thread-self") else {
        return;
    };
    let Some(tid) = link.file_name().and_then(|t| t.to_str()).map(str::to_owned) else {
        return;
    };
    let _ = std::process::Command::new("taskset")
        .args(["-pc", &cpu.to_string(), &tid])
        .stdout(std::process::Stdio::null())
        .status();
}

fn thread_cpu_secs() -> f64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .next()
                .and_then(|v| v.parse::<f64>().ok())
        })
        .map_or(0.0, |ns| ns / 1e9)
}

/// The peer: floods (Down) or drains (Up) every connection; a connection that starts with
/// b'S' carries timestamped 100-byte messages whose delays are recorded.
fn spawn_peer(
    dir: Dir,
    epoch: Instant,
    delays: Arc<Mutex<Vec<f64>>>,
    received: Arc<AtomicU64>,
) -> (std::net::SocketAddr, Arc<AtomicBool>) {
    let stop = Arc::new(AtomicBool::new(false));
    let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    std_listener.set_nonblocking(true).unwrap();
    let addr = std_listener.local_addr().unwrap();
    let s = Arc::clone(&stop);
    std::thread::spawn(move || {
        pin_thread(1);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = TcpListener::from_std(std_listener).unwrap();
            while !s.load(Ordering::Relaxed) {
                let Ok(Ok((mut sock, _))) =
                    tokio::time::timeout(Duration::from_millis(100), listener.accept()).await
                else {
                    continue;
                };
                let delays = Arc::clone(&delays);
                let received = Arc::clone(&received);
                let stop = Arc::clone(&s);
                tokio::spawn(async move {
                    match dir {
                        Dir::Down => {
                            let chunk = vec![7u8; CHUNK];
                            while !stop.load(Ordering::Relaxed)
                                && sock.write_all(&chunk).await.is_ok()
                            {
                            }
                        }
                        Dir::Up => {
                            let mut kind = [0u8; 1];
                            if sock.read_exact(&mut kind).await.is_err() {
                                return;
                            }
                            if kind[0] == b'S' {
                                let mut msg = [0u8; 100];
                                while sock.read_exact(&mut msg).await.is_ok() {
                                    let sent =
                                        u64::from_le_bytes(msg[..8].try_into().unwrap_or_default());
                                    let now = u64::try_from(epoch.elapsed().as_nanos())
                                        .unwrap_or(u64::MAX);
                                    delays
                                        .lock()
                                        .unwrap()
                                        .push(now.saturating_sub(sent) as f64 / 1e6);
                                }
                            } else {
                                let mut buf = vec![0u8; CHUNK];
                                while let Ok(n @ 1..) = sock.read(&mut buf).await {
                                    received.fetch_add(n as u64, Ordering::Relaxed);
                                }
                            }
                        }
                    }
                });
            }
        });
    });
    (addr, stop)
}

/// `--dir up|down`: only uploads or only downloads in the overhead, slow and relimit scenarios.
static DIR_FILTER: std::sync::OnceLock<Dir> = std::sync::OnceLock::new();

/// `--msg BYTES`: the size of the messages uploading clients send in the overhead scenario
/// (64 KiB, plus a 1 KiB row, unless set).
static MSG_SIZE: std::sync::OnceLock<usize> = std::sync::OnceLock::new();

/// The message of `size` bytes every uploading client sends: one buffer for all, whatever the
/// contender, so that no contender pays for more cache misses on its source than another.
fn message(size: usize) -> Bytes {
    static MSGS: Mutex<Vec<Bytes>> = Mutex::new(Vec::new());
    let mut msgs = MSGS.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(m) = msgs.iter().find(|m| m.len() == size) {
        return m.clone();
    }
    let m = Bytes::from(vec![1u8; size]);
    msgs.push(m.clone());
    m
}

/// One backlogged client of any contender, counting bytes moved into `count`; a fairio uploader
/// is returned instead, for its statistics to be read when sampled.
async fn client<P: Policy>(
    spec: &Spec,
    addr: std::net::SocketAddr,
    sched: Option<&Scheduler<P>>,
    params: P::Params,
    asl: Option<&async_speed_limit::Limiter>,
    count: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
) -> Option<Connection<P>> {
    let mut sock = TcpStream::connect(addr).await.unwrap();
    let _ = sock.set_nodelay(true);
    if spec.dir == Dir::Up {
        sock.write_all(b"B").await.unwrap();
    }
    let (dir, spec_msg, zero_copy) = (spec.dir, spec.msg, spec.zero_copy);
    if let Some(sched) = sched {
        let conn = sched.register_with(sock, params).unwrap();
        let writer = (dir == Dir::Up).then(|| conn.clone());
        tokio::spawn(async move {
            match dir {
                Dir::Down if zero_copy => {
                    while let Ok(chunk) = conn.read_bytes(CHUNK).await {
                        count.fetch_add(chunk.len() as u64, Ordering::Relaxed);
                        if stop.load(Ordering::Relaxed) {
                            break;
                        }
                    }
                }
                Dir::Down => {
                    let mut buf = vec![0u8; CHUNK];
                    while let Ok(n) = conn.read(&mut buf).await {
                        count.fetch_add(n as u64, Ordering::Relaxed);
                        if stop.load(Ordering::Relaxed) {
                            break;
                        }
                    }
                }
                Dir::Up => {
                    // Bytes written to the socket are read from the connection's statistics
                    // when sampled (see `measured`), not by a task per connection.
                    let msg = message(spec_msg);
                    while !stop.load(Ordering::Relaxed) && conn.write(msg.clone()).await.is_ok() {}
                }
            }
        });
        return writer;
    }
    let mut stream: Box<dyn fairio_fd_stream::Stream> = match asl {
        Some(l) => Box::new(l.clone().limit(sock)),
        None => Box::new(sock),
    };
    tokio::spawn(async move {
        match dir {
            Dir::Down => {
                let mut buf = vec![0u8; CHUNK];
                while let Ok(n) = stream.read(&mut buf).await {
                    if n == 0 || stop.load(Ordering::Relaxed) {
                        break;
                    }
                    count.fetch_add(n as u64, Ordering::Relaxed);
                }
            }
            Dir::Up => {
                let msg = message(spec_msg);
                while !stop.load(Ordering::Relaxed) && stream.write_all(&msg).await.is_ok() {
                    count.fetch_add(msg.len() as u64, Ordering::Relaxed);
                }
            }
        }
    });
    None
}

/// A stream type for boxing raw and limited sockets alike.
mod fairio_fd_stream {
    pub(crate) trait Stream:
        tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin
    {
    }
    impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin> Stream for T {}
}

/// The sparse client: 100-byte timestamped messages every 10 ms.
async fn sparse_client<P: Policy>(
    addr: std::net::SocketAddr,
    sched: Option<&Scheduler<P>>,
    params: P::Params,
    asl: Option<&async_speed_limit::Limiter>,
    epoch: Instant,
    stop: Arc<AtomicBool>,
) {
    let mut sock = TcpStream::connect(addr).await.unwrap();
    let _ = sock.set_nodelay(true);
    sock.write_all(b"S").await.unwrap();
    let stamp = move || {
        let mut m = vec![0u8; 100];
        m[..8].copy_from_slice(
            &u64::try_from(epoch.elapsed().as_nanos())
                .unwrap_or(0)
                .to_le_bytes(),
        );
        m
    };
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    if let Some(sched) = sched {
        let conn = sched.register_with(sock, params).unwrap();
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                tick.tick().await;
                if conn.write(Bytes::from(stamp())).await.is_err() {
                    break;
                }
            }
        });
        return;
    }
    let mut stream: Box<dyn fairio_fd_stream::Stream> = match asl {
        Some(l) => Box::new(l.clone().limit(sock)),
        None => Box::new(sock),
    };
    tokio::spawn(async move {
        while !stop.load(Ordering::Relaxed) {
            tick.tick().await;
            if stream.write_all(&stamp()).await.is_err() {
                break;
            }
        }
    });
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
    addr: std::net::SocketAddr,
    epoch: Instant,
    received: Arc<AtomicU64>,
) -> Outcome {
    let fairio = matches!(
        spec.contender,
        Contender::Equal | Contender::Weighted | Contender::Window
    );
    let sched = fairio.then(|| {
        let (up, down) = match spec.dir {
            Dir::Down => (None, spec.limit),
            Dir::Up => (spec.limit, None),
        };
        let config = Config::new(CHUNK)
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
    let mut writers: Vec<(usize, Connection<P>)> = Vec::new();
    for (i, count) in counts.iter().enumerate().take(spec.n) {
        let writer = client(
            &spec,
            addr,
            sched.as_ref(),
            params(weight(i)),
            asl.as_ref(),
            Arc::clone(count),
            Arc::clone(&stop),
        )
        .await;
        writers.extend(writer.map(|w| (i, w)));
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
            let i = spec.n;
            let writer = client(
                &spec,
                addr,
                sched.as_ref(),
                params(weight(i)),
                asl.as_ref(),
                Arc::clone(&counts[i]),
                Arc::clone(&stop),
            )
            .await;
            writers.extend(writer.map(|w| (i, w)));
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

fn run(spec: &Spec) -> Outcome {
    let epoch = Instant::now();
    let delays = Arc::new(Mutex::new(Vec::new()));
    let received = Arc::new(AtomicU64::new(0));
    let (addr, peer_stop) = spawn_peer(spec.dir, epoch, Arc::clone(&delays), Arc::clone(&received));
    let s = spec.clone();
    let measured_side = std::thread::spawn(move || {
        pin_thread(0);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            match s.contender {
                Contender::Weighted => {
                    measured(
                        s,
                        Weighted,
                        |w| Weight::new(w).unwrap_or_default(),
                        addr,
                        epoch,
                        received,
                    )
                    .await
                }
                Contender::Window => measured(s, WindowQuota, |_| (), addr, epoch, received).await,
                _ => measured(s, EqualShare, |_| (), addr, epoch, received).await,
            }
        })
    });
    let mut out = measured_side.join().unwrap();
    peer_stop.store(true, Ordering::Relaxed);
    out.sparse_delays_ms = std::mem::take(&mut *delays.lock().unwrap());
    std::thread::sleep(Duration::from_millis(150));
    out
}

/// The smallest Jain index over consecutive 250 ms windows, from samples every `step`.
fn min_window_jain(out: &Outcome, weights: &[f64], step: Duration) -> f64 {
    let per = (0.25 / step.as_secs_f64()).round().max(1.0) as usize;
    let mut worst: f64 = 1.0;
    let mut k = per;
    // Skip the first window: start-up.
    while k + per < out.samples.len() {
        let (a, b) = (&out.samples[k].1, &out.samples[k + per].1);
        let xs: Vec<f64> = a
            .iter()
            .zip(b)
            .zip(weights)
            .map(|((x, y), w)| (y - x) as f64 / w)
            .collect();
        worst = worst.min(jain(&xs));
        if std::env::var_os("FAIRIO_BENCH_DEBUG").is_some() && jain(&xs) < 0.97 {
            let mut h = std::collections::BTreeMap::new();
            for x in &xs {
                *h.entry(*x as u64).or_insert(0) += 1;
            }
            eprintln!(
                "window {:.3}-{:.3}: jain {:.4} bytes->count {:?}",
                out.samples[k].0,
                out.samples[k + per].0,
                jain(&xs),
                h
            );
        }
        k += per;
    }
    worst
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn emit(v: serde_json::Value) {
    println!("{v}");
}

fn spec(contender: Contender, n: usize, limit: Option<u64>, secs: f64, dir: Dir) -> Spec {
    Spec {
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

/// Overhead without a limit. This box is shared and noisy (raw tokio alone has varied by 2x
/// between runs, in phases lasting seconds), so each contender runs `reps` short times,
/// interleaved (raw, equal, ..., raw, equal, ...): each repetition's figures are divided by
/// those of the raw run just before, and the median of those ratios is reported.
fn overhead(quick: bool) {
    // (connections, message size): 64 KiB writes as the issue asks, and one row of 1 KiB
    // messages, where per-message costs show.
    let up = |n, m| (n, m, Dir::Up, false);
    let mut cases: Vec<(usize, usize, Dir, bool)> = match (MSG_SIZE.get(), quick) {
        (Some(&m), true) => vec![up(8, m)],
        (Some(&m), false) => [1, 8, 64, 512].iter().map(|&n| up(n, m)).collect(),
        (None, true) => vec![up(8, CHUNK)],
        (None, false) => vec![
            up(1, CHUNK),
            up(8, CHUNK),
            up(64, CHUNK),
            up(512, CHUNK),
            up(8, 1024),
        ],
    };
    // Downloads too (the peer floods; clients take 64 KiB at a time): what reading through
    // the scheduler costs. fairio's clients take chunks with `read_bytes`, the way to receive
    // in bulk; one row copies with `read(&mut buf)` instead, to show what the copy costs.
    if !quick && MSG_SIZE.get().is_none() {
        cases.extend([1, 8, 64, 512].map(|n| (n, CHUNK, Dir::Down, true)));
        cases.push((64, CHUNK, Dir::Down, false));
    }
    let (secs, reps) = if quick { (0.5, 1) } else { (1.5, 9) };
    let only_dir = DIR_FILTER.get().copied();
    for (n, msg, dir, zero_copy) in cases
        .into_iter()
        .filter(|(n, _, d, _)| selected_n(*n) && only_dir.is_none_or(|o| o == *d))
    {
        let chosen: Vec<Contender> = Contender::ALL
            .into_iter()
            .filter(|c| selected(*c))
            .collect();
        // (throughput, CPU seconds per GiB) of every repetition, per contender.
        let mut runs: Vec<Vec<(f64, f64)>> = vec![Vec::new(); chosen.len()];
        for _ in 0..reps {
            for (k, &c) in chosen.iter().enumerate() {
                let out = run(&Spec {
                    msg,
                    zero_copy,
                    ..spec(c, n, None, secs, dir)
                });
                // Uploads: what the peer received; downloads: what the clients read.
                let bytes = match dir {
                    Dir::Up => out.peer_bytes,
                    Dir::Down => out.bytes.iter().sum(),
                };
                let gib = (bytes as f64 / (1u64 << 30) as f64).max(1e-9);
                runs[k].push((bytes as f64 / out.elapsed, out.cpu_secs / gib));
            }
        }
        let median = |mut xs: Vec<f64>| {
            xs.sort_by(f64::total_cmp);
            pct(&xs, 0.5)
        };
        let raw = chosen.iter().position(|c| *c == Contender::Raw);
        for (k, c) in chosen.iter().enumerate() {
            let ratio = |f: fn(&(f64, f64)) -> f64| {
                raw.map(|r| {
                    median(
                        runs[k]
                            .iter()
                            .zip(&runs[r])
                            .map(|(x, y)| f(x) / f(y))
                            .collect(),
                    )
                })
            };
            emit(
                json!({"scenario": "overhead", "contender": c.name(), "n": n, "reps": reps, "msg_bytes": msg,
                "direction": if dir == Dir::Up { "upload" } else { "download" },
                "fairio_reads": if dir == Dir::Up { None } else if zero_copy { Some("read_bytes") } else { Some("read") },
                "throughput_bytes_per_sec": median(runs[k].iter().map(|r| r.0).collect()),
                "cpu_secs_per_gib": median(runs[k].iter().map(|r| r.1).collect()),
                "throughput_vs_raw": ratio(|r| r.0), "cpu_vs_raw": ratio(|r| r.1),
                "throughput_runs": runs[k].iter().map(|r| r.0).collect::<Vec<_>>(),
                "cpu_secs_per_gib_runs": runs[k].iter().map(|r| r.1).collect::<Vec<_>>()}),
            );
        }
    }
}

fn accuracy(quick: bool) {
    let limits: &[u64] = if quick {
        &[16 * MIB]
    } else {
        &[MIB, 16 * MIB, 256 * MIB]
    };
    let ns: &[usize] = if quick { &[8] } else { &[1, 8, 64] };
    let secs = if quick { 0.5 } else { 5.0 };
    for &limit in limits {
        for &n in ns.iter().filter(|n| selected_n(**n)) {
            for c in Contender::LIMITERS.into_iter().filter(|c| selected(*c)) {
                let out = run(&spec(c, n, Some(limit), secs, Dir::Down));
                let bytes: u64 = out.bytes.iter().sum();
                let rate = bytes as f64 / out.elapsed;
                emit(
                    json!({"scenario": "accuracy", "contender": c.name(), "n": n, "limit": limit,
                    "rate": rate, "error": rate / limit as f64 - 1.0}),
                );
            }
        }
    }
}

fn fairness(quick: bool) {
    let limits: &[u64] = if quick { &[MIB] } else { &[MIB, 64 * MIB] };
    let ns: &[usize] = if quick { &[8] } else { &[8, 64, 512] };
    let secs = if quick { 0.6 } else { 5.0 };
    for &limit in limits {
        for &n in ns.iter().filter(|n| selected_n(**n)) {
            for c in Contender::LIMITERS.into_iter().filter(|c| selected(*c)) {
                let out = run(&spec(c, n, Some(limit), secs, Dir::Down));
                let ones = vec![1.0; n];
                let xs: Vec<f64> = out.bytes.iter().map(|&b| b as f64).collect();
                emit(
                    json!({"scenario": "fairness", "contender": c.name(), "n": n, "limit": limit,
                    "jain": jain(&xs), "min_window_jain": min_window_jain(&out, &ones, Duration::from_millis(250)),
                    "warmup_secs": out.warmup_secs,
                    "bytes": if n <= 8 { Some(&out.bytes) } else { None }}),
                );
            }
        }
    }
    // 1,000 active connections at 64 MiB/s (the scale scenario's second half).
    if !quick && selected_n(1000) {
        for c in [Contender::Equal, Contender::Asl]
            .into_iter()
            .filter(|c| selected(*c))
        {
            let out = run(&spec(c, 1000, Some(64 * MIB), 5.0, Dir::Down));
            let xs: Vec<f64> = out.bytes.iter().map(|&b| b as f64).collect();
            emit(
                json!({"scenario": "scale-active", "contender": c.name(), "n": 1000, "limit": 64 * MIB,
                "jain": jain(&xs), "min_window_jain": min_window_jain(&out, &vec![1.0; 1000], Duration::from_millis(250))}),
            );
        }
    }
}

fn weighted(quick: bool) {
    let secs = if quick { 0.6 } else { 5.0 };
    let mut s = spec(Contender::Weighted, 8, Some(16 * MIB), secs, Dir::Down);
    s.weights = vec![1, 2, 3, 4];
    let out = run(&s);
    let w: Vec<f64> = (0..8).map(|i| f64::from(s.weights[i % 4])).collect();
    let total: u64 = out.bytes.iter().sum();
    let wsum: f64 = w.iter().sum();
    let worst_of = |bytes: &[u64]| {
        let total: u64 = bytes.iter().sum();
        bytes
            .iter()
            .zip(&w)
            .map(|(&b, &wi)| ((b as f64 / total as f64) / (wi / wsum) - 1.0).abs())
            .fold(0.0, f64::max)
    };
    // Also from one second on: at start-up the first connection has the initial burst alone.
    let warm = out
        .samples
        .iter()
        .position(|(t, _)| *t >= (s.secs / 5.0).min(1.0))
        .unwrap_or(0);
    let steady: Vec<u64> = out
        .bytes
        .iter()
        .zip(&out.samples[warm].1)
        .map(|(b, a)| b - a)
        .collect();
    emit(
        json!({"scenario": "weighted", "contender": Contender::Weighted.name(), "n": 8,
        "weights": s.weights, "largest_relative_error": worst_of(&out.bytes),
        "largest_relative_error_after_warmup": worst_of(&steady),
        "shares": out.bytes.iter().map(|&b| b as f64 / total as f64).collect::<Vec<_>>()}),
    );
}

fn join(quick: bool) {
    let (secs, at) = if quick { (1.0, 0.4) } else { (6.0, 2.0) };
    let limit = 16 * MIB;
    let mut plot = Vec::new();
    for c in Contender::LIMITERS {
        let mut s = spec(c, 7, Some(limit), secs, Dir::Down);
        s.join_at = Some(at);
        s.sample = Duration::from_millis(10);
        let out = run(&s);
        let share = limit as f64 / 8.0;
        // 250 ms windows ending at each sample after the join.
        let per = 25;
        let mut ms = None;
        for k in per..out.samples.len() {
            let (t, now) = (&out.samples[k].0, &out.samples[k].1);
            if *t < at + 0.25 {
                continue;
            }
            let rate = (now[7] - out.samples[k - per].1[7]) as f64 / 0.25;
            if rate >= 0.9 * share {
                ms = Some(((t - 0.25 - at) * 1000.0).max(0.0).round());
                break;
            }
        }
        emit(
            json!({"scenario": "join", "contender": c.name(), "n": 8, "limit": limit, "ms_to_90pct": ms}),
        );
        plot.push((c, out));
    }
    if !quick {
        draw_join(&plot, at);
    }
}

fn draw_join(runs: &[(Contender, Outcome)], at: f64) {
    use plotters::prelude::*;
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/plots/join.svg");
    let root = SVGBackend::new(path, (1000, 900)).into_drawing_area();
    let _ = root.fill(&WHITE);
    let panels = root.split_evenly((runs.len(), 1));
    for ((c, out), area) in runs.iter().zip(panels.iter()) {
        let per = 25;
        let series: Vec<Vec<(f64, f64)>> = (0..8)
            .map(|i| {
                (per..out.samples.len())
                    .map(|k| {
                        (
                            out.samples[k].0,
                            (out.samples[k].1[i] - out.samples[k - per].1[i]) as f64
                                / 0.25
                                / MIB as f64,
                        )
                    })
                    .collect()
            })
            .collect();
        let ymax = series
            .iter()
            .flatten()
            .map(|p| p.1)
            .fold(0.0, f64::max)
            .max(1.0)
            * 1.1;
        let Ok(mut chart) = ChartBuilder::on(area)
            .caption(
                format!(
                    "{}: per-connection rate (MiB/s, 250 ms window); conn 8 joins at {at} s",
                    c.name()
                ),
                ("sans-serif", 16),
            )
            .margin(8)
            .x_label_area_size(25)
            .y_label_area_size(40)
            .build_cartesian_2d(0.0..out.elapsed, 0.0..ymax)
        else {
            continue;
        };
        let _ = chart.configure_mesh().draw();
        for (i, s) in series.into_iter().enumerate() {
            let color = if i == 7 {
                RED.stroke_width(2)
            } else {
                Palette99::pick(i).stroke_width(1)
            };
            let _ = chart.draw_series(LineSeries::new(s, color));
        }
    }
    let _ = root.present();
}

fn sparse(quick: bool) {
    let secs = if quick { 0.6 } else { 5.0 };
    for c in Contender::ALL {
        let mut s = spec(
            c,
            64,
            (c != Contender::Raw).then_some(16 * MIB),
            secs,
            Dir::Up,
        );
        s.sparse = true;
        let out = run(&s);
        let mut d = out.sparse_delays_ms.clone();
        d.sort_by(f64::total_cmp);
        emit(
            json!({"scenario": "sparse", "contender": c.name(), "n": 64, "limit": 16 * MIB, "messages": d.len(),
            "p50_ms": pct(&d, 0.5), "p99_ms": pct(&d, 0.99)}),
        );
    }
}

fn resident() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .nth(1)
                .and_then(|p| p.parse::<u64>().ok())
        })
        .unwrap_or(0)
        * 4096
}

fn scale(quick: bool) {
    let n = if quick { 1000 } else { 10_000 };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        // Baseline: the streams alone (in-memory pipes: no descriptor limit), held idle.
        let before = resident();
        let pairs: Vec<_> = (0..n).map(|_| tokio::io::duplex(1024)).collect();
        let with_streams = resident();
        let sched = Scheduler::new(Config::new(CHUNK).max_download_speed(Some(64 * MIB)).max_upload_speed(Some(64 * MIB))).unwrap();
        let mut conns = Vec::with_capacity(n);
        let mut peers = Vec::with_capacity(n);
        for (a, b) in pairs {
            conns.push(sched.register(a).unwrap());
            peers.push(b);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        let registered = resident();
        let per_conn = (registered - with_streams) as f64 / n as f64;
        emit(json!({"scenario": "scale-idle", "contender": Contender::Equal.name(), "n": n,
            "resident_bytes_per_connection": per_conn, "streams_alone_bytes_per_connection": (with_streams - before) as f64 / n as f64}));
        drop(conns);
        sched.shutdown(Some(Duration::from_millis(100))).await;
        drop(peers);
    });
}

// The `slow` and `relimit` scenarios. Each of their connections (a "lane") moves bytes one way
// only, and a slow one is read at a fixed rate: by the peer (uploads) or by the user on the
// measured side (downloads). Bytes are counted where they end up: at the peer for uploads, at
// the user for downloads. What the limiter under test let through is read from the limiter
// itself (fairio's global statistics, async-speed-limit's consumed bytes).

/// The socket buffers of upload lanes, on both ends (Linux doubles the figure). Left to
/// autotuning, a slowly drained socket took in about 6.5 MB, at its full share of the limit,
/// for 6 s before it pushed back: the peer then saw the limit's share of the slow lanes go to
/// the kernel, not to the fast lanes, for longer than any settle time.
const LANE_SOCKET_BUFFER: u32 = 64 * 1024;

/// One connection of the `slow` and `relimit` scenarios.
#[derive(Clone, Copy, Debug)]
struct Lane {
    dir: Dir,
    /// The rate its reader takes bytes at (bytes per second); `None`: as fast as it can.
    slow: Option<u64>,
    /// Its weight under fairio's Weighted policy.
    weight: u32,
}

/// The limiter under test, seen from the `slow` and `relimit` timelines.
trait Limits {
    /// Sets the global limit in `dir`; `None` lifts it.
    fn set(&self, dir: Dir, limit: Option<u64>);
    /// Bytes let through so far in `dir`, counted where the limit applies.
    fn passed(&self, dir: Dir) -> u64;
    /// Closes every connection.
    fn close(&self) -> Pin<Box<dyn Future<Output = ()> + '_>>;
}

impl<P: Policy> Limits for Scheduler<P> {
    fn set(&self, dir: Dir, limit: Option<u64>) {
        match dir {
            Dir::Up => self.set_max_upload_speed(limit),
            Dir::Down => self.set_max_download_speed(limit),
        }
    }

    /// Uploads: bytes written to the sockets; downloads: bytes read into the read queues.
    fn passed(&self, dir: Dir) -> u64 {
        let stat = self.global_stat();
        match dir {
            Dir::Up => stat.total_sent,
            Dir::Down => stat.total_recv,
        }
    }

    fn close(&self) -> Pin<Box<dyn Future<Output = ()> + '_>> {
        Box::pin(async {
            self.shutdown(Some(Duration::from_millis(10))).await;
        })
    }
}

/// One shared async-speed-limit limiter per direction, wrapped around each stream of that
/// direction.
struct AslPair {
    up: async_speed_limit::Limiter,
    down: async_speed_limit::Limiter,
}

impl AslPair {
    fn of(&self, dir: Dir) -> &async_speed_limit::Limiter {
        match dir {
            Dir::Up => &self.up,
            Dir::Down => &self.down,
        }
    }
}

impl Limits for AslPair {
    fn set(&self, dir: Dir, limit: Option<u64>) {
        self.of(dir)
            .set_speed_limit(limit.map_or(f64::INFINITY, |l| l as f64));
    }

    /// Bytes its wrappers read or wrote, each counted once the read or write returned.
    fn passed(&self, dir: Dir) -> u64 {
        self.of(dir).total_bytes_consumed() as u64
    }

    fn close(&self) -> Pin<Box<dyn Future<Output = ()> + '_>> {
        Box::pin(std::future::ready(()))
    }
}

/// Takes bytes from `r` into `counts[i]` until `stop`: as fast as it can, or at `rate` bytes
/// per second in 10 ms steps.
async fn take_bytes<R: AsyncRead + Unpin>(
    mut r: R,
    rate: Option<u64>,
    counts: Arc<[AtomicU64]>,
    i: usize,
    stop: Arc<AtomicBool>,
) {
    let mut buf = vec![0u8; CHUNK];
    let Some(rate) = rate else {
        while let Ok(n @ 1..) = r.read(&mut buf).await {
            counts[i].fetch_add(n as u64, Ordering::Relaxed);
            if stop.load(Ordering::Relaxed) {
                break;
            }
        }
        return;
    };
    let step = Duration::from_millis(10);
    let per_step = (rate / 100).max(1);
    let start = Instant::now();
    let mut taken = 0u64;
    let mut tick = tokio::time::interval(step);
    while !stop.load(Ordering::Relaxed) {
        tick.tick().await;
        let due = (rate as f64 * start.elapsed().as_secs_f64()) as u64;
        // A reader that found nothing to read does not make up for it in a burst later: at most
        // two steps of credit carry over.
        taken = taken.max(due.saturating_sub(2 * per_step));
        let mut want = usize::try_from(due - taken).unwrap_or(CHUNK).min(CHUNK);
        while want > 0 {
            let Ok(n @ 1..) = r.read(&mut buf[..want]).await else {
                return;
            };
            counts[i].fetch_add(n as u64, Ordering::Relaxed);
            taken += n as u64;
            want -= n;
        }
    }
}

/// The peer of the lanes. Each connection opens with a 7-byte header: b'U' (the client
/// uploads) or b'D' (it downloads), the lane's index (u16 LE) and the rate the peer drains an
/// upload at (u32 LE, bytes per second; 0: as fast as it can). Uploads are counted into
/// `counts`; downloads are flooded. Receive buffers: [`LANE_SOCKET_BUFFER`].
fn spawn_lane_peer(
    counts: Arc<[AtomicU64]>,
) -> (
    std::net::SocketAddr,
    Arc<AtomicBool>,
    std::thread::JoinHandle<()>,
) {
    let stop = Arc::new(AtomicBool::new(false));
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(LANE_SOCKET_BUFFER).unwrap();
    socket.bind(([127, 0, 0, 1], 0).into()).unwrap();
    let addr = socket.local_addr().unwrap();
    // Listening before the peer's thread starts, so that no connection is refused: the
    // listener joins the runtime it is made in, which then moves to the thread.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let listener = {
        let _in_rt = rt.enter();
        socket.listen(1024).unwrap()
    };
    let s = Arc::clone(&stop);
    let handle = std::thread::spawn(move || {
        pin_thread(1);
        rt.block_on(async move {
            while !s.load(Ordering::Relaxed) {
                let Ok(Ok((mut sock, _))) =
                    tokio::time::timeout(Duration::from_millis(20), listener.accept()).await
                else {
                    continue;
                };
                let counts = Arc::clone(&counts);
                let stop = Arc::clone(&s);
                tokio::spawn(async move {
                    let mut head = [0u8; 7];
                    if sock.read_exact(&mut head).await.is_err() {
                        return;
                    }
                    if head[0] == b'U' {
                        let i = usize::from(u16::from_le_bytes([head[1], head[2]]));
                        let rate = u32::from_le_bytes([head[3], head[4], head[5], head[6]]);
                        let rate = (rate > 0).then_some(u64::from(rate));
                        take_bytes(sock, rate, counts, i, stop).await;
                    } else {
                        let chunk = vec![7u8; CHUNK];
                        while !stop.load(Ordering::Relaxed) && sock.write_all(&chunk).await.is_ok()
                        {
                        }
                    }
                });
            }
        });
    });
    (addr, stop, handle)
}

/// Connects `lane` number `i` to the peer and announces it. Uploads send through a buffer of
/// [`LANE_SOCKET_BUFFER`].
async fn connect_lane(addr: std::net::SocketAddr, i: usize, lane: Lane) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    if lane.dir == Dir::Up {
        socket.set_send_buffer_size(LANE_SOCKET_BUFFER).unwrap();
    }
    let mut sock = socket.connect(addr).await.unwrap();
    let _ = sock.set_nodelay(true);
    let mut head = [0u8; 7];
    head[0] = if lane.dir == Dir::Up { b'U' } else { b'D' };
    head[1..3].copy_from_slice(&u16::try_from(i).unwrap_or(u16::MAX).to_le_bytes());
    let peer_rate = if lane.dir == Dir::Up { lane.slow } else { None };
    let peer_rate = u32::try_from(peer_rate.unwrap_or(0)).unwrap_or(u32::MAX);
    head[3..].copy_from_slice(&peer_rate.to_le_bytes());
    sock.write_all(&head).await.unwrap();
    sock
}

/// Opens the lanes over one fairio scheduler limited to `limit` in each direction that has
/// lanes. Uploaders keep their write queue full with `Connection::write`; downloaders read
/// through `Connection::into_io`, the same reading loop as the other contenders'.
async fn fairio_lanes<P: Policy>(
    policy: P,
    params: impl Fn(u32) -> P::Params,
    lanes: &[Lane],
    limit: u64,
    addr: std::net::SocketAddr,
    counts: &Arc<[AtomicU64]>,
    stop: &Arc<AtomicBool>,
) -> Scheduler<P> {
    let limited = |d: Dir| lanes.iter().any(|l| l.dir == d).then_some(limit);
    let config = Config::new(CHUNK)
        .max_upload_speed(limited(Dir::Up))
        .max_download_speed(limited(Dir::Down))
        .read_queue_size(Some(256 * 1024))
        .write_queue_size(Some(256 * 1024));
    let sched = Scheduler::with_policy(config, policy).unwrap();
    for (i, &lane) in lanes.iter().enumerate() {
        let sock = connect_lane(addr, i, lane).await;
        let conn = sched.register_with(sock, params(lane.weight)).unwrap();
        let stop = Arc::clone(stop);
        match lane.dir {
            Dir::Up => {
                tokio::spawn(async move {
                    let msg = message(CHUNK);
                    while !stop.load(Ordering::Relaxed) && conn.write(msg.clone()).await.is_ok() {}
                });
            }
            Dir::Down => {
                let io = conn.into_io();
                tokio::spawn(take_bytes(io, lane.slow, Arc::clone(counts), i, stop));
            }
        }
    }
    sched
}

/// Opens the lanes, each stream wrapped in its direction's shared async-speed-limit limiter.
async fn asl_lanes(
    lanes: &[Lane],
    limit: u64,
    addr: std::net::SocketAddr,
    counts: &Arc<[AtomicU64]>,
    stop: &Arc<AtomicBool>,
) -> AslPair {
    let limits = AslPair {
        up: async_speed_limit::Limiter::new(limit as f64),
        down: async_speed_limit::Limiter::new(limit as f64),
    };
    for (i, &lane) in lanes.iter().enumerate() {
        let sock = connect_lane(addr, i, lane).await;
        let mut stream = limits.of(lane.dir).clone().limit(sock);
        let stop = Arc::clone(stop);
        match lane.dir {
            Dir::Up => {
                tokio::spawn(async move {
                    let msg = message(CHUNK);
                    while !stop.load(Ordering::Relaxed) && stream.write_all(&msg).await.is_ok() {}
                });
            }
            Dir::Down => {
                tokio::spawn(take_bytes(stream, lane.slow, Arc::clone(counts), i, stop));
            }
        }
    }
    limits
}

/// Runs `lanes` under `contender` limited to `limit`: once every lane has moved its first byte
/// (at most 10 s), `timeline` runs on the measured thread with the limiter and the per-lane
/// byte counts, and its result is returned.
fn run_lanes<T, F>(contender: Contender, lanes: Vec<Lane>, limit: u64, timeline: F) -> T
where
    T: Send + 'static,
    F: AsyncFnOnce(&dyn Limits, &[AtomicU64]) -> T + Send + 'static,
{
    let counts: Arc<[AtomicU64]> = lanes.iter().map(|_| AtomicU64::new(0)).collect();
    let (addr, peer_stop, peer) = spawn_lane_peer(Arc::clone(&counts));
    let measured_side = std::thread::spawn(move || {
        pin_thread(0);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let stop = Arc::new(AtomicBool::new(false));
            let (c, s) = (&counts, &stop);
            let limits: Box<dyn Limits> = match contender {
                Contender::Equal => {
                    Box::new(fairio_lanes(EqualShare, |_| (), &lanes, limit, addr, c, s).await)
                }
                Contender::Weighted => Box::new(
                    fairio_lanes(
                        Weighted,
                        |w| Weight::new(w).unwrap_or_default(),
                        &lanes,
                        limit,
                        addr,
                        c,
                        s,
                    )
                    .await,
                ),
                Contender::Window => {
                    Box::new(fairio_lanes(WindowQuota, |_| (), &lanes, limit, addr, c, s).await)
                }
                Contender::Asl => Box::new(asl_lanes(&lanes, limit, addr, c, s).await),
                Contender::Raw => unreachable!("the lane scenarios run limiters only"),
            };
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline && counts.iter().any(|c| c.load(Ordering::Relaxed) == 0)
            {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            let out = timeline(&*limits, &counts).await;
            stop.store(true, Ordering::Relaxed);
            limits.close().await;
            out
        })
    });
    let out = measured_side.join().unwrap();
    peer_stop.store(true, Ordering::Relaxed);
    let _ = peer.join();
    out
}

fn snapshot(counts: &[AtomicU64]) -> Vec<u64> {
    counts.iter().map(|c| c.load(Ordering::Relaxed)).collect()
}

/// `passed` in both directions, uploads first.
fn passed_both(limits: &dyn Limits) -> [u64; 2] {
    [limits.passed(Dir::Up), limits.passed(Dir::Down)]
}

/// What the lanes moved over the measured interval of the `slow` scenario.
#[derive(Debug)]
struct SlowRun {
    /// Per lane.
    bytes: Vec<u64>,
    /// What the limiter let through, uploads and downloads.
    passed: [u64; 2],
    elapsed: f64,
    /// Cumulative bytes per lane since the interval began, every 250 ms, from 0.
    samples: Vec<Vec<u64>>,
    /// `passed_both` at each sample.
    passed_samples: Vec<[u64; 2]>,
}

async fn slow_timeline(
    limits: &dyn Limits,
    counts: &[AtomicU64],
    settle: Duration,
    measure: Duration,
) -> SlowRun {
    tokio::time::sleep(settle).await;
    let (c0, p0, start) = (snapshot(counts), passed_both(limits), Instant::now());
    let since = |now: Vec<u64>| -> Vec<u64> { now.iter().zip(&c0).map(|(b, a)| b - a).collect() };
    let mut samples = vec![vec![0; counts.len()]];
    let mut passed_samples = vec![p0];
    let mut next = start;
    while next < start + measure {
        next += Duration::from_millis(250);
        tokio::time::sleep_until(next.into()).await;
        samples.push(since(snapshot(counts)));
        passed_samples.push(passed_both(limits));
    }
    let (c1, p1, elapsed) = (snapshot(counts), passed_both(limits), start.elapsed());
    SlowRun {
        bytes: since(c1),
        passed: [p1[0] - p0[0], p1[1] - p0[1]],
        elapsed: elapsed.as_secs_f64(),
        samples,
        passed_samples,
    }
}

/// One cycle of the `relimit` scenario: bytes let through per direction (uploads first) while
/// the limit was lifted and in the interval after it came back.
#[derive(Debug)]
struct Cycle {
    open: [u64; 2],
    open_secs: f64,
    after: [u64; 2],
    after_secs: f64,
}

async fn relimit_timeline(
    limits: &dyn Limits,
    dirs: &[Dir],
    limit: u64,
    settle: Duration,
    cycles: usize,
    open: Duration,
    after: Duration,
) -> Vec<Cycle> {
    tokio::time::sleep(settle).await;
    let mut out = Vec::new();
    for _ in 0..cycles {
        let (p0, t0) = (passed_both(limits), Instant::now());
        for &d in dirs {
            limits.set(d, None);
        }
        tokio::time::sleep(open).await;
        for &d in dirs {
            limits.set(d, Some(limit));
        }
        let (p1, t1) = (passed_both(limits), Instant::now());
        tokio::time::sleep(after).await;
        let p2 = passed_both(limits);
        out.push(Cycle {
            open: [p1[0] - p0[0], p1[1] - p0[1]],
            open_secs: (t1 - t0).as_secs_f64(),
            after: [p2[0] - p1[0], p2[1] - p1[1]],
            after_secs: t1.elapsed().as_secs_f64(),
        });
    }
    out
}

fn dir_name(dir: Dir) -> &'static str {
    match dir {
        Dir::Up => "upload",
        Dir::Down => "download",
    }
}

/// Quick runs (CI) move uploads and downloads at once, over lanes of their own, to halve the
/// time; full runs measure each direction alone. `--dir` keeps one.
fn dir_sets(quick: bool) -> Vec<Vec<Dir>> {
    match (DIR_FILTER.get(), quick) {
        (Some(&d), _) => vec![vec![d]],
        (None, true) => vec![vec![Dir::Up, Dir::Down]],
        (None, false) => vec![vec![Dir::Up], vec![Dir::Down]],
    }
}

/// Weights 1, 2, 3, 4, 1, ... under fairio's Weighted policy, 1 under the others.
fn lane_weight(c: Contender, i: usize) -> u32 {
    if c == Contender::Weighted {
        1 + (i % 4) as u32
    } else {
        1
    }
}

/// k of N lanes are read slowly, under a global limit: is the limit still used in full (the
/// slow lanes' unused share going to the others), and shared fairly among the fast lanes?
fn slow(quick: bool) {
    // (N, k slow, limit, slow rate)
    let all: [(usize, usize, u64, u64); 2] =
        [(8, 4, 8 * MIB, 100 * KIB), (16, 14, 4 * MIB, 20 * KIB)];
    let settings = if quick { &all[..1] } else { &all[..] };
    let (settle, measure) = if quick { (0.5, 0.5) } else { (2.0, 5.0) };
    for &(n, k, limit, rate) in settings.iter().filter(|s| selected_n(s.0)) {
        for dirs in dir_sets(quick) {
            for c in Contender::LIMITERS.into_iter().filter(|c| selected(*c)) {
                let lanes: Vec<Lane> = dirs
                    .iter()
                    .flat_map(|&dir| {
                        (0..n).map(move |i| Lane {
                            dir,
                            slow: (i < k).then_some(rate),
                            weight: lane_weight(c, i),
                        })
                    })
                    .collect();
                let (s, m) = (
                    Duration::from_secs_f64(settle),
                    Duration::from_secs_f64(measure),
                );
                let run = run_lanes(c, lanes.clone(), limit, async move |l, counts| {
                    slow_timeline(l, counts, s, m).await
                });
                for &dir in &dirs {
                    emit(slow_row(c, dir, &lanes, &run, limit, rate, dirs.len() > 1));
                }
            }
        }
    }
}

/// The `slow` scenario's figures for the lanes of `dir`.
fn slow_row(
    c: Contender,
    dir: Dir,
    lanes: &[Lane],
    run: &SlowRun,
    limit: u64,
    rate: u64,
    concurrent: bool,
) -> serde_json::Value {
    let idx: Vec<usize> = (0..lanes.len()).filter(|&i| lanes[i].dir == dir).collect();
    let (slow, fast): (Vec<usize>, Vec<usize>) =
        idx.iter().partition(|&&i| lanes[i].slow.is_some());
    let rate_of = |i: usize| run.bytes[i] as f64 / run.elapsed;
    let l = limit as f64;
    let total: f64 = idx.iter().map(|&i| rate_of(i)).sum();
    let slow_rates: Vec<f64> = slow.iter().map(|&i| rate_of(i)).collect();
    let slow_total: f64 = slow_rates.iter().sum();
    let slow_vs: Vec<f64> = slow_rates.iter().map(|r| r / rate as f64).collect();
    let w = |i: usize| f64::from(lanes[i].weight);
    let wsum: f64 = fast.iter().map(|&i| w(i)).sum();
    // Each fast lane's expected part of what the slow ones leave: (L - slow total) by weight.
    let fast_vs: Vec<f64> = fast
        .iter()
        .map(|&i| rate_of(i) / ((l - slow_total) * w(i) / wsum))
        .collect();
    let per_weight =
        |bytes: &[u64]| -> Vec<f64> { fast.iter().map(|&i| bytes[i] as f64 / w(i)).collect() };
    let mut min_window_jain: f64 = 1.0;
    for (k, pair) in run.samples.windows(2).enumerate() {
        let d: Vec<u64> = pair[1].iter().zip(&pair[0]).map(|(b, a)| b - a).collect();
        min_window_jain = min_window_jain.min(jain(&per_weight(&d)));
        if std::env::var_os("FAIRIO_BENCH_DEBUG").is_some() {
            let used = idx.iter().map(|&i| d[i]).sum::<u64>() as f64 / 0.25 / l;
            let at = usize::from(dir == Dir::Down);
            let (p0, p1) = (run.passed_samples[k][at], run.passed_samples[k + 1][at]);
            let at_limiter = (p1 - p0) as f64 / 0.25 / l;
            let per_lane: Vec<u64> = idx.iter().map(|&i| d[i]).collect();
            eprintln!(
                "slow {} {} window {k}: used {used:.3} (at the limiter {at_limiter:.3}), bytes \
                 per lane {per_lane:?}",
                c.name(),
                dir_name(dir)
            );
        }
    }
    let fold = |xs: &[f64], f: fn(f64, f64) -> f64, init: f64| xs.iter().copied().fold(init, f);
    let passed = run.passed[usize::from(dir == Dir::Down)];
    json!({"scenario": "slow", "contender": c.name(), "direction": dir_name(dir),
    "n": idx.len(), "k": slow.len(), "limit": limit, "slow_rate": rate,
    "concurrent_directions": concurrent, "measure_secs": run.elapsed,
    "used": total / l, "used_at_limiter": passed as f64 / run.elapsed / l,
    "slow_rates": slow_rates, "slow_vs_rate_min": fold(&slow_vs, f64::min, f64::INFINITY),
    "slow_vs_rate_max": fold(&slow_vs, f64::max, 0.0),
    "fast_weights": fast.iter().map(|&i| lanes[i].weight).collect::<Vec<_>>(),
    "fast_jain": jain(&per_weight(&run.bytes)), "fast_min_window_jain": min_window_jain,
    "fast_vs_expected": fast_vs,
    "fast_largest_error": fast_vs.iter().map(|v| (v - 1.0).abs()).fold(0.0, f64::max)})
}

/// Lifts the limit for 100 ms and imposes it again, cycle after cycle: how much more than the
/// limit passes in the interval after it came back?
fn relimit(quick: bool) {
    let (n, limit) = (4, MIB);
    let (settle, cycles, after) = if quick { (0.2, 2, 0.4) } else { (1.0, 5, 2.0) };
    let open = Duration::from_millis(100);
    // The most a limit may let through in T seconds: L·T + B.
    let allowance = (64 * KIB).max(limit / 20);
    for dirs in dir_sets(quick) {
        for c in Contender::LIMITERS.into_iter().filter(|c| selected(*c)) {
            let lanes: Vec<Lane> = dirs
                .iter()
                .flat_map(|&dir| {
                    (0..n).map(move |i| Lane {
                        dir,
                        slow: None,
                        weight: lane_weight(c, i),
                    })
                })
                .collect();
            let d = dirs.clone();
            let (s, a) = (
                Duration::from_secs_f64(settle),
                Duration::from_secs_f64(after),
            );
            let run = run_lanes(c, lanes, limit, async move |l, _| {
                relimit_timeline(l, &d, limit, s, cycles, open, a).await
            });
            for &dir in &dirs {
                let k = usize::from(dir == Dir::Down);
                let multiples: Vec<f64> = run
                    .iter()
                    .map(|y| y.after[k] as f64 / (limit as f64 * y.after_secs))
                    .collect();
                emit(
                    json!({"scenario": "relimit", "contender": c.name(), "direction": dir_name(dir),
                    "n": n, "limit": limit, "concurrent_directions": dirs.len() > 1,
                    "after_secs": after, "allowance_bytes": allowance,
                    "target_multiple": 1.0 + allowance as f64 / (limit as f64 * after),
                    "multiples": multiples,
                    "max_multiple": multiples.iter().copied().fold(0.0, f64::max),
                    "excess_bytes": run.iter().map(|y| y.after[k] as f64 - limit as f64 * y.after_secs).collect::<Vec<_>>(),
                    "open_multiples": run.iter().map(|y| y.open[k] as f64 / (limit as f64 * y.open_secs)).collect::<Vec<_>>()}),
                );
            }
        }
    }
}

/// A named scenario, run quick or full.
type Scenario = (&'static str, fn(bool));

/// `--only NAME` (repeatable) and `--n N` (repeatable) narrow the overhead, accuracy, fairness
/// and slow scenarios down (`--only` the relimit scenario too), to
/// profile one contender at one size (ratios are then to raw tokio only if it ran too).
static FILTERS: std::sync::OnceLock<(Vec<String>, Vec<usize>)> = std::sync::OnceLock::new();

fn selected(c: Contender) -> bool {
    FILTERS
        .get()
        .is_none_or(|(only, _)| only.is_empty() || only.iter().any(|o| o == c.name()))
}

fn selected_n(n: usize) -> bool {
    FILTERS
        .get()
        .is_none_or(|(_, ns)| ns.is_empty() || ns.contains(&n))
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let quick = args.iter().any(|a| a == "--quick");
    let mut only = Vec::new();
    let mut ns = Vec::new();
    let mut positional = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--only" => only.extend(it.next().cloned()),
            "--msg" => match it.next().and_then(|v| v.parse().ok()).filter(|m| *m > 0) {
                Some(m) => {
                    let _ = MSG_SIZE.set(m);
                }
                None => {
                    eprintln!("--msg takes a message size in bytes, e.g. --msg 1024");
                    std::process::exit(2);
                }
            },
            "--dir" => match it.next().map(String::as_str) {
                Some("up") => {
                    let _ = DIR_FILTER.set(Dir::Up);
                }
                Some("down") => {
                    let _ = DIR_FILTER.set(Dir::Down);
                }
                _ => {
                    eprintln!("--dir takes up or down, e.g. --dir down");
                    std::process::exit(2);
                }
            },
            "--n" => match it.next().and_then(|v| v.parse().ok()) {
                Some(n) => ns.push(n),
                None => {
                    eprintln!("--n takes a connection count, e.g. --n 512");
                    std::process::exit(2);
                }
            },
            _ if a.starts_with("--") => {}
            _ => positional.push(a.as_str()),
        }
    }
    let _ = FILTERS.set((only, ns));
    let which = positional.first().copied().unwrap_or("all");
    let scenarios: [Scenario; 10] = [
        ("overhead", overhead),
        ("accuracy", accuracy),
        ("fairness", fairness),
        ("weighted", weighted),
        ("join", join),
        ("sparse", sparse),
        ("scale", scale),
        ("slow", slow),
        ("relimit", relimit),
        ("groups", groups::groups),
    ];
    let mut ran = false;
    for (name, f) in scenarios {
        if which == "all" || which == name {
            f(quick);
            ran = true;
        }
    }
    if !ran {
        eprintln!(
            "unknown scenario '{which}': one of overhead, accuracy, fairness, weighted, join, sparse, scale, slow, relimit, groups, all"
        );
        std::process::exit(2);
    }
}
