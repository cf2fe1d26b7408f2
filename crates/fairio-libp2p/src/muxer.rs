//! Fairness for transports that multiplex themselves (QUIC): the substreams of each
//! connection, as the muxer opens and accepts them, are registered with the scheduler in the
//! group of the remote peer.

use std::fmt;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use fairio::{EqualShare, GroupsBy, Policy, Scheduler};
use libp2p::core::Multiaddr;
use libp2p::core::muxing::{StreamMuxer, StreamMuxerEvent};
use libp2p::core::transport::{DialOpts, ListenerId, TransportError, TransportEvent};
use libp2p::{PeerId, Transport};
use tokio_util::compat::{FuturesAsyncReadCompatExt, TokioAsyncReadCompatExt};

use crate::FairIo;

/// Wraps a transport whose connections come out authenticated and multiplexed, as
/// `(PeerId, muxer)` (libp2p's `quic::tokio::Transport`), so that every substream of every
/// connection goes through a [`fairio::Scheduler`], grouped by remote peer: a peer with many
/// connections and streams gets what a peer with one gets.
///
/// What is counted is the substreams' payload; QUIC's own framing, acknowledgements and
/// handshakes are not (the `fairio-quinn` crate docs say how QUIC's flow control and
/// congestion control meet the limit).
///
/// ```no_run
/// use fairio::{Config, Scheduler};
/// use fairio_libp2p::FairMuxerTransport;
/// use libp2p::quic;
///
/// # #[tokio::main]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let sched = Scheduler::new(Config::new(64 * 1024).max_upload_speed(Some(10 << 20)))?;
/// let swarm = libp2p::SwarmBuilder::with_new_identity()
///     .with_tokio()
///     .with_other_transport(|key| {
///         let quic = quic::tokio::Transport::new(quic::Config::new(key));
///         FairMuxerTransport::new(quic, &sched)
///     })?
///     .with_behaviour(|_| libp2p::swarm::dummy::Behaviour)?
///     .build();
/// # drop(swarm);
/// # Ok(())
/// # }
/// ```
pub struct FairMuxerTransport<T, P: Policy = EqualShare> {
    inner: T,
    by_peer: GroupsBy<PeerId, P>,
}

impl<T, P: Policy> fmt::Debug for FairMuxerTransport<T, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FairMuxerTransport")
            .field("peers", &self.by_peer.len())
            .finish_non_exhaustive()
    }
}

impl<T, P: Policy> FairMuxerTransport<T, P> {
    /// Wraps `inner`; its connections' substreams register with `sched`.
    pub fn new(inner: T, sched: &Scheduler<P>) -> Self {
        Self {
            inner,
            by_peer: GroupsBy::new(sched),
        }
    }
}

/// A connection being made; once made, its muxer registers its substreams.
pub struct Muxing<F, P: Policy> {
    inner: F,
    by_peer: GroupsBy<PeerId, P>,
}

impl<F, P: Policy> fmt::Debug for Muxing<F, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Muxing").finish_non_exhaustive()
    }
}

impl<F, M, E, P> Future for Muxing<F, P>
where
    F: Future<Output = Result<(PeerId, M), E>> + Unpin,
    P: Policy,
{
    type Output = Result<(PeerId, FairMuxer<M, P>), E>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match Pin::new(&mut self.inner).poll(cx) {
            Poll::Ready(Ok((peer, inner))) => Poll::Ready(Ok((
                peer,
                FairMuxer {
                    inner,
                    by_peer: self.by_peer.clone(),
                    peer,
                },
            ))),
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<T, M, P> Transport for FairMuxerTransport<T, P>
where
    T: Transport<Output = (PeerId, M)> + Unpin,
    T::Dial: Unpin,
    T::ListenerUpgrade: Unpin,
    P: Policy,
{
    type Output = (PeerId, FairMuxer<M, P>);
    type Error = T::Error;
    type ListenerUpgrade = Muxing<T::ListenerUpgrade, P>;
    type Dial = Muxing<T::Dial, P>;

    fn listen_on(
        &mut self,
        id: ListenerId,
        addr: Multiaddr,
    ) -> Result<(), TransportError<Self::Error>> {
        self.inner.listen_on(id, addr)
    }

    fn remove_listener(&mut self, id: ListenerId) -> bool {
        self.inner.remove_listener(id)
    }

    fn dial(
        &mut self,
        addr: Multiaddr,
        opts: DialOpts,
    ) -> Result<Self::Dial, TransportError<Self::Error>> {
        Ok(Muxing {
            inner: self.inner.dial(addr, opts)?,
            by_peer: self.by_peer.clone(),
        })
    }

    fn poll(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<TransportEvent<Self::ListenerUpgrade, Self::Error>> {
        let by_peer = self.by_peer.clone();
        Pin::new(&mut self.inner).poll(cx).map(|event| {
            event.map_upgrade(|inner| Muxing {
                inner,
                by_peer: by_peer.clone(),
            })
        })
    }
}

/// A connection's muxer whose substreams go through the scheduler, in its peer's group.
pub struct FairMuxer<M, P: Policy> {
    inner: M,
    by_peer: GroupsBy<PeerId, P>,
    peer: PeerId,
}

impl<M, P: Policy> fmt::Debug for FairMuxer<M, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FairMuxer")
            .field("peer", &self.peer)
            .finish_non_exhaustive()
    }
}

impl<M, P> FairMuxer<M, P>
where
    M: StreamMuxer,
    M::Substream: Send + Unpin + 'static,
    P: Policy,
{
    fn register(&self, s: M::Substream) -> io::Result<FairSubstream<P>> {
        self.by_peer
            .register(self.peer, s.compat())
            .map(FairSubstream::new)
            .map_err(io::Error::from)
    }
}

impl<M, P> StreamMuxer for FairMuxer<M, P>
where
    M: StreamMuxer + Unpin,
    M::Substream: Send + Unpin + 'static,
    M::Error: Send + Sync + 'static,
    P: Policy,
{
    type Substream = FairSubstream<P>;
    /// The muxer's own errors, and the scheduler's refusal of a substream (after its
    /// `shutdown`): libp2p then closes the connection.
    type Error = io::Error;

    fn poll_inbound(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Self::Substream, Self::Error>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_inbound(cx) {
            Poll::Ready(Ok(s)) => Poll::Ready(this.register(s)),
            Poll::Ready(Err(e)) => Poll::Ready(Err(io::Error::other(e))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn poll_outbound(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Self::Substream, Self::Error>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_outbound(cx) {
            Poll::Ready(Ok(s)) => Poll::Ready(this.register(s)),
            Poll::Ready(Err(e)) => Poll::Ready(Err(io::Error::other(e))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Pin::new(&mut self.get_mut().inner)
            .poll_close(cx)
            .map_err(io::Error::other)
    }

    fn poll(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<StreamMuxerEvent, Self::Error>> {
        Pin::new(&mut self.get_mut().inner)
            .poll(cx)
            .map_err(io::Error::other)
    }
}

type Closing = Pin<Box<dyn Future<Output = Result<(), fairio::Error>> + Send>>;

/// A substream through the scheduler, as libp2p expects one: closing it ends the sending side
/// only (flushed within the connection's linger, then FIN), and reading goes on until the
/// peer's end, as request-response and relay protocols need. Dropping it releases the rest.
pub struct FairSubstream<P: Policy> {
    io: FairIo<P>,
    conn: fairio::Connection<P>,
    closing: Option<Closing>,
    closed: bool,
}

impl<P: Policy> fmt::Debug for FairSubstream<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FairSubstream")
            .field("conn", &self.conn.id())
            .field("closed", &self.closed)
            .finish_non_exhaustive()
    }
}

impl<P: Policy> FairSubstream<P> {
    fn new(conn: fairio::Connection<P>) -> Self {
        Self {
            io: conn.clone().into_io().compat(),
            conn,
            closing: None,
            closed: false,
        }
    }
}

impl<P: Policy> futures_util::AsyncRead for FairSubstream<P> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<P: Policy> futures_util::AsyncWrite for FairSubstream<P> {
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

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.closed {
            return Poll::Ready(Ok(()));
        }
        if self.closing.is_none() {
            let conn = self.conn.clone();
            let linger = conn.linger();
            self.closing = Some(Box::pin(
                async move { conn.shutdown_write(Some(linger)).await },
            ));
        }
        let Some(closing) = self.closing.as_mut() else {
            return Poll::Ready(Ok(()));
        };
        let r = std::task::ready!(closing.as_mut().poll(cx));
        self.closing = None;
        self.closed = true;
        Poll::Ready(r.map_err(io::Error::from))
    }
}
