//! quinn's stream halves as the byte streams the scheduler registers: errors of a lost
//! connection reported as the connection's own error, a shutdown that waits for the peer's
//! acknowledgement, and the missing direction of a unidirectional stream.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// quinn reports a lost connection on every stream as `NotConnected`, hiding why it was lost
/// (the peer closed it, it timed out, it was reset): the reason is made the error.
fn lost(e: io::Error) -> io::Error {
    let Some(inner) = e.get_ref() else { return e };
    if let Some(quinn::ReadError::ConnectionLost(c)) = inner.downcast_ref::<quinn::ReadError>() {
        return io::Error::from(c.clone());
    }
    if let Some(quinn::WriteError::ConnectionLost(c)) = inner.downcast_ref::<quinn::WriteError>() {
        return io::Error::from(c.clone());
    }
    e
}

/// A receive half.
#[derive(Debug)]
pub(crate) struct Recv(pub(crate) quinn::RecvStream);

impl AsyncRead for Recv {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        AsyncRead::poll_read(Pin::new(&mut self.0), cx, buf).map_err(lost)
    }
}

type Stopped = Pin<
    Box<
        dyn Future<Output = Result<Option<quinn::VarInt>, quinn::StoppedError>>
            + std::marker::Send
            + Sync,
    >,
>;

/// A send half whose shutdown is over once the peer has acknowledged every byte (quinn's own
/// `finish` returns at once, and a connection dropped right after may lose what it held).
pub(crate) struct Send {
    stream: quinn::SendStream,
    shutdown: Shutdown,
}

/// Where a shutdown is: `finish` not called yet, waiting for the acknowledgements, or over
/// (a later shutdown answers at once, and the finished future is never polled again).
enum Shutdown {
    Open,
    Acknowledging(Stopped),
    Done,
}

impl std::fmt::Debug for Send {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Send")
            .field("stream", &self.stream)
            .finish_non_exhaustive()
    }
}

impl Send {
    pub(crate) fn new(stream: quinn::SendStream) -> Self {
        Self {
            stream,
            shutdown: Shutdown::Open,
        }
    }
}

impl AsyncWrite for Send {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        AsyncWrite::poll_write(Pin::new(&mut self.stream), cx, buf).map_err(lost)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        AsyncWrite::poll_flush(Pin::new(&mut self.stream), cx).map_err(lost)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if let Shutdown::Open = self.shutdown {
            std::task::ready!(AsyncWrite::poll_shutdown(Pin::new(&mut self.stream), cx))
                .map_err(lost)?;
            let stopped = self.stream.stopped();
            self.shutdown = Shutdown::Acknowledging(Box::pin(stopped));
        }
        let Shutdown::Acknowledging(stopped) = &mut self.shutdown else {
            return Poll::Ready(Ok(()));
        };
        let acknowledged = std::task::ready!(stopped.as_mut().poll(cx));
        self.shutdown = Shutdown::Done;
        match acknowledged {
            // Acknowledged in full.
            Ok(None) => Poll::Ready(Ok(())),
            // The peer stopped reading first: what it did not read is lost.
            Ok(Some(code)) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::ConnectionReset,
                format!("the peer stopped the stream (code {code})"),
            ))),
            Err(quinn::StoppedError::ConnectionLost(c)) => Poll::Ready(Err(io::Error::from(c))),
            Err(e) => Poll::Ready(Err(io::Error::other(e))),
        }
    }
}

/// The receive side of a send-only stream: nothing ever comes, and no end either (an end
/// would read as the peer having closed); but the loss of the connection is reported, so that
/// a reader learns it without writing.
pub(crate) struct Nothing(
    Pin<Box<dyn Future<Output = quinn::ConnectionError> + std::marker::Send + Sync>>,
);

impl Nothing {
    pub(crate) fn new(conn: &quinn::Connection) -> Self {
        let conn = conn.clone();
        Self(Box::pin(async move { conn.closed().await }))
    }
}

impl std::fmt::Debug for Nothing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Nothing")
    }
}

impl AsyncRead for Nothing {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        _: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        // Read once, by the stream's one reader: its error ends the stream, and it is never
        // polled again.
        self.0.as_mut().poll(cx).map(|e| Err(io::Error::from(e)))
    }
}

/// The send side of a receive-only stream: a write is an error, not bytes dropped in silence
/// (and charged to the limit).
#[derive(Debug)]
pub(crate) struct Refuse;

impl AsyncWrite for Refuse {
    fn poll_write(self: Pin<&mut Self>, _: &mut Context<'_>, _: &[u8]) -> Poll<io::Result<usize>> {
        Poll::Ready(Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "a receive-only QUIC stream takes no writes",
        )))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lost_connection_reports_why() {
        let read = io::Error::from(quinn::ReadError::ConnectionLost(
            quinn::ConnectionError::TimedOut,
        ));
        assert_eq!(
            read.kind(),
            io::ErrorKind::NotConnected,
            "quinn's own mapping"
        );
        assert_eq!(lost(read).kind(), io::ErrorKind::TimedOut);
        let write = io::Error::from(quinn::WriteError::ConnectionLost(
            quinn::ConnectionError::Reset,
        ));
        assert_eq!(lost(write).kind(), io::ErrorKind::ConnectionReset);
        // Anything else is left as it is.
        let other = io::Error::from(quinn::ReadError::Reset(quinn::VarInt::from_u32(3)));
        assert_eq!(lost(other).kind(), io::ErrorKind::ConnectionReset);
        assert_eq!(
            lost(io::ErrorKind::BrokenPipe.into()).kind(),
            io::ErrorKind::BrokenPipe
        );
    }
}
