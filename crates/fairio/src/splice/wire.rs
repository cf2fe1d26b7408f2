//! The splicing steps of a [`Splice`](super::Splice) (Linux): socket -> pipe under the
//! source's download permit, pipe -> socket under the destination's upload permit.

use std::future::poll_fn;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::Poll;

use fairio_fd::splice::{PIPE_CAPACITY, Pipe, poll_splice_from, poll_splice_to, unread};
use fairio_policy::Policy;

use super::{End, Held, Splice, copy};
use crate::conn::ConnInner;
use crate::direction::Direction;
use crate::lifecycle::WritePhase;
use crate::read_side::{Lend, Polled};
use crate::{Connection, Error};

/// Whether `end` is a TCP socket the splice can reach.
pub(super) fn can_splice<P: Policy>(end: &End<'_, P>) -> bool {
    match end {
        End::Connection(c) => c.inner().read_side.lock().is_tcp(),
        End::Tcp(_) => true,
    }
}

/// [`Splice::run`] through pipes, once what was held has been delivered (`moved`). Each
/// round waits until `from` has bytes, takes its permit for them, and takes a pipe from the
/// pool only then. A busy direction keeps its pipe from round to round (taking one from the
/// pool at every round cost about twice the CPU per GiB at 64 streams); one that finds
/// nothing to read gives it back before it waits, so an idle direction holds none. With no
/// pipe free, the round copies (within the same permit). What a round took and has not
/// delivered is held in the splice, pipe and all, so that a dropped call keeps it.
pub(super) async fn run<P: Policy>(
    s: &mut Splice,
    from: &End<'_, P>,
    to: &End<'_, P>,
    mut moved: u64,
) -> Result<u64, Error> {
    // The stream of a registered source is the splice's for the whole call.
    let _lent = match from {
        End::Connection(c) => match lend(s, c, to, &mut moved).await? {
            Some(lent) => Some(lent),
            // Its stream has ended: what it had queued went, and copying sees the end.
            None => return s.copy_rest(from, to, moved).await,
        },
        End::Tcp(_) => None,
    };
    let ahead = Ahead::new(from, to);
    loop {
        let taken = match from {
            End::Connection(c) => take_in(s, c, &ahead).await?,
            End::Tcp(t) => take_tcp(s, t, &ahead).await?,
        };
        if !taken {
            s.release();
            return Ok(moved);
        }
        // Delivered in full, the pipe (empty) stays held for the next round.
        moved += match &mut s.held {
            Held::Pipe(p) => drain(p, to, &mut s.spliced, &ahead).await?,
            _ => s.deliver(to).await?,
        };
    }
}

/// A splice into a registered connection asks for its source's next bytes along with the
/// pipe's, and keeps what is left of its permit once the pipe is empty: so its demand does not
/// lapse while it takes the next round's bytes, as a writer's does not while its queue holds
/// the next ones. (A connection whose demand lapsed at every round lost its place each time:
/// beside a class of three copying connections, a spliced one got 93-96% of its share on a
/// loaded machine.) The demand lapses when the source has nothing to read, or the splice
/// must wait for the source's permit, or the call ends.
pub(super) struct Ahead<'a, P: Policy> {
    from: Option<&'a End<'a, P>>,
    to: Option<&'a Connection<P>>,
    /// Whether the destination may hold demand or grants for the source's next bytes.
    asked: AtomicBool,
}

impl<'a, P: Policy> Ahead<'a, P> {
    pub(super) fn new(from: &'a End<'a, P>, to: &'a End<'a, P>) -> Self {
        Self {
            from: Some(from),
            to: match to {
                End::Connection(c) => Some(c),
                End::Tcp(_) => None,
            },
            asked: AtomicBool::new(false),
        }
    }

    /// No next round: what a splice held from an earlier call is delivered alone.
    pub(super) fn none() -> Self {
        Self {
            from: None,
            to: None,
            asked: AtomicBool::new(false),
        }
    }

    /// The source's next bytes (at most a pipe's worth), noted as asked for.
    fn next_bytes(&self) -> usize {
        let n = match self.from {
            Some(End::Tcp(t)) => unread(t),
            Some(End::Connection(c)) => c.inner().read_side.lock().unread(),
            None => 0,
        };
        if n > 0 {
            self.asked.store(true, Ordering::Relaxed);
        }
        n.min(PIPE_CAPACITY)
    }

    /// What was kept or asked for the next round goes back: the source has none to give now.
    /// A writer's demand (bytes queued through the connection's handles) stays, and so does
    /// another splice's that is asking.
    fn lapse(&self) {
        if !self.asked.swap(false, Ordering::Relaxed) {
            return;
        }
        if let Some(c) = self.to {
            let conn = c.inner();
            // Read under the direction's lock: a writer shows its queued bytes before it asks.
            c.dirs().up.withdraw_unless(conn.up, || {
                conn.pending_bytes() > 0 || conn.splicing_in.load(Ordering::SeqCst) > 0
            });
        }
    }

    /// Passes `polled` on, and lapses the demand when it is a wait.
    fn idle<T>(&self, polled: Poll<T>) -> Poll<T> {
        if polled.is_pending() {
            self.lapse();
        }
        polled
    }
}

impl<P: Policy> Drop for Ahead<'_, P> {
    fn drop(&mut self) {
        self.lapse();
    }
}

impl Splice {
    /// Gives an empty pipe held between rounds back to the pool.
    pub(super) fn release(&mut self) {
        if let Held::Pipe(p) = &self.held {
            if p.is_empty() {
                if let Held::Pipe(p) = std::mem::take(&mut self.held) {
                    self.pipes.put(p);
                }
            }
        }
    }

    /// Passes `polled` on, giving the pipe back first when it is a wait.
    fn idle<T>(&mut self, polled: Poll<T>) -> Poll<T> {
        if polled.is_pending() {
            self.release();
        }
        polled
    }

    /// The pipe for this round, held (so that a dropped call gives it back): the one held
    /// from the last round, or one from the pool; `None` when none is free.
    fn hold_pipe(&mut self) -> Option<&mut Pipe> {
        if matches!(self.held, Held::Nothing) {
            self.held = Held::Pipe(self.pipes.take()?);
        }
        match &mut self.held {
            Held::Pipe(p) => Some(p),
            _ => None,
        }
    }
}

/// Takes what a plain TCP source has (at most a pipe's worth) into a pipe, or a chunk when
/// no pipe is free: `false` at its end.
async fn take_tcp<P: Policy>(
    s: &mut Splice,
    t: &tokio::net::TcpStream,
    ahead: &Ahead<'_, P>,
) -> Result<bool, Error> {
    let n = poll_fn(|cx| ahead.idle(s.idle(fairio_fd::splice::poll_readable(t, cx)))).await?;
    if n == 0 {
        return Ok(false);
    }
    match s.hold_pipe() {
        Some(pipe) => {
            let got = poll_fn(|cx| poll_splice_from(t, cx, pipe, n.min(PIPE_CAPACITY))).await?;
            Ok(got > 0)
        }
        None => {
            let chunk = copy::read_tcp(t).await?;
            let more = !chunk.is_empty();
            s.held = Held::Bytes(chunk);
            Ok(more)
        }
    }
}

/// Delivers what `pipe` holds to `to`, all of it: the bytes delivered. On an error, the pipe
/// keeps what it did not deliver.
pub(super) async fn drain<P: Policy>(
    pipe: &mut Pipe,
    to: &End<'_, P>,
    spliced: &mut u64,
    ahead: &Ahead<'_, P>,
) -> Result<u64, Error> {
    let mut n = 0;
    while !pipe.is_empty() {
        let k = match to {
            End::Tcp(t) => {
                let max = pipe.held();
                poll_fn(|cx| poll_splice_to(pipe, t, cx, max)).await? as u64
            }
            End::Connection(c) => splice_out(c, pipe, ahead).await? as u64,
        };
        // Counted as it goes: a call dropped or failed part-way has still spliced these.
        n += k;
        *spliced += k;
    }
    Ok(n)
}

/// The source's stream, lent to the splice until dropped: its read pump waits, and its
/// demand goes with the lend.
struct Lent<'a, P: Policy> {
    conn: &'a ConnInner<P>,
    dir: &'a Direction<P>,
}

impl<P: Policy> Drop for Lent<'_, P> {
    fn drop(&mut self) {
        // A wait for a permit given up leaves no demand behind for the pump to find.
        self.dir.withdraw(self.conn.down);
        self.conn.read_side.lock().set_lend(Lend::Free);
    }
}

/// Asks `c`'s read pump for its stream, delivering to `to` what `c` had read before
/// meanwhile (by copy, in order). `None` if the stream ended before it could be lent.
///
/// # Errors
/// `Busy` if another splice holds the stream; as [`Splice::run`] for the delivery.
async fn lend<'a, P: Policy>(
    s: &mut Splice,
    c: &'a Connection<P>,
    to: &End<'_, P>,
    moved: &mut u64,
) -> Result<Option<Lent<'a, P>>, Error> {
    let conn = c.inner();
    {
        let mut side = conn.read_side.lock();
        if side.lend() != Lend::Free {
            return Err(Error::Io(io::Error::new(
                io::ErrorKind::ResourceBusy,
                "another splice reads this connection",
            )));
        }
        side.set_lend(Lend::Asked);
    }
    let lent = Lent {
        conn,
        dir: &c.dirs().down,
    };
    // Until the pump lets go, what it staged comes through the queue: taken here, in order.
    let ok = loop {
        let chunk = tokio::select! {
            biased;
            ok = poll_fn(|cx| conn.read_side.lock().poll_lent(cx)) => break ok,
            r = c.read_bytes(copy::CHUNK) => r,
        };
        if !deliver_queued(s, chunk, to, moved).await? {
            return Ok(None);
        }
    };
    // Bytes queued before the pump let go: nothing adds to the queue now.
    while ok && !conn.read_q.is_empty() {
        let chunk = c.read_bytes(copy::CHUNK).await;
        if !deliver_queued(s, chunk, to, moved).await? {
            return Ok(None);
        }
    }
    Ok(ok.then_some(lent))
}

/// Delivers a chunk read through the connection's queue: `false` at its end.
async fn deliver_queued<P: Policy>(
    s: &mut Splice,
    chunk: Result<bytes::Bytes, Error>,
    to: &End<'_, P>,
    moved: &mut u64,
) -> Result<bool, Error> {
    match chunk {
        Ok(b) => {
            s.held = Held::Bytes(b);
            *moved += s.deliver(to).await?;
            Ok(true)
        }
        Err(Error::ConnectionClosed) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Takes what `c`'s socket has (at most a pipe's worth), within `c`'s download permit, into
/// a pipe, or a chunk when no pipe is free: `false` at the end of the stream.
async fn take_in<P: Policy>(
    s: &mut Splice,
    c: &Connection<P>,
    ahead: &Ahead<'_, P>,
) -> Result<bool, Error> {
    let conn = c.inner();
    let dir = &c.dirs().down;
    loop {
        let readable = poll_fn(|cx| {
            // The read side's lock goes before a pipe may be closed.
            let polled = ready(conn.read_side.lock().poll_splice_readable(cx));
            ahead.idle(s.idle(polled))
        })
        .await;
        let Some(n) = readable else {
            return ended(conn);
        };
        // Exactly what is there: the arbiter grants nothing the splice cannot move.
        let want = n.min(PIPE_CAPACITY);
        // The connection's end drops its place in the arbiter without a wake-up. A wait for
        // the permit gives the pipe back too: it may be long, under a low limit.
        let acquire =
            poll_fn(|cx| ahead.idle(s.idle(dir.poll_acquire(cx, conn.down, want as u64))));
        let Some(mut permit) = until_stopped(conn, acquire).await else {
            // Stopped here (a close, a shutdown, a failure), not ended by the peer: a failure
            // is reported as itself.
            return Err(if conn.status().failed {
                conn.end_error()
            } else {
                Error::ConnectionClosed
            });
        };
        if permit.as_ref().is_some_and(|p| p.bytes() < want as u64) {
            // Granted a part: the rest of the demand goes, so that nothing is granted to the
            // connection while the splice delivers (to a destination that may be slow).
            dir.withdraw(conn.down);
        }
        let max = permit.as_ref().map_or(want, |p| {
            usize::try_from(p.bytes()).unwrap_or(usize::MAX).min(want)
        });
        if max == 0 {
            // Granted under a limit since changed: ask again under the new one.
            continue;
        }
        // Readable, with a permit: the read below usually completes at once (a wait, for
        // tokio's cooperative budget say, keeps the pipe held in the splice).
        let got = match s.hold_pipe() {
            Some(pipe) => {
                poll_fn(|cx| ready(conn.read_side.lock().poll_splice_in(cx, pipe, max))).await
            }
            None => {
                let chunk =
                    poll_fn(|cx| ready(conn.read_side.lock().poll_splice_chunk(cx, max))).await;
                chunk.map(|b| {
                    let n = b.len();
                    s.held = Held::Bytes(b);
                    n
                })
            }
        };
        let Some(got) = got else {
            return ended(conn);
        };
        if let Some(p) = permit.as_mut() {
            p.spend(got as u64);
        }
        conn.meter.add_recv(got as u64);
        return Ok(true);
    }
}

/// A poll of the lent stream as a future's poll: `None` once it has ended.
fn ready<T>(p: Polled<T>) -> Poll<Option<T>> {
    match p {
        Polled::Got(n) => Poll::Ready(Some(n)),
        Polled::Ended => Poll::Ready(None),
        Polled::Pending => Poll::Pending,
    }
}

/// The source's stream has ended: the end is handed on (readers see it after the splice),
/// and a failure is the splice's error. `Ok(false)` otherwise.
fn ended<P: Policy>(conn: &ConnInner<P>) -> Result<bool, Error> {
    conn.read_side.lock().finish(conn);
    if conn.status().failed {
        return Err(conn.end_error());
    }
    Ok(false)
}

/// Moves bytes from `pipe` to `c`'s socket, within `c`'s upload permit, once what `c` had
/// queued has been written: the bytes moved (at least 1), as many as one permit allows.
async fn splice_out<P: Policy>(
    c: &Connection<P>,
    pipe: &mut Pipe,
    ahead: &Ahead<'_, P>,
) -> Result<usize, Error> {
    let conn = c.inner();
    let dir = &c.dirs().up;
    loop {
        let st = conn.status();
        if st.write != WritePhase::Open || st.ended {
            return Err(Error::ConnectionClosed);
        }
        if conn.pending_bytes() > 0 {
            conn.flushed_to(conn.flush_target()).await?;
            continue;
        }
        // Writable before a permit is taken: a full socket holds none. A close or the end
        // stops either wait (neither the socket nor the arbiter wakes a waiter it drops).
        // A full socket (a slow peer) cannot use what was asked for the next round, nor what
        // was kept: both go back while it waits.
        until_closed(
            conn,
            poll_fn(|cx| {
                let ready = conn.read_side.lock().poll_write_ready(cx);
                ahead.idle(ready)
            }),
        )
        .await?
        .map_err(|e| failed(conn, e))?;
        // Without a limit nothing is asked for: no permits are taken.
        let next = if dir.is_limited() {
            ahead.next_bytes()
        } else {
            0
        };
        let want = pipe.held() + next;
        // Marked before the splice asks (and only while it may ask or hold a permit): the
        // writer, going idle after the bytes queued before it, would otherwise withdraw the
        // splice's demand with its own.
        let _writing = SplicingIn::new(conn);
        let asking = dir.asking(conn.up);
        let mut permit = until_closed(conn, dir.acquire(conn.up, want as u64)).await?;
        asking.disarm();
        // The permit is spent as the socket takes bytes, and held across short waits: a
        // socket bounded by TCP_NOTSENT_LOWAT takes a grant in pieces, and a connection that
        // gave its grant back at each piece would not be asking while it waits for the
        // socket, where a guarantee's bytes come due. A socket that takes nothing within a
        // stall bound gives the rest back, as the writer does, and the splice waits for
        // readiness again without holding the others' bytes.
        let mut moved = 0;
        loop {
            let held = pipe.held();
            let max = permit.as_ref().map_or(held, |p| {
                usize::try_from(p.bytes()).unwrap_or(usize::MAX).min(held)
            });
            if max == 0 {
                break;
            }
            let out = until_closed(
                conn,
                poll_fn(|cx| conn.read_side.lock().poll_splice_out(pipe, cx, max)),
            );
            let Ok(n) = tokio::time::timeout(crate::write_pump::STALL, out).await else {
                // The rest of the demand goes too: nothing is to be granted to a socket that
                // takes nothing.
                dir.withdraw(conn.up);
                break;
            };
            let n = n?.map_err(|e| failed(conn, e))?;
            if let Some(p) = permit.as_mut() {
                p.spend(n as u64);
            }
            // Sent, but not of the write queue: flushes count the queue's bytes only.
            conn.meter.add_sent(n as u64);
            moved += n;
        }
        if pipe.is_empty() {
            // The rest is for the next round's bytes, asked for with these.
            // (Dropped, the rest goes back: a delivery of held bytes alone has no next round.)
            if let Some(p) = permit.filter(|_| ahead.to.is_some()) {
                ahead.asked.store(true, Ordering::Relaxed);
                p.keep();
            }
        }
        if moved > 0 {
            return Ok(moved);
        }
    }
}

/// Counts a splice among those writing into a connection while it lives.
struct SplicingIn<'a>(&'a AtomicUsize);

impl<'a> SplicingIn<'a> {
    fn new<P: Policy>(conn: &'a ConnInner<P>) -> Self {
        conn.splicing_in.fetch_add(1, Ordering::SeqCst);
        Self(&conn.splicing_in)
    }
}

impl Drop for SplicingIn<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A write into `conn`'s socket failed: the connection fails, as its writer's would.
fn failed<P: Policy>(conn: &ConnInner<P>, e: io::Error) -> Error {
    let st = conn.status();
    // A close or half-close that came meanwhile sent the FIN the write then hit (EPIPE): the
    // connection is closing, not failed.
    if e.kind() == io::ErrorKind::NotConnected || st.write != WritePhase::Open || st.ended {
        return Error::ConnectionClosed;
    }
    conn.fail(io::Error::new(e.kind(), e.to_string()));
    Error::Io(e)
}

/// Waits for `f`, unless the connection stops first (`None`).
async fn until_stopped<P: Policy, T>(conn: &ConnInner<P>, f: impl Future<Output = T>) -> Option<T> {
    tokio::select! {
        biased;
        v = f => Some(v),
        () = conn.cancel.cancelled() => None,
    }
}

/// Waits for `f`, unless the connection's write side closes first, or it ends.
async fn until_closed<P: Policy, T>(
    conn: &ConnInner<P>,
    f: impl Future<Output = T>,
) -> Result<T, Error> {
    tokio::select! {
        biased;
        v = f => Ok(v),
        () = conn.until(|s| s.write != WritePhase::Open || s.ended) => Err(Error::ConnectionClosed),
    }
}
