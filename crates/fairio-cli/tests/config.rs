//! `fairio proxy --config FILE`: the sample config checks, errors name the line and the key,
//! classes share by weight and cap per client address, a class's connection limit holds, an
//! upstream given by name is reached, and SIGHUP reloads weights under traffic without
//! dropping a client. Real TCP clients from 127.0.0.2 and 127.0.0.3.
#![cfg(unix)]

mod common;

use std::io::Read;
use std::net::TcpStream;
use std::process::Command;
use std::sync::atomic::Ordering;
use std::time::Duration;

use common::{
    BIN, check_config, client_from, flooding_upstream, free_port, http, rates, reload,
    start_with_config as start, write_config,
};

#[test]
fn the_sample_config_checks() {
    let sample = concat!(env!("CARGO_MANIFEST_DIR"), "/proxy.example.toml");
    let out = Command::new(BIN)
        .args(["proxy", "--config", sample, "--check-config"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("class office") && text.contains("class guests"),
        "{text}"
    );
    assert!(text.contains("configuration ok"), "{text}");
}

#[test]
fn errors_name_the_line_and_the_key_and_suggest_a_value() {
    let cases = [
        (
            "max_to_clients = \"8MiB\"\nmax_from_clients = \"10XB\"\n",
            &["line 2", "max_from_clients", "8MiB"][..],
        ),
        (
            "max_to_clent = \"8MiB\"\n",
            &["line 1", "max_to_clent", "max_to_clients"][..],
        ),
        (
            "[[class]]\nname = \"a\"\nnetworks = [\"10.0.0.0/33\"]\n",
            &["line 3", "networks", "10.0.0.0/8"][..],
        ),
        (
            "[[class]]\nnetworks = [\"10.0.0.0/8\"]\n",
            &["class 1", "`name`"][..],
        ),
        (
            "[[class]]\nname = \"a\"\nnetworks = [\"10.0.0.0/8\"]\n[[class]]\nname = \"a\"\nnetworks = [\"10.1.0.0/16\"]\n",
            &["two classes", "`a`"][..],
        ),
        (
            "[[listener]]\nlisten = \"127.0.0.1:1\"\nupstream = \"h:2\"\n[[class]]\nname = \"a\"\nnetworks = [\"10.0.0.0/8\"]\nmax_to_clients = \"1MiB\"\n",
            &["class `a`", "max_to_clients", "global"][..],
        ),
        // A per-address cap without a global limit would never apply either.
        (
            "policy = \"hierarchical\"\nmax_to_clients = \"8MiB\"\n[[listener]]\nlisten = \"127.0.0.1:1\"\nupstream = \"h:2\"\n[[class]]\nname = \"a\"\nnetworks = [\"10.0.0.0/8\"]\nmax_from_each_address = \"1MiB\"\n",
            &[
                "class `a`",
                "max_from_each_address",
                "global `max_from_clients`",
            ][..],
        ),
        (
            "max_connections_per_host = 0\n",
            &["line 1", "max_connections_per_host", "at least 1"][..],
        ),
        (
            "fair_by = \"tenant\"\n",
            &["line 1", "fair_by", "\"host\""][..],
        ),
        ("idle_timeout = -3\n", &["line 1", "idle_timeout", "30"][..]),
        (
            "[[listener]]\nlisten = \"127.0.0.1:1\"\nupstream = \"nohost\"\n",
            &["line 3", "upstream", "host:port"][..],
        ),
        (
            "[[listener]]\nlisten = \"127.0.0.1:1\"\nupstream = \"h:2\"\n[[class]]\nname = \"b\"\nnetworks = [\"10.0.0.0/8\"]\nweight = 2\n",
            &["weight", "--policy weighted"][..],
        ),
        (
            "[[listener]]\nlisten = \"unix:/tmp/x.sock\"\nupstream = \"h:2\"\naccept_proxy_protocol_from = [\"10.0.0.0/8\"]\n",
            &["line 2", "accept_proxy_protocol_from", "TCP listeners only"][..],
        ),
        (
            "[[listener]]\nlisten = \"127.0.0.1:1\"\nupstream = \"h:2\"\naccept_proxy_protocol_from = []\n",
            &["line 4", "accept_proxy_protocol_from", "10.0.0.0/8"][..],
        ),
        (
            "[[listener]]\nlisten = \"127.0.0.1:1\"\nupstream = \"h:2\"\naccept_proxy_protocol_from = [\"10.0.0.0/40\"]\n",
            &["line 4", "accept_proxy_protocol_from", "prefix length"][..],
        ),
        (
            "[[listener]]\nlisten = \"127.0.0.1:1\"\nupstream = \"h:2\"\nsend_proxy_protocol = \"v3\"\n",
            &["line 4", "send_proxy_protocol", "\"v2\""][..],
        ),
    ];
    for (text, needles) in cases {
        let (code, err) = check_config(text);
        assert_eq!(code, Some(2), "{text}: {err}");
        for n in needles {
            assert!(err.contains(n), "{text}: no {n:?} in {err}");
        }
    }
}

#[test]
fn classes_share_by_weight_and_cap_each_address_and_reload_keeps_clients() {
    let up = flooding_upstream(5);
    let (port, admin) = (free_port(), free_port());
    let config = |office_weight: u32, guest_cap: &str| {
        format!(
            "max_to_clients = \"4MiB\"\npolicy = \"weighted\"\nadmin = \"127.0.0.1:{admin}\"\nmetrics_per_host = true\n\
             [[listener]]\nlisten = \"127.0.0.1:{port}\"\nupstream = \"localhost:{up}\"\n\
             [[class]]\nname = \"office\"\nnetworks = [\"127.0.0.2\"]\nweight = {office_weight}\n\
             [[class]]\nname = \"guests\"\nnetworks = [\"127.0.0.3/32\"]\nmax_to_clients = \"{guest_cap}\"\nmax_connections = 2\n\
             [default_class]\nweight = 1\n"
        )
    };
    let path = write_config(&config(3, "4MiB"));
    let mut proxy = start(&path, port);
    // Two connections from the office, one guest: split by class weight (3 : 1) per address.
    let office = [
        client_from([127, 0, 0, 2], port),
        client_from([127, 0, 0, 2], port),
    ];
    let guest = client_from([127, 0, 0, 3], port);
    std::thread::sleep(Duration::from_secs(1));
    let r = rates(&[&office[0], &office[1], &guest], 2.0);
    let (o, g) = (r[0] + r[1], r[2]);
    println!("weights 3:1 — office {o:.0} B/s, guest {g:.0} B/s");
    assert!((o / (o + g) - 0.75).abs() <= 0.03, "{r:?}");

    // The guests' class holds at most two connections.
    let second = client_from([127, 0, 0, 3], port);
    let third = client_from([127, 0, 0, 3], port);
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        second.load(Ordering::Relaxed) > 0,
        "the second guest is served"
    );
    assert_eq!(
        third.load(Ordering::Relaxed),
        0,
        "the third guest is refused"
    );

    // Reload under traffic: equal weights, and the guests capped at 512 KiB/s per address.
    std::fs::write(&path, config(1, "512KiB")).unwrap();
    reload(&proxy);
    std::thread::sleep(Duration::from_millis(500));
    let r = rates(&[&office[0], &office[1], &guest, &second], 2.0);
    let (o, g) = (r[0] + r[1], r[2] + r[3]);
    println!("after reload — office {o:.0} B/s, guests {g:.0} B/s");
    assert!((g / 524288.0 - 1.0).abs() <= 0.05, "the guests' cap: {r:?}");
    assert!(
        ((o + g) / 4194304.0 - 1.0).abs() <= 0.03,
        "the limit is used: {r:?}"
    );
    // No client was dropped by the reload: every one still receives.
    let before: Vec<u64> = [&office[0], &office[1], &guest, &second]
        .iter()
        .map(|c| c.load(Ordering::Relaxed))
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    for (c, b) in [&office[0], &office[1], &guest, &second].iter().zip(before) {
        assert!(
            c.load(Ordering::Relaxed) > b,
            "a client stopped receiving after the reload"
        );
    }

    // An invalid file is refused, and the running settings stay.
    std::fs::write(&path, "max_to_clients = \"lots\"\n").unwrap();
    reload(&proxy);
    std::thread::sleep(Duration::from_millis(300));
    let r = rates(&[&office[0], &office[1], &guest, &second], 1.0);
    assert!(
        ((r.iter().sum::<f64>()) / 4194304.0 - 1.0).abs() <= 0.05,
        "{r:?}"
    );
    assert!(
        proxy.0.try_wait().unwrap().is_none(),
        "the proxy died on a bad reload"
    );

    // The admin API: clients with their class, bytes per class, and per host (switched on).
    let (_, clients) = http(admin, "GET /clients HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(
        clients.contains("\"class\": \"office\"") && clients.contains("\"class\": \"guests\""),
        "{clients}"
    );
    let (_, metrics) = http(admin, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(
        metrics.contains("fairio_class_bytes_total{class=\"office\",direction=\"to_clients\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains("fairio_host_bytes_total{host=\"127.0.0.3\",class=\"guests\""),
        "{metrics}"
    );

    // A listener moved, reloaded through the admin API: the new address serves, the old one
    // closes, and the clients already in stay.
    let moved = free_port();
    std::fs::write(
        &path,
        config(1, "512KiB").replace(
            &format!("127.0.0.1:{port}\""),
            &format!("127.0.0.1:{moved}\""),
        ),
    )
    .unwrap();
    let (status, _) = http(
        admin,
        "POST /reload HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
    );
    assert_eq!(status, 202);
    let mut served = false;
    for _ in 0..100 {
        if TcpStream::connect(("127.0.0.1", moved)).is_ok() {
            served = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(served, "the new listener did not open");
    let mut closed = false;
    for _ in 0..100 {
        if TcpStream::connect(("127.0.0.1", port)).is_err() {
            closed = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(closed, "the old listener stayed open");
    let before = office[0].load(Ordering::Relaxed);
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        office[0].load(Ordering::Relaxed) > before,
        "a client was dropped by the move"
    );
    let _ = std::fs::remove_file(path);
}

/// A reload in the middle of two downloads: both complete, every byte intact.
#[test]
fn a_reload_under_traffic_drops_no_byte() {
    let reply = common::random(2 << 20, 21);
    let (up, _hashes) = common::upstream(reply.clone());
    let port = free_port();
    let config = |weight: u32| {
        format!(
            "max_to_clients = \"2MiB\"\npolicy = \"weighted\"\n\
             [[listener]]\nlisten = \"127.0.0.1:{port}\"\nupstream = \"127.0.0.1:{up}\"\n\
             [[class]]\nname = \"office\"\nnetworks = [\"127.0.0.2\"]\nweight = {weight}\n"
        )
    };
    let path = write_config(&config(3));
    let proxy = start(&path, port);
    let downloads: Vec<_> = [[127, 0, 0, 2], [127, 0, 0, 3]]
        .into_iter()
        .map(|from| {
            std::thread::spawn(move || {
                let mut s = common::connect_from(from, port);
                s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
                s.shutdown(std::net::Shutdown::Write).unwrap();
                let mut got = Vec::new();
                let _ = s.read_to_end(&mut got);
                got
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(700));
    std::fs::write(&path, config(1)).unwrap();
    reload(&proxy);
    for d in downloads {
        let got = d.join().unwrap();
        assert_eq!(got.len(), reply.len(), "a download was cut by the reload");
        assert_eq!(common::hash(&got), common::hash(&reply), "bytes changed");
    }
    let _ = std::fs::remove_file(path);
}

/// A Unix listener serves, and a socket file left by a proxy that was killed does not stop the
/// next one from starting.
#[test]
fn a_unix_listener_serves_and_survives_a_stale_socket_file() {
    use std::os::unix::net::UnixStream;
    let up = flooding_upstream(5);
    let (port, sock) = (
        free_port(),
        std::env::temp_dir().join(format!("fairio-test-{}.sock", std::process::id())),
    );
    let text = format!(
        "[[listener]]\nlisten = \"127.0.0.1:{port}\"\nupstream = \"127.0.0.1:{up}\"\n\
         [[listener]]\nlisten = \"unix:{}\"\nupstream = \"127.0.0.1:{up}\"\n",
        sock.display()
    );
    let path = write_config(&text);
    for round in 0..2 {
        let mut proxy = start(&path, port);
        let mut c = UnixStream::connect(&sock).unwrap_or_else(|e| panic!("round {round}: {e}"));
        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut buf = [0u8; 1024];
        c.read_exact(&mut buf).unwrap();
        assert!(buf.iter().all(|&b| b == 5));
        // Killed: the socket file stays behind for the next round.
        let _ = proxy.0.kill();
        let _ = proxy.0.wait();
        assert!(sock.exists(), "round {round}");
    }
    let _ = std::fs::remove_file(&sock);
    let _ = std::fs::remove_file(path);
}

/// A reload that points a listener at another upstream: new clients go there, and the
/// listener stays open throughout.
#[test]
fn a_reload_can_change_a_listeners_upstream() {
    let (first, _) = common::upstream(b"first".to_vec());
    let (second, _) = common::upstream(b"second".to_vec());
    let port = free_port();
    let text = |up: u16| {
        format!("[[listener]]\nlisten = \"127.0.0.1:{port}\"\nupstream = \"127.0.0.1:{up}\"\n")
    };
    let path = write_config(&text(first));
    let proxy = start(&path, port);
    let fetch = || {
        let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        c.shutdown(std::net::Shutdown::Write).unwrap();
        let mut got = Vec::new();
        let _ = c.read_to_end(&mut got);
        got
    };
    assert_eq!(fetch(), b"first");
    std::fs::write(&path, text(second)).unwrap();
    reload(&proxy);
    let mut switched = false;
    for _ in 0..100 {
        if fetch() == b"second" {
            switched = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        switched,
        "the listener still forwards to the first upstream"
    );
    let _ = std::fs::remove_file(path);
}
