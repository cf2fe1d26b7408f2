//! A state-machine property test of the connection API against a reference model of the bytes:
//! random sequences of write, write_now, read, read_now, peer sends, limit toggles (to `None`
//! and back), caps, half-closes with timeouts, close, shutdown, and a peer that stalls and comes
//! back, on tokio's paused clock. Whatever the sequence:
//! - what the user reads is exactly a prefix of what the peer sent;
//! - what the peer receives is a prefix of what was accepted, and accepted = delivered +
//!   every `unsent` reported (each lost byte in exactly one error);
//! - the upload never goes faster than the limit in force (checked at the stream over every
//!   step of at least 1 s with a limit in force throughout);
//! - nothing is accepted after close, and nothing hangs.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use fairio::{Config, Error, Scheduler};
use proptest::prelude::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio::time::timeout;

#[derive(Clone, Debug)]
enum Op {
    Write(usize),
    WriteNow(usize),
    PeerSend(usize),
    Read(usize),
    ReadNow(usize),
    Advance(u64),
    Close,
    Shutdown,
    /// Lifts the upload and download limits.
    Unlimit,
    /// Imposes limits again (bytes per second).
    Limit(u64),
    /// Caps the connection's own rates.
    Cap(Option<u64>),
    /// Half-closes with a timeout (ms).
    ShutdownWrite(u64),
    /// The peer stops reading, or reads again.
    PeerStall(bool),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..20_000usize).prop_map(Op::Write),
        3 => (0..6_000usize).prop_map(Op::WriteNow),
        3 => (1..10_000usize).prop_map(Op::PeerSend),
        3 => (0..8_000usize).prop_map(Op::Read),
        2 => (0..8_000usize).prop_map(Op::ReadNow),
        2 => (1..500u64).prop_map(Op::Advance),
        1 => Just(Op::Close),
        1 => Just(Op::Shutdown),
        1 => Just(Op::Unlimit),
        1 => (4_096..200_000u64).prop_map(Op::Limit),
        1 => prop::option::of(1_024..100_000u64).prop_map(Op::Cap),
        1 => (1..400u64).prop_map(Op::ShutdownWrite),
        1 => any::<bool>().prop_map(Op::PeerStall),
    ]
}

fn bytes_of(len: usize, start: usize) -> Bytes {
    (start..start + len)
        .map(|i| (i % 253) as u8)
        .collect::<Vec<u8>>()
        .into()
}

async fn run(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let config = Config::new(2048)
        .max_upload_speed(Some(64 * 1024))
        .max_download_speed(Some(64 * 1024))
        .read_queue_size(Some(8 * 1024))
        .write_queue_size(Some(8 * 1024));
    let sched = Scheduler::new(config).unwrap();
    let (ours, theirs) = tokio::io::duplex(4096);
    let conn = sched.register(ours).unwrap();
    let (mut peer_r, mut peer_w) = tokio::io::split(theirs);
    let peer_got = Arc::new(Mutex::new(Vec::new()));
    let (stall_tx, stall_rx) = tokio::sync::watch::channel(false);
    let reader = {
        let got = Arc::clone(&peer_got);
        let mut stall_rx = stall_rx;
        tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            loop {
                // A stalled peer reads nothing until it is told to go on.
                let _ = stall_rx.wait_for(|stalled| !stalled).await;
                match peer_r.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => got.lock().unwrap().extend_from_slice(&buf[..n]),
                }
            }
        })
    };
    let (peer_tx, mut peer_rx) = mpsc::unbounded_channel::<Bytes>();
    tokio::spawn(async move {
        while let Some(b) = peer_rx.recv().await {
            if peer_w.write_all(&b).await.is_err() {
                break;
            }
        }
    });

    let (mut accepted, mut peer_sent, mut read) = (Vec::new(), Vec::new(), Vec::new());
    let mut closed = false;
    let mut half_closed = false;
    let mut unsent: Option<usize> = None;
    // Every `unsent` reported by a half-close; the final close reports the rest.
    let mut reported = 0usize;
    // The upload limit in force, and since when it has been in force.
    let mut limit = Some(64 * 1024u64);
    let mut limit_since = (tokio::time::Instant::now(), sched.global_stat().total_sent);
    for op in ops {
        match op {
            Op::Write(n) => {
                let msg = bytes_of(n, accepted.len());
                match timeout(Duration::from_secs(2), conn.write(msg.clone())).await {
                    Ok(Ok(())) => {
                        prop_assert!(!closed && !half_closed, "write accepted after close");
                        accepted.extend_from_slice(&msg);
                    }
                    Ok(Err(Error::ConnectionClosed)) => {
                        prop_assert!(closed || half_closed, "write refused while open")
                    }
                    Ok(Err(e)) => prop_assert!(false, "write: {e:?}"),
                    Err(_) => prop_assert!(!closed, "write hung after close"), // dropped: nothing queued
                }
            }
            Op::WriteNow(n) => {
                let msg = bytes_of(n, accepted.len());
                if conn.write_now(msg.clone()) {
                    prop_assert!(!closed && !half_closed, "write_now accepted after close");
                    accepted.extend_from_slice(&msg);
                }
            }
            Op::PeerSend(n) => {
                let msg = bytes_of(n, 7 + peer_sent.len());
                peer_sent.extend_from_slice(&msg);
                let _ = peer_tx.send(msg);
            }
            Op::Read(n) => {
                let mut buf = vec![0u8; n];
                match timeout(Duration::from_millis(300), conn.read(&mut buf)).await {
                    Ok(Ok(k)) => read.extend_from_slice(&buf[..k]),
                    Ok(Err(Error::ConnectionClosed)) => {
                        prop_assert!(closed, "read ended while open")
                    }
                    Ok(Err(e)) => prop_assert!(false, "read: {e:?}"),
                    Err(_) => {} // nothing arrived in time; the dropped read took nothing
                }
            }
            Op::ReadNow(n) => {
                let mut buf = vec![0u8; n];
                match conn.read_now(&mut buf) {
                    Some(Ok(k)) => read.extend_from_slice(&buf[..k]),
                    Some(Err(Error::ConnectionClosed)) => {
                        prop_assert!(closed, "read_now ended while open")
                    }
                    Some(Err(e)) => prop_assert!(false, "read_now: {e:?}"),
                    None => prop_assert!(!closed, "read_now says \"nothing yet\" after close"),
                }
            }
            Op::Advance(ms) => tokio::time::sleep(Duration::from_millis(ms)).await,
            Op::Unlimit => {
                sched.set_max_upload_speed(None);
                sched.set_max_download_speed(None);
                limit = None;
            }
            Op::Limit(l) => {
                sched.set_max_upload_speed(Some(l));
                sched.set_max_download_speed(Some(l));
                limit = Some(l);
                limit_since = (tokio::time::Instant::now(), sched.global_stat().total_sent);
            }
            Op::Cap(c) => conn.set_caps(c, c).unwrap(),
            Op::PeerStall(s) => {
                let _ = stall_tx.send(s);
            }
            Op::ShutdownWrite(_) if closed => {}
            Op::ShutdownWrite(ms) => {
                let r = timeout(
                    Duration::from_secs(60),
                    conn.shutdown_write(Some(Duration::from_millis(ms))),
                )
                .await
                .map_err(|_| TestCaseError::fail("shutdown_write hung"))?;
                match r {
                    Ok(()) => {}
                    Err(Error::Timeout { unsent }) => reported += unsent,
                    Err(e) => return Err(TestCaseError::fail(format!("shutdown_write: {e:?}"))),
                }
                half_closed = true;
            }
            Op::Close | Op::Shutdown if closed => {}
            Op::Close => {
                let r = timeout(
                    Duration::from_secs(60),
                    conn.close(Some(Duration::from_secs(1))),
                )
                .await;
                let r = r.map_err(|_| TestCaseError::fail("close hung"))?;
                unsent = Some(match r {
                    Ok(()) => 0,
                    Err(Error::Timeout { unsent }) => unsent,
                    Err(e) => return Err(TestCaseError::fail(format!("close: {e:?}"))),
                });
                closed = true;
            }
            Op::Shutdown => {
                let pending = conn.pending_bytes();
                timeout(
                    Duration::from_secs(60),
                    sched.shutdown(Some(Duration::from_secs(1))),
                )
                .await
                .map_err(|_| TestCaseError::fail("shutdown hung"))?;
                // close reports what the shutdown dropped.
                unsent = Some(match conn.close(None).await {
                    Ok(()) => 0,
                    Err(Error::Timeout { unsent }) => unsent,
                    Err(e) => {
                        return Err(TestCaseError::fail(format!("close after shutdown: {e:?}")));
                    }
                });
                // pending_bytes counts the write under way too: nothing else can be dropped.
                prop_assert!(unsent.unwrap_or(0) <= pending);
                closed = true;
            }
        }
        prop_assert!(
            read.len() <= peer_sent.len() && read[..] == peer_sent[..read.len()],
            "read is not a prefix of what the peer sent"
        );
        if let Some(l) = limit {
            let (since, sent_then) = limit_since;
            let secs = since.elapsed().as_secs_f64();
            let sent = sched.global_stat().total_sent - sent_then;
            // B at these limits is 64 KiB; a cap only lowers the rate.
            let bound = l as f64 * secs + 64.0 * 1024.0;
            prop_assert!(
                secs < 1.0 || sent as f64 <= bound,
                "{sent} B sent in {secs:.2} s under a limit of {l} B/s"
            );
        }
    }
    // A stalled peer reads again, so that what was accepted can be delivered.
    let _ = stall_tx.send(false);
    if !closed {
        unsent = Some(
            match timeout(Duration::from_secs(120), conn.close(None)).await {
                Ok(Ok(())) => 0,
                Ok(Err(Error::Timeout { unsent })) => unsent,
                Ok(Err(e)) => return Err(TestCaseError::fail(format!("final close: {e:?}"))),
                Err(_) => return Err(TestCaseError::fail("final close hung")),
            },
        );
    }
    timeout(Duration::from_secs(60), reader)
        .await
        .map_err(|_| TestCaseError::fail("peer never saw the end"))?
        .unwrap();
    let got = peer_got.lock().unwrap().clone();
    let delivered = accepted.len() - unsent.unwrap_or(0) - reported;
    prop_assert_eq!(
        got.len(),
        delivered,
        "the peer got {} of {} accepted bytes, {:?} + {} reported unsent",
        got.len(),
        accepted.len(),
        unsent,
        reported
    );
    prop_assert!(
        got[..] == accepted[..delivered],
        "the peer's bytes differ from what was accepted"
    );
    sched.shutdown(Some(Duration::from_millis(100))).await;
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn connection_matches_the_model(ops in prop::collection::vec(op(), 1..40)) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().start_paused(true).build().unwrap();
        rt.block_on(run(ops))?;
    }
}
