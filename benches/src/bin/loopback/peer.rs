//! The peers: servers on a thread and runtime of their own, apart from the measured side. One
//! floods or drains the clients of the measured scenarios; the other serves the lanes of the
//! `slow` and `relimit` scenarios.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket};

use crate::CHUNK;
use crate::dir::Dir;
use crate::lanes::{Buffers, LANE_SOCKET_BUFFER, take_bytes};
use crate::sys::{pin_thread, runtime};

/// The peer: floods (Down) or drains (Up) every connection; a connection that starts with
/// b'S' carries timestamped 100-byte messages whose delays are recorded.
pub(crate) fn spawn_peer(
    dir: Dir,
    epoch: Instant,
    delays: Arc<Mutex<Vec<f64>>>,
    received: Arc<AtomicU64>,
) -> (SocketAddr, Arc<AtomicBool>) {
    let stop = Arc::new(AtomicBool::new(false));
    let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    std_listener.set_nonblocking(true).unwrap();
    let addr = std_listener.local_addr().unwrap();
    let s = Arc::clone(&stop);
    std::thread::spawn(move || {
        pin_thread(1);
        runtime().block_on(async move {
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

/// The peer of the lanes. Each connection opens with a 7-byte header: b'U' (the client
/// uploads) or b'D' (it downloads), the lane's index (u16 LE) and the rate the peer drains an
/// upload at (u32 LE, bytes per second; 0: as fast as it can). Uploads are counted into
/// `counts`; downloads are flooded. Receive buffers: the kernel's, or [`LANE_SOCKET_BUFFER`]
/// under [`Buffers::Fixed`].
pub(crate) fn spawn_lane_peer(
    counts: Arc<[AtomicU64]>,
    buffers: Buffers,
) -> (SocketAddr, Arc<AtomicBool>, JoinHandle<()>) {
    let stop = Arc::new(AtomicBool::new(false));
    let socket = TcpSocket::new_v4().unwrap();
    if buffers == Buffers::Fixed {
        socket.set_recv_buffer_size(LANE_SOCKET_BUFFER).unwrap();
    }
    socket.bind(([127, 0, 0, 1], 0).into()).unwrap();
    let addr = socket.local_addr().unwrap();
    // Listening before the peer's thread starts, so that no connection is refused: the
    // listener joins the runtime it is made in, which then moves to the thread.
    let rt = runtime();
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
