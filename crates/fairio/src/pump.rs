//! The connection task: a read pump and a write pump running side by side, each moving bytes
//! only as its direction's grants allow.

use std::io::{self, IoSlice};
use std::num::NonZeroUsize;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::{BufMut, BytesMut};
use fairio_fd::{CloseReason, Fd, FdReadHalf, FdWriteHalf};
use fairio_policy::{Key, Policy};
use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::batch::{Batch, MAX_IOV};
use crate::conn::ConnInner;
use crate::direction::Direction;
use crate::grant::GrantSlot;
use crate::scheduler::Shared;

/// The most bytes taken from the write queue for one (vectored) write. Under a limit a write
/// is also bounded by the grants (at most 64 KiB each). Without one, large writes matter: on
/// loopback, 256 KiB writes moved 3x the bytes per CPU second of 64 KiB writes (see
/// BENCHMARKS.md), since each write costs a wake-up of the reader.
pub(crate) const MAX_WRITE: usize = 256 * 1024;

/// Runs one connection until it ends, then takes it out of the scheduler. The stream is closed
/// when this returns.
pub(crate) async fn run<P: Policy>(conn: Arc<ConnInner<P>>, shared: Arc<Shared<P>>, fd: Fd) {
    let (r, w) = fd.split();
    let rbs = shared.config.read_buffer_size;
    let work = async {
        let reader = read_pump(&conn, &shared.down, r, rbs);
        let writer = async {
            if let Err(e) = write_pump(&conn, &shared.up, w).await {
                conn.fail(e);
            }
            conn.writer_done.cancel();
            conn.drained.notify_waiters();
            if conn.closing.load(Ordering::Acquire) {
                conn.cancel.cancel();
            }
        };
        tokio::join!(reader, writer);
    };
    tokio::select! {
        () = conn.cancel.cancelled() => {}
        () = work => {}
    }
    // Both halves are dropped with `work`: the stream is closed, and the writer has stopped,
    // so what is left unsent is known exactly.
    let left = conn.write_q.clear() + conn.in_flight.swap(0, Ordering::AcqRel);
    conn.dropped.fetch_add(left, Ordering::AcqRel);
    conn.writer_done.cancel();
    conn.drained.notify_waiters();
    conn.read_q.close();
    conn.write_q.close();
    shared.forget(&conn);
    conn.finished.cancel();
}

async fn read_pump<P: Policy>(
    conn: &ConnInner<P>,
    dir: &Direction<P>,
    mut r: FdReadHalf,
    rbs: NonZeroUsize,
) {
    let (key, slot) = (&conn.down.0, &conn.down.1);
    let mut buf = BytesMut::new();
    loop {
        if !dir.is_limited() {
            // Read ahead by less than one buffer: what the user has not taken yet waits in the
            // socket, not in memory here. Reading ahead as far as the read queue allowed cost
            // a second pass over cold memory for every byte (0.5x raw tokio's download
            // throughput at 64 connections); now the buffer is reused while still in cache.
            while conn.read_q.len_bytes() >= rbs.get() && !conn.read_q.is_closed() {
                conn.read_taken.notified().await;
            }
        }
        // Reuses the allocation once the previous chunk has been read by the user.
        buf.reserve(rbs.get());
        let n = match r.read_buf(&mut (&mut buf).limit(rbs.get())).await {
            Ok(0) => {
                conn.info.set_close_reason(CloseReason::PeerClosed);
                conn.read_q.close();
                return;
            }
            Ok(n) => n,
            Err(e) => {
                conn.fail(e);
                return;
            }
        };
        // Read first, then deliver as grants come: an idle connection holds no budget, each
        // granted piece reaches the user at once (so delivery is as smooth as the grants, not
        // as coarse as the read buffer), and the next read waits until this one is delivered.
        let mut chunk = buf.split().freeze();
        if !dir.is_limited() {
            conn.meter.add_recv(n as u64);
            if conn.read_q.push(chunk).await.is_err() {
                return;
            }
            continue;
        }
        let mut granted = slot.take();
        if granted < n as u64 {
            dir.request(*key, n as u64 - granted);
        }
        while !chunk.is_empty() {
            if granted == 0 {
                if !dir.is_limited() {
                    granted = u64::MAX;
                    continue;
                }
                slot.notified().await;
                granted = slot.take();
                continue;
            }
            let take = usize::try_from(granted)
                .unwrap_or(usize::MAX)
                .min(chunk.len());
            let piece = chunk.split_to(take);
            granted -= take as u64;
            conn.meter.add_recv(take as u64);
            if conn.read_q.push(piece).await.is_err() {
                return;
            }
        }
        if granted != u64::MAX {
            dir.unused(*key, granted);
        }
    }
}

async fn write_pump<P: Policy>(
    conn: &ConnInner<P>,
    dir: &Direction<P>,
    mut w: FdWriteHalf,
) -> io::Result<()> {
    let (key, slot) = (&conn.up.0, &conn.up.1);
    let mut budget = 0u64;
    let mut batch = Batch::default();
    while conn.write_q.readable().await {
        let limited = dir.is_limited();
        if limited {
            budget += slot.take();
            if budget == 0 {
                acquire_some(
                    dir,
                    *key,
                    slot,
                    conn.write_q.len_bytes() as u64,
                    &mut budget,
                )
                .await;
            }
        }
        let mut allowance = if dir.is_limited() { budget } else { u64::MAX };
        while allowance > 0 {
            // Small messages go out together, in one vectored write of up to MAX_WRITE bytes.
            let max = usize::try_from(allowance)
                .unwrap_or(usize::MAX)
                .min(MAX_WRITE);
            let taken = batch.fill(&conn.write_q, max);
            if taken == 0 {
                break;
            }
            conn.in_flight.store(taken, Ordering::Release);
            while !batch.is_empty() {
                let n = write_some(&mut w, &batch).await?;
                if n == 0 {
                    return Err(io::ErrorKind::WriteZero.into());
                }
                batch.advance(n);
                conn.in_flight.fetch_sub(n, Ordering::AcqRel);
                conn.meter.add_sent(n as u64);
            }
            allowance -= taken as u64;
        }
        if limited {
            budget = allowance.min(budget);
        } else {
            budget = 0;
        }
        if conn.write_q.is_empty() {
            w.flush().await?;
            conn.drained.notify_waiters();
            // Grants are not stored up across idle time.
            dir.unused(*key, std::mem::take(&mut budget));
        }
    }
    w.close(CloseReason::LocalClose).await
}

/// Writes the front of `batch`: all of it in one vectored write when it holds several chunks
/// and the stream takes vectored writes, else its first chunk.
///
/// The slices are built at each poll, inside it: kept across an await they would add 1 KiB to
/// every connection's task.
async fn write_some(w: &mut FdWriteHalf, batch: &Batch) -> io::Result<usize> {
    if batch.is_gathered() && w.is_write_vectored() {
        std::future::poll_fn(|cx| {
            let mut iov = [IoSlice::new(&[]); MAX_IOV];
            let k = batch.slices(&mut iov);
            Pin::new(&mut *w).poll_write_vectored(cx, &iov[..k])
        })
        .await
    } else {
        w.write(batch.front()).await
    }
}

/// Asks for `want` bytes and waits until some are granted (or the limit is lifted).
async fn acquire_some<P: Policy>(
    dir: &Direction<P>,
    key: Key,
    slot: &GrantSlot,
    want: u64,
    budget: &mut u64,
) {
    dir.request(key, want);
    while *budget == 0 && dir.is_limited() {
        slot.notified().await;
        *budget += slot.take();
    }
}
