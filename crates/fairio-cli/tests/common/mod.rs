//! Helpers shared by the CLI tests: the binary, test data, free ports, a proxy child that is
//! killed on drop, upstream servers, counting clients, and one HTTP/1 exchange.
#![allow(dead_code, unreachable_pub)]

use std::collections::hash_map::DefaultHasher;
use std::hash::Hasher;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

pub const BIN: &str = env!("CARGO_BIN_EXE_fairio");

pub fn random(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

pub fn hash(b: &[u8]) -> u64 {
    let mut h = DefaultHasher::new();
    h.write(b);
    h.finish()
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Kills the child when dropped, so that a failing test leaves no process behind.
pub struct Proxy(pub Child);

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn start_proxy(listen: u16, upstream: u16, extra: &[&str]) -> Proxy {
    start_proxy_with(listen, upstream, extra, Stdio::null(), Stdio::null())
}

/// Like [`start_proxy`], with stdout (the stats lines) and stderr (the log) going where asked.
pub fn start_proxy_with(
    listen: u16,
    upstream: u16,
    extra: &[&str],
    stdout: Stdio,
    stderr: Stdio,
) -> Proxy {
    let child = Command::new(BIN)
        .args([
            "proxy",
            "--listen",
            &format!("127.0.0.1:{listen}"),
            "--upstream",
            &format!("127.0.0.1:{upstream}"),
        ])
        .args(extra)
        .stdout(stdout)
        .stderr(stderr)
        .env_remove("RUST_LOG")
        .spawn()
        .unwrap();
    // The guard kills it if it never accepts.
    let proxy = Proxy(child);
    wait_for(listen);
    proxy
}

/// Waits (bounded, 5 s) until something accepts on `port` of 127.0.0.1.
pub fn wait_for(port: u16) {
    for _ in 0..200 {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    panic!("nothing accepts on {port}");
}

/// An upstream that floods every connection with `byte`, as fast as it takes it.
pub fn flooding_upstream(byte: u8) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for sock in listener.incoming() {
            let Ok(mut sock) = sock else { continue };
            std::thread::spawn(move || {
                let chunk = vec![byte; 64 * 1024];
                while sock.write_all(&chunk).is_ok() {}
            });
        }
    });
    port
}

/// Reads `stream` to its end on a thread of its own; what it read so far.
pub fn counting(mut stream: TcpStream) -> Arc<AtomicU64> {
    let count = Arc::new(AtomicU64::new(0));
    let c = Arc::clone(&count);
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 64 * 1024];
        while let Ok(n) = stream.read(&mut buf) {
            if n == 0 {
                break;
            }
            c.fetch_add(n as u64, Ordering::Relaxed);
        }
    });
    count
}

/// A client of 127.0.0.1:`port` that counts what it downloads.
pub fn client(port: u16) -> Arc<AtomicU64> {
    counting(TcpStream::connect(("127.0.0.1", port)).unwrap())
}

/// A client from address `from` (127.0.0.2 and .3 reach loopback too) that counts what it
/// downloads from 127.0.0.1:`port`.
pub fn client_from(from: [u8; 4], port: u16) -> Arc<AtomicU64> {
    counting(connect_from(from, port))
}

/// A blocking TCP stream from address `from` to 127.0.0.1:`port`.
pub fn connect_from(from: [u8; 4], port: u16) -> TcpStream {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let stream = rt.block_on(async {
        let s = tokio::net::TcpSocket::new_v4().unwrap();
        s.bind(SocketAddr::from((from, 0))).unwrap();
        s.connect(SocketAddr::from(([127, 0, 0, 1], port)))
            .await
            .unwrap()
            .into_std()
            .unwrap()
    });
    stream.set_nonblocking(false).unwrap();
    stream
}

/// One HTTP/1 exchange with 127.0.0.1:`port`: (status, body).
pub fn http(port: u16, request: &str) -> (u16, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    let status = out
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = out
        .split_once("\r\n\r\n")
        .map_or(String::new(), |(_, b)| b.to_owned());
    (status, body)
}

/// Sends SIGTERM and waits (bounded) for the exit status.
#[cfg(unix)]
pub fn terminate(proxy: &mut Proxy) -> std::process::ExitStatus {
    let status = Command::new("kill")
        .args(["-TERM", &proxy.0.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    for _ in 0..1000 {
        if let Some(status) = proxy.0.try_wait().unwrap() {
            return status;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("proxy did not exit within 20 s of SIGTERM");
}

/// An upstream that, per connection, sends `reply` and reads everything the client sends,
/// reporting the hash of what it received.
pub fn upstream(reply: Vec<u8>) -> (u16, std::sync::mpsc::Receiver<u64>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for sock in listener.incoming().take(8) {
            let Ok(mut sock) = sock else { continue };
            let reply = reply.clone();
            let tx = tx.clone();
            std::thread::spawn(move || {
                let mut reader = sock.try_clone().unwrap();
                let recv = std::thread::spawn(move || {
                    let mut got = Vec::new();
                    let _ = reader.read_to_end(&mut got);
                    got
                });
                // A client that resets makes the proxy close this side: a broken pipe here is
                // that client's doing, not a failure of the test.
                if sock.write_all(&reply).is_ok() {
                    let _ = sock.shutdown(Shutdown::Write);
                }
                let got = recv.join().unwrap();
                let _ = tx.send(hash(&got));
            });
        }
    });
    (port, rx)
}

impl Proxy {
    /// What the proxy wrote to its stderr (piped), to its end: call once it has exited.
    pub fn log(&mut self) -> String {
        let mut log = String::new();
        self.0
            .stderr
            .take()
            .expect("the proxy's stderr is piped, and read once")
            .read_to_string(&mut log)
            .unwrap();
        log
    }
}

/// Writes a config file for one test, under a name of its own.
pub fn write_config(text: &str) -> std::path::PathBuf {
    let path = std::env::temp_dir().join(format!(
        "fairio-config-{}-{}.toml",
        std::process::id(),
        free_port()
    ));
    std::fs::write(&path, text).unwrap();
    path
}

/// `fairio proxy --config FILE`, once it accepts on `port`.
pub fn start_with_config(config: &std::path::Path, port: u16) -> Proxy {
    let child = Command::new(BIN)
        .args(["proxy", "--config", config.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .env_remove("RUST_LOG")
        .spawn()
        .unwrap();
    let proxy = Proxy(child);
    wait_for(port);
    proxy
}

/// Bytes per second of each counter over `secs`.
pub fn rates(counts: &[&Arc<AtomicU64>], secs: f64) -> Vec<f64> {
    let before: Vec<u64> = counts.iter().map(|c| c.load(Ordering::Relaxed)).collect();
    let start = std::time::Instant::now();
    std::thread::sleep(Duration::from_secs_f64(secs));
    let s = start.elapsed().as_secs_f64();
    counts
        .iter()
        .zip(before)
        .map(|(c, b)| (c.load(Ordering::Relaxed) - b) as f64 / s)
        .collect()
}

/// Sends the proxy SIGHUP: re-read its config file.
pub fn reload(proxy: &Proxy) {
    let status = Command::new("kill")
        .args(["-HUP", &proxy.0.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

/// `fairio proxy --config FILE --check-config` on `text`: (exit code, standard error).
pub fn check_config(text: &str) -> (Option<i32>, String) {
    let path = write_config(text);
    let out = Command::new(BIN)
        .args([
            "proxy",
            "--config",
            path.to_str().unwrap(),
            "--check-config",
        ])
        .output()
        .unwrap();
    let _ = std::fs::remove_file(path);
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
