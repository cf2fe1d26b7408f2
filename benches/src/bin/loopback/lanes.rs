//! The lanes of the `slow` and `relimit` scenarios. Each connection (a "lane") moves bytes one
//! way only, and a slow one is read at a fixed rate: by the peer (uploads) or by the user on the
//! measured side (downloads). Bytes are counted where they end up: at the peer for uploads, at
//! the user for downloads. What the limiter under test let through is read from the limiter
//! itself (fairio's global statistics, async-speed-limit's consumed bytes).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use fairio::{Policy, Scheduler};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use crate::CHUNK;
use crate::client::message;
use crate::contender::{Contender, WithPolicy, with_policy};
use crate::dir::Dir;
use crate::limits::{AslPair, Limits};
use crate::peer::spawn_lane_peer;
use crate::sys::{pin_thread, runtime};

/// The socket buffers of upload lanes, on both ends (Linux doubles the figure). Left to
/// autotuning, a slowly drained socket took in about 6.5 MB, at its full share of the limit,
/// for 6 s before it pushed back: the peer then saw the limit's share of the slow lanes go to
/// the kernel, not to the fast lanes, for longer than any settle time.
pub(crate) const LANE_SOCKET_BUFFER: u32 = 64 * 1024;

/// The socket buffers of the lanes: the kernel's (autotuned, as deployments run) or fixed at
/// [`LANE_SOCKET_BUFFER`] on both ends of upload lanes (as the benchmark ran before fairio
/// bounded unsent bytes itself).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Buffers {
    Kernel,
    Fixed,
}

impl Buffers {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Kernel => "kernel-default",
            Self::Fixed => "fixed-64KiB",
        }
    }
}

/// One connection of the `slow` and `relimit` scenarios.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Lane {
    pub(crate) dir: Dir,
    /// The rate its reader takes bytes at (bytes per second); `None`: as fast as it can.
    pub(crate) slow: Option<u64>,
    /// Its weight under fairio's Weighted policy.
    pub(crate) weight: u32,
}

/// Weights 1, 2, 3, 4, 1, ... under fairio's Weighted policy, 1 under the others.
fn lane_weight(c: Contender, i: usize) -> u32 {
    if c == Contender::Weighted {
        1 + (i % 4) as u32
    } else {
        1
    }
}

/// `n` lanes in each of `dirs`, weighted for `contender` by [`lane_weight`]; lane `i` of a
/// direction reads at `slow(i)`.
pub(crate) fn lanes(
    dirs: &[Dir],
    n: usize,
    contender: Contender,
    slow: impl Fn(usize) -> Option<u64> + Copy,
) -> Vec<Lane> {
    dirs.iter()
        .flat_map(|&dir| {
            (0..n).map(move |i| Lane {
                dir,
                slow: slow(i),
                weight: lane_weight(contender, i),
            })
        })
        .collect()
}

/// Runs `lanes` under `contender` limited to `limit`: once every lane has moved its first byte
/// (at most 10 s), `timeline` runs on the measured thread with the limiter and the per-lane
/// byte counts, and its result is returned.
pub(crate) fn run_lanes<T, F>(
    contender: Contender,
    lanes: Vec<Lane>,
    limit: u64,
    buffers: Buffers,
    timeline: F,
) -> T
where
    T: Send + 'static,
    F: AsyncFnOnce(&dyn Limits, &[AtomicU64]) -> T + Send + 'static,
{
    let counts: Arc<[AtomicU64]> = lanes.iter().map(|_| AtomicU64::new(0)).collect();
    let (addr, peer_stop, peer) = spawn_lane_peer(Arc::clone(&counts), buffers);
    let measured_side = std::thread::spawn(move || {
        pin_thread(0);
        runtime().block_on(async move {
            let stop = Arc::new(AtomicBool::new(false));
            let open = Open {
                lanes: &lanes,
                limit,
                addr,
                buffers,
                counts: &counts,
                stop: &stop,
            };
            let limits: Box<dyn Limits> = match contender {
                Contender::Asl => Box::new(open.asl().await),
                Contender::Raw | Contender::Paced => {
                    unreachable!("the lane scenarios run limiters only")
                }
                Contender::Equal | Contender::Weighted | Contender::Window => {
                    with_policy(contender, open).await
                }
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

/// The byte count of every lane, now.
pub(crate) fn snapshot(counts: &[AtomicU64]) -> Vec<u64> {
    counts.iter().map(|c| c.load(Ordering::Relaxed)).collect()
}

/// Takes bytes from `r` into `counts[i]` until `stop`: as fast as it can, or at `rate` bytes
/// per second in 10 ms steps.
pub(crate) async fn take_bytes<R: AsyncRead + Unpin>(
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

/// Connects `lane` number `i` to the peer and announces it. Uploads send through a buffer of
/// [`LANE_SOCKET_BUFFER`] under [`Buffers::Fixed`].
async fn connect_lane(addr: SocketAddr, i: usize, lane: Lane, buffers: Buffers) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    if lane.dir == Dir::Up && buffers == Buffers::Fixed {
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

/// Opening the lanes under a limiter of `limit` bytes per second in each direction that has
/// lanes: through fairio (as a [`WithPolicy`], under the contender's policy) or through
/// async-speed-limit ([`Open::asl`]).
struct Open<'a> {
    lanes: &'a [Lane],
    limit: u64,
    addr: SocketAddr,
    buffers: Buffers,
    counts: &'a Arc<[AtomicU64]>,
    stop: &'a Arc<AtomicBool>,
}

impl Open<'_> {
    /// Opens the lanes, each stream wrapped in its direction's shared async-speed-limit limiter.
    async fn asl(self) -> AslPair {
        let limits = AslPair::new(self.limit);
        for (i, &lane) in self.lanes.iter().enumerate() {
            let sock = connect_lane(self.addr, i, lane, self.buffers).await;
            let mut stream = limits.of(lane.dir).clone().limit(sock);
            let stop = Arc::clone(self.stop);
            match lane.dir {
                Dir::Up => {
                    tokio::spawn(async move {
                        let msg = message(CHUNK);
                        while !stop.load(Ordering::Relaxed) && stream.write_all(&msg).await.is_ok()
                        {
                        }
                    });
                }
                Dir::Down => {
                    let counts = Arc::clone(self.counts);
                    tokio::spawn(take_bytes(stream, lane.slow, counts, i, stop));
                }
            }
        }
        limits
    }
}

/// Opens the lanes over one fairio scheduler. Uploaders keep their write queue full with
/// `Connection::write`; downloaders read through `Connection::into_io`, the same reading loop
/// as the other contenders'.
impl WithPolicy for Open<'_> {
    type Output = Box<dyn Limits>;

    async fn call<P: Policy>(self, policy: P, params: fn(u32) -> P::Params) -> Self::Output {
        let limited = |d: Dir| self.lanes.iter().any(|l| l.dir == d).then_some(self.limit);
        let config = crate::args::config(CHUNK)
            .max_upload_speed(limited(Dir::Up))
            .max_download_speed(limited(Dir::Down))
            .read_queue_size(Some(256 * 1024))
            .write_queue_size(Some(256 * 1024));
        let sched = Scheduler::with_policy(config, policy).unwrap();
        for (i, &lane) in self.lanes.iter().enumerate() {
            let sock = connect_lane(self.addr, i, lane, self.buffers).await;
            let conn = sched.register_with(sock, params(lane.weight)).unwrap();
            let stop = Arc::clone(self.stop);
            match lane.dir {
                Dir::Up => {
                    tokio::spawn(async move {
                        let msg = message(CHUNK);
                        while !stop.load(Ordering::Relaxed) && conn.write(msg.clone()).await.is_ok()
                        {
                        }
                    });
                }
                Dir::Down => {
                    let io = conn.into_io();
                    let counts = Arc::clone(self.counts);
                    tokio::spawn(take_bytes(io, lane.slow, counts, i, stop));
                }
            }
        }
        Box::new(sched)
    }
}
