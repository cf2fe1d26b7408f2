//! [`FairStream`]: a scheduled connection as hyper's client sees it.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use fairio::{ConnectionIo, EqualShare, Policy};
use hyper::rt::{Read, ReadBufCursor, Write};
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::rt::TokioIo;

/// A connection made by [`FairConnector`](crate::FairConnector): hyper's I/O traits over a
/// fairio [`ConnectionIo`].
pub struct FairStream<P: Policy = EqualShare> {
    io: TokioIo<ConnectionIo<P>>,
    info: FairInfo,
}

/// What a response's extensions carry about the connection it came on (hyper-util's own
/// `HttpInfo` cannot be made outside hyper-util): `res.extensions().get::<FairInfo>()`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FairInfo {
    /// The server's address.
    pub remote_addr: Option<std::net::SocketAddr>,
    /// This end's address.
    pub local_addr: Option<std::net::SocketAddr>,
    /// The fairio connection's id.
    pub connection: u64,
}

impl<P: Policy> FairStream<P> {
    pub(crate) fn new(io: ConnectionIo<P>, info: FairInfo) -> Self {
        Self {
            io: TokioIo::new(io),
            info,
        }
    }

    /// The fairio connection underneath (its id, statistics, weight).
    pub fn connection(&self) -> &ConnectionIo<P> {
        self.io.inner()
    }
}

impl<P: Policy> std::fmt::Debug for FairStream<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FairStream")
            .field("io", &self.io)
            .finish_non_exhaustive()
    }
}

impl<P: Policy> Read for FairStream<P> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<P: Policy> Write for FairStream<P> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

impl<P: Policy> Connection for FairStream<P> {
    fn connected(&self) -> Connected {
        Connected::new().extra(self.info)
    }
}
