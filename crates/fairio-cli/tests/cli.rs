//! The real `fairio` binary: the demo's JSON summary, and the proxy in front of an upstream
//! server run by the test. Everything on 127.0.0.1.

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{BIN, free_port, hash, random, start_proxy, upstream};

#[test]
fn demo_json_summary_parses_and_has_the_fields() {
    let out = Command::new(BIN)
        .args(["demo", "--secs", "2", "--json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let conns = v["connections"].as_array().unwrap();
    assert_eq!(conns.len(), 8);
    for c in conns {
        assert!(c["bytes"].as_u64().unwrap() > 0);
        assert!(c["rate"].as_f64().unwrap() > 0.0);
        assert!(c["id"].as_u64().is_some() && c["weight"].as_u64().is_some());
    }
    for field in [
        "aggregate_bytes",
        "aggregate_rate",
        "error_vs_limit",
        "jain",
        "limit",
    ] {
        assert!(v[field].is_number(), "missing {field}");
    }
    assert_eq!(v["limit"].as_u64(), Some(8 << 20));
}

#[test]
fn proxy_keeps_data_intact_both_ways_and_holds_the_rate() {
    let reply = random(2 << 20, 7);
    let (up, hashes) = upstream(reply.clone());
    let port = free_port();
    let _proxy = start_proxy(
        port,
        up,
        &["--max-to-clients", "1MiB", "--max-from-clients", "8MiB"],
    );
    // Before the connection, so before the first byte can move: a lower bound measured from
    // here holds however late this thread runs.
    let started = Instant::now();
    let mut client = TcpStream::connect(("127.0.0.1", port)).unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let upload = random(300 * 1024, 9);
    let mut writer = client.try_clone().unwrap();
    let sent = upload.clone();
    let w = std::thread::spawn(move || {
        writer.write_all(&sent).unwrap();
        writer.shutdown(Shutdown::Write).unwrap();
    });
    let mut got = Vec::new();
    client.read_to_end(&mut got).unwrap();
    let elapsed = started.elapsed();
    w.join().unwrap();
    assert_eq!(
        hash(&got),
        hash(&reply),
        "reply differs ({} of {} bytes)",
        got.len(),
        reply.len()
    );
    // The readiness probe made an upstream connection of its own, with an empty upload: look
    // for ours among the few connections the upstream saw.
    let wanted = hash(&upload);
    let mut found = false;
    for _ in 0..4 {
        let Ok(h) = hashes.recv_timeout(Duration::from_secs(30)) else {
            break;
        };
        if h == wanted {
            found = true;
            break;
        }
        assert_eq!(h, hash(&[]), "an upstream connection got a damaged upload");
    }
    assert!(found, "the upload never arrived intact");
    // 2 MiB at 1 MiB/s: a lower bound only (the limit cannot be beaten).
    assert!(
        elapsed >= Duration::from_millis(1800),
        "2 MiB took only {elapsed:?}"
    );
}

#[test]
fn metrics_answer_in_prometheus_text_format() {
    let (up, _hashes) = upstream(random(64 * 1024, 3));
    let port = free_port();
    let mport = free_port();
    let _proxy = start_proxy(port, up, &["--metrics", &format!("127.0.0.1:{mport}")]);
    let mut client = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let mut first = [0u8; 1024];
    client.read_exact(&mut first).unwrap();
    let mut m = TcpStream::connect(("127.0.0.1", mport)).unwrap();
    m.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut resp = String::new();
    m.read_to_string(&mut resp).unwrap();
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    let body = &resp[resp.find("\r\n\r\n").unwrap() + 4..];
    let mut samples = 0;
    for line in body.lines() {
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        // name{labels} value
        let (name, value) = line.rsplit_once(' ').unwrap();
        value
            .parse::<f64>()
            .unwrap_or_else(|_| panic!("bad value in {line}"));
        assert!(name.starts_with("fairio_"), "{line}");
        samples += 1;
    }
    assert!(samples >= 5, "{body}");
    assert!(body.contains("fairio_connections"), "{body}");
    assert!(body.contains("direction=\"to_clients\""), "{body}");
}

#[test]
fn unreachable_upstream_closes_the_client_and_the_proxy_goes_on() {
    let dead = free_port(); // nothing listens here
    let port = free_port();
    let _proxy = start_proxy(port, dead, &[]);
    for _ in 0..2 {
        let mut client = TcpStream::connect(("127.0.0.1", port)).unwrap();
        client
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut buf = [0u8; 16];
        // Closed by the proxy: EOF or a reset, not a hang.
        let n = client.read(&mut buf).unwrap_or(0);
        assert_eq!(n, 0);
    }
}

#[test]
fn bad_flags_exit_2_with_a_helpful_message() {
    let cases: &[(&[&str], &str)] = &[
        (&["demo", "--max-download", "10XB"], "--max-download"),
        (&["demo", "--max-download", "0"], "8MiB"),
        (&["demo", "--max-download", "-5"], "--max-download"),
        (&["demo", "--conns", "0"], "--conns"),
        (
            &["proxy", "--listen", "nowhere", "--upstream", "127.0.0.1:1"],
            "127.0.0.1:8080",
        ),
        (
            &[
                "proxy",
                "--listen",
                "127.0.0.1:0",
                "--upstream",
                "127.0.0.1:1",
                "--max-to-clients",
                "fast",
            ],
            "--max-to-clients",
        ),
    ];
    for (args, needle) in cases {
        let out = Command::new(BIN).args(*args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(needle), "{args:?}: {err}");
    }
}

#[test]
fn every_subcommand_has_help() {
    for args in [&["--help"][..], &["demo", "--help"], &["proxy", "--help"]] {
        let out = Command::new(BIN).args(args).output().unwrap();
        assert!(out.status.success());
        assert!(String::from_utf8_lossy(&out.stdout).contains("Usage"));
    }
}

#[cfg(unix)]
#[test]
fn sigterm_shuts_down_gracefully_with_exit_0() {
    let (up, _hashes) = upstream(random(1024, 5));
    let port = free_port();
    let mut proxy = start_proxy(port, up, &[]);
    assert_eq!(common::terminate(&mut proxy).code(), Some(0));
}
