//! The read pump: under a limit, moves bytes from a connection's stream into its read queue,
//! as the download direction's grants allow. With no limit it reads nothing: readers read the
//! stream themselves (see [`read_side`](crate::read_side)).
//!
//! A byte counts as received when it enters the read queue, or reaches a reader. Under a
//! limit, the pump reads ahead of its grants into a small stage, and asks for exactly what is
//! staged: its demand is what it could deliver now, so it is never granted bytes it cannot
//! move, and a connection whose share per round is larger than one read buffer still holds its
//! place (it reads again while it waits). The stage and the read queue together hold at most
//! [`ahead`] bytes, so a user who reads slowly makes a slow connection, whose share goes to the
//! others.

use std::future::poll_fn;
use std::num::NonZeroUsize;
use std::pin::pin;

use bytes::Bytes;
use fairio_policy::Policy;
use fairio_policy::tuning::MAX_GRANT;

use crate::conn::ConnInner;
use crate::direction::{Direction, Permit};
use crate::lifecycle::WritePhase;
use crate::read_side::{Lend, Locked};

/// How many bytes the stage and the read queue may hold together under a limit: the queue's
/// bound, and at least one read buffer; with an unbounded queue, two of the largest grants.
fn ahead(bound: Option<NonZeroUsize>, rbs: usize) -> usize {
    let grants = usize::try_from(2 * MAX_GRANT).unwrap_or(usize::MAX);
    bound.map_or(grants, NonZeroUsize::get).max(rbs)
}

/// Runs until the stream ends or fails, or the read queue is closed. The read half stays in
/// the read side until the connection's task ends (see `task::ReadHalfGuard`).
pub(crate) async fn run<P: Policy>(conn: &ConnInner<P>, dir: &Direction<P>, rbs: NonZeroUsize) {
    let key = conn.down;
    // However the pump ends, its demand goes with it.
    let _asking = dir.asking(key);
    let rbs = rbs.get();
    let ahead = ahead(conn.read_q.bound(), rbs);
    // Whether the arbiter may hold a demand of ours.
    let mut asked = false;
    loop {
        if lend_out(conn, dir, &mut asked).await {
            continue;
        }
        let generation = dir.generation();
        let changed = pin!(dir.changed());
        let lend_asked = pin!(conn.read_side.lend_changed.notified());
        if !dir.is_limited() {
            {
                let mut side = conn.read_side.lock();
                // What was staged under a limit since lifted moves now.
                while let Some(chunk) = side.take_staged(usize::MAX) {
                    if !deliver(conn, chunk) {
                        return;
                    }
                }
                if side.finish(conn) {
                    return;
                }
                if side.lend() != Lend::Free {
                    continue;
                }
            }
            // Readers waiting for the queue read the stream themselves now.
            conn.read_q.wake_poppers();
            if dir.generation() != generation {
                continue;
            }
            // Once nothing more will be written (a flush, a close, or a half-close under way),
            // the pump reads ahead by one buffer, as a reader would: the peer's FIN or reset is
            // seen, and a close does not leave the peer's last bytes unread in the socket,
            // which would make the kernel answer the close with a reset.
            let writing = conn.status().write == WritePhase::Open;
            tokio::select! {
                () = changed => {}
                () = lend_asked => {}
                // Closed once a reader has reached the end of the stream.
                open = conn.read_q.wait_below(0), if writing => if !open {
                    return;
                },
                () = conn.until(|s| s.write != WritePhase::Open), if writing => {}
                open = read_ahead(conn, rbs), if !writing => if !open {
                    return;
                },
            }
            continue;
        }
        // Deliver what the ledger holds, then ask for the rest of the stage.
        let mut grant = dir.take(key);
        let (staged, ended) = {
            let mut side = conn.read_side.lock();
            if !deliver_granted(conn, &mut side, &mut grant) || side.finish(conn) {
                return;
            }
            if side.lend() != Lend::Free && side.staged() == 0 {
                // A splice waits for the stream, and the stage is empty now: let it go.
                continue;
            }
            (side.staged(), side.is_ended())
        };
        // The grant's rest goes back, outside the read side's lock.
        drop(grant);
        if staged > 0 {
            dir.request(key, staged as u64, generation);
            asked = true;
        } else if asked {
            // Nothing left to deliver: no demand, and a grant that came meanwhile goes back.
            dir.withdraw(key);
            asked = false;
        }
        let room = ahead.saturating_sub(staged + conn.read_q.len_bytes());
        if dir.generation() != generation {
            continue;
        }
        tokio::select! {
            biased;
            () = changed => {}
            () = lend_asked => {}
            () = poll_fn(|cx| dir.poll_granted(cx, key, generation)), if staged > 0 => {}
            _ = poll_fn(|cx| conn.read_side.lock().poll_stage(cx, room.min(rbs))),
                if room > 0 && !ended => {}
            open = conn.read_q.wait_below(ahead - staged), if room == 0 && staged == 0 => {
                if !open {
                    return;
                }
            }
        }
    }
}

/// While a splice asks for the stream or holds it (see [`crate::splice`]): once the stage is
/// empty, withdraws the pump's demand and lets the stream go, then waits until it comes back.
/// Returns `false` at once when no splice asks, or while the stage still holds bytes, which
/// the pump hands on first as usual (reading nothing more meanwhile).
async fn lend_out<P: Policy>(conn: &ConnInner<P>, dir: &Direction<P>, asked: &mut bool) -> bool {
    {
        let side = conn.read_side.lock();
        if side.lend() == Lend::Free || (side.lend() == Lend::Asked && side.staged() > 0) {
            return false;
        }
    }
    if std::mem::take(asked) {
        // Before the splice takes a permit: its demand is not to be withdrawn with the pump's.
        dir.withdraw(conn.down);
    }
    loop {
        let mut changed = pin!(conn.read_side.lend_changed.notified());
        changed.as_mut().enable();
        {
            let mut side = conn.read_side.lock();
            match side.lend() {
                Lend::Free => return true,
                Lend::Asked => side.set_lend(Lend::Lent),
                // The task dropped the stream: the pump's own loop sees the end.
                Lend::Lent if side.is_closed() => return false,
                Lend::Lent => {}
            }
        }
        changed.await;
    }
}

/// Waits until less than one buffer is queued, then reads at most one buffer into the stage.
/// `false` once the read queue is closed.
async fn read_ahead<P: Policy>(conn: &ConnInner<P>, rbs: usize) -> bool {
    if !conn.read_q.wait_below(rbs).await {
        return false;
    }
    poll_fn(|cx| conn.read_side.lock().poll_stage(cx, rbs)).await;
    true
}

/// Moves as much of the stage as `grant` allows into the read queue. Returns `false` once the
/// read queue is closed.
fn deliver_granted<P: Policy>(
    conn: &ConnInner<P>,
    side: &mut Locked<'_>,
    grant: &mut Permit<'_, P>,
) -> bool {
    while let Some(chunk) = side.take_staged(usize::try_from(grant.bytes()).unwrap_or(usize::MAX)) {
        if chunk.is_empty() {
            break;
        }
        grant.spend(chunk.len() as u64);
        if !deliver(conn, chunk) {
            return false;
        }
    }
    true
}

/// Puts a chunk in the read queue; the pump applies back-pressure itself, so this never waits.
fn deliver<P: Policy>(conn: &ConnInner<P>, chunk: Bytes) -> bool {
    let n = chunk.len() as u64;
    if conn.read_q.push_force(chunk).is_err() {
        return false;
    }
    conn.meter.add_recv(n);
    true
}
