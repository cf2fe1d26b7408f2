//! Flags that contradict each other, or would do nothing, are refused with exit code 2 and a
//! message that names both; negative numbers reach the value parsers.

mod common;

use std::process::Command;

use common::BIN;

fn refused(args: &[&str], needles: &[&str]) {
    let out = Command::new(BIN).args(args).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{args:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    for needle in needles {
        assert!(err.contains(needle), "{args:?}: no {needle:?} in {err}");
    }
    assert!(out.stdout.is_empty(), "{args:?} ran anyway");
}

#[test]
fn demo_weights_need_the_weighted_policy() {
    refused(
        &["demo", "--weights", "1,2"],
        &["--weights", "--policy weighted"],
    );
    refused(
        &["demo", "--policy", "window", "--weights", "1,2"],
        &["--weights", "--policy window"],
    );
}

#[test]
fn demo_join_at_must_come_before_the_end() {
    refused(
        &["demo", "--join-at", "20", "--secs", "2"],
        &["--join-at 20", "--secs 2"],
    );
    refused(
        &["demo", "--join-at", "2", "--secs", "2"],
        &["--join-at 2", "--secs 2"],
    );
}

#[test]
fn demo_weights_beyond_the_connections_are_refused() {
    refused(
        &[
            "demo",
            "--policy",
            "weighted",
            "--weights",
            "1,2,3",
            "--conns",
            "2",
        ],
        &["--weights", "--conns 2"],
    );
}

#[test]
fn negative_numbers_are_explained_by_the_value_parser() {
    refused(
        &["demo", "--secs", "-1"],
        &["'-1' is not a positive number of seconds"],
    );
    refused(
        &["demo", "--join-at", "-1"],
        &["'-1' is not a positive number"],
    );
    refused(&["demo", "--conns", "-3"], &["--conns", "-3"]);
    refused(
        &["demo", "--policy", "weighted", "--weights", "-1"],
        &["--weights", "-1"],
    );
}

#[test]
fn proxy_refuses_the_weighted_policy_it_cannot_feed() {
    refused(
        &[
            "proxy",
            "--listen",
            "127.0.0.1:1",
            "--upstream",
            "127.0.0.1:2",
            "--policy",
            "weighted",
        ],
        &["--policy weighted", "--policy equal"],
    );
}

#[test]
fn proxy_refuses_an_upstream_without_a_port() {
    refused(
        &["proxy", "--listen", "127.0.0.1:7", "--upstream", "backend"],
        &["--upstream", "host:port"],
    );
}

#[test]
fn proxy_refuses_forwarding_to_itself_and_a_shared_metrics_address() {
    refused(
        &[
            "proxy",
            "--listen",
            "127.0.0.1:7",
            "--upstream",
            "127.0.0.1:7",
        ],
        &["--listen", "--upstream"],
    );
    refused(
        &[
            "proxy",
            "--listen",
            "127.0.0.1:7",
            "--upstream",
            "127.0.0.1:8",
            "--metrics",
            "127.0.0.1:7",
        ],
        &["--admin", "--listen"],
    );
}

#[test]
fn proxy_refuses_a_per_client_cap_that_never_limits() {
    refused(
        &[
            "proxy",
            "--listen",
            "127.0.0.1:7",
            "--upstream",
            "127.0.0.1:8",
            "--max-to-clients",
            "1MiB",
            "--max-from-clients",
            "1MiB",
            "--per-client-cap",
            "2MiB",
        ],
        &["--per-client-cap", "--max-to-clients", "--max-from-clients"],
    );
    refused(
        &[
            "proxy",
            "--listen",
            "127.0.0.1:7",
            "--upstream",
            "127.0.0.1:8",
            "--stats-interval",
            "-5",
        ],
        &["--stats-interval", "-5"],
    );
}

/// With a hard limit too low for the run, the demo refuses before it opens a socket, with the
/// number it needs.
#[cfg(target_os = "linux")]
#[test]
fn demo_refuses_more_connections_than_the_hard_descriptor_limit() {
    let out = Command::new("sh")
        .args([
            "-c",
            &format!("ulimit -n 128 && exec {BIN} demo --conns 1000 --secs 1"),
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--conns 1000") && err.contains("2064"),
        "{err}"
    );
}

/// With only the soft limit too low, the demo raises it and runs.
#[cfg(target_os = "linux")]
#[test]
fn demo_raises_a_low_soft_descriptor_limit() {
    let out = Command::new("sh")
        .args([
            "-c",
            &format!(
                "ulimit -Sn 128 && ulimit -Hn 4096 && exec {BIN} demo --conns 300 --secs 0.5 --json"
            ),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["connections"].as_array().unwrap().len(), 300);
}

#[test]
fn proxy_fleet_flags_need_a_fleet_and_a_limit() {
    refused(
        &[
            "proxy",
            "--listen",
            "127.0.0.1:7",
            "--upstream",
            "127.0.0.1:8",
            "--fleet",
            "redis://127.0.0.1:1/0",
        ],
        &["--fleet", "--max-to-clients", "--max-from-clients"],
    );
    refused(
        &[
            "proxy",
            "--listen",
            "127.0.0.1:7",
            "--upstream",
            "127.0.0.1:8",
            "--fleet-budget",
            "x",
        ],
        &["--fleet-budget", "--fleet REDIS_URL"],
    );
}
