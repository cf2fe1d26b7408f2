//! [`Connection`]: a handle on one scheduled stream.

use std::fmt;
use std::future::poll_fn;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::Bytes;
use fairio_fd::CloseReason;
use fairio_policy::{EqualShare, Policy};
use fairio_queue::Poller;
use fairio_stats::Stat;
use tokio::io::ReadBuf;

use crate::conn::{ConnInner, HandleGuard};
use crate::reading::{self, Chunks, IntoBuf, Sink};
use crate::scheduler::{RootGuard, Shared};
use crate::{ConnectionIo, Error};

/// A connection managed by a [`Scheduler`](crate::Scheduler): reads and writes behave like
/// reads and writes on the stream, while the scheduler shares bandwidth fairly.
///
/// A `Connection` is a cheap handle: clones share one connection. When the last handle is
/// dropped, the connection flushes what is queued in the background and closes.
pub struct Connection<P: Policy = EqualShare> {
    shared: Arc<Shared<P>>,
    guard: Arc<HandleGuard<P>>,
    _root: Arc<RootGuard<P>>,
}

impl<P: Policy> Connection<P> {
    pub(crate) fn new(
        shared: Arc<Shared<P>>,
        guard: Arc<HandleGuard<P>>,
        root: Arc<RootGuard<P>>,
    ) -> Self {
        Self {
            shared,
            guard,
            _root: root,
        }
    }

    pub(crate) fn inner(&self) -> &ConnInner<P> {
        &self.guard.conn
    }

    /// The scheduler's two directions.
    #[cfg_attr(loom, allow(dead_code))]
    pub(crate) fn dirs(&self) -> &crate::direction::Directions<P> {
        &self.shared.dirs
    }

    /// The connection's unique id: the id of its stream.
    pub fn id(&self) -> u64 {
        self.inner().id()
    }

    /// Queues `msg` for sending, waiting for room in the write queue. A message larger than the
    /// queue's bound is accepted when the queue is empty; large messages go out in chunks, so
    /// fairness holds whatever their size. An empty message is accepted and sends nothing.
    ///
    /// # Errors
    /// [`Error::ConnectionClosed`] once the connection is closing, closed or failed.
    ///
    /// # Cancel safety
    /// Cancel-safe: if the future is dropped, nothing of `msg` was queued.
    pub async fn write(&self, msg: Bytes) -> Result<(), Error> {
        // Take part in tokio's cooperative budgeting, as its channels do: a writer into an
        // unbounded queue is always ready, and must still let other tasks run.
        tokio::task::coop::consume_budget().await;
        self.inner()
            .write_q
            .push(msg)
            .await
            .map_err(|_| Error::ConnectionClosed)
    }

    /// Queues `msg` if it fits now: `true` if it was queued, `false` if it was dropped (no room,
    /// or the connection is closed).
    pub fn write_now(&self, msg: Bytes) -> bool {
        self.inner().write_q.push_now(msg)
    }

    /// Copies received bytes into `buf` without waiting: `None` while the connection is open
    /// and nothing has arrived; `Some(Ok(n))` for `n` bytes (0 only for an empty `buf`).
    ///
    /// # Errors
    /// `Some(Err(..))` once the connection has ended and its queued bytes were read: the I/O
    /// error that ended it, once, then [`Error::ConnectionClosed`].
    pub fn read_now(&self, buf: &mut [u8]) -> Option<Result<usize, Error>> {
        if buf.is_empty() {
            return Some(Ok(0));
        }
        let mut poller = self.poller();
        let mut cx = Context::from_waker(Waker::noop());
        let mut into = ReadBuf::new(buf);
        match self.poll_read(&mut poller, &mut cx, &mut IntoBuf(&mut into)) {
            Poll::Pending => None,
            Poll::Ready(r) => Some(r),
        }
    }

    /// A place in the read queue's line, for one read.
    fn poller(&self) -> Poller {
        Poller::new(Arc::clone(&self.inner().read_q))
    }

    /// Waits for received bytes into `sink`, taking part in tokio's cooperative budgeting as
    /// its channels do.
    async fn read_into<S: Sink>(&self, sink: &mut S) -> Result<S::Out, Error> {
        tokio::task::coop::consume_budget().await;
        let mut poller = self.poller();
        poll_fn(|cx| self.poll_read(&mut poller, cx, sink)).await
    }

    /// Polls for received bytes, from the read queue or, with no limit, from the stream.
    pub(crate) fn poll_read<S: Sink>(
        &self,
        poller: &mut Poller,
        cx: &mut Context<'_>,
        sink: &mut S,
    ) -> Poll<Result<S::Out, Error>> {
        reading::poll_read(self.inner(), &self.shared.dirs.down, poller, cx, sink)
            .map(|got| got.ok_or_else(|| self.inner().end_error()))
    }

    /// Copies received bytes into `buf`, waiting for at least one. Returns `Ok(0)` only for an
    /// empty `buf`.
    ///
    /// # Errors
    /// Once the connection has ended and its queued bytes were read: the I/O error that ended
    /// it (a reset, say), once, then [`Error::ConnectionClosed`].
    ///
    /// # Cancel safety
    /// Cancel-safe: a dropped read has taken no byte.
    pub async fn read(&self, buf: &mut [u8]) -> Result<usize, Error> {
        if buf.is_empty() {
            return Ok(0);
        }
        let mut into = ReadBuf::new(buf);
        self.read_into(&mut IntoBuf(&mut into)).await
    }

    /// Takes received bytes without copying them: the front of what has arrived, at most `max`
    /// bytes, as the [`Bytes`] the scheduler read them into. Waits for at least one byte.
    ///
    /// [`read`](Self::read) copies into the caller's buffer; this hands over the buffer itself
    /// (a read of under half a buffer is copied out, so that small messages do not each hold a
    /// whole buffer while they wait).
    /// With no limit, the chunk is read from the stream in the caller's task, at most one read
    /// buffer ([`Config::read_buffer_size`](crate::Config::read_buffer_size)) at a time, into a
    /// buffer that is reused once the caller drops the chunk. The bytes arrive in the same order
    /// and count the same as with `read`; the two can be mixed.
    ///
    /// ```no_run
    /// # async fn f(conn: fairio::Connection) -> Result<(), fairio::Error> {
    /// let mut frame = bytes::BytesMut::new();
    /// let chunk = conn.read_bytes(64 * 1024).await?;
    /// frame.extend_from_slice(&chunk); // or hand `chunk` on as it is
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// As [`read`](Self::read): once the connection has ended and its queued bytes were read,
    /// the I/O error that ended it, once, then [`Error::ConnectionClosed`]. A `max` of 0 gives
    /// an empty `Bytes` at once.
    ///
    /// # Cancel safety
    /// Cancel-safe: a dropped call has taken no byte.
    pub async fn read_bytes(&self, max: usize) -> Result<Bytes, Error> {
        let Some(max) = std::num::NonZeroUsize::new(max) else {
            return Ok(Bytes::new());
        };
        self.read_into(&mut Chunks {
            max,
            rbs: self.shared.config.read_buffer_size,
        })
        .await
    }

    /// Fills `buf` completely.
    ///
    /// # Errors
    /// As [`read`](Self::read), when the connection ends before `buf` is full; the bytes
    /// received until then were copied into `buf`.
    ///
    /// # Cancel safety
    /// Not cancel-safe, like tokio's `read_exact`: bytes already copied into `buf` are lost to
    /// the caller if the future is dropped.
    pub async fn read_full(&self, buf: &mut [u8]) -> Result<(), Error> {
        let mut filled = 0;
        while filled < buf.len() {
            filled += self.read(&mut buf[filled..]).await?;
        }
        Ok(())
    }

    /// This connection's statistics, with what its peer has not acknowledged where the
    /// platform tells ([`Stat::unacked`]).
    pub fn stat(&self) -> Stat {
        let inner = self.inner();
        Stat {
            unacked: inner.info.unacked(),
            ..inner.meter.stat()
        }
    }

    /// What bounds the bytes this connection's kernel holds ahead of its peer
    /// ([`Config::unsent_limit`](crate::Config::unsent_limit)).
    pub fn unsent_bound(&self) -> crate::UnsentBound {
        self.inner().info.unsent_bound()
    }

    /// The group the connection is in (registered in, or moved to), if any.
    pub fn group(&self) -> Option<crate::Group<P>> {
        self.inner().group().as_ref().map(|g| crate::Group {
            inner: Arc::clone(g),
        })
    }

    /// Moves the connection into another group of its scheduler, under
    /// [`Hierarchical`](crate::Hierarchical): it keeps its queues, its statistics and its own
    /// caps, and shares within `group` from its next permit. What it moved so far stays in its
    /// old group's statistics. A proxy moves a client whose address a reload puts in another
    /// class this way, without dropping it.
    ///
    /// ```
    /// use fairio::{Config, Hierarchical, Scheduler, Weight};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), fairio::Error> {
    /// let sched = Scheduler::with_policy(Config::new(16 * 1024), Hierarchical)?;
    /// let (guests, office) = (sched.group()?, sched.group()?);
    /// let (ours, _theirs) = tokio::io::duplex(1024);
    /// let conn = sched.register_in(&guests, ours, Weight::default())?;
    /// conn.move_to(&office)?;
    /// assert_eq!(conn.group().map(|g| g.id()), Some(office.id()));
    /// assert!(guests.members().is_empty());
    /// sched.shutdown(None).await;
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for a group of another scheduler, or under a policy that cannot
    /// move a connection ([`WindowQuota`](crate::WindowQuota)); [`Error::ConnectionClosed`] once the connection
    /// has left the scheduler. A refused move changes nothing.
    pub fn move_to(&self, group: &crate::Group<P>) -> Result<(), Error> {
        if !group.inner.belongs_to(&self.shared.dirs) {
            return Err(Error::InvalidConfig(
                "the group belongs to another scheduler".to_owned(),
            ));
        }
        let c = self.inner();
        let mut current = c.group();
        // Checked under the group's lock: the end of the connection takes the scheduler's
        // entry out first, then this lock to leave its group.
        if !self.shared.conns.contains_key(&c.id()) {
            return Err(Error::ConnectionClosed);
        }
        if current
            .as_ref()
            .is_some_and(|g| Arc::ptr_eq(g, &group.inner))
        {
            return Ok(());
        }
        let dirs = &self.shared.dirs;
        // The connection may end meanwhile (its end does not wait for this lock to leave the
        // arbiters): then the arbiters no longer know it, and that is what to say.
        let refused = |e: fairio_policy::ClassError| {
            if self.shared.conns.contains_key(&c.id()) {
                Error::InvalidConfig(format!("move: {e}"))
            } else {
                Error::ConnectionClosed
            }
        };
        dirs.up.move_into(c.up, group.inner.up).map_err(refused)?;
        if let Err(e) = dirs.down.move_into(c.down, group.inner.down) {
            // Both directions or neither. Both arbiters are of one policy and hold the same
            // groups, so only the connection's end gets here, and a connection registered
            // without a group (no old group to go back to) is leaving anyway.
            if let Some(old) = current.as_ref() {
                let _ = dirs.up.move_into(c.up, old.up);
            }
            return Err(refused(e));
        }
        if let Some(old) = current.take() {
            old.retire(c.id());
        }
        group.inner.enlist(c.id(), &c.meter);
        *current = Some(Arc::clone(&group.inner));
        Ok(())
    }

    /// The parameters the connection was registered with, or last set.
    pub fn params(&self) -> P::Params {
        self.inner()
            .params
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Changes the connection's parameters (its weight, say) in both directions; effective from
    /// its next grant.
    pub fn set_params(&self, params: P::Params) {
        let c = self.inner();
        *c.params.lock().unwrap_or_else(|e| e.into_inner()) = params.clone();
        self.shared.dirs.up.set_params(c.up, params.clone());
        self.shared.dirs.down.set_params(c.down, params);
    }

    /// Caps this connection's own upload and download rates, in bytes per second, beneath the
    /// global limits (`None`: no cap of its own). A cap applies only while its direction has a
    /// global limit.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for a zero cap.
    pub fn set_caps(&self, upload: Option<u64>, download: Option<u64>) -> Result<(), Error> {
        let up = crate::config::speed("upload cap", upload)?;
        let down = crate::config::speed("download cap", download)?;
        let c = self.inner();
        self.shared.dirs.up.set_cap(c.up, up);
        self.shared.dirs.down.set_cap(c.down, down);
        Ok(())
    }

    /// Bytes queued for sending and not yet written to the stream.
    pub fn pending_bytes(&self) -> usize {
        self.inner().pending_bytes()
    }

    /// How long a close started for this connection's owner (a dropped last handle,
    /// [`ConnectionIo`]'s shutdown) may flush: [`Config::linger`](crate::Config::linger). An
    /// adapter with a close of its own bounds it by this, too.
    pub fn linger(&self) -> Duration {
        self.conn().linger
    }

    /// Whether the connection has ended (closed, or failed).
    pub fn is_closed(&self) -> bool {
        self.inner().status().ended
    }

    /// Closes the connection: refuses new writes at once, flushes every queued byte at the
    /// policy's pace, sends FIN, and closes the stream. With a `timeout`, whatever is still
    /// queued when it expires is dropped and counted.
    ///
    /// Closing a connection that is already closed returns `Ok(())`.
    ///
    /// # Errors
    /// [`Error::Timeout`] with the exact number of bytes not sent, when the timeout expired or
    /// the scheduler shut down first; [`Error::ConnectionClosed`] when the connection had failed
    /// (its error is reported to the reader).
    ///
    /// # Cancel safety
    /// New writes are refused from the first poll and the flush goes on in the background; with
    /// no `close` awaited to the end, the connection closes once the flush completes.
    pub async fn close(&self, timeout: Option<Duration>) -> Result<(), Error> {
        self.inner()
            .close(timeout, CloseReason::LocalClose, true)
            .await
    }

    /// Half-closes the connection: refuses new writes, flushes every queued byte, and sends FIN,
    /// while reading goes on until the peer closes. The connection ends once both sides are
    /// done (or on [`close`](Self::close)).
    ///
    /// # Errors
    /// [`Error::Timeout`] with the exact number of bytes not sent (they are dropped);
    /// [`Error::ConnectionClosed`] when the connection had failed.
    ///
    /// # Cancel safety
    /// New writes are refused from the first poll; the flush goes on in the background.
    pub async fn shutdown_write(&self, timeout: Option<Duration>) -> Result<(), Error> {
        self.inner().shutdown_write(timeout).await
    }

    /// An `AsyncRead + AsyncWrite` view of this connection, for codecs and protocol libraries.
    pub fn into_io(self) -> ConnectionIo<P> {
        ConnectionIo::new(self)
    }

    pub(crate) fn conn(&self) -> &Arc<ConnInner<P>> {
        &self.guard.conn
    }
}

impl<P: Policy> Clone for Connection<P> {
    fn clone(&self) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
            guard: Arc::clone(&self.guard),
            _root: Arc::clone(&self._root),
        }
    }
}

impl<P: Policy> fmt::Debug for Connection<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("id", &self.id())
            .field("stat", &self.stat())
            .finish_non_exhaustive()
    }
}
