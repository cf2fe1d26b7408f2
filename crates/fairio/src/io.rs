//! [`ConnectionIo`]: a connection as tokio's `AsyncRead + AsyncWrite`.

use std::fmt;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use fairio_policy::{EqualShare, Policy};
use fairio_queue::Poller;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::reading::IntoBuf;
use crate::{Connection, Error};

/// A [`Connection`] as tokio's `AsyncRead + AsyncWrite`, for `tokio_util::codec::Framed`,
/// hyper, and the like. Made by [`Connection::into_io`].
///
/// - `poll_read` returns 0 (end of stream) once the connection has ended cleanly, and the I/O
///   error that ended it otherwise.
/// - `poll_write` queues a copy of the bytes, waiting for room; it never returns `Ok(0)`.
/// - `poll_flush` waits until every byte queued before it (through any handle) has been written
///   to the stream, whatever is queued after it.
/// - `poll_shutdown` closes the connection, flushing first within the linger
///   ([`Config::linger`](crate::Config::linger), 30 s by default); what is left then is
///   dropped and reported as a `TimedOut` error.
pub struct ConnectionIo<P: Policy = EqualShare> {
    conn: Connection<P>,
    reader: Poller,
    writer: Poller,
    /// A flush under way: its target (bytes accepted in all when it began) and its wait.
    flushing: Option<(u64, Pending)>,
    /// The queue's running total just after this handle's last write.
    written_upto: u64,
    /// The end of the stream was held back for a completed flush (see `poll_read`): once per
    /// connection, since every read after the end reports it again.
    eof_deferred: bool,
    closing: Closing,
}

/// Where `poll_shutdown` is: every poll after completion is defined.
enum Closing {
    Idle,
    Running(Pending),
    Done,
}

/// A flush or a close under way, kept across polls. One allocation per flush or close that
/// has to wait, none per read or write.
type Pending = Pin<Box<dyn Future<Output = Result<(), Error>> + Send>>;

impl<P: Policy> ConnectionIo<P> {
    pub(crate) fn new(conn: Connection<P>) -> Self {
        let c = conn.conn();
        Self {
            reader: Poller::lapsing(Arc::clone(&c.read_q)),
            writer: Poller::lapsing(Arc::clone(&c.write_q)),
            conn,
            flushing: None,
            written_upto: 0,
            eof_deferred: false,
            closing: Closing::Idle,
        }
    }

    /// The connection underneath.
    pub fn connection(&self) -> &Connection<P> {
        &self.conn
    }
}

impl<P: Policy> AsyncRead for ConnectionIo<P> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        match this.conn.poll_read(&mut this.reader, cx, &mut IntoBuf(buf)) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Ok(_)) => Poll::Ready(Ok(())),
            Poll::Ready(Err(Error::ConnectionClosed)) => {
                let flush_done = this.flushing.as_ref().is_some_and(|(target, _)| {
                    matches!(this.conn.conn().try_flushed_to(*target), Some(Ok(())))
                });
                if flush_done && !this.eof_deferred {
                    // A flush that has completed is seen before the end of the stream, as on a
                    // socket, where it completes within the write: the peer may have read the
                    // bytes and closed before this task polled the flush again, and a protocol
                    // that polls its reads first (hyper's HTTP/1 server) would otherwise take
                    // the peer's close for one in the middle of its reply.
                    // Once: a caller that dropped its flush gets the end at the next poll.
                    this.eof_deferred = true;
                    cx.waker().wake_by_ref();
                    return Poll::Pending;
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e.into())),
        }
    }
}

impl<P: Policy> AsyncWrite for ConnectionIo<P> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        // A copy per attempt: a pending attempt queues nothing and keeps its place in line.
        let mut msg = Some(Bytes::copy_from_slice(buf));
        match self.writer.poll_push(cx, &mut msg) {
            Poll::Ready(Ok(())) => {
                // What a flush polled again waits for (a little more, if another handle pushed
                // in between).
                self.written_upto = self.conn.conn().flush_target();
                Poll::Ready(Ok(buf.len()))
            }
            Poll::Ready(Err(_)) => Poll::Ready(Err(Error::ConnectionClosed.into())),
            Poll::Pending => Poll::Pending,
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // Every byte accepted so far, whatever is queued after: a flush does not wait for an
        // empty queue, which another handle may keep busy. A flush polled again after more
        // writes of this handle (hyper and codecs write, then poll the flush again) waits for
        // those too.
        let target = match &self.flushing {
            None => Some(self.conn.conn().flush_target()),
            Some((t, _)) if *t < self.written_upto => Some(self.written_upto),
            Some(_) => None,
        };
        if let Some(target) = target {
            self.flushing = None;
            if let Some(r) = self.conn.conn().try_flushed_to(target) {
                return Poll::Ready(r.map_err(io::Error::from));
            }
            let conn = self.conn.clone();
            let wait: Pending = Box::pin(async move { conn.conn().flushed_to(target).await });
            self.flushing = Some((target, wait));
        }
        let Some(Poll::Ready(r)) = self.flushing.as_mut().map(|(_, f)| f.as_mut().poll(cx)) else {
            return Poll::Pending;
        };
        self.flushing = None;
        Poll::Ready(r.map_err(io::Error::from))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.closing {
            Closing::Done => return Poll::Ready(Ok(())),
            Closing::Idle => {
                // Bounded by the linger: hyper shuts every connection down this way, and a
                // client that stopped reading must not keep it for ever.
                let conn = self.conn.clone();
                let linger = conn.conn().linger;
                self.closing =
                    Closing::Running(Box::pin(async move { conn.close(Some(linger)).await }));
            }
            Closing::Running(_) => {}
        }
        let Closing::Running(f) = &mut self.closing else {
            return Poll::Ready(Ok(()));
        };
        let r = std::task::ready!(f.as_mut().poll(cx));
        // The close future is never polled again: a second shutdown answers at once, as
        // `close` does on a closed connection (its losses were reported by the first).
        self.closing = Closing::Done;
        Poll::Ready(r.map_err(io::Error::from))
    }
}

impl<P: Policy> fmt::Debug for ConnectionIo<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectionIo")
            .field("conn", &self.conn)
            .finish_non_exhaustive()
    }
}
