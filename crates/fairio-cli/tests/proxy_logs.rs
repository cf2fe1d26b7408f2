//! The proxy talks like a daemon: a ready line, a line per client that leaves, a stopping and a
//! stopped line; no colour codes when stderr is not a terminal; JSON lines on request.
#![cfg(unix)]

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::process::Stdio;
use std::time::Duration;

use common::{free_port, random, start_proxy_with, terminate, upstream};

/// Runs one client through a proxy started with `extra` flags, stops the proxy with SIGTERM,
/// and returns its log.
fn log_of_one_session(extra: &[&str]) -> String {
    let reply = random(256 * 1024, 3);
    let (up, hashes) = upstream(reply.clone());
    let port = free_port();
    let mut proxy = start_proxy_with(port, up, extra, Stdio::null(), Stdio::piped());
    let mut client = TcpStream::connect(("127.0.0.1", port)).unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    client.write_all(b"hello").unwrap();
    client.shutdown(Shutdown::Write).unwrap();
    let mut got = Vec::new();
    client.read_to_end(&mut got).unwrap();
    assert_eq!(got.len(), reply.len());
    drop(client);
    hashes.recv_timeout(Duration::from_secs(20)).unwrap();
    // The client's summary line is written once both directions have ended; give it a moment
    // (bounded) before stopping.
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(terminate(&mut proxy).code(), Some(0));
    proxy.log()
}

#[test]
fn ready_client_and_stopping_lines_without_colour() {
    let log = log_of_one_session(&["--max-to-clients", "8MiB"]);
    assert!(!log.contains('\x1b'), "ANSI escapes on a pipe:\n{log}");
    let ready = log
        .lines()
        .find(|l| l.contains("listening on 127.0.0.1:"))
        .unwrap_or_else(|| panic!("{log}"));
    assert!(
        ready.contains(" → 127.0.0.1:") && ready.contains("to clients 8.00 MiB/s"),
        "{ready}"
    );
    // start_proxy's probe is a client too; ours is the one that sent "hello".
    let left = log
        .lines()
        .find(|l| l.contains("client left") && l.contains("from_client=5 B"))
        .unwrap_or_else(|| panic!("{log}"));
    assert!(left.contains("INFO"), "{left}");
    assert!(
        left.contains("to_client=256.00 KiB") && left.contains("unsent=0"),
        "{left}"
    );
    let stopping = log
        .lines()
        .find(|l| l.contains("stopping:"))
        .unwrap_or_else(|| panic!("{log}"));
    assert!(stopping.contains("0 clients connected"), "{stopping}");
    let stopped = log
        .lines()
        .find(|l| l.contains("stopped in"))
        .unwrap_or_else(|| panic!("{log}"));
    assert!(stopped.contains("0 bytes unsent"), "{stopped}");
    assert!(
        !log.contains("WARN"),
        "an ordinary session logged a warning:\n{log}"
    );
}

#[test]
fn json_log_format_writes_one_object_per_line() {
    let log = log_of_one_session(&["--log-format", "json"]);
    let mut messages = Vec::new();
    for line in log.lines() {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        messages.push(
            v["fields"]["message"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        );
    }
    assert!(
        messages.iter().any(|m| m.starts_with("listening on")),
        "{log}"
    );
    assert!(messages.iter().any(|m| m == "client left"), "{log}");
    assert!(
        messages.iter().any(|m| m.starts_with("stopped in")),
        "{log}"
    );
}

/// A client that resets its connection is ordinary traffic: it is summarised at info, and
/// nothing is logged as a warning.
#[test]
fn a_client_reset_is_not_a_warning() {
    let (up, _hashes) = upstream(random(4 << 20, 9));
    let port = free_port();
    let mut proxy = start_proxy_with(
        port,
        up,
        &["--max-to-clients", "1MiB"],
        Stdio::null(),
        Stdio::piped(),
    );
    let client = TcpStream::connect(("127.0.0.1", port)).unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut buf = [0u8; 1024];
    (&client).read_exact(&mut buf).unwrap();
    // Unread data in the receive buffer makes close() send a reset: wait until some is there
    // (a wait on the bytes, not on the clock: a loaded machine may send them late).
    client.peek(&mut buf[..1]).unwrap();
    drop(client);
    // The log, line by line, until the proxy has summarised the client (bounded: 10 s).
    let stderr = proxy.0.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in std::io::BufRead::lines(std::io::BufReader::new(stderr)) {
            let Ok(line) = line else { break };
            let _ = tx.send(line);
        }
    });
    let mut log = String::new();
    while let Ok(line) = rx.recv_timeout(Duration::from_secs(10)) {
        log.push_str(&line);
        log.push('\n');
        if line.contains("client left") {
            break;
        }
    }
    assert_eq!(terminate(&mut proxy).code(), Some(0));
    reader.join().unwrap();
    for line in rx.try_iter() {
        log.push_str(&line);
        log.push('\n');
    }
    let left = log
        .lines()
        .find(|l| l.contains("client left") && l.contains("reset"))
        .unwrap_or_else(|| panic!("no reset summarised:\n{log}"));
    assert!(left.contains("INFO"), "{left}");
    assert!(!log.contains("WARN"), "{log}");
}

/// The stats lines give the rate over the interval just ended: it reads the limit while a
/// client downloads, and zero once every client has left (a moving average would lag).
#[test]
fn stats_lines_track_the_last_interval() {
    let (up, _hashes) = upstream(random(1 << 20, 4));
    let port = free_port();
    let mut proxy = start_proxy_with(
        port,
        up,
        &["--max-to-clients", "512KiB", "--stats-interval", "0.5"],
        Stdio::piped(),
        Stdio::null(),
    );
    let mut client = TcpStream::connect(("127.0.0.1", port)).unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut got = Vec::new();
    client.read_to_end(&mut got).unwrap();
    assert_eq!(got.len(), 1 << 20);
    drop(client);
    // Two whole intervals with no client.
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(terminate(&mut proxy).code(), Some(0));
    let mut out = String::new();
    proxy
        .0
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    let global: Vec<&str> = out.lines().filter(|l| l.starts_with("global:")).collect();
    // 1 MiB at 512 KiB/s: about 2 s of transfer, so intervals at the limit.
    let kib_per_sec = |line: &str| -> Option<f64> {
        let rest = line.split("to clients ").nth(1)?;
        let (value, unit) = rest.split_once(' ')?;
        unit.starts_with("KiB/s").then(|| value.parse().ok())?
    };
    assert!(
        global
            .iter()
            .filter_map(|l| kib_per_sec(l))
            .any(|r| (460.0..=570.0).contains(&r)),
        "no interval near 512 KiB/s:\n{out}"
    );
    let last = global.last().unwrap_or_else(|| panic!("{out}"));
    assert!(
        last.contains("0 clients in 0 host groups, to clients 0 B/s"),
        "{last}"
    );
}
