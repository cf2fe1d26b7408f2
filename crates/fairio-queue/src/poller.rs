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
}

impl Poller {
    /// A poller over `queue`.
    pub fn new(queue: Arc<ByteQueue>) -> Self {
        Self {
            queue,
            push: None,
            pop: None,
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
            .poll_pop(&mut self.pop, max.get(), cx)
            .map(|chunk| chunk.map_or(0, |c| copy_out(c, buf)))
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
        self.queue.poll_push(&mut self.push, msg, cx)
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

    #[tokio::test]
    async fn polls_read_and_push_in_line() {
        let q = Arc::new(ByteQueue::bounded(NonZeroUsize::new(4).unwrap()));
        let mut p = Poller::new(Arc::clone(&q));
        let mut msg = Some(Bytes::from_static(b"abcd"));
        poll_fn(|cx| p.poll_push(cx, &mut msg)).await.unwrap();
        assert!(msg.is_none());
        let mut buf = [0u8; 3];
        assert_eq!(poll_fn(|cx| p.poll_read(cx, &mut buf)).await, 3);
        assert_eq!(&buf, b"abc");
        q.close();
        assert_eq!(poll_fn(|cx| p.poll_read(cx, &mut buf)).await, 1);
        assert_eq!(poll_fn(|cx| p.poll_read(cx, &mut buf)).await, 0);
    }
}
