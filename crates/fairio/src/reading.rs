//! A user's read: from the read queue, or, with no limit and nothing queued, straight from the
//! stream (see [`read_side`](crate::read_side)).
//!
//! With no limit, the read pump reads nothing: a reader reads the stream in its own task, as
//! it would without fairio, and its bytes are counted as they come. Under a limit, the pump
//! reads, the grants pace it, and readers take from the queue. A read that has begun on the
//! stream when a limit comes completes (at most one read's worth, like a read finished just
//! before); the next read waits for the queue.

use std::num::NonZeroUsize;
use std::task::{Context, Poll};

use bytes::Bytes;
use fairio_policy::Policy;
use fairio_queue::Poller;
use tokio::io::ReadBuf;

use crate::conn::ConnInner;
use crate::direction::Direction;
use crate::read_side::{Locked, Polled};

/// Where a read puts what it takes.
pub(crate) trait Sink {
    type Out;
    /// At most this many bytes.
    fn max(&self) -> NonZeroUsize;
    /// Takes a chunk from the queue or the stage (at most `max` bytes).
    fn take_chunk(&mut self, chunk: Bytes) -> Self::Out;
    /// Reads from the stream: what it gives, and how many bytes.
    fn read_stream(
        &mut self,
        side: &mut Locked<'_>,
        cx: &Context<'_>,
    ) -> Polled<(Self::Out, usize)>;
}

/// Chunks as [`Bytes`], read into the connection's own buffer: no copy.
pub(crate) struct Chunks {
    /// At most this much per chunk.
    pub(crate) max: NonZeroUsize,
    /// The connection's read buffer size: a stream read takes no more than it.
    pub(crate) rbs: NonZeroUsize,
}

impl Sink for Chunks {
    type Out = Bytes;

    fn max(&self) -> NonZeroUsize {
        self.max
    }

    fn take_chunk(&mut self, chunk: Bytes) -> Bytes {
        chunk
    }

    fn read_stream(&mut self, side: &mut Locked<'_>, cx: &Context<'_>) -> Polled<(Bytes, usize)> {
        match side.poll_chunk(cx, self.max.min(self.rbs).get()) {
            Polled::Got(chunk) => {
                let n = chunk.len();
                Polled::Got((chunk, n))
            }
            Polled::Ended => Polled::Ended,
            Polled::Pending => Polled::Pending,
        }
    }
}

/// Copies into the caller's buffer, which must have room: from the stream, the one copy the
/// kernel makes.
pub(crate) struct IntoBuf<'a, 'b>(pub(crate) &'a mut ReadBuf<'b>);

impl Sink for IntoBuf<'_, '_> {
    type Out = usize;

    fn max(&self) -> NonZeroUsize {
        NonZeroUsize::new(self.0.remaining()).unwrap_or(NonZeroUsize::MIN)
    }

    fn take_chunk(&mut self, chunk: Bytes) -> usize {
        let n = chunk.len().min(self.0.remaining());
        self.0.put_slice(&chunk[..n]);
        n
    }

    fn read_stream(&mut self, side: &mut Locked<'_>, cx: &Context<'_>) -> Polled<(usize, usize)> {
        match side.poll_into(cx, self.0) {
            Polled::Got(n) => Polled::Got((n, n)),
            Polled::Ended => Polled::Ended,
            Polled::Pending => Polled::Pending,
        }
    }
}

/// Polls for bytes: `Ready(None)` once the connection has ended and every byte was read.
/// `poller` keeps the caller's place in the queue's line between polls.
pub(crate) fn poll_read<P: Policy, S: Sink>(
    conn: &ConnInner<P>,
    dir: &Direction<P>,
    poller: &mut Poller,
    cx: &mut Context<'_>,
    sink: &mut S,
) -> Poll<Option<S::Out>> {
    let max = sink.max();
    // A few rounds at most: a round goes back to the stream only when the limit was lifted or
    // the queue emptied while this reader joined the queue's line.
    for _ in 0..4 {
        if !dir.is_limited() {
            if let Some(got) = poll_stream(conn, poller, cx, sink) {
                return got;
            }
        }
        match poller.poll_pop(cx, max) {
            Poll::Ready(Some(chunk)) => {
                if !dir.is_limited() && conn.read_q.is_empty() {
                    // The queue has run dry with no limit: readers waiting in its line read
                    // the stream now, and nothing would wake them otherwise.
                    conn.read_q.wake_poppers();
                }
                return Poll::Ready(Some(sink.take_chunk(chunk)));
            }
            Poll::Ready(None) => return Poll::Ready(None),
            Poll::Pending => {}
        }
        // In line now. If the limit was lifted meanwhile (its wake-up may have come before
        // this reader joined the line), or the queue emptied, the stream is this reader's
        // to read: another round.
        if dir.is_limited() || !conn.read_q.is_empty() || conn.read_side.lock().is_ended() {
            return Poll::Pending;
        }
    }
    // Still racing with limit changes: let other tasks run, and come back.
    cx.waker().wake_by_ref();
    Poll::Pending
}

/// With no limit: takes what is staged, or reads the stream, while nothing is queued. `None`
/// when the queue must answer (it holds bytes, or the end was handed on to it).
fn poll_stream<P: Policy, S: Sink>(
    conn: &ConnInner<P>,
    poller: &mut Poller,
    cx: &mut Context<'_>,
    sink: &mut S,
) -> Option<Poll<Option<S::Out>>> {
    let max = sink.max();
    let mut side = conn.read_side.lock();
    // Under the lock nothing is queued or staged behind the reader's back: the pump queues
    // and stages only while it holds it.
    if !conn.read_q.is_empty() || side.is_closed() {
        return None;
    }
    if let Some(chunk) = side.take_staged(max.get()) {
        drop(side);
        poller.leave_pop();
        conn.meter.add_recv(chunk.len() as u64);
        return Some(Poll::Ready(Some(sink.take_chunk(chunk))));
    }
    if side.finish(conn) {
        return None;
    }
    match sink.read_stream(&mut side, cx) {
        Polled::Got((out, n)) => {
            drop(side);
            poller.leave_pop();
            conn.meter.add_recv(n as u64);
            Some(Poll::Ready(Some(out)))
        }
        Polled::Pending => {
            // Wait in the queue's line too, still under the lock: if a limit comes, the pump
            // queues the bytes, and the push wakes this reader.
            Some(
                poller
                    .poll_pop(cx, max)
                    .map(|c| c.map(|c| sink.take_chunk(c))),
            )
        }
        // The end is handed on: the queue is closed after what it holds, and answers.
        Polled::Ended => {
            side.finish(conn);
            None
        }
    }
}
