//! [`ByteQueue`]: the queue itself.

use std::collections::VecDeque;
use std::future::poll_fn;
use std::num::NonZeroUsize;
use std::task::{Context, Poll, Waker};

use bytes::{Buf, Bytes};

use crate::sync::{Mutex, MutexGuard};
use crate::waiters::{Heads, Ticket, Waiters};
use crate::{Closed, TryPopError, TryPushError};

/// A byte-bounded, closable, first-come-first-served async queue of [`Bytes`] chunks.
///
/// All methods take `&self`: share the queue behind an `Arc`. No lock is ever held across an
/// `.await`, and wakers are woken after the lock is released.
///
/// See the [crate docs](crate) for what counts towards the bound.
#[derive(Debug)]
pub struct ByteQueue {
    bound: Option<NonZeroUsize>,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    items: VecDeque<Bytes>,
    size: usize,
    /// Bytes ever accepted, a running total (bytes popped or cleared since still count).
    pushed: u64,
    closed: bool,
    pushers: Waiters,
    poppers: Waiters,
    /// Tasks waiting for the queue to shrink below a size of their own (see
    /// [`ByteQueue::wait_below`]).
    shrink: Waiters,
}

/// Which line a waiting future stands in.
#[derive(Clone, Copy, Debug)]
enum Side {
    Push,
    Pop,
    Shrink,
}

/// Leaves the line when a waiting future is dropped, which is what makes every future here
/// cancel-safe: a dropped future holds no item and no place.
struct Place<'a> {
    queue: &'a ByteQueue,
    side: Side,
    ticket: Option<Ticket>,
}

impl Drop for Place<'_> {
    fn drop(&mut self) {
        if self.ticket.is_none() {
            return;
        }
        let next = {
            let mut st = self.queue.lock();
            st.line(self.side).leave(&mut self.ticket)
        };
        next.wake();
    }
}

impl State {
    fn line(&mut self, side: Side) -> &mut Waiters {
        match side {
            Side::Push => &mut self.pushers,
            Side::Pop => &mut self.poppers,
            Side::Shrink => &mut self.shrink,
        }
    }

    fn fits(&self, bound: Option<NonZeroUsize>, len: usize) -> bool {
        self.size == 0 || bound.is_none_or(|b| self.size + len <= b.get())
    }

    /// Appends a non-empty chunk; returns the popper to wake.
    fn enqueue(&mut self, msg: Bytes) -> Heads {
        self.size += msg.len();
        self.pushed += msg.len() as u64;
        self.items.push_back(msg);
        self.poppers.turn()
    }

    /// Takes at most `max` bytes from the front chunk, splitting it without copying.
    fn take_front(&mut self, max: usize) -> Option<Bytes> {
        let front = self.items.front_mut()?;
        let out = if front.len() <= max {
            self.items.pop_front()?
        } else {
            front.split_to(max)
        };
        self.size -= out.len();
        Some(out)
    }
}

/// Wakers collected under the lock and woken after it is released.
#[derive(Default)]
struct Wakeups(Heads, Heads, Heads);

impl Wakeups {
    fn wake(self) {
        self.0.wake();
        self.1.wake();
        self.2.wake();
    }
}

impl ByteQueue {
    /// A queue holding at most `bound` bytes (plus one oversized chunk when otherwise empty).
    pub fn bounded(bound: NonZeroUsize) -> Self {
        Self::with_bound(Some(bound))
    }

    /// A queue with no bound.
    pub fn unbounded() -> Self {
        Self::with_bound(None)
    }

    /// A queue with the given bound, `None` meaning unbounded.
    pub fn with_bound(bound: Option<NonZeroUsize>) -> Self {
        Self {
            bound,
            state: Mutex::new(State::default()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding this lock cannot leave the state half-updated: every critical
        // section either completes its update or changes nothing. So a poisoned lock is safe to
        // keep using.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The bound in bytes, `None` if unbounded.
    pub fn bound(&self) -> Option<NonZeroUsize> {
        self.bound
    }

    /// Bytes queued now.
    pub fn len_bytes(&self) -> usize {
        self.lock().size
    }

    /// Bytes ever accepted into the queue, a running total: bytes popped or cleared since
    /// still count. A flush that starts when this reads `n` is over once the consumer has
    /// passed on `n` bytes in all.
    ///
    /// ```
    /// use bytes::Bytes;
    /// use fairio_queue::ByteQueue;
    ///
    /// let q = ByteQueue::with_bound(None);
    /// assert!(q.push_now(Bytes::from_static(b"abc")));
    /// q.clear();
    /// assert!(q.push_now(Bytes::from_static(b"de")));
    /// assert_eq!((q.len_bytes(), q.pushed_bytes()), (2, 5));
    /// ```
    pub fn pushed_bytes(&self) -> u64 {
        self.lock().pushed
    }

    /// Chunks queued now.
    pub fn len_items(&self) -> usize {
        self.lock().items.len()
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.lock().items.is_empty()
    }

    /// Whether [`close`](Self::close) was called.
    pub fn is_closed(&self) -> bool {
        self.lock().closed
    }

    /// Pushes `msg`, waiting for room (and for earlier pushers) first.
    ///
    /// # Errors
    /// Returns [`Closed`] with `msg` if the queue is closed before `msg` is queued.
    ///
    /// # Cancel safety
    /// Cancel-safe: if the future is dropped before it completes, nothing was queued, and the
    /// caller's place in line goes to the next pusher.
    pub async fn push(&self, msg: Bytes) -> Result<(), Closed<Bytes>> {
        let mut place = Place {
            queue: self,
            side: Side::Push,
            ticket: None,
        };
        let mut msg = Some(msg);
        poll_fn(|cx| self.poll_push(&mut place.ticket, &mut msg, cx, false)).await
    }

    /// `lapsing`: whether a place the caller takes in line may lapse (see `Waiters`).
    pub(crate) fn poll_push(
        &self,
        ticket: &mut Option<Ticket>,
        msg: &mut Option<Bytes>,
        cx: &mut Context<'_>,
        lapsing: bool,
    ) -> Poll<Result<(), Closed<Bytes>>> {
        let Some(len) = msg.as_ref().map(Bytes::len) else {
            return Poll::Ready(Ok(()));
        };
        match self.try_push_inner(ticket, msg, len, Some((cx.waker(), lapsing))) {
            Ok(wake) => {
                wake.wake();
                Poll::Ready(Ok(()))
            }
            Err(TryPushError::Closed(())) => {
                Poll::Ready(Err(Closed(msg.take().unwrap_or_default())))
            }
            Err(TryPushError::Full(())) => Poll::Pending,
        }
    }

    /// The push logic shared by the waiting and non-waiting forms. On success `msg` is taken and
    /// the caller has left the line. When full, a caller that passes a waker joins (or stays in)
    /// the line in the same critical section, so no wake-up can slip in between.
    fn try_push_inner(
        &self,
        ticket: &mut Option<Ticket>,
        msg: &mut Option<Bytes>,
        len: usize,
        waker: Option<(&Waker, bool)>,
    ) -> Result<Wakeups, TryPushError<()>> {
        let mut st = self.lock();
        if st.closed {
            st.pushers.leave(ticket);
            return Err(TryPushError::Closed(()));
        }
        if len == 0 {
            msg.take();
            let next = st.pushers.leave(ticket);
            return Ok(Wakeups(next, Heads::default(), Heads::default()));
        }
        if !st.pushers.may_proceed(ticket) || !st.fits(self.bound, len) {
            if let Some((w, lapsing)) = waker {
                st.pushers.wait(ticket, w, lapsing);
            }
            return Err(TryPushError::Full(()));
        }
        let next_pusher = st.pushers.leave(ticket);
        let popper = msg.take().map(|m| st.enqueue(m)).unwrap_or_default();
        Ok(Wakeups(popper, next_pusher, Heads::default()))
    }

    /// Pushes `msg` if it fits now, without waiting.
    ///
    /// It fits when the queue is open, no earlier pusher is waiting, and either the queue is
    /// empty or `msg` fits in the room left. Empty messages always fit in an open queue (and are
    /// not queued).
    ///
    /// # Errors
    /// [`TryPushError::Full`] or [`TryPushError::Closed`], with `msg` handed back.
    pub fn try_push(&self, msg: Bytes) -> Result<(), TryPushError<Bytes>> {
        let len = msg.len();
        let mut slot = Some(msg);
        match self.try_push_inner(&mut None, &mut slot, len, None) {
            Ok(wake) => {
                wake.wake();
                Ok(())
            }
            Err(TryPushError::Full(())) => Err(TryPushError::Full(slot.unwrap_or_default())),
            Err(TryPushError::Closed(())) => Err(TryPushError::Closed(slot.unwrap_or_default())),
        }
    }

    /// Tezos's `push_now`: `true` if `msg` was queued at once, `false` if it was dropped. Use
    /// [`try_push`](Self::try_push) to get the message back.
    pub fn push_now(&self, msg: Bytes) -> bool {
        self.try_push(msg).is_ok()
    }

    /// Pops the front chunk, waiting for one. Returns `None` once the queue is closed and
    /// drained.
    ///
    /// # Cancel safety
    /// Cancel-safe: a dropped future has taken nothing.
    pub async fn pop(&self) -> Option<Bytes> {
        self.pop_max(NonZeroUsize::MAX).await
    }

    /// Pops at most `max` bytes from the front chunk, waiting for one. A longer chunk is split
    /// without copying, and its rest stays at the front. Returns `None` once the queue is closed
    /// and drained.
    ///
    /// # Cancel safety
    /// Cancel-safe: a dropped future has taken nothing.
    pub async fn pop_max(&self, max: NonZeroUsize) -> Option<Bytes> {
        let mut place = Place {
            queue: self,
            side: Side::Pop,
            ticket: None,
        };
        poll_fn(|cx| self.poll_pop(&mut place.ticket, max.get(), cx, false)).await
    }

    /// Copies the front bytes into `buf`, waiting for some. Returns how many were copied: 0
    /// only when `buf` is empty, or the queue is closed and drained. The rest of a partly read
    /// chunk stays at the front for the next read.
    ///
    /// # Cancel safety
    /// Cancel-safe: a dropped future has taken nothing.
    pub async fn read(&self, buf: &mut [u8]) -> usize {
        let Some(max) = NonZeroUsize::new(buf.len()) else {
            return 0;
        };
        match self.pop_max(max).await {
            Some(chunk) => copy_out(chunk, buf),
            None => 0,
        }
    }

    /// Queues `msg` at once, past the bound and ahead of waiting pushers. For a single producer
    /// that applies back-pressure itself (with [`wait_below`](Self::wait_below)) and must not
    /// wait here: fairio's read pump, which has already been granted the bytes it pushes.
    /// Empty messages are not queued.
    ///
    /// # Errors
    /// Returns [`Closed`] with `msg` if the queue is closed.
    pub fn push_force(&self, msg: Bytes) -> Result<(), Closed<Bytes>> {
        let popper = {
            let mut st = self.lock();
            if st.closed {
                return Err(Closed(msg));
            }
            if msg.is_empty() {
                return Ok(());
            }
            st.enqueue(msg)
        };
        popper.wake();
        Ok(())
    }

    /// Waits until fewer than `n` bytes are queued, woken by the pops that shrink the queue.
    /// Meant for one producer: waiters are woken one at a time, in order, so a second waiter
    /// with a larger `n` waits behind the first.
    /// Returns `false` once the queue is closed. Back-pressure for a producer that pushes with
    /// [`push_force`](Self::push_force), without a notification that every consumer must
    /// remember to send.
    ///
    /// # Cancel safety
    /// Cancel-safe: it takes and queues nothing.
    pub async fn wait_below(&self, n: usize) -> bool {
        self.wait_in_line(Side::Shrink, |st, _| {
            (st.closed || st.size < n).then_some(!st.closed)
        })
        .await
    }

    /// Waits until a chunk is queued, without taking it. Returns `false` once the queue is
    /// closed and drained. Meant for a single consumer that must decide how much to take.
    ///
    /// # Cancel safety
    /// Cancel-safe: it takes nothing.
    pub async fn readable(&self) -> bool {
        self.wait_in_line(Side::Pop, |st, ticket| {
            let ready = st.poppers.may_proceed(ticket) && (!st.items.is_empty() || st.closed);
            ready.then_some(!st.items.is_empty())
        })
        .await
    }

    /// Waits in `side`'s line until `ready` (given the state and this waiter's ticket) gives
    /// an answer, then leaves the line, waking the next in it. Cancel-safe: a dropped wait
    /// leaves the line too.
    async fn wait_in_line<R>(
        &self,
        side: Side,
        mut ready: impl FnMut(&mut State, &mut Option<Ticket>) -> Option<R>,
    ) -> R {
        let mut place = Place {
            queue: self,
            side,
            ticket: None,
        };
        poll_fn(|cx| {
            let mut st = self.lock();
            if let Some(answer) = ready(&mut st, &mut place.ticket) {
                let next = st.line(side).leave(&mut place.ticket);
                drop(st);
                next.wake();
                return Poll::Ready(answer);
            }
            st.line(side).wait(&mut place.ticket, cx.waker(), false);
            Poll::Pending
        })
        .await
    }

    /// `lapsing`: whether a place the caller takes in line may lapse (see `Waiters`).
    pub(crate) fn poll_pop(
        &self,
        ticket: &mut Option<Ticket>,
        max: usize,
        cx: &mut Context<'_>,
        lapsing: bool,
    ) -> Poll<Option<Bytes>> {
        let mut st = self.lock();
        if st.poppers.may_proceed(ticket) {
            match self.take_locked(&mut st, ticket, max) {
                Ok((chunk, wake)) => {
                    drop(st);
                    wake.wake();
                    return Poll::Ready(Some(chunk));
                }
                Err(TryPopError::Closed) => {
                    let next = st.poppers.leave(ticket);
                    drop(st);
                    next.wake();
                    return Poll::Ready(None);
                }
                Err(TryPopError::Empty) => {}
            }
        }
        st.poppers.wait(ticket, cx.waker(), lapsing);
        Poll::Pending
    }

    /// Takes from the front for a caller allowed to proceed, and leaves the line.
    fn take_locked(
        &self,
        st: &mut State,
        ticket: &mut Option<Ticket>,
        max: usize,
    ) -> Result<(Bytes, Wakeups), TryPopError> {
        let Some(chunk) = st.take_front(max) else {
            return Err(if st.closed {
                TryPopError::Closed
            } else {
                TryPopError::Empty
            });
        };
        // The next popper's turn, if bytes remain or the queue is closed (it must see the end).
        let handoff = st.poppers.leave(ticket);
        let next_popper = if st.items.is_empty() && !st.closed {
            Heads::default()
        } else {
            handoff
        };
        Ok((
            chunk,
            Wakeups(st.pushers.turn(), next_popper, st.shrink.turn()),
        ))
    }

    /// Pops the front chunk if there is one and no earlier popper is waiting.
    ///
    /// # Errors
    /// [`TryPopError::Empty`] if nothing can be taken now; [`TryPopError::Closed`] once the
    /// queue is closed and drained.
    pub fn try_pop(&self) -> Result<Bytes, TryPopError> {
        self.try_pop_max(NonZeroUsize::MAX)
    }

    /// Like [`try_pop`](Self::try_pop), taking at most `max` bytes of the front chunk.
    ///
    /// # Errors
    /// As [`try_pop`](Self::try_pop).
    pub fn try_pop_max(&self, max: NonZeroUsize) -> Result<Bytes, TryPopError> {
        let mut st = self.lock();
        if !st.poppers.may_proceed(&mut None) {
            return Err(TryPopError::Empty);
        }
        let (chunk, wake) = self.take_locked(&mut st, &mut None, max.get())?;
        drop(st);
        wake.wake();
        Ok(chunk)
    }

    /// Like [`read`](Self::read), without waiting.
    ///
    /// # Errors
    /// As [`try_pop`](Self::try_pop); an empty `buf` gives `Ok(0)`.
    pub fn try_read(&self, buf: &mut [u8]) -> Result<usize, TryPopError> {
        let Some(max) = NonZeroUsize::new(buf.len()) else {
            return Ok(0);
        };
        self.try_pop_max(max).map(|chunk| copy_out(chunk, buf))
    }

    /// Closes the queue: pending and later pushes fail and hand their message back; queued
    /// chunks can still be popped, after which pops report the end. Idempotent.
    pub fn close(&self) {
        let wakers = {
            let mut st = self.lock();
            st.closed = true;
            let mut w = st.pushers.all();
            w.extend(st.poppers.all());
            w.extend(st.shrink.all());
            w
        };
        for w in wakers {
            w.wake();
        }
    }

    /// Wakes every waiting popper without giving it anything, so that each polls again: for a
    /// producer whose consumers may now take their bytes elsewhere (fairio's readers, when a
    /// limit is lifted and they read the stream themselves).
    pub fn wake_poppers(&self) {
        let wakers = self.lock().poppers.all();
        for w in wakers {
            w.wake();
        }
    }

    /// Drops every queued chunk and returns how many bytes were dropped. Waiting pushers are
    /// woken, since there is room now.
    pub fn clear(&self) -> usize {
        let (dropped, wake) = {
            let mut st = self.lock();
            st.items.clear();
            let wake = Wakeups(st.pushers.turn(), st.shrink.turn(), Heads::default());
            (std::mem::take(&mut st.size), wake)
        };
        wake.wake();
        dropped
    }

    /// Leaves a line, waking the next in it if this place was at its head.
    pub(crate) fn leave(&self, push_side: bool, ticket: &mut Option<Ticket>) {
        if ticket.is_none() {
            return;
        }
        let next = {
            let mut st = self.lock();
            st.line(if push_side { Side::Push } else { Side::Pop })
                .leave(ticket)
        };
        next.wake();
    }
}

pub(crate) fn copy_out(mut chunk: Bytes, buf: &mut [u8]) -> usize {
    let n = chunk.len();
    chunk.copy_to_slice(&mut buf[..n]);
    n
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use tokio_test::task::spawn;
    use tokio_test::{assert_pending, assert_ready, assert_ready_eq};

    use super::*;

    fn q(bound: usize) -> Arc<ByteQueue> {
        Arc::new(ByteQueue::bounded(NonZeroUsize::new(bound).unwrap()))
    }

    fn b(s: &'static str) -> Bytes {
        Bytes::from_static(s.as_bytes())
    }

    #[test]
    fn oversized_item_is_accepted_only_when_empty() {
        let q = q(4);
        assert!(q.push_now(b("0123456789")));
        assert!(!q.push_now(b("x")));
        assert_eq!(q.try_pop().unwrap(), b("0123456789"));
        assert!(q.push_now(b("abcd")));
        assert!(!q.push_now(b("e")));
    }

    #[test]
    fn pushers_are_served_in_order_and_push_now_does_not_jump_the_line() {
        let q = q(4);
        assert!(q.push_now(b("abcd")));
        let mut big = spawn(q.push(b("123")));
        let mut small = spawn(q.push(b("z")));
        assert_pending!(big.poll());
        assert_pending!(small.poll());
        assert_eq!(
            q.try_pop_max(NonZeroUsize::new(1).unwrap()).unwrap(),
            b("a")
        );
        // One byte of room: "z" would fit, but "123" is first in line.
        assert!(!q.push_now(b("y")));
        assert_pending!(small.poll());
        assert_pending!(big.poll());
        assert_eq!(
            q.try_pop_max(NonZeroUsize::new(2).unwrap()).unwrap(),
            b("bc")
        );
        assert!(big.is_woken());
        assert_ready!(big.poll()).unwrap();
        assert!(small.is_woken());
        assert_pending!(small.poll()); // "d" + "123" = 4 bytes: full
    }

    /// `wait_below` waits while `n` bytes or more are queued, completes with `true` once a pop
    /// brings the queue below `n`, and with `false` once the queue is closed.
    #[test]
    fn wait_below_follows_the_queue_size_and_the_close() {
        let q = q(8);
        assert!(q.push_now(b("abcd")));
        assert!(assert_ready!(spawn(q.wait_below(5)).poll()));
        let mut below = spawn(q.wait_below(4));
        assert_pending!(below.poll());
        assert!(q.push_now(b("ef")));
        assert_pending!(below.poll());
        assert_eq!(q.try_pop().unwrap(), b("abcd"));
        assert!(below.is_woken());
        assert!(assert_ready!(below.poll()), "the queue is open");
        let mut empty = spawn(q.wait_below(1));
        assert_pending!(empty.poll());
        q.close();
        assert!(empty.is_woken());
        assert!(!assert_ready!(empty.poll()), "closed");
    }

    /// The popper that takes the last chunk of a closed queue hands the turn on, so that the
    /// one behind it sees the end (the close's own wake-up came while it was not its turn).
    #[test]
    fn the_last_pop_of_a_closed_queue_hands_the_end_on() {
        let q = q(8);
        let mut first = spawn(q.pop());
        let mut second = spawn(q.pop());
        assert_pending!(first.poll());
        assert_pending!(second.poll());
        assert!(q.push_now(b("x")));
        q.close();
        assert_pending!(second.poll());
        assert_eq!(assert_ready!(first.poll()), Some(b("x")));
        assert!(second.is_woken(), "the turn was not handed on");
        assert_eq!(assert_ready!(second.poll()), None);
    }

    /// `len_items`, `is_empty` and `len_bytes` follow pushes and pops.
    #[test]
    fn counts_follow_pushes_and_pops() {
        let q = q(16);
        assert!(q.is_empty());
        assert_eq!((q.len_items(), q.len_bytes()), (0, 0));
        assert!(q.push_now(b("ab")));
        assert!(q.push_now(b("cde")));
        assert!(!q.is_empty());
        assert_eq!((q.len_items(), q.len_bytes()), (2, 5));
        assert_eq!(q.try_pop().unwrap(), b("ab"));
        assert_eq!((q.len_items(), q.len_bytes()), (1, 3));
        assert_eq!(q.try_pop().unwrap(), b("cde"));
        assert!(q.is_empty());
        assert_eq!((q.len_items(), q.len_bytes()), (0, 0));
    }

    /// The accessors say what the queue was made with and what happened to it.
    #[test]
    fn bound_and_closed_are_reported() {
        assert_eq!(q(3).bound(), NonZeroUsize::new(3));
        assert_eq!(ByteQueue::unbounded().bound(), None);
        assert_eq!(
            ByteQueue::with_bound(NonZeroUsize::new(5)).bound(),
            NonZeroUsize::new(5)
        );
        let q = q(3);
        assert!(!q.is_closed());
        q.close();
        assert!(q.is_closed());
        q.close();
        assert!(q.is_closed());
    }

    /// `wake_poppers` wakes a popper waiting in line without giving it anything.
    #[test]
    fn wake_poppers_wakes_a_waiting_popper() {
        let q = q(8);
        let mut pop = spawn(q.pop());
        assert_pending!(pop.poll());
        assert!(!pop.is_woken());
        q.wake_poppers();
        assert!(pop.is_woken());
        assert_pending!(pop.poll());
        assert!(q.push_now(b("x")));
        assert_eq!(assert_ready!(pop.poll()), Some(b("x")));
    }

    #[test]
    fn dropping_the_head_pusher_passes_the_turn_on() {
        let q = q(2);
        assert!(q.push_now(b("ab")));
        let mut first = spawn(q.push(b("123")));
        let mut second = spawn(q.push(b("x")));
        assert_pending!(first.poll());
        assert_pending!(second.poll());
        q.try_pop_max(NonZeroUsize::new(1).unwrap()).unwrap();
        drop(first);
        assert!(second.is_woken());
        assert_ready!(second.poll()).unwrap();
        assert_eq!(q.len_bytes(), 2);
    }

    #[test]
    fn pop_waits_then_read_splits_without_loss() {
        let q = q(16);
        let mut pop = spawn(q.pop());
        assert_pending!(pop.poll());
        assert_ready!(spawn(q.push(b("hello world"))).poll()).unwrap();
        assert!(pop.is_woken());
        assert_ready_eq!(pop.poll(), Some(b("hello world")));
        assert_ready!(spawn(q.push(b("abcdef"))).poll()).unwrap();
        let mut buf = [0u8; 4];
        assert_eq!(assert_ready!(spawn(q.read(&mut buf)).poll()), 4);
        assert_eq!(&buf, b"abcd");
        assert_eq!(q.try_read(&mut buf), Ok(2));
        assert_eq!(&buf[..2], b"ef");
        assert_eq!(q.try_read(&mut []), Ok(0));
        assert_eq!(q.try_read(&mut buf), Err(TryPopError::Empty));
    }

    #[test]
    fn close_fails_pushers_with_their_message_and_drains_poppers() {
        let q = q(2);
        assert!(q.push_now(b("ab")));
        let mut push = spawn(q.push(b("cd")));
        assert_pending!(push.poll());
        q.close();
        assert!(push.is_woken());
        assert_eq!(assert_ready!(push.poll()).unwrap_err().0, b("cd"));
        assert!(matches!(q.try_push(b("x")), Err(TryPushError::Closed(m)) if m == b("x")));
        assert_eq!(q.try_pop().unwrap(), b("ab"));
        assert_eq!(q.try_pop(), Err(TryPopError::Closed));
        let mut pop = spawn(q.pop());
        assert_ready_eq!(pop.poll(), None);
    }

    #[test]
    fn dropped_pop_takes_nothing_and_next_popper_gets_the_item() {
        let q = q(8);
        let mut first = spawn(q.pop());
        let mut second = spawn(q.pop());
        assert_pending!(first.poll());
        assert_pending!(second.poll());
        assert!(q.push_now(b("m")));
        assert!(first.is_woken());
        drop(first);
        assert!(second.is_woken());
        assert_ready_eq!(second.poll(), Some(b("m")));
    }

    #[test]
    fn readable_waits_without_taking() {
        let q = q(8);
        let mut r = spawn(q.readable());
        assert_pending!(r.poll());
        assert!(q.push_now(b("k")));
        assert_ready_eq!(r.poll(), true);
        assert_eq!(q.len_bytes(), 1);
        q.close();
        assert_eq!(q.try_pop().unwrap(), b("k"));
        let mut r = spawn(q.readable());
        assert_ready_eq!(r.poll(), false);
    }

    #[test]
    fn clear_reports_dropped_bytes_and_unblocks_pushers() {
        let q = q(3);
        assert!(q.push_now(b("abc")));
        let mut push = spawn(q.push(b("de")));
        assert_pending!(push.poll());
        assert_eq!(q.clear(), 3);
        assert!(push.is_woken());
        assert_ready!(push.poll()).unwrap();
    }

    #[test]
    fn empty_messages_are_accepted_but_not_queued() {
        let q = Arc::new(ByteQueue::unbounded());
        assert!(q.push_now(Bytes::new()));
        assert!(q.is_empty());
        q.close();
        assert!(!q.push_now(Bytes::new()));
    }
}
