//! The PROXY protocol, v1 and v2, over real sockets: clients behind a load balancer (here
//! 127.0.0.1, which writes the headers by hand) are shared and logged by the address their
//! header carries; bad headers are refused and counted; upstreams receive the header they
//! were configured to get.

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::process::Stdio;
use std::sync::atomic::Ordering;
use std::time::Duration;

use common::{
    connect_from, counting, flooding_upstream, free_port, http, start_proxy, start_proxy_with,
    terminate,
};

/// A v2 header for TCP over IPv4, written out by hand (not by the crate the proxy uses).
fn v2(src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16) -> Vec<u8> {
    let mut h = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    h.extend_from_slice(&[0x21, 0x11, 0, 12]);
    h.extend_from_slice(&src);
    h.extend_from_slice(&dst);
    h.extend_from_slice(&sport.to_be_bytes());
    h.extend_from_slice(&dport.to_be_bytes());
    h
}

fn metrics(admin: u16) -> String {
    let (status, body) = http(
        admin,
        "GET /metrics HTTP/1.1\r\nHost: fairio\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(status, 200, "{body}");
    body
}

/// The value of the `fairio_proxy_protocol_refused` series for `reason`.
fn refused(body: &str, reason: &str) -> u64 {
    let key = format!("fairio_proxy_protocol_refused_total{{reason=\"{reason}\"}} ");
    body.lines()
        .find_map(|l| l.strip_prefix(&key))
        .unwrap_or_else(|| panic!("no {key} in\n{body}"))
        .trim()
        .parse()
        .unwrap()
}

/// Reads until the proxy closes the connection (bounded by a 10 s read timeout); what came.
fn until_closed(mut s: TcpStream) -> Vec<u8> {
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut got = Vec::new();
    match s.read_to_end(&mut got) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        Err(e) => panic!("the proxy did not close the connection: {e}"),
    }
    got
}

#[test]
fn clients_behind_a_load_balancer_are_shared_and_logged_by_their_real_address() {
    let up = flooding_upstream(0x42);
    let (port, admin) = (free_port(), free_port());
    let log = tempfile(&format!("pp-log-{port}"));
    let mut proxy = start_proxy_with(
        port,
        up,
        &[
            "--max-to-clients",
            "4MiB",
            "--accept-proxy-protocol-from",
            "127.0.0.0/30,10.9.0.0/16",
            "--admin",
            &format!("127.0.0.1:{admin}"),
        ],
        Stdio::null(),
        Stdio::from(std::fs::File::create(&log).unwrap()),
    );
    // All five connect from 127.0.0.1: four speak for 203.0.113.2 (v1), one for 203.0.113.3
    // (v2). Without the headers they would be one host, the lone one getting a fifth.
    let mut busy = Vec::new();
    for i in 0..4u16 {
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        let header = format!("PROXY TCP4 203.0.113.2 127.0.0.1 {} {port}\r\n", 4000 + i);
        s.write_all(header.as_bytes()).unwrap();
        busy.push(counting(s));
    }
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.write_all(&v2([203, 0, 113, 3], 5000, [127, 0, 0, 1], port))
        .unwrap();
    let keep = s.try_clone().unwrap();
    let lone = counting(s);
    let sum = |v: &[std::sync::Arc<std::sync::atomic::AtomicU64>]| {
        v.iter().map(|c| c.load(Ordering::Relaxed)).sum::<u64>()
    };
    std::thread::sleep(Duration::from_secs(1));
    let (b0, l0) = (sum(&busy), lone.load(Ordering::Relaxed));
    std::thread::sleep(Duration::from_secs(3));
    let (b, l) = (sum(&busy) - b0, lone.load(Ordering::Relaxed) - l0);
    let share = l as f64 / (b + l) as f64;
    println!("203.0.113.2 (4 connections) {b} B, 203.0.113.3 (1) {l} B: share {share:.3}");
    assert!((share - 0.5).abs() <= 0.05, "share {share:.3}");

    let (status, clients) = http(
        admin,
        "GET /clients HTTP/1.1\r\nHost: fairio\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(status, 200);
    assert_eq!(clients.matches("203.0.113.2:400").count(), 4, "{clients}");
    assert!(clients.contains("203.0.113.3:5000"), "{clients}");
    let m = metrics(admin);
    for reason in [
        "untrusted",
        "missing",
        "malformed",
        "truncated",
        "oversized",
        "timeout",
    ] {
        assert_eq!(refused(&m, reason), 0, "{reason}");
    }
    // The lone client leaves: its line names its real address.
    keep.shutdown(Shutdown::Both).unwrap();
    let mut left = false;
    for _ in 0..200 {
        let text = std::fs::read_to_string(&log).unwrap();
        if text
            .lines()
            .any(|l| l.contains("203.0.113.3:5000") && l.contains("client left"))
        {
            left = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    terminate(&mut proxy);
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(left, "no 'client left' line for 203.0.113.3:5000:\n{text}");
    let _ = std::fs::remove_file(&log);
}

fn tempfile(name: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("{name}-{}", std::process::id()))
}

#[test]
fn untrusted_missing_malformed_truncated_oversized_and_late_headers_are_refused_and_counted() {
    let (up, served) = common::upstream(b"reply".to_vec());
    let (port, admin) = (free_port(), free_port());
    let _proxy = start_proxy(
        port,
        up,
        &[
            "--accept-proxy-protocol-from",
            "127.0.0.1",
            "--connect-timeout",
            "1",
            "--admin",
            &format!("127.0.0.1:{admin}"),
        ],
    );
    let send = |from: [u8; 4], bytes: &[u8], end: bool| {
        let mut s = connect_from(from, port);
        s.write_all(bytes).unwrap();
        if end {
            s.shutdown(Shutdown::Write).unwrap();
        }
        until_closed(s)
    };
    let good_v1 = format!("PROXY TCP4 198.51.100.1 127.0.0.1 1000 {port}\r\n");
    // A valid header, but from 127.0.0.2, which is not trusted.
    assert!(send([127, 0, 0, 2], good_v1.as_bytes(), false).is_empty());
    assert!(send([127, 0, 0, 1], b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", false).is_empty());
    assert!(send([127, 0, 0, 1], b"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n", false).is_empty());
    assert!(send([127, 0, 0, 1], b"PROXY TCP4 1.2.3.4 ", true).is_empty());
    let mut oversized = b"\r\n\r\n\0\r\nQUIT\n\x21\x11".to_vec();
    oversized.extend_from_slice(&u16::MAX.to_be_bytes());
    assert!(send([127, 0, 0, 1], &oversized, false).is_empty());
    let long_line = format!("PROXY TCP4 {}\r\n", "1".repeat(200));
    assert!(send([127, 0, 0, 1], long_line.as_bytes(), false).is_empty());
    // Half a header, then nothing: closed once the connect timeout (1 s) has passed.
    let started = std::time::Instant::now();
    assert!(send([127, 0, 0, 1], b"PROXY TCP", false).is_empty());
    assert!(started.elapsed() >= Duration::from_millis(900));

    let m = metrics(admin);
    let counts: Vec<(&str, u64)> = [
        "untrusted",
        "missing",
        "malformed",
        "truncated",
        "oversized",
        "timeout",
    ]
    .into_iter()
    .map(|r| (r, refused(&m, r)))
    .collect();
    assert_eq!(
        counts,
        [
            ("untrusted", 1),
            ("missing", 1),
            ("malformed", 1),
            ("truncated", 1),
            ("oversized", 2),
            ("timeout", 1)
        ]
    );
    assert!(
        served.try_recv().is_err(),
        "no refused connection reached the upstream"
    );
    // A good header still gets through, its bytes after it untouched.
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.write_all(good_v1.as_bytes()).unwrap();
    s.write_all(b"payload").unwrap();
    s.shutdown(Shutdown::Write).unwrap();
    assert_eq!(until_closed(s), b"reply");
    let got = served.recv_timeout(Duration::from_secs(10)).unwrap();
    assert_eq!(got, common::hash(b"payload"));
}

/// What the upstream received on the connection whose bytes end with `tail` (the proxy's
/// start-up probe makes a connection of its own).
fn received_ending(got: &std::sync::mpsc::Receiver<Vec<u8>>, tail: &[u8]) -> Vec<u8> {
    for _ in 0..8 {
        let bytes = got.recv_timeout(Duration::from_secs(10)).unwrap();
        if bytes.ends_with(tail) {
            return bytes;
        }
    }
    panic!("no connection ended with {tail:?}");
}

/// An upstream that reports the first bytes of each connection (until the client's end).
fn recording_upstream() -> (u16, std::sync::mpsc::Receiver<Vec<u8>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for sock in listener.incoming().take(8) {
            let Ok(mut sock) = sock else { continue };
            let tx = tx.clone();
            std::thread::spawn(move || {
                let mut got = Vec::new();
                sock.set_read_timeout(Some(Duration::from_secs(10)))
                    .unwrap();
                let _ = sock.read_to_end(&mut got);
                let _ = tx.send(got);
            });
        }
    });
    (port, rx)
}

#[test]
fn upstreams_receive_the_header_they_were_configured_to_get() {
    for version in ["v1", "v2"] {
        let (up, got) = recording_upstream();
        let port = free_port();
        let _proxy = start_proxy(port, up, &["--send-proxy-protocol", version]);
        let mut s = connect_from([127, 0, 0, 2], port);
        let client_port = s.local_addr().unwrap().port();
        s.write_all(b"hello").unwrap();
        s.shutdown(Shutdown::Write).unwrap();
        let bytes = received_ending(&got, b"hello");
        let mut want = match version {
            "v1" => format!("PROXY TCP4 127.0.0.2 127.0.0.1 {client_port} {port}\r\n").into_bytes(),
            _ => v2([127, 0, 0, 2], client_port, [127, 0, 0, 1], port),
        };
        want.extend_from_slice(b"hello");
        assert_eq!(bytes, want, "{version}");
    }
    // Behind a load balancer, the upstream is told of the client the header named.
    let (up, got) = recording_upstream();
    let port = free_port();
    let _proxy = start_proxy(
        port,
        up,
        &[
            "--send-proxy-protocol",
            "v2",
            "--accept-proxy-protocol-from",
            "127.0.0.1",
        ],
    );
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.write_all(b"PROXY TCP4 198.51.100.9 192.0.2.1 61000 443\r\nhi")
        .unwrap();
    s.shutdown(Shutdown::Write).unwrap();
    let mut want = v2([198, 51, 100, 9], 61000, [192, 0, 2, 1], 443);
    want.extend_from_slice(b"hi");
    assert_eq!(received_ending(&got, b"hi"), want);
}
