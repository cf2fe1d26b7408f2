//! Helpers shared by the CLI tests: the binary, test data, free ports, a proxy child that is
//! killed on drop, and an upstream server.
#![allow(dead_code, unreachable_pub)]

use std::collections::hash_map::DefaultHasher;
use std::hash::Hasher;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
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
    // Wait (bounded) until it accepts; the guard kills it if it never does.
    let proxy = Proxy(child);
    for _ in 0..200 {
        if TcpStream::connect(("127.0.0.1", listen)).is_ok() {
            return proxy;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    panic!("proxy did not start");
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
                sock.write_all(&reply).unwrap();
                sock.shutdown(Shutdown::Write).unwrap();
                let got = recv.join().unwrap();
                let _ = tx.send(hash(&got));
            });
        }
    });
    (port, rx)
}
