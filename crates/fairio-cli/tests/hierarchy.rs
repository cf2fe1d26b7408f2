//! `fairio proxy` with `policy = "hierarchical"`: class -> client address -> connection, with
//! real TCP clients from several loopback addresses, counted at the clients. A class's cap
//! holds for the class as a whole across five addresses, each address gets its part whatever
//! its number of connections, a guarantee is met beside a greedy class, and a reload changes a
//! class's cap under traffic.
#![cfg(unix)]

mod common;

use std::time::Duration;

use common::{
    check_config, client_from, flooding_upstream, free_port, http, rates, reload,
    start_with_config as start, write_config,
};

const MIB: f64 = 1_048_576.0;

#[test]
fn a_class_cap_holds_across_five_addresses_and_a_reload_changes_it() {
    let up = flooding_upstream(7);
    let (port, admin) = (free_port(), free_port());
    let config = |office_cap: &str| {
        format!(
            "max_to_clients = \"8MiB\"\npolicy = \"hierarchical\"\nadmin = \"127.0.0.1:{admin}\"\n\
             [[listener]]\nlisten = \"127.0.0.1:{port}\"\nupstream = \"127.0.0.1:{up}\"\n\
             [[class]]\nname = \"office\"\nnetworks = [\"127.0.0.2/31\", \"127.0.0.4/31\", \"127.0.0.6/32\"]\n\
             max_to_clients = \"{office_cap}\"\n\
             [default_class]\n"
        )
    };
    let path = write_config(&config("2MiB"));
    let _proxy = start(&path, port);
    // Five office addresses with one to three connections each; one client elsewhere.
    let mut counts = Vec::new();
    let mut of = Vec::new();
    for (a, last) in [2u8, 3, 4, 5, 6].into_iter().enumerate() {
        for _ in 0..=(a % 3) {
            counts.push(client_from([127, 0, 0, last], port));
            of.push(a);
        }
    }
    counts.push(client_from([127, 0, 0, 9], port));
    of.push(5);
    std::thread::sleep(Duration::from_secs(1));
    let check = |cap: f64| {
        let r = rates(&counts.iter().collect::<Vec<_>>(), 3.0);
        let mut per = [0f64; 6];
        for (x, &a) in r.iter().zip(&of) {
            per[a] += x;
        }
        let office: f64 = per[..5].iter().sum();
        println!("office {office:.0} B/s by address {per:?}");
        assert!(
            (office / cap - 1.0).abs() <= 0.01,
            "the office class at {office:.0} B/s, its cap {cap:.0}"
        );
        for (a, p) in per[..5].iter().enumerate() {
            assert!(
                (p / office - 0.2).abs() <= 0.02,
                "address {a} got {:.4} of the class",
                p / office
            );
        }
        assert!(
            ((office + per[5]) / (8.0 * MIB) - 1.0).abs() <= 0.02,
            "the limit is used: {per:?}"
        );
    };
    check(2.0 * MIB);
    // The admin API shows the class level: its cap, and its five address groups.
    let (_, metrics) = http(admin, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(
        metrics.contains("fairio_class_cap{class=\"office\",direction=\"to_clients\"} 2097152"),
        "{metrics}"
    );
    assert!(
        metrics.contains("fairio_class_rate{class=\"office\",direction=\"to_clients\"}"),
        "{metrics}"
    );
    let (_, clients) = http(admin, "GET /clients HTTP/1.1\r\nHost: x\r\n\r\n");
    let view: serde_json::Value = serde_json::from_str(&clients).unwrap();
    let office = view["classes"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["class"] == "office"))
        .unwrap_or_else(|| panic!("no office class in {clients}"));
    assert_eq!(
        office["groups"].as_array().map(Vec::len),
        Some(5),
        "{office}"
    );
    assert_eq!(office["to_client_cap"], 2 * 1024 * 1024, "{office}");
    // A reload lowers the class's cap under traffic; nobody is dropped.
    std::fs::write(&path, config("1MiB")).unwrap();
    reload(&_proxy);
    // Measured once the proxy says the new cap is in force (a fixed wait raced the reload on
    // a busy machine: one run in a dozen measured part of its window under the old cap).
    let lowered = "fairio_class_cap{class=\"office\",direction=\"to_clients\"} 1048576";
    let mut in_force = false;
    for _ in 0..200 {
        let (_, metrics) = http(admin, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
        if metrics.contains(lowered) {
            in_force = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    assert!(in_force, "the reload never lowered the office's cap");
    std::thread::sleep(Duration::from_millis(500));
    check(MIB);
    let _ = std::fs::remove_file(path);
}

/// 8 MiB/s to clients; 127.0.0.2 is class `gold`, guaranteed 6 MiB/s; every other address
/// is in the default class.
fn gold_config(port: u16, up: u16) -> String {
    format!(
        "max_to_clients = \"8MiB\"\npolicy = \"hierarchical\"\n\
         [[listener]]\nlisten = \"127.0.0.1:{port}\"\nupstream = \"127.0.0.1:{up}\"\n\
         [[class]]\nname = \"gold\"\nnetworks = [\"127.0.0.2/32\"]\nmin_to_clients = \"6MiB\"\n\
         [default_class]\n"
    )
}

#[test]
fn a_guarantee_is_met_beside_a_greedy_class() {
    let up = flooding_upstream(8);
    let port = free_port();
    let path = write_config(&gold_config(port, up));
    let _proxy = start(&path, port);
    let mut counts = vec![client_from([127, 0, 0, 2], port)];
    counts.extend((0..3).map(|_| client_from([127, 0, 0, 3], port)));
    std::thread::sleep(Duration::from_secs(1));
    let r = rates(&counts.iter().collect::<Vec<_>>(), 3.0);
    let (gold, rest): (f64, f64) = (r[0], r[1..].iter().sum());
    println!("gold {gold:.0} B/s, the default class {rest:.0} B/s");
    // 6 MiB/s guaranteed, and half of the other 2 by equal weights.
    assert!(
        (gold / (7.0 * MIB) - 1.0).abs() <= 0.02,
        "gold at {gold:.0} B/s"
    );
    let _ = std::fs::remove_file(path);
}

/// Guarantees and per-address caps need `policy = "hierarchical"`, and a class is not
/// guaranteed more than its own cap: both refused with exit code 2, naming the key.
#[test]
fn impossible_classes_are_refused() {
    let check = check_config;
    let listener = "[[listener]]\nlisten = \"127.0.0.1:9\"\nupstream = \"127.0.0.1:1\"\n";
    let (code, err) = check(&format!(
        "policy = \"weighted\"\n{listener}[[class]]\nname = \"a\"\nnetworks = [\"10.0.0.0/8\"]\nweight = 2\nmax_to_each_address = \"1MiB\"\n"
    ));
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("hierarchical") && err.contains("`a`"), "{err}");
    let (code, err) = check(&format!(
        "policy = \"hierarchical\"\n{listener}[[class]]\nname = \"a\"\nnetworks = [\"10.0.0.0/8\"]\nmax_from_clients = \"1MiB\"\nmin_from_clients = \"2MiB\"\n"
    ));
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("min_from_clients") && err.contains("line"),
        "{err}"
    );
    let (code, err) = check(&format!(
        "policy = \"hierarchical\"\n{listener}[[class]]\nname = \"a\"\nnetworks = [\"10.0.0.0/8\"]\nweight = 3\nmin_to_clients = \"1MiB\"\n"
    ));
    assert_eq!(code, Some(0), "{err}");
}

/// A guaranteed class whose client reads only 1 MiB/s leaves the rest of its guarantee to the
/// others: the default class's clients get the other 7 MiB/s.
#[test]
fn an_unused_guarantee_goes_to_the_others() {
    use std::io::Read;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};

    let up = flooding_upstream(9);
    let port = free_port();
    let path = write_config(&gold_config(port, up));
    let _proxy = start(&path, port);
    // The gold client reads 16 KiB every 16 ms: 1 MiB/s.
    let mut slow = common::connect_from([127, 0, 0, 2], port);
    let slow_count = Arc::new(AtomicU64::new(0));
    let c = Arc::clone(&slow_count);
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 16 * 1024];
        for _ in 0..100_000 {
            let Ok(n) = slow.read(&mut buf) else { break };
            if n == 0 {
                break;
            }
            c.fetch_add(n as u64, Ordering::Relaxed);
            std::thread::sleep(Duration::from_millis(16));
        }
    });
    let mut counts = vec![slow_count];
    counts.extend((0..3).map(|_| client_from([127, 0, 0, 3], port)));
    std::thread::sleep(Duration::from_secs(2));
    let r = rates(&counts.iter().collect::<Vec<_>>(), 3.0);
    let rest: f64 = r[1..].iter().sum();
    println!("slow gold {:.0} B/s, the default class {rest:.0} B/s", r[0]);
    assert!(
        rest >= 0.98 * (8.0 * MIB - r[0]),
        "the default class got {rest:.0} B/s beside gold's {:.0}",
        r[0]
    );
    let _ = std::fs::remove_file(path);
}

/// A reload that puts a connected client's address in another class moves the client there,
/// without dropping it: its new class's cap applies, and `/clients` names the new class.
#[test]
fn a_reload_moves_a_client_to_its_new_class() {
    let up = flooding_upstream(6);
    let (port, admin) = (free_port(), free_port());
    let config = |office: &str| {
        format!(
            "max_to_clients = \"8MiB\"\npolicy = \"hierarchical\"\nadmin = \"127.0.0.1:{admin}\"\n\
             [[listener]]\nlisten = \"127.0.0.1:{port}\"\nupstream = \"127.0.0.1:{up}\"\n\
             [[class]]\nname = \"office\"\nnetworks = [\"{office}\"]\nmax_to_clients = \"1MiB\"\n\
             [default_class]\n"
        )
    };
    let path = write_config(&config("127.0.0.2/32"));
    let proxy = start(&path, port);
    let counts = [
        client_from([127, 0, 0, 2], port),
        client_from([127, 0, 0, 3], port),
    ];
    std::thread::sleep(Duration::from_secs(1));
    let r = rates(&counts.iter().collect::<Vec<_>>(), 2.0);
    println!("before: .2 in office {:.0} B/s, .3 {:.0} B/s", r[0], r[1]);
    assert!((r[0] / MIB - 1.0).abs() <= 0.02, "{r:?}");
    let class_bytes = |class: &str| {
        let (_, metrics) = http(admin, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
        let key =
            format!("fairio_class_bytes_total{{class=\"{class}\",direction=\"to_clients\"}} ");
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(key.as_str()))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(0)
    };
    let office_before = class_bytes("office");
    assert!(office_before > 0);
    // The office moves to 127.0.0.3: .3 comes under the office's cap, .2 goes to the default.
    std::fs::write(&path, config("127.0.0.3/32")).unwrap();
    reload(&proxy);
    // `/clients` names each client's class: measured once both have moved.
    let classes = || {
        let (_, clients) = http(admin, "GET /clients HTTP/1.1\r\nHost: x\r\n\r\n");
        let view: serde_json::Value = serde_json::from_str(&clients).unwrap();
        let class_of = |host: &str| {
            view["clients"]
                .as_array()
                .and_then(|cs| {
                    cs.iter()
                        .find(|c| c["peer"].as_str().is_some_and(|p| p.starts_with(host)))
                })
                .and_then(|c| c["class"].as_str().map(str::to_owned))
        };
        (class_of("127.0.0.2:"), class_of("127.0.0.3:"))
    };
    let moved = (Some("default".to_owned()), Some("office".to_owned()));
    let mut seen = classes();
    for _ in 0..200 {
        if seen == moved {
            break;
        }
        std::thread::sleep(Duration::from_millis(25));
        seen = classes();
    }
    assert_eq!(seen, moved, "the clients' classes after the reload");
    std::thread::sleep(Duration::from_millis(500));
    let r = rates(&counts.iter().collect::<Vec<_>>(), 2.0);
    println!("after: .2 {:.0} B/s, .3 in office {:.0} B/s", r[0], r[1]);
    assert!((r[1] / MIB - 1.0).abs() <= 0.02, "{r:?}");
    assert!(r[0] >= 0.98 * 7.0 * MIB, "{r:?}");
    // What .2 moved in the office stays in the office's counter: no counter goes back.
    let office_after = class_bytes("office");
    assert!(
        office_after >= office_before,
        "the office's counter went from {office_before} to {office_after}"
    );
    let _ = std::fs::remove_file(path);
}

/// `PUT /limits` to the admin API at `admin`: (status, body).
fn put_limits(admin: u16, body: &str) -> (u16, String) {
    http(
        admin,
        &format!(
            "PUT /limits HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ),
    )
}

/// Waits until `/metrics` shows `limit` bytes per second toward clients.
fn until_limit(admin: u16, limit: u64) {
    let series = format!("fairio_limit_bytes_per_second{{direction=\"to_clients\"}} {limit}\n");
    for _ in 0..200 {
        let (_, metrics) = http(admin, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
        if metrics.contains(&series) {
            return;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    panic!("the limit toward clients never became {limit}");
}

/// A class's cap holds with one of its clients reading 20 KiB/s, and the other client of
/// that address takes the rest of the address's part; the global limit raised at run time
/// and restored changes nothing for the class, while the default class takes what is free.
/// Lifting the limit outright is refused: the class's cap applies beneath it. Counted at the
/// clients, with the kernel's default socket buffers.
#[test]
fn a_class_cap_holds_beside_a_slow_client_and_a_raised_limit() {
    use std::io::Read;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};

    let up = flooding_upstream(4);
    let (port, admin) = (free_port(), free_port());
    let path = write_config(&format!(
        "max_to_clients = \"8MiB\"\npolicy = \"hierarchical\"\nadmin = \"127.0.0.1:{admin}\"\n\
         [[listener]]\nlisten = \"127.0.0.1:{port}\"\nupstream = \"127.0.0.1:{up}\"\n\
         [[class]]\nname = \"office\"\nnetworks = [\"127.0.0.2/31\"]\nmax_to_clients = \"2MiB\"\n\
         [default_class]\n"
    ));
    let _proxy = start(&path, port);
    // 2 KiB every 100 ms: 20 KiB/s, from 127.0.0.2.
    let mut slow = common::connect_from([127, 0, 0, 2], port);
    let slow_count = Arc::new(AtomicU64::new(0));
    let c = Arc::clone(&slow_count);
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 2048];
        for _ in 0..100_000 {
            let Ok(n) = slow.read(&mut buf) else { break };
            if n == 0 {
                break;
            }
            c.fetch_add(n as u64, Ordering::Relaxed);
            std::thread::sleep(Duration::from_millis(100));
        }
    });
    let counts = [
        slow_count,
        client_from([127, 0, 0, 2], port),
        client_from([127, 0, 0, 3], port),
        client_from([127, 0, 0, 9], port),
    ];
    std::thread::sleep(Duration::from_millis(1500));
    // 4 s windows, each 1.5 s after the change it follows. Within 3%, not 2%: a known leak
    // (see the closing note of 2026-12-08) costs the slow client's address 1-3% of its part,
    // with or without the limit's changes: its splice holds a grant its full socket cannot
    // take for up to the stall bound, and the part refunded after it is lost where the
    // address's virtual time has fallen behind its group's clock meanwhile. Measured: the
    // office at 0.991-0.998 of its cap here, and 0.978 once in CI.
    let check = |free: f64| {
        let r = rates(&counts.iter().collect::<Vec<_>>(), 4.0);
        let office = r[0] + r[1] + r[2];
        println!(
            "office {office:.0} B/s ({r:?}), the default class {:.0}",
            r[3]
        );
        assert!(
            (office / (2.0 * MIB) - 1.0).abs() <= 0.03,
            "the office at {office:.0} B/s: {r:?}"
        );
        // Each address gets half of the office, the slow client's leftover included.
        assert!(
            ((r[0] + r[1]) / office - 0.5).abs() <= 0.03,
            "127.0.0.2 got {:.4} of the office",
            (r[0] + r[1]) / office
        );
        assert!(r[3] >= 0.98 * free, "the default class at {:.0} B/s", r[3]);
    };
    check(6.0 * MIB);
    // Lifted outright, the office's cap would stop applying: refused, and nothing changes.
    let (status, body) = put_limits(admin, "{\"to_clients\": null, \"from_clients\": null}");
    assert_eq!(status, 409, "{body}");
    assert!(
        body.contains("office") && body.contains("max_to_clients"),
        "{body}"
    );
    until_limit(admin, 8 << 20);
    // Raised, then restored.
    let (status, body) = put_limits(admin, "{\"to_clients\": \"32MiB\", \"from_clients\": null}");
    assert_eq!(status, 200, "{body}");
    until_limit(admin, 32 << 20);
    std::thread::sleep(Duration::from_millis(1500));
    check(30.0 * MIB);
    let (status, body) = put_limits(admin, "{\"to_clients\": \"8MiB\", \"from_clients\": null}");
    assert_eq!(status, 200, "{body}");
    until_limit(admin, 8 << 20);
    std::thread::sleep(Duration::from_millis(1500));
    check(6.0 * MIB);
    let _ = std::fs::remove_file(path);
}
