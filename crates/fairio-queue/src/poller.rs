//! [`Poller`]: the queue's operations as `poll_*` methods, for `AsyncRead`/`AsyncWrite` adapters.

use std::num::NonZeroUsize;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;

use crate::queue::copy_out;
use crate::waiters::Ticket;
use crate::{ByteQueue, Closed};

/// Owns a place in the queue's lines across polls, so that poll-based callers (an `AsyncRead`
/// or `AsyncWrite` implementation) keep first-come-first-served order. Dropping it gives the
/// places up.
#[derive(Debug)]
pub struct Poller {
    queue: Arc<ByteQueue>,
    push: Option<Ticket>,
    pop: Option<Ticket>,
    lapsing: bool,
}

impl Poller {
    /// A poller over `queue` that holds its place in line until it proceeds, leaves or is
    /// dropped: for a poller owned by a future, whose drop is how its caller gives up.
    pub fn new(queue: Arc<ByteQueue>) -> Self {
        Self {
            queue,
            push: None,
            pop: None,
            lapsing: false,
        }
    }

    /// A poller over `queue` whose place in line may be passed: once woken for its turn, and
    /// until it polls again, any other caller may go ahead of it; it keeps its place for when
    /// it comes back. For a poller kept across returns by an `AsyncRead`/`AsyncWrite` adapter,
    /// whose caller may give up on a pending poll (a timeout, a `select!`) and never poll
    /// again: it cannot hold up the others. A live poller loses at most a turn, never its
    /// place or bytes.
    ///
    /// ```
    /// use std::num::NonZeroUsize;
    /// use std::sync::Arc;
    /// use std::task::{Context, Waker};
    ///
    /// use bytes::Bytes;
    /// use fairio_queue::{ByteQueue, Poller};
    ///
    /// let q = Arc::new(ByteQueue::bounded(NonZeroUsize::new(4).unwrap()));
    /// assert!(q.push_now(Bytes::from_static(b"abcd")));
    /// let mut abandoned = Poller::lapsing(Arc::clone(&q));
    /// let mut cx = Context::from_waker(Waker::noop());
    /// let mut msg = Some(Bytes::from_static(b"xy"));
    /// assert!(abandoned.poll_push(&mut cx, &mut msg).is_pending()); // and never polled again
    /// q.try_pop().unwrap(); // room: the abandoned poller is woken for its turn
    /// assert!(q.push_now(Bytes::from_static(b"z"))); // another caller is not held up
    /// ```
    pub fn lapsing(queue: Arc<ByteQueue>) -> Self {
        Self {
            queue,
            push: None,
            pop: None,
            lapsing: true,
        }
    }

    /// The queue polled.
    pub fn queue(&self) -> &Arc<ByteQueue> {
        &self.queue
    }

    /// Copies queued bytes into `buf`, as [`ByteQueue::read`]: `Ready(0)` when `buf` is empty or
    /// the queue is closed and drained.
    pub fn poll_read(&mut self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<usize> {
        let Some(max) = NonZeroUsize::new(buf.len()) else {
            return Poll::Ready(0);
        };
        self.queue
            .poll_pop(&mut self.pop, max.get(), cx, self.lapsing)
            .map(|chunk| chunk.map_or(0, |c| copy_out(c, buf)))
    }

    /// Pops at most `max` bytes of the front chunk, as [`ByteQueue::pop_max`]: `Ready(None)` once
    /// the queue is closed and drained. On `Pending` this poller keeps its place in line until it
    /// pops, [`leaves`](Self::leave_pop) or is dropped.
    pub fn poll_pop(&mut self, cx: &mut Context<'_>, max: NonZeroUsize) -> Poll<Option<Bytes>> {
        self.queue
            .poll_pop(&mut self.pop, max.get(), cx, self.lapsing)
    }

    /// Gives up this poller's place in the pop line, if it holds one: for a reader that got its
    /// bytes elsewhere, and must not hold up the readers behind it.
    pub fn leave_pop(&mut self) {
        self.queue.leave(false, &mut self.pop);
    }

    /// Pushes the message in `msg` when there is room, as [`ByteQueue::push`]. On `Ready(Ok)`
    /// `msg` was taken; on `Pending` it is left in place, and the caller may drop it (nothing was
    /// queued) and poll again with the same or another message, keeping its place in line.
    ///
    /// # Errors
    /// [`Closed`] with the message when the queue is closed.
    pub fn poll_push(
        &mut self,
        cx: &mut Context<'_>,
        msg: &mut Option<Bytes>,
    ) -> Poll<Result<(), Closed<Bytes>>> {
        self.queue.poll_push(&mut self.push, msg, cx, self.lapsing)
    }
}

impl Drop for Poller {
    fn drop(&mut self) {
        self.queue.leave(true, &mut self.push);
        self.queue.leave(false, &mut self.pop);
    }
}

#[cfg(test)]
mod tests {
    use std::future::poll_fn;

    use super::*;

    /// The output of a future that must be ready at its first poll: a test that would
    /// otherwise wait for ever fails instead.
    fn now<F: Future>(f: F) -> F::Output {
        tokio_test::assert_ready!(tokio_test::task::spawn(f).poll())
    }

    #[test]
    fn polls_read_and_push_in_line() {
        let q = Arc::new(ByteQueue::bounded(NonZeroUsize::new(4).unwrap()));
        let mut p = Poller::new(Arc::clone(&q));
        let mut msg = Some(Bytes::from_static(b"abcd"));
        now(poll_fn(|cx| p.poll_push(cx, &mut msg))).unwrap();
        assert!(msg.is_none());
        let mut buf = [0u8; 3];
        assert_eq!(now(poll_fn(|cx| p.poll_read(cx, &mut buf))), 3);
        assert_eq!(&buf, b"abc");
        q.close();
        assert_eq!(now(poll_fn(|cx| p.poll_read(cx, &mut buf))), 1);
        assert_eq!(now(poll_fn(|cx| p.poll_read(cx, &mut buf))), 0);
    }

    /// A poller dropped while first in both lines leaves them: the popper and the pusher
    /// behind it are woken and served.
    #[test]
    fn a_dropped_poller_gives_up_its_places() {
        let q = Arc::new(ByteQueue::bounded(NonZeroUsize::new(2).unwrap()));
        let mut first = Poller::new(Arc::clone(&q));
        let max = NonZeroUsize::new(8).unwrap();
        let waker = std::task::Waker::noop();
        let mut cx = Context::from_waker(waker);
        // First in the pop line, on an empty queue.
        assert!(first.poll_pop(&mut cx, max).is_pending());
        let mut pop = tokio_test::task::spawn(q.pop());
        assert!(pop.poll().is_pending());
        // The queue fills: the popper behind the first takes nothing, since it is not its turn.
        assert!(q.push_now(Bytes::from_static(b"ab")));
        assert!(pop.poll().is_pending());
        // First in the push line too, on the full queue.
        let mut msg = Some(Bytes::from_static(b"cd"));
        let mut push = tokio_test::task::spawn(q.push(Bytes::from_static(b"ef")));
        assert!(first.poll_push(&mut cx, &mut msg).is_pending());
        assert!(push.poll().is_pending());
        drop(first);
        assert!(pop.is_woken(), "the popper behind was not woken");
        assert_eq!(pop.poll(), Poll::Ready(Some(Bytes::from_static(b"ab"))));
        assert!(push.is_woken(), "the pusher behind was not woken");
        assert_eq!(push.poll(), Poll::Ready(Ok(())));
        assert_eq!(q.len_bytes(), 2);
    }

    /// A reader that waits in line and then gets its bytes elsewhere leaves the line: the reader
    /// behind it is not held up.
    #[test]
    fn a_poller_that_leaves_lets_the_next_pop() {
        let q = Arc::new(ByteQueue::unbounded());
        let mut first = Poller::new(Arc::clone(&q));
        let max = NonZeroUsize::new(8).unwrap();
        let waker = std::task::Waker::noop();
        let mut cx = Context::from_waker(waker);
        assert!(first.poll_pop(&mut cx, max).is_pending());
        q.push_force(Bytes::from_static(b"x")).unwrap();
        // A newcomer waits behind the first in line.
        assert_eq!(q.try_pop(), Err(crate::TryPopError::Empty));
        first.leave_pop();
        assert_eq!(q.try_pop().unwrap(), Bytes::from_static(b"x"));
        first.leave_pop();
        q.close();
        assert_eq!(now(poll_fn(|cx| first.poll_pop(cx, max))), None);
    }
}
