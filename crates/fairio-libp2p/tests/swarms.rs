//! Real swarms (TCP + noise + yamux): a node whose transport is a `FairTransport` sends bulk
//! data under an upload limit to two peers, one on 127.0.0.2 (over three streams) and one on
//! 127.0.0.3 (over one). The wire total holds the limit, each remote peer gets half, and every
//! byte is the one sent.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

mod common;

use common::{CHUNK, PROTOCOL, Receiver, drive, open, receive};
use fairio::{Config, Scheduler};
use fairio_libp2p::FairTransport;
use futures_util::io::AsyncWriteExt;
use libp2p::core::upgrade::Version;
use libp2p::{PeerId, Transport, noise, tcp, yamux};

const LIMIT: u64 = 4 << 20;

/// A peer that listens on `ip` and counts (and checks) what arrives on every stream.
async fn receiver(ip: &str) -> Receiver {
    let swarm = libp2p::SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_tcp(
            tcp::Config::default().nodelay(true),
            noise::Config::new,
            yamux::Config::default,
        )
        .unwrap()
        .with_behaviour(|_| libp2p_stream::Behaviour::new())
        .unwrap()
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(60)))
        .build();
    receive(swarm, &format!("/ip4/{ip}/tcp/0")).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_peers_share_a_nodes_upload_limit_by_ip() {
    let sched = Scheduler::new(
        Config::new(64 * 1024)
            .max_upload_speed(Some(LIMIT))
            .write_queue_size(Some(256 * 1024)),
    )
    .unwrap();
    let mut sender = libp2p::SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_other_transport(|key| {
            let tcp = tcp::tokio::Transport::new(tcp::Config::default().nodelay(true));
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(
                FairTransport::new(tcp, &sched)
                    .upgrade(Version::V1)
                    .authenticate(noise::Config::new(key)?)
                    .multiplex(yamux::Config::default()),
            )
        })
        .unwrap()
        .with_behaviour(|_| libp2p_stream::Behaviour::new())
        .unwrap()
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(60)))
        .build();

    let mut peers = Vec::new();
    for (ip, streams) in [("127.0.0.2", 3), ("127.0.0.3", 1)] {
        let (peer, addr, count, wrong) = receiver(ip).await;
        sender
            .dial(addr.with(libp2p::multiaddr::Protocol::P2p(peer)))
            .unwrap();
        peers.push((peer, streams, count, wrong));
    }
    let mut control = sender.behaviour().new_control();
    tokio::spawn(drive(sender));

    let mut opened: HashMap<PeerId, usize> = HashMap::new();
    for (peer, streams, _, _) in &peers {
        for _ in 0..*streams {
            let mut stream = open(&mut control, *peer, PROTOCOL).await;
            *opened.entry(*peer).or_default() += 1;
            tokio::spawn(async move {
                for k in 0u64.. {
                    let chunk = vec![(k % 251) as u8; CHUNK];
                    if stream.write_all(&chunk).await.is_err() {
                        return;
                    }
                }
            });
        }
    }
    assert_eq!(
        sched.connection_count(),
        2,
        "one raw connection per peer, registered"
    );

    tokio::time::sleep(Duration::from_secs(2)).await;
    let before: Vec<u64> = peers.iter().map(|p| p.2.load(Ordering::Relaxed)).collect();
    let wire_before = sched.global_stat().total_sent;
    let start = Instant::now();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let secs = start.elapsed().as_secs_f64();
    let wire = (sched.global_stat().total_sent - wire_before) as f64 / secs;
    let rates: Vec<f64> = peers
        .iter()
        .zip(before)
        .map(|(p, b)| (p.2.load(Ordering::Relaxed) - b) as f64 / secs)
        .collect();
    let app: f64 = rates.iter().sum();
    println!(
        "127.0.0.2 (3 streams) {:.0} B/s, 127.0.0.3 (1) {:.0} B/s; on the wire {:.4} of the limit, payload {:.4}",
        rates[0],
        rates[1],
        wire / LIMIT as f64,
        app / LIMIT as f64
    );
    assert!(
        (wire / LIMIT as f64 - 1.0).abs() <= 0.02,
        "wire rate {wire:.0}"
    );
    assert!(app >= 0.97 * LIMIT as f64, "payload rate {app:.0}");
    assert!(
        (rates[1] / app - 0.5).abs() <= 0.03,
        "127.0.0.3 got {:.3}",
        rates[1] / app
    );
    for (_, _, count, wrong) in &peers {
        assert!(count.load(Ordering::Relaxed) > 0);
        assert_eq!(
            wrong.load(Ordering::Relaxed),
            0,
            "bytes that were not the ones sent"
        );
    }
    sched.shutdown(Some(Duration::from_millis(100))).await;
}
