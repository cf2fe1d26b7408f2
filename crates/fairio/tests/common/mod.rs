//! Peers and users shared by the paused-clock tests.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use fairio::{Connection, Policy};
use tokio::io::{AsyncWriteExt, DuplexStream};

/// The peer, sending `chunk`-byte pieces as fast as the stream takes them: large ones keep the
/// pipe full, as a TCP peer keeps the kernel buffer full, so that reads return whole buffers.
pub(crate) fn flood_with(mut peer: DuplexStream, chunk: usize) {
    tokio::spawn(async move {
        let chunk = vec![7u8; chunk];
        while peer.write_all(&chunk).await.is_ok() {}
    });
}

/// The user: reads from the connection as fast as it delivers, counting.
pub(crate) fn reader<P: Policy>(conn: Connection<P>) -> Arc<AtomicU64> {
    let count = Arc::new(AtomicU64::new(0));
    let c = Arc::clone(&count);
    tokio::spawn(async move {
        let mut buf = vec![0u8; 64 * 1024];
        while let Ok(n) = conn.read(&mut buf).await {
            c.fetch_add(n as u64, Ordering::Relaxed);
        }
    });
    count
}

/// Every counter now.
pub(crate) fn snapshot(counts: &[Arc<AtomicU64>]) -> Vec<u64> {
    counts.iter().map(|c| c.load(Ordering::Relaxed)).collect()
}
