//! [`ReadSide`]: a connection's stream read half, shared by its read pump and its readers.
//!
//! Under a limit, the pump reads the stream into a stage and moves what its grants allow into
//! the read queue. With no limit, a reader takes bytes from the stream itself, in its own task:
//! no second task hop, and with `read` no copy beyond the one into the caller's buffer. Either
//! way the bytes come out in order, because everything that decides who reads what happens
//! under this one lock:
//!
//! - a reader takes from the stream only while the queue and the stage are empty;
//! - the pump reads into the stage, and moves the stage into the queue, under the lock.
//!
//! A tokio stream remembers one waker per direction, the last poller's, and two pollers would
//! take turns losing their wake-ups. So the stream is always polled with one [`Fanout`] waker,
//! which wakes every task that has said it waits.

use std::collections::VecDeque;
use std::io;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Wake, Waker};

use bytes::{BufMut, Bytes, BytesMut};
use fairio_fd::FdReadHalf;
use tokio::io::{AsyncRead, ReadBuf};

use crate::panics::panicked;

/// Where a read side hands the end of the stream on: the connection. A trait, so that the
/// read side needs nothing of the connection that holds it.
pub(crate) trait ReadEnd {
    /// Nothing more comes (the connection's task dropped the read half): readers see the end
    /// after what is queued.
    fn reads_closed(&self);
    /// The peer closed its end: readers see the end after what is queued.
    fn peer_closed(&self);
    /// Reading failed: the connection fails with `e`.
    fn reads_failed(&self, e: io::Error);
}

/// The read half, and what was read from it and not yet handed on.
pub(crate) struct ReadSide {
    source: Mutex<Source>,
    fanout: Arc<Fanout>,
    waker: Waker,
    /// Wakes the read pump: a splice asked for the stream, or gave it back.
    pub(crate) lend_changed: tokio::sync::Notify,
}

impl ReadSide {
    pub(crate) fn new(r: FdReadHalf) -> Self {
        let fanout = Arc::new(Fanout::default());
        Self {
            source: Mutex::new(Source {
                r: Some(r),
                stage: Stage::default(),
                buf: BytesMut::new(),
                end: End::Open,
                lend: Lend::Free,
            }),
            waker: Waker::from(Arc::clone(&fanout)),
            fanout,
            lend_changed: tokio::sync::Notify::new(),
        }
    }

    pub(crate) fn lock(&self) -> Locked<'_> {
        Locked {
            // Every critical section leaves the source consistent before anything that can
            // panic (a poll of the stream): a poisoned lock holds usable state.
            source: self.source.lock().unwrap_or_else(|e| e.into_inner()),
            side: self,
        }
    }

    /// Drops the read half: the stream closes once the write half is gone too. Called when the
    /// connection's task ends, or when it never started.
    pub(crate) fn close(&self) {
        let r = self.lock().source.r.take();
        drop(r);
        self.waker.wake_by_ref();
        self.lend_changed.notify_one();
    }
}

impl std::fmt::Debug for ReadSide {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadSide").finish_non_exhaustive()
    }
}

/// The read side, locked.
pub(crate) struct Locked<'a> {
    source: MutexGuard<'a, Source>,
    side: &'a ReadSide,
}

struct Source {
    /// `None` once the connection's task has ended.
    r: Option<FdReadHalf>,
    stage: Stage,
    /// Reused for every chunk once the user has dropped the previous one; small reads are
    /// copied out of it, so that it is not held by them.
    buf: BytesMut,
    end: End,
    lend: Lend,
}

/// Whether a splice has the stream (see [`crate::splice`]). While it is asked for or lent,
/// nobody else reads the stream: the pump still hands on what it staged before, and readers
/// take what is queued, so that the splice starts after every byte read before it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Lend {
    Free,
    /// A splice waits for the pump to let go (its stage emptied, its demand withdrawn).
    Asked,
    /// The splice reads the stream and takes the connection's download permits; the pump does
    /// nothing until it is given back.
    Lent,
}

/// How the stream's read side stands. An end waits, like the end of the stream, until the
/// bytes staged before it have been handed on.
#[derive(Debug)]
enum End {
    Open,
    Eof,
    Failed(io::Error),
    /// The end was handed on: the read queue is closed.
    Done,
}

/// What one poll of the stream gave.
pub(crate) enum Polled<T> {
    Got(T),
    /// The stream has ended or failed; the end is recorded, and handed on with
    /// [`Locked::finish`] once the stage is empty.
    Ended,
    /// Nothing yet; the task that polled is woken when there is something to read.
    Pending,
}

impl Locked<'_> {
    /// Bytes staged and not yet handed on.
    pub(crate) fn staged(&self) -> usize {
        self.source.stage.len
    }

    /// Whether the stream has nothing more to give (ended, failed, or closed).
    pub(crate) fn is_ended(&self) -> bool {
        self.source.r.is_none() || !matches!(self.source.end, End::Open)
    }

    /// Whether the task has dropped the read half.
    pub(crate) fn is_closed(&self) -> bool {
        self.source.r.is_none()
    }

    /// Where the lending of the stream to a splice stands.
    pub(crate) fn lend(&self) -> Lend {
        self.source.lend
    }

    /// Moves the lending on: a splice asks (`Asked`) and gives back (`Free`); the pump lets go
    /// (`Lent`). Whoever waits for the change is woken.
    pub(crate) fn set_lend(&mut self, lend: Lend) {
        self.source.lend = lend;
        self.side.lend_changed.notify_one();
        self.side.waker.wake_by_ref();
    }

    /// For the splice that waits for its lend: ready once lent, or once the stream has ended
    /// or its half was dropped (`false`); else the caller is woken at the next change.
    #[cfg_attr(loom, allow(dead_code))]
    pub(crate) fn poll_lent(&mut self, cx: &Context<'_>) -> Poll<bool> {
        if self.source.lend == Lend::Lent {
            return Poll::Ready(true);
        }
        if self.is_closed() || matches!(self.source.end, End::Done) {
            return Poll::Ready(false);
        }
        self.side.fanout.add(cx.waker());
        Poll::Pending
    }

    /// For the splice that holds the stream: how many bytes it has to read (more than 0), or
    /// `Ended` (recorded, as for a read).
    #[cfg(all(target_os = "linux", not(loom)))]
    pub(crate) fn poll_splice_readable(&mut self, cx: &Context<'_>) -> Polled<usize> {
        self.poll_stream_as(cx, true, |r, _, wcx| r.poll_readable(wcx))
    }

    /// How many bytes the stream's TCP socket has to read now (0 for another stream).
    #[cfg(all(target_os = "linux", not(loom)))]
    pub(crate) fn unread(&self) -> usize {
        self.source
            .r
            .as_ref()
            .and_then(|r| r.tcp())
            .map_or(0, fairio_fd::splice::unread)
    }

    /// For the splice that holds the stream: moves at most `max` bytes into `pipe` (empty).
    #[cfg(all(target_os = "linux", not(loom)))]
    pub(crate) fn poll_splice_in(
        &mut self,
        cx: &Context<'_>,
        pipe: &mut fairio_fd::splice::Pipe,
        max: usize,
    ) -> Polled<usize> {
        self.poll_stream_as(cx, true, |r, _, wcx| r.poll_splice_into(wcx, pipe, max))
    }

    /// Moves at most `max` bytes from `pipe` to the stream's socket (written, as a write would
    /// be), with the caller's own waker: the connection's writer must have nothing to write.
    ///
    /// # Errors
    /// `NotConnected` once the connection's task has dropped the stream.
    #[cfg(all(target_os = "linux", not(loom)))]
    pub(crate) fn poll_splice_out(
        &mut self,
        pipe: &mut fairio_fd::splice::Pipe,
        cx: &mut Context<'_>,
        max: usize,
    ) -> Poll<io::Result<usize>> {
        match self.source.r.as_ref() {
            Some(r) => r.poll_splice_out_of(pipe, cx, max),
            None => Poll::Ready(Err(io::ErrorKind::NotConnected.into())),
        }
    }

    /// Ready once the stream's socket may take a write, with the caller's own waker (see
    /// [`poll_splice_out`](Self::poll_splice_out)).
    ///
    /// # Errors
    /// `NotConnected` once the connection's task has dropped the stream; else the socket's.
    #[cfg(all(target_os = "linux", not(loom)))]
    pub(crate) fn poll_write_ready(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.source.r.as_ref().and_then(FdReadHalf::tcp) {
            Some(tcp) => tcp.poll_write_ready(cx),
            None => Poll::Ready(Err(io::ErrorKind::NotConnected.into())),
        }
    }

    /// Whether the stream is a TCP socket a splice can use.
    #[cfg(all(target_os = "linux", not(loom)))]
    pub(crate) fn is_tcp(&self) -> bool {
        self.source.r.as_ref().is_some_and(|r| r.tcp().is_some())
    }

    /// Takes up to `max` staged bytes, from the front.
    pub(crate) fn take_staged(&mut self, max: usize) -> Option<Bytes> {
        self.source.stage.take(max)
    }

    /// Reads at most `max` bytes (`max` > 0) into a chunk of the shared buffer.
    pub(crate) fn poll_chunk(&mut self, cx: &Context<'_>, max: usize) -> Polled<Bytes> {
        self.poll_chunk_as(cx, max, false)
    }

    /// For the splice that holds the stream: reads at most `max` bytes into a chunk (when no
    /// pipe is free).
    #[cfg(all(target_os = "linux", not(loom)))]
    pub(crate) fn poll_splice_chunk(&mut self, cx: &Context<'_>, max: usize) -> Polled<Bytes> {
        self.poll_chunk_as(cx, max, true)
    }

    fn poll_chunk_as(&mut self, cx: &Context<'_>, max: usize, splice: bool) -> Polled<Bytes> {
        // Reuses the allocation once the previous chunk has been dropped by its reader.
        self.source.buf.reserve(max);
        let room = self.source.buf.capacity();
        match self.poll_stream_as(cx, splice, |r, buf, wcx| {
            tokio_util::io::poll_read_buf(r, wcx, &mut buf.limit(max))
        }) {
            // A chunk split off the buffer keeps the buffer's whole allocation alive for as
            // long as it is staged or queued: 100-byte reads held 64 KiB each. A read that
            // filled less than half the room is copied out instead, and the buffer, still ours
            // alone, is reused; so queued chunks cost about their payload.
            Polled::Got(n) if n.saturating_mul(2) < room => {
                let buf = &mut self.source.buf;
                let chunk = Bytes::copy_from_slice(buf);
                buf.clear();
                Polled::Got(chunk)
            }
            Polled::Got(_) => Polled::Got(self.source.buf.split().freeze()),
            Polled::Ended => Polled::Ended,
            Polled::Pending => Polled::Pending,
        }
    }

    /// Reads into the caller's buffer (with room): the number of bytes read.
    pub(crate) fn poll_into(&mut self, cx: &Context<'_>, dst: &mut ReadBuf<'_>) -> Polled<usize> {
        self.poll_stream(cx, |r, _, wcx| {
            let before = dst.filled().len();
            std::task::ready!(r.poll_read(wcx, dst))?;
            Poll::Ready(Ok(dst.filled().len() - before))
        })
    }

    /// Polls the stream with `read` (which says how many bytes it read, 0 at the end), unless
    /// its end was seen already: the end is reported once. Records the end or the error.
    fn poll_stream(
        &mut self,
        cx: &Context<'_>,
        read: impl FnMut(
            Pin<&mut FdReadHalf>,
            &mut BytesMut,
            &mut Context<'_>,
        ) -> Poll<io::Result<usize>>,
    ) -> Polled<usize> {
        self.poll_stream_as(cx, false, read)
    }

    /// [`poll_stream`](Self::poll_stream), by the splice that holds the stream (`splice`) or
    /// by anyone else, who waits while a splice has it.
    fn poll_stream_as(
        &mut self,
        cx: &Context<'_>,
        splice: bool,
        mut read: impl FnMut(
            Pin<&mut FdReadHalf>,
            &mut BytesMut,
            &mut Context<'_>,
        ) -> Poll<io::Result<usize>>,
    ) -> Polled<usize> {
        let Source {
            r, buf, end, lend, ..
        } = &mut *self.source;
        let (Some(r), End::Open) = (r.as_mut(), &*end) else {
            return Polled::Ended;
        };
        if *lend != Lend::Free && !splice {
            // Woken when it is given back.
            self.side.fanout.add(cx.waker());
            return Polled::Pending;
        }
        // A stream whose read panics (a bug of its own) fails this connection, not the task
        // of whoever read (a user's, or the connection's): the stream is not polled again.
        let polled = catch_unwind(AssertUnwindSafe(|| {
            poll_registered(&self.side.fanout, &self.side.waker, cx, |wcx| {
                read(Pin::new(&mut *r), &mut *buf, wcx)
            })
        }));
        match polled.unwrap_or_else(|_| Poll::Ready(Err(panicked("read")))) {
            Poll::Pending => Polled::Pending,
            Poll::Ready(Ok(0)) => {
                *end = End::Eof;
                Polled::Ended
            }
            Poll::Ready(Ok(n)) => Polled::Got(n),
            Poll::Ready(Err(e)) => {
                *end = End::Failed(e);
                Polled::Ended
            }
        }
    }

    /// Reads into the stage, for the pump: `false` once the stream has ended.
    pub(crate) fn poll_stage(&mut self, cx: &Context<'_>, max: usize) -> Poll<bool> {
        match self.poll_chunk(cx, max) {
            Polled::Got(chunk) => {
                self.source.stage.push(chunk);
                Poll::Ready(true)
            }
            Polled::Ended => Poll::Ready(false),
            Polled::Pending => Poll::Pending,
        }
    }

    /// Once the stream has ended and nothing is staged, hands the end on: the connection fails
    /// with the read error, or its read queue closes after what it holds. Returns whether the
    /// end has been handed on (now or before). Idempotent.
    pub(crate) fn finish(&mut self, conn: &impl ReadEnd) -> bool {
        let s = &mut *self.source;
        if s.stage.len > 0 {
            return false;
        }
        match std::mem::replace(&mut s.end, End::Done) {
            // The task has dropped the read half: nothing more comes.
            End::Open if s.r.is_none() => conn.reads_closed(),
            End::Open => {
                s.end = End::Open;
                return false;
            }
            End::Failed(e) => conn.reads_failed(e),
            End::Eof => conn.peer_closed(),
            End::Done => return true,
        }
        // A pump or reader waiting on the stream may not get a wake-up from it again (a stream
        // that ends on its own, without readiness): each one looks again.
        self.side.waker.wake_by_ref();
        true
    }
}

/// Polls the stream with the fan-out waker, and makes sure the task of `cx` is woken when
/// the stream has something: if the first poll is pending, the task joins the fan-out and
/// the stream is polled once more, since a wake-up between the two would have found the list
/// without it.
fn poll_registered<T>(
    fanout: &Fanout,
    waker: &Waker,
    cx: &Context<'_>,
    mut poll: impl FnMut(&mut Context<'_>) -> Poll<io::Result<T>>,
) -> Poll<io::Result<T>> {
    let mut wcx = Context::from_waker(waker);
    if let Poll::Ready(r) = poll(&mut wcx) {
        return Poll::Ready(r);
    }
    fanout.add(cx.waker());
    poll(&mut wcx)
}

/// Wakes every task waiting for the stream; the stream holds this as its only waker.
#[derive(Default)]
struct Fanout {
    wakers: Mutex<FanoutList>,
}

#[derive(Default)]
struct FanoutList {
    wakers: Vec<Waker>,
    /// The length at which the list is woken and emptied (0: [`FANOUT_MAX`]).
    bound: usize,
}

/// How many wakers the fan-out keeps at first before it wakes them all: tasks that polled
/// once and stopped (a read given up on by a timeout, say) would otherwise stay listed, with
/// their task's memory, until the stream next has something.
const FANOUT_MAX: usize = 32;

impl Fanout {
    fn add(&self, waker: &Waker) {
        let stale = {
            let mut list = self.wakers.lock().unwrap_or_else(|e| e.into_inner());
            let FanoutList { wakers, bound } = &mut *list;
            if wakers.iter().any(|w| w.will_wake(waker)) {
                return;
            }
            // Full: each listed task is woken once, and a task that still waits polls again and
            // is listed again. The bound doubles, so that many live waiters settle instead of
            // waking each other for ever; the stream's next wake-up resets it.
            let stale = if wakers.len() >= (*bound).max(FANOUT_MAX) {
                *bound = 2 * (*bound).max(FANOUT_MAX);
                std::mem::take(wakers)
            } else {
                Vec::new()
            };
            wakers.push(waker.clone());
            stale
        };
        for w in stale {
            w.wake();
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.wakers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .wakers
            .len()
    }
}

impl Wake for Fanout {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        let ws = {
            let mut list = self.wakers.lock().unwrap_or_else(|e| e.into_inner());
            list.bound = 0;
            std::mem::take(&mut list.wakers)
        };
        for w in ws {
            w.wake();
        }
    }
}

/// Bytes read from the stream and not yet handed on, in order.
#[derive(Debug, Default)]
struct Stage {
    chunks: VecDeque<Bytes>,
    len: usize,
}

impl Stage {
    fn push(&mut self, chunk: Bytes) {
        self.len += chunk.len();
        self.chunks.push_back(chunk);
    }

    /// Takes up to `max` bytes from the front.
    fn take(&mut self, max: usize) -> Option<Bytes> {
        let front = self.chunks.front_mut()?;
        let out = if front.len() <= max {
            self.chunks.pop_front()?
        } else {
            front.split_to(max)
        };
        self.len -= out.len();
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::Count;

    /// Wakers of tasks that polled once and went away do not pile up.
    #[test]
    fn the_fanout_keeps_a_bounded_list() {
        let fanout = Fanout::default();
        let tasks: Vec<Arc<Count>> = (0..1000).map(|_| Arc::default()).collect();
        for t in &tasks {
            fanout.add(&Waker::from(Arc::clone(t)));
        }
        assert!(fanout.len() <= FANOUT_MAX, "{}", fanout.len());
        let held = tasks.iter().filter(|t| Arc::strong_count(t) > 1).count();
        assert!(held <= FANOUT_MAX, "{held} tasks still held");
    }

    /// Many live waiters (each lists itself again when woken) settle: the list is not emptied
    /// at every addition.
    #[test]
    fn many_live_waiters_settle() {
        let fanout = Fanout::default();
        let tasks: Vec<Arc<Count>> = (0..40).map(|_| Arc::default()).collect();
        // Each round, every task that was woken lists itself again, as a live waiter does.
        let mut listed = vec![false; tasks.len()];
        for _ in 0..10 {
            for (i, t) in tasks.iter().enumerate() {
                let woken = t.take() > 0;
                if !listed[i] || woken {
                    fanout.add(&Waker::from(Arc::clone(t)));
                    listed[i] = true;
                }
            }
        }
        let wakes: usize = tasks.iter().map(|t| t.get()).sum();
        assert_eq!(wakes, 0, "settled: no task woken in the last round");
        assert_eq!(fanout.len(), 40);
    }
}
