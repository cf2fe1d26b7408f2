//! `fairio proxy` under a service manager: this test plays systemd's side of `NOTIFY_SOCKET`
//! and of socket activation (`LISTEN_PID`, `LISTEN_FDS`), over real sockets.

mod common;

use std::io::{Read, Write};
use std::os::unix::net::UnixDatagram;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{BIN, Proxy, free_port, terminate, wait_for};

fn kill(sig: &str, pid: u32) {
    let ok = Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok);
}

/// The next notification, within 10 s.
fn next(sock: &UnixDatagram) -> String {
    let mut buf = [0u8; 1024];
    let n = sock.recv(&mut buf).expect("a notification within 10 s");
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[test]
fn ready_reloading_and_stopping_are_notified_in_order() {
    let dir = std::env::temp_dir().join(format!("fairio-systemd-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("notify.sock");
    let _ = std::fs::remove_file(&path);
    let sock = UnixDatagram::bind(&path).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let (port, up) = (free_port(), free_port());
    let child = Command::new(BIN)
        .args(["proxy", "--listen", &format!("127.0.0.1:{port}")])
        .args(["--upstream", &format!("127.0.0.1:{up}")])
        .env("NOTIFY_SOCKET", &path)
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut proxy = Proxy(child);
    let ready = next(&sock);
    assert!(
        ready.starts_with("READY=1\nSTATUS=serving 0 clients"),
        "{ready:?}"
    );
    // Ready means accepting: a client connects at once.
    std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    kill("-HUP", proxy.0.id());
    let reloading = next(&sock);
    assert!(
        reloading.starts_with("RELOADING=1\nMONOTONIC_USEC="),
        "{reloading:?}"
    );
    let again = next(&sock);
    assert!(again.starts_with("READY=1\n"), "{again:?}");
    assert!(terminate(&mut proxy).success());
    let stopping = next(&sock);
    assert!(stopping.starts_with("STOPPING=1"), "{stopping:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_socket_activated_listener_is_served_without_binding() {
    // The listening socket is the test's, handed over as descriptor 3 the way systemd does:
    // bash moves it there (dash takes no descriptor above 9) and sets LISTEN_PID to its own pid, which the proxy takes
    // over by exec.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let sock = socket2::Socket::from(std::os::fd::OwnedFd::from(listener));
    sock.set_cloexec(false).unwrap();
    let fd = std::os::fd::AsRawFd::as_raw_fd(&sock);
    let (up, served) = common::upstream(b"from the upstream".to_vec());
    let script = format!(
        "[ {fd} -eq 3 ] || {{ exec 3<&{fd}; exec {fd}<&-; }}; LISTEN_PID=$$ LISTEN_FDS=1 exec \"$0\" proxy --listen \
         127.0.0.1:{port} --upstream 127.0.0.1:{up}"
    );
    let child = Command::new("bash")
        .args(["-c", &script, BIN])
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let _ = sock.set_cloexec(true);
    let mut proxy = Proxy(child);
    wait_for(port);
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"hi").unwrap();
    s.shutdown(std::net::Shutdown::Write).unwrap();
    let mut got = Vec::new();
    s.read_to_end(&mut got).unwrap();
    assert_eq!(got, b"from the upstream");
    let mut hashes = Vec::new();
    for _ in 0..2 {
        hashes.push(served.recv_timeout(Duration::from_secs(10)).unwrap());
    }
    assert!(hashes.contains(&common::hash(b"hi")));
    assert!(terminate(&mut proxy).success());
    let log = proxy.log();
    assert!(log.contains("1 listening sockets inherited"), "{log}");
    drop(sock);
}
