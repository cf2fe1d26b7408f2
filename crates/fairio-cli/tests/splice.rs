//! `fairio proxy` splices by default: bytes arrive intact both ways, with limits or without,
//! spliced (counted in `/metrics`) or copied with `--splice-pipes 0`; and a limit holds for
//! spliced bytes as for copied ones, counted where the clients receive them.
#![cfg(target_os = "linux")]

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant};

use common::{free_port, hash, http, random, start_proxy, upstream};

/// The proxy's counter of spliced bytes (clients that have left).
fn spliced(admin: u16) -> u64 {
    let (status, body) = http(
        admin,
        "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(status, 200);
    body.lines()
        .find_map(|l| l.strip_prefix("fairio_spliced_bytes_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no fairio_spliced_bytes_total in:\n{body}"))
}

/// The spliced count once it reaches `least` (it grows as clients leave, after their
/// downloads end), or as it stands after 5 s.
fn spliced_reaching(admin: u16, least: u64) -> u64 {
    let mut n = 0;
    for _ in 0..100 {
        n = spliced(admin);
        if n >= least {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    n
}

/// One client: sends `up`, half-closes, reads the reply to its end.
fn exchange(port: u16, up: Vec<u8>) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        let mut w = s.try_clone().unwrap();
        let sender = std::thread::spawn(move || {
            w.write_all(&up).unwrap();
            w.shutdown(Shutdown::Write).unwrap();
        });
        let mut got = Vec::new();
        s.read_to_end(&mut got).unwrap();
        sender.join().unwrap();
        got
    })
}

/// Three clients at once, 3 MiB up and 6 MiB down each: every byte intact, with the splice on
/// and off, limited and not. With it on, nearly every byte is spliced (under a limit on what
/// clients send, what a client's read pump read ahead before the splice took over goes by
/// copy: at most its read queue, 256 KiB, and a read buffer); off, none is.
#[test]
fn bytes_arrive_intact_spliced_or_copied() {
    let reply = random(6 << 20, 7);
    for (extra, splicing) in [
        (&[][..], true),
        (&["--splice-pipes", "0"][..], false),
        (
            &["--max-to-clients", "24MiB", "--max-from-clients", "24MiB"][..],
            true,
        ),
        (
            &["--max-to-clients", "24MiB", "--splice-pipes", "0"][..],
            false,
        ),
    ] {
        let (up_port, hashes) = upstream(reply.clone());
        let (listen, admin) = (free_port(), free_port());
        let admin_addr = format!("127.0.0.1:{admin}");
        let mut args = vec!["--admin", &admin_addr];
        args.extend_from_slice(extra);
        let _proxy = start_proxy(listen, up_port, &args);
        common::wait_for(admin);
        let sent: Vec<Vec<u8>> = (0..3).map(|i| random(3 << 20, 100 + i)).collect();
        let clients: Vec<_> = sent.iter().map(|d| exchange(listen, d.clone())).collect();
        for c in clients {
            let got = c.join().unwrap();
            assert_eq!(got.len(), reply.len(), "{extra:?}");
            assert!(got == reply, "{extra:?}: the download differs");
        }
        let mut want: Vec<u64> = sent.iter().map(|d| hash(d)).collect();
        // The probe start_proxy made reached the upstream too, with nothing: not an upload.
        let mut got: Vec<u64> = (0..4)
            .map_while(|_| hashes.recv_timeout(Duration::from_secs(30)).ok())
            .filter(|&h| h != hash(&[]))
            .take(3)
            .collect();
        want.sort_unstable();
        got.sort_unstable();
        assert_eq!(got, want, "{extra:?}: an upload differs");
        let total = 3 * ((3u64 << 20) + (6 << 20));
        let least = if splicing { total - 3 * (320 << 10) } else { 0 };
        let n = spliced_reaching(admin, least);
        if splicing {
            // The probe's pair counts too: the upstream began sending it the reply.
            let most = total + reply.len() as u64;
            assert!(
                n >= total - 3 * (320 << 10) && n <= most,
                "{extra:?}: {n} of {total} spliced"
            );
        } else {
            assert_eq!(n, 0, "{extra:?}");
        }
    }
}

/// A download limit toward the clients holds for spliced bytes: 4 clients fetching 4 MiB
/// each through 4 MiB/s take at least about 4 s (what a limit cannot beat, less its first
/// burst), counted when the last byte arrives at the clients.
#[test]
fn a_limit_holds_for_spliced_bytes() {
    let reply = random(4 << 20, 3);
    let (up_port, _hashes) = upstream(reply.clone());
    let (listen, admin) = (free_port(), free_port());
    let admin_addr = format!("127.0.0.1:{admin}");
    let _proxy = start_proxy(
        listen,
        up_port,
        &["--max-to-clients", "4MiB", "--admin", &admin_addr],
    );
    common::wait_for(admin);
    let started = Instant::now();
    let clients: Vec<_> = (0..4).map(|_| exchange(listen, Vec::new())).collect();
    for c in clients {
        assert!(c.join().unwrap() == reply);
    }
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(3700),
        "16 MiB through 4 MiB/s in {took:?}"
    );
    // Spliced, not copied.
    let n = spliced_reaching(admin, 16 << 20);
    assert!(n >= 16 << 20, "{n} bytes spliced");
}
