//! [`FairListener`]: a listener whose connections go through a fairio scheduler.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use fairio::{ConnectionIo, EqualShare, GroupsBy, Policy, Scheduler};
use tokio::net::TcpListener;

/// A listener (TCP, or Unix) that registers every accepted stream with a scheduler and yields
/// its [`ConnectionIo`]. TCP connections are grouped by client address unless
/// [`per_connection`](Self::per_connection) is called; Unix connections are each a group of
/// their own (they have no address to group by).
///
/// It implements [`axum::serve::Listener`]. As axum's own listeners do, it never fails an
/// accept: errors (out of descriptors, a connection reset before it was accepted) are logged
/// and retried after a pause, and a stream the scheduler turns away (it was shut down) is
/// closed and the next one accepted.
pub struct FairListener<L, P: Policy = EqualShare> {
    listener: L,
    sched: Scheduler<P>,
    hosts: Option<GroupsBy<IpAddr, P>>,
}

impl<L, P: Policy> FairListener<L, P> {
    /// Wraps `listener`: accepted streams are registered with `sched`, grouped by client
    /// address (TCP).
    pub fn new(listener: L, sched: &Scheduler<P>) -> Self {
        Self {
            listener,
            sched: sched.clone(),
            hosts: Some(GroupsBy::new(sched)),
        }
    }

    /// Shares per connection rather than per client address.
    #[must_use]
    pub fn per_connection(mut self) -> Self {
        self.hosts = None;
        self
    }

    /// The scheduler the connections go through.
    pub fn scheduler(&self) -> &Scheduler<P> {
        &self.sched
    }
}

/// What to do after a failed accept: the pause axum's listeners take, so that running out of
/// descriptors does not spin.
async fn pause_after(e: &std::io::Error) {
    let kind = e.kind();
    if matches!(
        kind,
        std::io::ErrorKind::ConnectionAborted | std::io::ErrorKind::ConnectionReset
    ) {
        return;
    }
    tracing::error!(error = %e, "accept failed; retrying in 1 s");
    tokio::time::sleep(Duration::from_secs(1)).await;
}

impl<P: Policy> FairListener<TcpListener, P> {
    /// Accepts the next connection and registers it; see the type's docs.
    ///
    /// # Cancel safety
    /// Cancel-safe: a stream accepted is registered and returned in the same poll.
    pub async fn accept_io(&mut self) -> (ConnectionIo<P>, SocketAddr) {
        loop {
            match self.listener.accept().await {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    let conn = match &self.hosts {
                        Some(hosts) => hosts.register(peer.ip(), stream),
                        None => self.sched.register(stream),
                    };
                    match conn {
                        Ok(conn) => return (conn.into_io(), peer),
                        Err(e) => {
                            tracing::debug!(%peer, error = %e, "connection turned away");
                            tokio::time::sleep(Duration::from_millis(10)).await;
                        }
                    }
                }
                Err(e) => pause_after(&e).await,
            }
        }
    }
}

impl<P: Policy> axum::serve::Listener for FairListener<TcpListener, P> {
    type Io = ConnectionIo<P>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        self.accept_io().await
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }
}

#[cfg(unix)]
impl<P: Policy> axum::serve::Listener for FairListener<tokio::net::UnixListener, P> {
    type Io = ConnectionIo<P>;
    type Addr = tokio::net::unix::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            match self.listener.accept().await {
                Ok((stream, peer)) => match self.sched.register(stream) {
                    Ok(conn) => return (conn.into_io(), peer),
                    Err(e) => {
                        tracing::debug!(error = %e, "connection turned away");
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                },
                Err(e) => pause_after(&e).await,
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.listener.local_addr()
    }
}

impl<L: fmt::Debug, P: Policy> fmt::Debug for FairListener<L, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FairListener")
            .field("listener", &self.listener)
            .field("grouped_by_host", &self.hosts.is_some())
            .finish_non_exhaustive()
    }
}
