//! The measured clients of every contender: backlogged readers or writers, and the sparse
//! writer whose delays the peer records. A fairio client goes through a scheduler, an
//! async-speed-limit client through the shared limiter, a raw client through its socket alone.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use fairio::{Connection, Policy, Scheduler};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::CHUNK;
use crate::contender::Contender;
use crate::dir::Dir;
use crate::measure::Spec;

/// A stream type for boxing raw and limited sockets alike.
trait Stream: AsyncRead + AsyncWrite + Send + Unpin {}

impl<T: AsyncRead + AsyncWrite + Send + Unpin> Stream for T {}

/// A raw socket, or one wrapped in async-speed-limit's limiter `asl`.
fn raw_or_limited(sock: TcpStream, asl: Option<&async_speed_limit::Limiter>) -> Box<dyn Stream> {
    match asl {
        Some(l) => Box::new(l.clone().limit(sock)),
        None => Box::new(sock),
    }
}

/// The message of `size` bytes every uploading client sends: one buffer for all, whatever the
/// contender, so that no contender pays for more cache misses on its source than another.
pub(crate) fn message(size: usize) -> Bytes {
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
pub(crate) async fn client<P: Policy>(
    spec: &Spec,
    addr: SocketAddr,
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
    let mut stream = raw_or_limited(sock, asl);
    // raw-paced: this connection's equal part of the limit, in bytes per second.
    let pace = (spec.contender == Contender::Paced)
        .then(|| spec.limit.map(|l| l as f64 / spec.n as f64))
        .flatten();
    tokio::spawn(async move {
        let start = tokio::time::Instant::now();
        let mut moved = 0u64;
        // Sleeps until `moved` bytes are due at the pace.
        let paced =
            |moved: u64| pace.map(|rate| start + Duration::from_secs_f64(moved as f64 / rate));
        match dir {
            Dir::Down => {
                let mut buf = vec![0u8; CHUNK];
                while let Ok(n) = stream.read(&mut buf).await {
                    if n == 0 || stop.load(Ordering::Relaxed) {
                        break;
                    }
                    count.fetch_add(n as u64, Ordering::Relaxed);
                    moved += n as u64;
                    if let Some(at) = paced(moved) {
                        tokio::time::sleep_until(at).await;
                    }
                }
            }
            Dir::Up => {
                let msg = message(spec_msg);
                while !stop.load(Ordering::Relaxed) && stream.write_all(&msg).await.is_ok() {
                    count.fetch_add(msg.len() as u64, Ordering::Relaxed);
                    moved += msg.len() as u64;
                    if let Some(at) = paced(moved) {
                        tokio::time::sleep_until(at).await;
                    }
                }
            }
        }
    });
    None
}

/// The sparse client: 100-byte timestamped messages every 10 ms.
pub(crate) async fn sparse_client<P: Policy>(
    addr: SocketAddr,
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
    let mut stream = raw_or_limited(sock, asl);
    tokio::spawn(async move {
        while !stop.load(Ordering::Relaxed) {
            tick.tick().await;
            if stream.write_all(&stamp()).await.is_err() {
                break;
            }
        }
    });
}
