//! [`FairTransport`]: raw connections registered with a scheduler, by remote IP.

use std::fmt;
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use fairio::{ConnectionIo, EqualShare, GroupsBy, Policy, Scheduler};
use libp2p::Transport;
use libp2p::core::Multiaddr;
use libp2p::core::transport::{DialOpts, ListenerId, TransportError, TransportEvent};
use libp2p::multiaddr::Protocol;
use tokio_util::compat::{Compat, TokioAsyncReadCompatExt};

/// A raw connection after [`FairTransport`]: a fairio connection, with the futures-io traits
/// libp2p's upgrades use.
pub type FairIo<P = EqualShare> = Compat<ConnectionIo<P>>;

/// Wraps a transport whose raw connections are tokio TCP streams, and registers each with a
/// scheduler, in the group of its remote IP (see the crate docs).
pub struct FairTransport<T, P: Policy = EqualShare> {
    inner: T,
    sched: Scheduler<P>,
    by_ip: GroupsBy<IpAddr, P>,
}

impl<T, P: Policy> FairTransport<T, P> {
    /// Wraps `inner`; its connections go through `sched`.
    pub fn new(inner: T, sched: &Scheduler<P>) -> Self {
        Self {
            inner,
            sched: sched.clone(),
            by_ip: GroupsBy::new(sched),
        }
    }
}

/// The IP of a multiaddress, if it has one.
fn ip_of(addr: &Multiaddr) -> Option<IpAddr> {
    addr.iter().find_map(|p| match p {
        Protocol::Ip4(ip) => Some(IpAddr::V4(ip)),
        Protocol::Ip6(ip) => Some(IpAddr::V6(ip)),
        _ => None,
    })
}

/// A raw connection being made (dialled or accepted), then registered: the future of
/// [`FairTransport`]'s dials and listener upgrades.
pub struct Registering<F, P: Policy> {
    inner: F,
    remote: Option<IpAddr>,
    sched: Scheduler<P>,
    by_ip: GroupsBy<IpAddr, P>,
}

impl<F, P: Policy> fmt::Debug for Registering<F, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registering")
            .field("remote", &self.remote)
            .finish_non_exhaustive()
    }
}

impl<F, S, E, P> Future for Registering<F, P>
where
    F: Future<Output = Result<S, E>> + Unpin,
    S: Into<tokio::net::TcpStream>,
    E: From<std::io::Error>,
    P: Policy,
{
    type Output = Result<FairIo<P>, E>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let stream: tokio::net::TcpStream = match Pin::new(&mut self.inner).poll(cx) {
            Poll::Ready(Ok(s)) => s.into(),
            Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            Poll::Pending => return Poll::Pending,
        };
        // The socket's own peer address: the same key whether the connection was dialled (by
        // IP or by name) or accepted, and one for an IPv4 host seen as IPv4-mapped IPv6.
        let remote = stream
            .peer_addr()
            .ok()
            .map(|a| a.ip().to_canonical())
            .or(self.remote);
        let conn = match remote {
            Some(ip) => self.by_ip.register(ip, stream),
            None => self.sched.register(stream),
        };
        Poll::Ready(
            conn.map(|c| c.into_io().compat())
                .map_err(|e| E::from(std::io::Error::from(e))),
        )
    }
}

impl<T, P> Transport for FairTransport<T, P>
where
    T: Transport + Unpin,
    T::Output: Into<tokio::net::TcpStream>,
    T::Error: From<std::io::Error>,
    T::Dial: Unpin,
    T::ListenerUpgrade: Unpin,
    P: Policy,
{
    type Output = FairIo<P>;
    type Error = T::Error;
    type ListenerUpgrade = Registering<T::ListenerUpgrade, P>;
    type Dial = Registering<T::Dial, P>;

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
        let remote = ip_of(&addr);
        let inner = self.inner.dial(addr, opts)?;
        Ok(Registering {
            inner,
            remote,
            sched: self.sched.clone(),
            by_ip: self.by_ip.clone(),
        })
    }

    fn poll(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<TransportEvent<Self::ListenerUpgrade, Self::Error>> {
        let (sched, by_ip) = (self.sched.clone(), self.by_ip.clone());
        Pin::new(&mut self.inner).poll(cx).map(|event| {
            // The remote's IP, for an incoming connection: its send-back address.
            let remote = match &event {
                TransportEvent::Incoming { send_back_addr, .. } => ip_of(send_back_addr),
                _ => None,
            };
            event.map_upgrade(|inner| Registering {
                inner,
                remote,
                sched,
                by_ip,
            })
        })
    }
}

impl<T: fmt::Debug, P: Policy> fmt::Debug for FairTransport<T, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FairTransport")
            .field("inner", &self.inner)
            .field("hosts", &self.by_ip)
            .finish_non_exhaustive()
    }
}
