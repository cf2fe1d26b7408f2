//! The write pump: moves a connection's write queue onto its stream, as the upload direction's
//! grants allow.
//!
//! Under a limit, the pump holds a [`Grant`] only while it can write: a write that the stream
//! does not take within [`STALL`] (a peer that reads slowly, or not at all) is abandoned (a
//! pending `poll_write` has written nothing), the connection's demand is withdrawn and the grant
//! goes back, so the slow connection's share goes to the others. The pump then asks again and
//! tries once its turn comes round. Every write is also abandoned when the limit changes, so no
//! byte moves under a limit no longer in force.

use std::future::Future;
use std::io::{self, IoSlice};
use std::pin::{Pin, pin};
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};
use std::time::Duration;

use fairio_fd::{CloseReason, FdWriteHalf};
use fairio_policy::Policy;
use fairio_policy::tuning::GRANT_HORIZON_NANOS;
use tokio::io::{AsyncWrite, AsyncWriteExt};

use crate::batch::{Batch, MAX_IOV};
use crate::conn::ConnInner;
use crate::direction::Direction;
use crate::direction::Permit;

/// The most bytes taken from the write queue for one (vectored) write. Under a limit a write
/// is also bounded by the grants (at most 64 KiB each). Without one, large writes matter: on
/// loopback, 256 KiB writes moved 3x the bytes per CPU second of 64 KiB writes (see
/// BENCHMARKS.md), since each write costs a wake-up of the reader.
pub(crate) const MAX_WRITE: usize = 256 * 1024;

/// How long a write may hold a grant without the stream taking a byte: one grant horizon, so
/// that a share a connection cannot use goes back to the others within one horizon.
pub(crate) const STALL: Duration = Duration::from_nanos(GRANT_HORIZON_NANOS);

/// What became of one write.
enum Outcome {
    /// The stream took this many bytes (at least 1).
    Written(usize),
    /// The stream took nothing within [`STALL`].
    Stalled,
    /// The limit changed; nothing was written.
    Changed,
}

/// Writes the queue out until it is closed and empty, then sends FIN. Ends early on an I/O
/// error. Dropping the future stops the writer; the bytes it held are in `conn.in_flight`.
pub(crate) async fn run<P: Policy>(
    conn: &ConnInner<P>,
    dir: &Direction<P>,
    w: &mut FdWriteHalf,
) -> io::Result<()> {
    let key = conn.up;
    // However the pump ends (flushed, failed, aborted), its demand goes with it.
    let _asking = dir.asking(key);
    let mut batch = Batch::default();
    // Whether the arbiter may hold a demand or a grant of ours.
    let mut asked = false;
    // The generation under which a probe wrote one byte not yet paid from a grant.
    let mut probed = None;
    loop {
        if batch.is_empty() && conn.write_q.is_empty() {
            if asked {
                // Grants are not stored up across idle time; a splice that took over the
                // connection's writes (it waited for this queue to empty) asks for itself.
                dir.withdraw_unless(key, || conn.splicing_in.load(Ordering::SeqCst) > 0);
                asked = false;
            }
            flushed(conn, w, || {}).await?;
            if !conn.write_q.readable().await {
                break;
            }
        }
        let generation = dir.generation();
        if !dir.is_limited() {
            if batch.is_empty() && fill(conn, &mut batch, MAX_WRITE) == 0 {
                continue;
            }
            if let Outcome::Written(n) =
                write_within(w, &batch, MAX_WRITE, dir, generation, None, || {}).await?
            {
                if sent(conn, &mut batch, n) {
                    flushed(conn, w, || {}).await?;
                }
            }
            continue;
        }
        // A stream that cannot take a byte asks for nothing: a peer that reads nothing costs
        // no grant, timer or wake-up until its socket drains (TCP; other streams cannot tell
        // without writing, and are found full by the write itself).
        // What is asked for would only wait in the slot meanwhile.
        let withdraw = || {
            if asked {
                dir.withdraw(key);
            }
        };
        ready_or(|cx| w.poll_write_ready(cx), withdraw).await?;
        let want = (batch.len() + conn.write_q.len_bytes()).max(1) as u64;
        asked = true;
        let Some(mut grant) = dir.acquire(key, want).await else {
            continue;
        };
        // A byte a probe wrote ahead of its grant, under this limit, is paid from this one.
        if probed == Some(grant.generation()) {
            grant.spend(1);
        }
        probed = None;
        let spent = spend(conn, dir, w, &mut batch, &mut grant).await?;
        // Its rest goes back before any wait.
        drop(grant);
        match spent {
            Spent::Done => {}
            Spent::Stalled => probed = probe(conn, dir, w, &mut batch).await?,
            Spent::Flush => {
                // A flush the stream does not finish at once asks for nothing meanwhile.
                flushed(conn, w, || dir.withdraw(key)).await?;
            }
        }
    }
    w.info().set_close_reason(CloseReason::LocalClose);
    w.shutdown().await
}

/// Why [`spend`] returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Spent {
    /// The grant is spent, there is nothing more to write, or the limit changed.
    Done,
    /// The stream took nothing within [`STALL`].
    Stalled,
    /// A flush waits for bytes written by now: the stream is to be flushed.
    Flush,
}

/// After a stall, on a stream that cannot say when it is writable without a write (TLS, an
/// in-memory pipe; a TCP stream says so, see `poll_write_ready`): waits, holding no grant and
/// asking for none, until the stream takes one byte of the batch. Returns the generation the
/// byte was written under, to be paid from the next grant, or `None` if the limit changed
/// first (nothing was written). A peer that reads nothing so costs no wake-up while it waits.
async fn probe<P: Policy>(
    conn: &ConnInner<P>,
    dir: &Direction<P>,
    w: &mut FdWriteHalf,
    batch: &mut Batch,
) -> io::Result<Option<u64>> {
    if w.reports_readiness() || batch.is_empty() {
        return Ok(None);
    }
    let generation = dir.generation();
    match write_within(w, batch, 1, dir, generation, None, || {}).await? {
        Outcome::Written(n) => {
            if sent(conn, batch, n) {
                flushed(conn, w, || {}).await?;
            }
            Ok(Some(generation))
        }
        Outcome::Stalled | Outcome::Changed => Ok(None),
    }
}

/// Writes what `grant` allows, until it is spent, the batch and queue are empty, the limit
/// changes or the stream stalls (its demand was withdrawn when it first was not ready). The
/// rest of the grant goes back when it is dropped.
async fn spend<P: Policy>(
    conn: &ConnInner<P>,
    dir: &Direction<P>,
    w: &mut FdWriteHalf,
    batch: &mut Batch,
    grant: &mut Permit<'_, P>,
) -> io::Result<Spent> {
    let generation = dir.generation();
    loop {
        grant.top_up();
        let allowed = usize::try_from(grant.bytes()).unwrap_or(usize::MAX);
        if allowed == 0 || (batch.is_empty() && fill(conn, batch, allowed.min(MAX_WRITE)) == 0) {
            return Ok(Spent::Done);
        }
        // The stream is not ready: no more grants until it is, and those already in the slot
        // go back at once.
        let withdraw = || dir.withdraw(conn.up);
        match write_within(w, batch, allowed, dir, generation, Some(STALL), withdraw).await? {
            Outcome::Written(n) => {
                let flush = sent(conn, batch, n);
                grant.spend(n as u64);
                if flush {
                    // Tried at once, grant in hand (a TCP stream flushes at once); one that
                    // waits for the stream (TLS to a slow peer) waits without the grant,
                    // which goes back first.
                    match std::future::poll_fn(|cx| Poll::Ready(Pin::new(&mut *w).poll_flush(cx)))
                        .await
                    {
                        Poll::Ready(r) => {
                            r?;
                            conn.flushed_now();
                        }
                        Poll::Pending => return Ok(Spent::Flush),
                    }
                }
                if grant.bytes() == 0 {
                    // Asks again, with the demand as it is now (it may have been withdrawn).
                    return Ok(Spent::Done);
                }
            }
            Outcome::Stalled => return Ok(Spent::Stalled),
            Outcome::Changed => return Ok(Spent::Done),
        }
    }
}

/// Takes up to `max` bytes from the queue into the empty batch; they are in flight from now.
fn fill<P: Policy>(conn: &ConnInner<P>, batch: &mut Batch, max: usize) -> usize {
    // Counted in flight before they leave the queue (an over-count for a moment, never an
    // under-count), so that a flush never sees an empty queue and nothing in flight while
    // chunks move from one to the other. Only what was queued at the count is taken (the
    // pump is the one consumer, first in first out), so a message pushed meanwhile is never
    // popped uncounted.
    let queued = conn.write_q.len_bytes();
    if queued == 0 {
        return 0;
    }
    conn.in_flight.store(queued, Ordering::Release);
    let taken = batch.fill(&conn.write_q, max.min(queued));
    conn.in_flight.store(taken, Ordering::Release);
    taken
}

/// Counts `n` bytes of the batch as written. Returns whether a flush waits for bytes written
/// by now: the caller flushes the stream and wakes it ([`flushed`]).
#[must_use]
fn sent<P: Policy>(conn: &ConnInner<P>, batch: &mut Batch, n: usize) -> bool {
    batch.advance(n);
    conn.in_flight.fetch_sub(n, Ordering::AcqRel);
    conn.count_written(n)
}

/// Flushes the stream and wakes the flushes waiting for what it took; `on_pending` runs once
/// if the stream does not finish the flush at once.
async fn flushed<P: Policy>(
    conn: &ConnInner<P>,
    w: &mut FdWriteHalf,
    on_pending: impl FnOnce(),
) -> io::Result<()> {
    ready_or(|cx| Pin::new(&mut *w).poll_flush(cx), on_pending).await?;
    conn.flushed_now();
    Ok(())
}

/// Polls `poll` until it is ready; `on_pending` runs once, the first time it is not.
async fn ready_or<T>(
    mut poll: impl FnMut(&mut Context<'_>) -> Poll<T>,
    on_pending: impl FnOnce(),
) -> T {
    let mut on_pending = Some(on_pending);
    std::future::poll_fn(|cx| {
        let r = poll(cx);
        if r.is_pending() {
            if let Some(f) = on_pending.take() {
                f();
            }
        }
        r
    })
    .await
}

/// Writes at most `max` bytes of the front of `batch`, unless the limit changes first or, with
/// a `stall` bound, the stream takes nothing for that long. The timer and the change watch are
/// set up only when the stream is not ready at once.
///
/// The generation is checked before every poll of the write, so a write that could complete
/// after the limit changed is abandoned instead (a pending `poll_write` has written nothing).
/// On a multi-threaded runtime a change made on another thread during the system call itself
/// is seen at the next write: that one write (at most one grant, or 256 KiB without a limit)
/// may complete under the old limit.
async fn write_within<P: Policy>(
    w: &mut FdWriteHalf,
    batch: &Batch,
    max: usize,
    dir: &Direction<P>,
    generation: u64,
    stall: Option<Duration>,
    mut on_pending: impl FnMut(),
) -> io::Result<Outcome> {
    // `Notified` records the limit changes made from its creation on: none is missed between
    // its creation and its first poll.
    let mut changed = pin!(dir.changed());
    let mut write = pin!(write_some(w, batch, max));
    let mut timer: Option<Pin<Box<tokio::time::Sleep>>> = None;
    let outcome = std::future::poll_fn(|cx| {
        if dir.generation() != generation {
            return Poll::Ready(Ok(Outcome::Changed));
        }
        if let Poll::Ready(r) = write.as_mut().poll(cx) {
            return Poll::Ready(r.map(Outcome::Written));
        }
        // Not ready: wake on a change of the limit, or when the stall bound passes.
        if changed.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Ok(Outcome::Changed));
        }
        if let Some(stall) = stall {
            let t = timer.get_or_insert_with(|| {
                on_pending();
                Box::pin(tokio::time::sleep(stall))
            });
            if t.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Ok(Outcome::Stalled));
            }
        }
        Poll::Pending
    })
    .await?;
    if matches!(outcome, Outcome::Written(0)) {
        return Err(io::ErrorKind::WriteZero.into());
    }
    Ok(outcome)
}

/// Writes the front of `batch`, at most `max` bytes: in one vectored write when it holds
/// several chunks and the stream takes vectored writes, else from its first chunk.
///
/// The slices are built at each poll, inside it: kept across an await they would add 1 KiB to
/// every connection's task.
async fn write_some(w: &mut FdWriteHalf, batch: &Batch, max: usize) -> io::Result<usize> {
    if batch.is_gathered() && w.is_write_vectored() {
        std::future::poll_fn(|cx| {
            let mut iov = [IoSlice::new(&[]); MAX_IOV];
            let k = batch.slices(&mut iov, max);
            Pin::new(&mut *w).poll_write_vectored(cx, &iov[..k])
        })
        .await
    } else {
        w.write(batch.front(max)).await
    }
}
