//! Real swarms over QUIC: a node whose transport is a `FairMuxerTransport` around libp2p's QUIC
//! transport sends bulk data under an upload limit to two peers, one on 127.0.0.2 (over three
//! substreams) and one on 127.0.0.3 (over one). What the peers receive holds the limit, each
//! gets half, and every byte is the one sent.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

mod common;

use common::{CHUNK, PROTOCOL, Receiver, drive, open, receive};
use fairio::{Config, Scheduler};
use fairio_libp2p::FairMuxerTransport;
use futures_util::StreamExt;
use futures_util::io::{AsyncReadExt, AsyncWriteExt};
use libp2p::swarm::SwarmEvent;
use libp2p::{PeerId, StreamProtocol, quic};

const LIMIT: u64 = 4 << 20;

/// A peer that listens on `ip` and counts (and checks) what arrives on every stream.
async fn receiver(ip: &str) -> Receiver {
    let swarm = libp2p::SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_quic()
        .with_behaviour(|_| libp2p_stream::Behaviour::new())
        .unwrap()
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(60)))
        .build();
    receive(swarm, &format!("/ip4/{ip}/udp/0/quic-v1")).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_peers_share_a_nodes_upload_limit_over_quic() {
    let sched = Scheduler::new(
        Config::new(64 * 1024)
            .max_upload_speed(Some(LIMIT))
            .write_queue_size(Some(256 * 1024)),
    )
    .unwrap();
    let mut sender = libp2p::SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_other_transport(|key| {
            FairMuxerTransport::new(quic::tokio::Transport::new(quic::Config::new(key)), &sched)
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
    // Every substream is registered: awaited (bounded), since a substream's registration and
    // the stream handed to the application are not the same event on a loaded machine.
    let mut registered = 0;
    for _ in 0..200 {
        registered = sched.connection_count();
        if registered == 4 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(registered, 4, "every substream registered");

    tokio::time::sleep(Duration::from_secs(2)).await;
    let received_total = |peers: &[(PeerId, usize, Arc<AtomicU64>, Arc<AtomicU64>)]| {
        peers
            .iter()
            .map(|p| p.2.load(Ordering::Relaxed))
            .sum::<u64>()
    };
    // Handed over to QUIC but not received yet when the window opens: it may arrive inside.
    let handed_before = sched.global_stat().total_sent;
    let held = handed_before.saturating_sub(received_total(&peers));
    let before: Vec<u64> = peers.iter().map(|p| p.2.load(Ordering::Relaxed)).collect();
    let start = Instant::now();
    tokio::time::sleep(Duration::from_secs(4)).await;
    let secs = start.elapsed().as_secs_f64();
    let handed = (sched.global_stat().total_sent - handed_before) as f64 / secs;
    let rates: Vec<f64> = peers
        .iter()
        .zip(before)
        .map(|(p, b)| (p.2.load(Ordering::Relaxed) - b) as f64 / secs)
        .collect();
    let app: f64 = rates.iter().sum();
    println!(
        "127.0.0.2 (3 substreams) {:.0} B/s, 127.0.0.3 (1) {:.0} B/s; received {:.4} of the \
         limit, handed over {:.4}",
        rates[0],
        rates[1],
        app / LIMIT as f64,
        handed / LIMIT as f64
    );
    // The limit holds at the receivers whatever the load (the window's share, the 40 ms
    // burst, and what QUIC held when it opened). That it is used whole is measured, not
    // asserted (0.9997 received on an idle machine): beside a busy machine's compilers it is
    // a bound on spare CPU, not on fairio (see fairio-quinn's test).
    assert!(
        app * secs <= LIMIT as f64 * (secs + 0.04) + held as f64,
        "received {:.4} of the limit, {held} B held at the start",
        app / LIMIT as f64
    );
    assert!(
        (rates[1] / rates[0] - 1.0).abs() <= 0.02,
        "127.0.0.3 got {:.3} of 127.0.0.2's rate",
        rates[1] / rates[0]
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

/// A request-response exchange over a fair QUIC substream: the requester writes, closes its
/// sending side, and reads the reply to its end (libp2p's close ends the sending side only).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_substream_still_reads_the_reply() {
    const ECHO: StreamProtocol = StreamProtocol::new("/fairio-echo/1");
    let mut server = libp2p::SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_quic()
        .with_behaviour(|_| libp2p_stream::Behaviour::new())
        .unwrap()
        .build();
    server
        .listen_on("/ip4/127.0.0.2/udp/0/quic-v1".parse().unwrap())
        .unwrap();
    let addr = loop {
        if let SwarmEvent::NewListenAddr { address, .. } = server.select_next_some().await {
            break address;
        }
    };
    let server_peer = *server.local_peer_id();
    let mut incoming = server.behaviour().new_control().accept(ECHO).unwrap();
    tokio::spawn(async move {
        while let Some((_, mut stream)) = incoming.next().await {
            tokio::spawn(async move {
                let mut request = Vec::new();
                stream.read_to_end(&mut request).await.unwrap();
                request.reverse();
                stream.write_all(&request).await.unwrap();
                stream.close().await.unwrap();
            });
        }
    });
    tokio::spawn(drive(server));

    let sched = Scheduler::new(Config::new(64 * 1024).max_upload_speed(Some(LIMIT))).unwrap();
    let mut client = libp2p::SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_other_transport(|key| {
            FairMuxerTransport::new(quic::tokio::Transport::new(quic::Config::new(key)), &sched)
        })
        .unwrap()
        .with_behaviour(|_| libp2p_stream::Behaviour::new())
        .unwrap()
        .build();
    client
        .dial(addr.with(libp2p::multiaddr::Protocol::P2p(server_peer)))
        .unwrap();
    let mut control = client.behaviour().new_control();
    tokio::spawn(drive(client));
    let mut stream = open(&mut control, server_peer, ECHO).await;
    let request: Vec<u8> = (0..100_000u32).map(|i| (i % 241) as u8).collect();
    stream.write_all(&request).await.unwrap();
    stream.close().await.unwrap();
    let mut reply = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), stream.read_to_end(&mut reply))
        .await
        .expect("the reply came")
        .unwrap();
    let mut want = request;
    want.reverse();
    assert!(
        reply == want,
        "{} bytes back, not the reversed request",
        reply.len()
    );
}
