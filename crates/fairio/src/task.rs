//! The connection task: a read pump and a write pump side by side, under the connection's
//! lifecycle.
//!
//! ```text
//!  user ── write ──▶ write queue ──▶ write pump ──(permit)──▶ stream ──▶ peer
//!  user ◀── read ─── read queue ◀── read pump ◀──(permit)─── stream ◀── peer
//!  user ◀── read ───────────────────────────────────────────── stream   (no limit)
//!
//!   each pump takes its permits from its direction (`Direction::poll_acquire`), in this task
//! ```
//!
//! The task owns the stream and both pumps; the handles own nothing but the queues' far ends
//! and send lifecycle events. The task alone ends the connection: it stops when the lifecycle
//! says so (or the scheduler stops), counts what the writer held as dropped, takes the
//! connection out of the scheduler, and only then reports `Ended`.

use std::num::NonZeroUsize;
use std::sync::Arc;

use fairio_fd::FdWriteHalf;
use fairio_policy::Policy;

use crate::conn::ConnInner;
use crate::direction::{Direction, Directions};
use crate::lifecycle::Event;
use crate::panics::{Caught, panicked};
use crate::{read_pump, write_pump};

/// Runs one connection until it ends, then takes it out of the scheduler with `forget`. The
/// stream is closed when this returns: the write half is `w`, and the read half, in the
/// connection's read side, goes with `_read_half`.
pub(crate) async fn run<P: Policy>(
    conn: Arc<ConnInner<P>>,
    dirs: Arc<Directions<P>>,
    read_buffer_size: NonZeroUsize,
    w: FdWriteHalf,
    _read_half: ReadHalfGuard<P>,
    forget: impl FnOnce(&ConnInner<P>),
) {
    let reader = read_pump::run(&conn, &dirs.down, read_buffer_size);
    let writer = writer(&conn, &dirs.up, w);
    // A panic in a pump (a stream whose write panics) ends this connection with an error, as
    // an I/O error would; the end below still runs, so the connection leaves the scheduler
    // and its handles learn of it.
    let pumps = Caught::new(async { tokio::join!(reader, writer) });
    // `conn.cancel` fires when the lifecycle says stop, or when the scheduler stops.
    tokio::select! {
        () = conn.cancel.cancelled() => {}
        r = pumps => {
            if let Err(what) = r {
                tracing::warn!(conn = conn.id(), panic = %what, "connection task panicked");
                conn.fail(panicked("task"));
            }
        }
    }
    // Both pumps are dropped and the read half goes now (the guard's later close finds it
    // gone): the stream is closed before `Ended` says so, and the writer has stopped, so what
    // is left unsent is known exactly.
    conn.read_side.close();
    hand_on_staged(&conn);
    let left = conn.take_unsent();
    conn.read_q.close();
    forget(&conn);
    conn.event(Event::Ended { dropped: left });
    conn.drained.notify_waiters();
}

/// Hands what the read pump read ahead of its grants on to the read queue, outside the limit
/// (at most one read-ahead, once): those bytes left the peer's socket, and dropping them would
/// lose them without a count. A read queue closed already (a failure) refuses them.
fn hand_on_staged<P: Policy>(conn: &ConnInner<P>) {
    let mut side = conn.read_side.lock();
    while let Some(chunk) = side.take_staged(usize::MAX) {
        let n = chunk.len() as u64;
        if n == 0 || conn.read_q.push_force(chunk).is_err() {
            break;
        }
        conn.meter.add_recv(n);
    }
}

/// Drops the connection's read half when dropped, the one place that does: owned by the task's
/// future from its creation, so the stream closes when the task ends, and even if the task is
/// dropped before it first runs (a runtime shutting down).
pub(crate) struct ReadHalfGuard<P: Policy>(pub(crate) Arc<ConnInner<P>>);

impl<P: Policy> Drop for ReadHalfGuard<P> {
    fn drop(&mut self) {
        self.0.read_side.close();
        // Readers waiting for the stream learn that it is gone, after what is queued.
        self.0.read_q.close();
    }
}

/// Runs the write pump until it has flushed (and sent FIN), failed, or been told to abort.
async fn writer<P: Policy>(conn: &ConnInner<P>, up: &Direction<P>, mut w: FdWriteHalf) {
    let outcome = tokio::select! {
        r = write_pump::run(conn, up, &mut w) => Some(r),
        _ = conn.until(|s| s.abort) => None,
        // Released with bytes still queued: they have the linger to go, then they are dropped
        // and counted, as a close with that timeout would.
        () = async {
            conn.until(|s| s.released).await;
            tokio::time::sleep(conn.linger).await;
        } => {
            tracing::info!(conn = conn.id(), unsent = conn.pending_bytes(), "linger expired");
            None
        }
    };
    let aborted = outcome.is_none();
    match outcome {
        Some(Ok(())) => conn.event(Event::Flushed),
        Some(Err(e)) => conn.fail(e),
        // The pump is dropped, with its grant (returned) and its batch (counted here).
        None => conn.event(Event::WriterStopped {
            dropped: conn.take_unsent(),
        }),
    }
    conn.drained.notify_waiters();
    if aborted {
        // The peer learns that nothing more comes, if the stream takes the FIN within one
        // stall bound (a TLS close to a peer that reads nothing may never complete).
        let fin = tokio::io::AsyncWriteExt::shutdown(&mut w);
        let _ = tokio::time::timeout(write_pump::STALL, fin).await;
    }
}
