//! The proxy's admin API with real clients: `/clients` lists them, `PUT /limits` changes the
//! rate at once, a token guards it when set, `/metrics` has no per-client series, and a client
//! that sends its request head slowly is dropped while the others are served.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::{client, flooding_upstream, free_port, http, start_proxy};

fn get(port: u16, path: &str, extra: &str) -> (u16, String) {
    http(
        port,
        &format!("GET {path} HTTP/1.1\r\nHost: x\r\n{extra}\r\n"),
    )
}

fn rate(count: &AtomicU64, secs: f64) -> f64 {
    let before = count.load(Ordering::Relaxed);
    let start = Instant::now();
    std::thread::sleep(Duration::from_secs_f64(secs));
    (count.load(Ordering::Relaxed) - before) as f64 / start.elapsed().as_secs_f64()
}

#[test]
fn clients_are_listed_and_limits_change_live() {
    let up = flooding_upstream(3);
    let (port, admin) = (free_port(), free_port());
    let _proxy = start_proxy(
        port,
        up,
        &[
            "--max-to-clients",
            "4MiB",
            "--admin",
            &format!("127.0.0.1:{admin}"),
        ],
    );
    let count = client(port);
    // Until the client is listed with bytes handed over and acknowledged (bounded: on a busy
    // box the first bytes may take a while).
    let listed_with_bytes = |body: &str| {
        serde_json::from_str::<serde_json::Value>(body)
            .ok()
            .and_then(|v| v["clients"].as_array().cloned())
            .is_some_and(|cs| {
                cs.iter().any(|c| {
                    c["to_client_bytes"].as_u64().unwrap_or(0) > 0
                        && (!cfg!(target_os = "linux")
                            || c["to_client_acked_bytes"].as_u64().unwrap_or(0) > 0)
                })
            })
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    let (mut status, mut body) = get(admin, "/clients", "");
    while !listed_with_bytes(&body) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        (status, body) = get(admin, "/clients", "");
    }
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let groups = v["groups"].as_array().unwrap();
    assert_eq!(groups.len(), 1, "one client address, one group: {body}");
    assert_eq!(groups[0]["host"], "127.0.0.1");
    let listed = v["clients"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["to_client_bytes"].as_u64().unwrap_or(0) > 0)
        .unwrap_or_else(|| panic!("{body}"));
    assert!(
        listed["peer"].as_str().unwrap().starts_with("127.0.0.1:"),
        "{listed}"
    );
    assert!(
        listed["group"].as_u64().is_some(),
        "grouped by host: {listed}"
    );
    // What the client's TCP acknowledged, beside what was handed to its socket (Linux).
    let (handed, acked) = (
        listed["to_client_bytes"].as_u64().unwrap(),
        listed["to_client_acked_bytes"].as_u64(),
    );
    if cfg!(target_os = "linux") {
        let acked = acked.unwrap_or_else(|| panic!("acked bytes reported: {listed}"));
        assert!(acked > 0 && acked <= handed, "{listed}");
    }

    let before = rate(&count, 1.0);
    let (status, body) = http(
        admin,
        "PUT /limits HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 40\r\n\r\n{\"to_clients\": \"1MiB\", \"from_clients\": null}",
    );
    let _ = body;
    assert_eq!(
        status, 400,
        "a wrong Content-Length is refused, not half-read"
    );
    let put = "{\"to_clients\": \"1MiB\", \"from_clients\": null}";
    let (status, body) = http(
        admin,
        &format!(
            "PUT /limits HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{put}",
            put.len()
        ),
    );
    assert_eq!(status, 200, "{body}");
    // In force within a second: the next second moves 1 MiB/s.
    std::thread::sleep(Duration::from_millis(200));
    let after = rate(&count, 1.0);
    println!("before {before:.0} B/s, after PUT /limits {after:.0} B/s");
    assert!((before / 4194304.0 - 1.0).abs() <= 0.05, "{before}");
    assert!((after / 1048576.0 - 1.0).abs() <= 0.05, "{after}");
    let (status, body) = http(
        admin,
        "PUT /limits HTTP/1.1\r\nHost: x\r\nContent-Length: 22\r\n\r\n{\"to_clients\": \"fast\"}",
    );
    assert_eq!(status, 400);
    assert!(
        body.contains("8MiB"),
        "the error suggests a valid value: {body}"
    );
    // No series per client: the number of series does not grow with clients.
    let (_, metrics) = get(admin, "/metrics", "");
    assert!(metrics.contains("fairio_clients_open 1"), "{metrics}");
    assert!(!metrics.contains("conn="), "{metrics}");
}

#[test]
fn a_token_guards_the_admin_api_when_set() {
    let up = flooding_upstream(3);
    let (port, admin) = (free_port(), free_port());
    let token = "0123456789abcdef0123";
    let _proxy = start_proxy(
        port,
        up,
        &[
            "--admin",
            &format!("127.0.0.1:{admin}"),
            "--admin-token",
            token,
        ],
    );
    assert_eq!(get(admin, "/metrics", "").0, 401);
    assert_eq!(
        get(
            admin,
            "/metrics",
            "Authorization: Bearer 0123456789abcdef0124\r\n"
        )
        .0,
        401
    );
    assert_eq!(
        get(
            admin,
            "/metrics",
            &format!("Authorization: Bearer {token}\r\n")
        )
        .0,
        200
    );
}

#[test]
fn a_slow_request_head_is_dropped_and_others_are_served() {
    let up = flooding_upstream(3);
    let (port, admin) = (free_port(), free_port());
    let _proxy = start_proxy(port, up, &["--admin", &format!("127.0.0.1:{admin}")]);
    let mut slow = TcpStream::connect(("127.0.0.1", admin)).unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let since = Instant::now();
    slow.write_all(b"GET /metr").unwrap();
    // Meanwhile the others are served.
    assert_eq!(get(admin, "/metrics", "").0, 200);
    // A byte every second: still never a whole head.
    let mut dropped = false;
    for _ in 0..20 {
        std::thread::sleep(Duration::from_secs(1));
        if slow.write_all(b"i").is_err() {
            dropped = true;
            break;
        }
        let _ = slow.set_nonblocking(true);
        let mut buf = [0u8; 256];
        let closed = slow.read(&mut buf).is_ok();
        let _ = slow.set_nonblocking(false);
        if closed {
            dropped = true;
            break;
        }
    }
    assert!(dropped, "a slow client held the admin API for 20 s");
    assert!(
        since.elapsed() >= Duration::from_secs(5),
        "dropped after {:?}",
        since.elapsed()
    );
    assert_eq!(get(admin, "/metrics", "").0, 200);
}
