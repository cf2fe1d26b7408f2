//! curl and iperf3 through `fairio proxy --config` with two classes: the office (127.0.0.2,
//! weight 3) and everyone else (127.0.0.3, weight 1) share the proxy's download limit 3 : 1.
//! Both tools are Debian packages `.ci/run` installs.
#![cfg(target_os = "linux")]

mod common;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{BIN, Proxy, free_port, wait_for};

/// Kills a helper process on drop.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A proxy with two listeners (to `up_a` and `up_b`), a 4 MiB/s download limit, and the two
/// classes.
fn proxy(listen_a: u16, up_a: u16, listen_b: u16, up_b: u16) -> (Proxy, std::path::PathBuf) {
    let text = format!(
        "max_to_clients = \"4MiB\"\nmax_from_clients = \"4MiB\"\npolicy = \"weighted\"\n\
         [[listener]]\nlisten = \"127.0.0.1:{listen_a}\"\nupstream = \"127.0.0.1:{up_a}\"\n\
         [[listener]]\nlisten = \"127.0.0.1:{listen_b}\"\nupstream = \"localhost:{up_b}\"\n\
         [[class]]\nname = \"office\"\nnetworks = [\"127.0.0.2/32\"]\nweight = 3\n"
    );
    let path = std::env::temp_dir().join(format!(
        "fairio-real-{}-{listen_a}.toml",
        std::process::id()
    ));
    std::fs::write(&path, text).unwrap();
    let child = Command::new(BIN)
        .args(["proxy", "--config", path.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let p = Proxy(child);
    wait_for(listen_a);
    wait_for(listen_b);
    (p, path)
}

#[test]
fn curl_downloads_split_three_to_one_by_class() {
    // An HTTP upstream: python's http.server over a 64 MiB file.
    let dir = std::env::temp_dir().join(format!("fairio-www-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("big"), vec![7u8; 64 << 20]).unwrap();
    let up = free_port();
    let _http = Reaped(
        Command::new("python3")
            .args([
                "-m",
                "http.server",
                &up.to_string(),
                "--bind",
                "127.0.0.1",
                "-d",
                dir.to_str().unwrap(),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 runs"),
    );
    wait_for(up);
    let (a, b) = (free_port(), free_port());
    let (_proxy, path) = proxy(a, up, b, up);
    // Two curls at once for 3 s: each prints how many bytes it got.
    let curl = |from: &str, port: u16| {
        Command::new("curl")
            .args([
                "-s",
                "-o",
                "/dev/null",
                "--max-time",
                "3",
                "-w",
                "%{size_download}",
                "--interface",
                from,
                &format!("http://127.0.0.1:{port}/big"),
            ])
            .stdout(Stdio::piped())
            .spawn()
            .expect("curl runs")
    };
    let (office, other) = (curl("127.0.0.2", a), curl("127.0.0.3", b));
    let got = |c: Child| -> f64 {
        let out = c.wait_with_output().unwrap();
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .unwrap_or(0.0)
    };
    let (o, t) = (got(office), got(other));
    println!("curl: office {o:.0} B, other {t:.0} B in 3 s");
    assert!((o / (o + t) - 0.75).abs() <= 0.05, "office {o}, other {t}");
    assert!(o + t >= 0.8 * 3.0 * 4194304.0, "only {} B in 3 s", o + t);
    let _ = std::fs::remove_file(path);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn iperf3_reverse_streams_split_three_to_one_by_class() {
    // iperf3 serves one test at a time: one server per client, one listener each.
    let (up_a, up_b) = (free_port(), free_port());
    let servers: Vec<Reaped> = [up_a, up_b]
        .iter()
        .map(|p| {
            Reaped(
                Command::new("iperf3")
                    .args(["-s", "-p", &p.to_string(), "-B", "127.0.0.1"])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .expect("iperf3 runs"),
            )
        })
        .collect();
    wait_for(up_a);
    wait_for(up_b);
    let (a, b) = (free_port(), free_port());
    let (_proxy, path) = proxy(a, up_a, b, up_b);
    // The readiness probes reached the iperf3 servers as empty tests: let them reset.
    std::thread::sleep(Duration::from_secs(1));
    // -R: the server sends, so the bytes are the clients' download, under max_to_clients.
    let iperf = |from: &str, port: u16| {
        Command::new("iperf3")
            .args([
                "-c",
                "127.0.0.1",
                "-p",
                &port.to_string(),
                "-B",
                from,
                "-R",
                "-t",
                "4",
                "-J",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("iperf3 runs")
    };
    let (office, other) = (iperf("127.0.0.2", a), iperf("127.0.0.3", b));
    let received = |c: Child| -> f64 {
        let out = c.wait_with_output().unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        v["end"]["sum_received"]["bytes"].as_f64().unwrap_or(0.0)
    };
    let (o, t) = (received(office), received(other));
    println!("iperf3 -R: office {o:.0} B, other {t:.0} B");
    assert!(o > 0.0 && t > 0.0, "both tests ran: {o}, {t}");
    assert!((o / (o + t) - 0.75).abs() <= 0.05, "office {o}, other {t}");
    drop(servers);
    let _ = std::fs::remove_file(path);
}
