//! `Connection::read_bytes`: received bytes handed over without a copy, in order, bounded by
//! `max`, mixed freely with `read`, ending like `read`.

use fairio::{Config, Error, Scheduler};
use tokio::io::AsyncWriteExt;

#[tokio::test]
async fn read_bytes_hands_over_everything_in_order_and_ends_like_read() {
    let (a, mut peer) = tokio::io::duplex(64 * 1024);
    let sched = Scheduler::new(Config::new(8 * 1024).read_queue_size(Some(32 * 1024))).unwrap();
    let conn = sched.register(a).unwrap();
    let sent: Vec<u8> = (0..300_000u32).map(|i| (i * 31 % 251) as u8).collect();
    let writer = {
        let sent = sent.clone();
        tokio::spawn(async move {
            peer.write_all(&sent).await.unwrap();
            peer.shutdown().await.unwrap();
        })
    };
    assert!(conn.read_bytes(0).await.unwrap().is_empty());
    let mut got = Vec::with_capacity(sent.len());
    // Bounded: at least one byte per call.
    for turn in 0..sent.len() {
        if got.len() == sent.len() {
            break;
        }
        if turn % 2 == 0 {
            let chunk = conn.read_bytes(5000).await.unwrap();
            assert!(
                !chunk.is_empty() && chunk.len() <= 5000,
                "{} bytes",
                chunk.len()
            );
            got.extend_from_slice(&chunk);
        } else {
            let mut buf = [0u8; 777];
            let n = conn.read(&mut buf).await.unwrap();
            got.extend_from_slice(&buf[..n]);
        }
    }
    assert_eq!(got, sent);
    writer.await.unwrap();
    assert!(matches!(
        conn.read_bytes(10).await,
        Err(Error::ConnectionClosed)
    ));
    assert_eq!(conn.stat().total_recv, sent.len() as u64);
    sched.shutdown(None).await;
}
