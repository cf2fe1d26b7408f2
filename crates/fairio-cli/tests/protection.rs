//! The proxy cannot be knocked over: pairs whose upstream stays quiet are closed after the
//! half-close timeout, silent clients after the idle timeout, a flood meets the connection
//! limit, and running short of descriptors is survived. Real clients, loopback only.
#![cfg(target_os = "linux")]

mod common;

use std::io::Read;
use std::net::{Shutdown, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::{BIN, Proxy, free_port, start_proxy};

/// An upstream that greets each connection with "hi\n" and then says nothing: it neither
/// sends nor closes, not even when the client half-closes. It counts the connections it
/// accepted.
fn quiet_upstream() -> (u16, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    listener.set_nonblocking(true).unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let a = Arc::clone(&accepted);
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            while let Ok((mut sock, _)) = listener.accept().await {
                a.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    use tokio::io::{AsyncReadExt, AsyncWriteExt};
                    let _ = sock.write_all(b"hi\n").await;
                    let mut buf = [0u8; 1024];
                    while matches!(sock.read(&mut buf).await, Ok(n) if n > 0) {}
                    // Held open, silent, until the test ends.
                    std::future::pending::<()>().await;
                    drop(sock);
                });
            }
        });
    });
    (port, accepted)
}

fn descriptors(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

/// What `count` gives once it has not changed for `still` (waiting at most 30 s).
fn settled(still: Duration, mut count: impl FnMut() -> usize) -> usize {
    let start = Instant::now();
    let (mut last, mut since) = (count(), Instant::now());
    while start.elapsed() < Duration::from_secs(30) && since.elapsed() < still {
        std::thread::sleep(Duration::from_millis(50));
        let now = count();
        if now != last {
            (last, since) = (now, Instant::now());
        }
    }
    last
}

/// Waits (bounded) until `cond` holds; whether it did.
fn eventually(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    cond()
}

#[test]
fn clients_that_leave_a_quiet_upstream_do_not_leak_descriptors() {
    let (up, _) = quiet_upstream();
    let port = free_port();
    // 3 s: long enough that a test thread stalled on a busy box still looks before it ends.
    let proxy = start_proxy(port, up, &["--half-close-timeout", "3"]);
    let pid = proxy.0.id();
    // The probe connection start_proxy made is a pair too, and its two sockets may go at
    // different times (its client side at once if the probe's reset is read, its upstream
    // side after the half-close timeout): the base is taken once the count has held still
    // for longer than that timeout.
    let base = settled(Duration::from_millis(4000), || descriptors(pid));
    assert!(base <= 16, "{base} descriptors with no client");
    let mut clients = Vec::new();
    for _ in 0..20 {
        let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
        let mut hi = [0u8; 3];
        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        c.read_exact(&mut hi).unwrap();
        clients.push(c);
    }
    let held = descriptors(pid);
    assert!(
        held >= base + 40,
        "20 pairs hold 40 descriptors: {base} → {held}"
    );
    let closed = Instant::now();
    drop(clients);
    // Half-closed pairs stay until the timeout (the upstream says nothing, and stays open)...
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        descriptors(pid) >= base + 20,
        "closed before the half-close timeout"
    );
    // ...and then go, whatever the upstream does.
    assert!(
        eventually(Duration::from_secs(20), || descriptors(pid) <= base),
        "descriptors {} after the clients left (base {base})",
        descriptors(pid)
    );
    assert!(closed.elapsed() >= Duration::from_secs(3));
}

#[test]
fn a_silent_client_is_closed_after_the_idle_timeout() {
    let (up, _) = quiet_upstream();
    let port = free_port();
    let _proxy = start_proxy(port, up, &["--idle-timeout", "1"]);
    // Taken before the connection exists, so before its last activity: a test thread woken
    // late after the greeting cannot shorten what it measures.
    let since = Instant::now();
    let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut hi = [0u8; 3];
    c.read_exact(&mut hi).unwrap();
    let mut buf = [0u8; 16];
    // The proxy closes it: end of stream (or a reset), not a read timeout.
    let n = c.read(&mut buf).unwrap_or(0);
    assert_eq!(n, 0);
    assert!(
        since.elapsed() >= Duration::from_millis(900),
        "closed after {:?}",
        since.elapsed()
    );
}

#[test]
fn a_flood_meets_the_connection_limit_and_the_proxy_serves_again_after() {
    // This process holds 5,000 client sockets.
    let _ = rlimit::increase_nofile_limit(12_000);
    let (up, open) = quiet_upstream();
    let port = free_port();
    let proxy = start_proxy(
        port,
        up,
        &["--max-connections", "1000", "--half-close-timeout", "1"],
    );
    let mut flood = Vec::new();
    for _ in 0..5_000 {
        if let Ok(c) = TcpStream::connect_timeout(
            &format!("127.0.0.1:{port}").parse().unwrap(),
            Duration::from_secs(2),
        ) {
            flood.push(c);
        }
    }
    // Every pair stays open while the flood holds its clients: what reached the upstream is
    // what was admitted (and start_proxy's probe, still half-closed). The admitted ones reach
    // it as the proxy gets to them.
    eventually(Duration::from_secs(30), || {
        open.load(Ordering::SeqCst) >= 900
    });
    // The bound is checked once the count has held still for a second, so that pairs the
    // proxy was still admitting are counted.
    let served = settled(Duration::from_secs(1), || open.load(Ordering::SeqCst));
    println!(
        "{} flood connections made, {served} reached the upstream",
        flood.len()
    );
    assert!(
        served <= 1001,
        "{served} pairs beyond max_connections = 1000"
    );
    assert!(served >= 900, "only {served} served");
    drop(flood);
    // Once the flood has gone, a new client is served.
    assert!(
        eventually(Duration::from_secs(30), || {
            TcpStream::connect(("127.0.0.1", port)).is_ok_and(|mut c| {
                let _ = c.set_read_timeout(Some(Duration::from_secs(2)));
                let mut hi = [0u8; 3];
                c.read_exact(&mut hi).is_ok() && &hi == b"hi\n"
            })
        }),
        "not served after the flood"
    );
    let mut proxy: Proxy = proxy;
    assert!(proxy.0.try_wait().unwrap().is_none(), "the proxy died");
}

/// A proxy in a shell whose descriptor limit is 64: it never runs out (it refuses beyond what
/// it can hold), logs accept trouble at most once a second, and serves again after.
#[test]
fn a_low_descriptor_limit_is_survived() {
    let (up, _) = quiet_upstream();
    let port = free_port();
    let child: Child = Command::new("sh")
        .args([
            "-c",
            &format!(
                "ulimit -n 64 && exec {BIN} proxy --listen 127.0.0.1:{port} --upstream 127.0.0.1:{up} --half-close-timeout 1"
            ),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut proxy = Proxy(child);
    assert!(eventually(Duration::from_secs(10), || TcpStream::connect(
        ("127.0.0.1", port)
    )
    .is_ok()));
    let mut clients = Vec::new();
    for _ in 0..100 {
        if let Ok(c) = TcpStream::connect(("127.0.0.1", port)) {
            clients.push(c);
        }
    }
    let mut greeted = 0;
    for c in &mut clients {
        let _ = c.set_read_timeout(Some(Duration::from_millis(500)));
        let mut hi = [0u8; 3];
        if c.read_exact(&mut hi).is_ok() {
            greeted += 1;
        }
    }
    println!("{greeted} of 100 clients served under ulimit -n 64");
    assert!(greeted >= 10, "only {greeted} served");
    for c in &clients {
        let _ = c.shutdown(Shutdown::Both);
    }
    drop(clients);
    assert!(
        eventually(Duration::from_secs(60), || {
            TcpStream::connect(("127.0.0.1", port)).is_ok_and(|mut c| {
                let _ = c.set_read_timeout(Some(Duration::from_secs(2)));
                let mut hi = [0u8; 3];
                c.read_exact(&mut hi).is_ok()
            })
        }),
        "not served once the others had gone"
    );
    assert!(proxy.0.try_wait().unwrap().is_none(), "the proxy died");
    let _ = proxy.0.kill();
    let _ = proxy.0.wait();
    let log = proxy.log();
    let failures = log.lines().filter(|l| l.contains("accept failed")).count();
    assert!(failures <= 20, "{failures} accept-failure lines:\n{log}");
}

/// A client that half-closes after its request and then downloads for longer than the
/// half-close timeout gets every byte: the timeout counts silence, not time.
#[test]
fn a_half_closed_pair_that_still_moves_bytes_is_not_cut_off() {
    let reply = common::random(3 << 20, 11);
    let (up, hashes) = common::upstream(reply.clone());
    let port = free_port();
    let _proxy = start_proxy(
        port,
        up,
        &["--half-close-timeout", "1", "--max-to-clients", "1MiB"],
    );
    let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    std::io::Write::write_all(&mut c, b"GET /big").unwrap();
    c.shutdown(Shutdown::Write).unwrap();
    let started = Instant::now();
    let mut got = Vec::new();
    c.read_to_end(&mut got).unwrap();
    assert_eq!(
        got.len(),
        reply.len(),
        "cut off after {:?}",
        started.elapsed()
    );
    assert_eq!(common::hash(&got), common::hash(&reply));
    // 3 MiB at 1 MiB/s: well past the 1 s half-close timeout.
    assert!(started.elapsed() >= Duration::from_secs(2));
    // The upstream got the request whole (start_proxy's probe is a connection too).
    let want = common::hash(b"GET /big");
    let seen: Vec<u64> = (0..2)
        .filter_map(|_| hashes.recv_timeout(Duration::from_secs(10)).ok())
        .collect();
    assert!(seen.contains(&want), "{seen:?}");
}
