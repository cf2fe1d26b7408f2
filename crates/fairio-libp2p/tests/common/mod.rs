//! What the swarm tests share: a receiver that counts and checks what arrives, the loop that
//! drives a swarm, and opening a stream while the connection is being made.

#![allow(dead_code, unreachable_pub)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::io::AsyncReadExt;
use libp2p::swarm::SwarmEvent;
use libp2p::{Multiaddr, PeerId, StreamProtocol, Swarm};

pub const PROTOCOL: StreamProtocol = StreamProtocol::new("/fairio-bulk/1");
pub const CHUNK: usize = 16 * 1024;

/// What a receiver is: its id, its address, the bytes it received, and the bytes that were
/// not the ones sent (chunk `k` of a stream is all `k mod 251`).
pub type Receiver = (PeerId, Multiaddr, Arc<AtomicU64>, Arc<AtomicU64>);

/// Makes `swarm` listen on `listen`, count and check what arrives on every stream of
/// [`PROTOCOL`], and run.
pub async fn receive(mut swarm: Swarm<libp2p_stream::Behaviour>, listen: &str) -> Receiver {
    swarm.listen_on(listen.parse().unwrap()).unwrap();
    let addr = loop {
        if let SwarmEvent::NewListenAddr { address, .. } = swarm.select_next_some().await {
            break address;
        }
    };
    let peer = *swarm.local_peer_id();
    let (count, wrong) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let mut incoming = swarm.behaviour().new_control().accept(PROTOCOL).unwrap();
    let (c, w) = (Arc::clone(&count), Arc::clone(&wrong));
    tokio::spawn(async move {
        while let Some((_, mut stream)) = incoming.next().await {
            let (c, w) = (Arc::clone(&c), Arc::clone(&w));
            tokio::spawn(async move {
                let mut buf = vec![0u8; CHUNK];
                let mut offset = 0u64;
                while let Ok(n) = stream.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    for (i, b) in buf[..n].iter().enumerate() {
                        if u64::from(*b) != ((offset + i as u64) / CHUNK as u64) % 251 {
                            w.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    offset += n as u64;
                    c.fetch_add(n as u64, Ordering::Relaxed);
                }
            });
        }
    });
    tokio::spawn(drive(swarm));
    (peer, addr, count, wrong)
}

/// Polls `swarm` for ever.
pub async fn drive(mut swarm: Swarm<libp2p_stream::Behaviour>) {
    loop {
        swarm.select_next_some().await;
    }
}

/// A stream to `peer`: tried every 100 ms while the connection is being made, 50 times at
/// most.
pub async fn open(
    control: &mut libp2p_stream::Control,
    peer: PeerId,
    protocol: StreamProtocol,
) -> libp2p::Stream {
    for _ in 0..50 {
        match control.open_stream(peer, protocol.clone()).await {
            Ok(s) => return s,
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    panic!("no stream to {peer}");
}
