//! Macro-benchmarks over loopback TCP, side by side in one run: raw tokio, fairio with each
//! policy, and one shared async-speed-limit limiter. Prints one JSON object per run.
//!
//! `cargo run --release -p fairio-benches --bin loopback -- <scenario|all> [--quick]`
//! `[--only CONTENDER]... [--n N]... [--msg BYTES] [--dir up|down]`
//!
//! Environment: `FAIRIO_BENCH_PIN=1` pins the peer and the measured side to a core each (the
//! full run in BENCHMARKS.md does); `FAIRIO_BENCH_DEBUG=1` prints every 250 ms window whose
//! Jain index is below 0.97, with its per-connection byte counts, to stderr.
//!
//! The peer (a flooding or draining server) runs on its own thread and runtime; the measured
//! side (clients and the limiter under test) on another, single-threaded, whose CPU time is read
//! from `/proc/thread-self/schedstat`.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use fairio::{Config, Connection, EqualShare, Policy, Scheduler, Weight, Weighted, WindowQuota};
use fairio_stats::jain;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

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

/// `--dir up|down`: only uploads or only downloads in the overhead scenario.
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

/// A named scenario, run quick or full.
type Scenario = (&'static str, fn(bool));

/// `--only NAME` (repeatable) and `--n N` (repeatable) narrow the overhead, accuracy and fairness
/// scenarios down, to
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
    let scenarios: [Scenario; 7] = [
        ("overhead", overhead),
        ("accuracy", accuracy),
        ("fairness", fairness),
        ("weighted", weighted),
        ("join", join),
        ("sparse", sparse),
        ("scale", scale),
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
            "unknown scenario '{which}': one of overhead, accuracy, fairness, weighted, join, sparse, scale, all"
        );
        std::process::exit(2);
    }
}
