//! A quinn connection whose streams go through the scheduler.

use std::sync::{Arc, Mutex};

use fairio::{Connection, Error, Group, GroupsBy, Policy, Scheduler};

use crate::halves::{Nothing, Recv, Refuse, Send};

/// A QUIC stream registered with the scheduler: a [`fairio::Connection`] with its queues,
/// statistics and close. Its close (and shutdown) is over once the peer has acknowledged every
/// byte written. On a unidirectional stream, the missing direction is inert: a send-only
/// stream never reads anything (nor an end), and a write to a receive-only stream fails it.
pub type FairStream<P> = Connection<P>;

/// Where a connection's streams register.
pub(crate) enum Membership<P: Policy> {
    /// In the group of the remote address.
    Address(GroupsBy<std::net::IpAddr, P>, std::net::IpAddr),
    /// In a group of the connection's own, made at its first stream.
    Own(Scheduler<P>, Arc<Mutex<Option<Group<P>>>>),
}

/// A quinn connection whose streams are registered with a scheduler as they are opened or
/// accepted. Get one from [`FairEndpoint::connection`](crate::FairEndpoint::connection).
pub struct FairConnection<P: Policy> {
    conn: quinn::Connection,
    membership: Membership<P>,
}

impl<P: Policy> std::fmt::Debug for FairConnection<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FairConnection")
            .field("remote", &self.conn.remote_address())
            .finish_non_exhaustive()
    }
}

impl<P: Policy> FairConnection<P> {
    pub(crate) fn new(conn: quinn::Connection, membership: Membership<P>) -> Self {
        Self { conn, membership }
    }

    /// The quinn connection: for its statistics, datagrams, `close` and `closed`.
    pub fn inner(&self) -> &quinn::Connection {
        &self.conn
    }

    fn register<S: fairio::Stream>(&self, stream: S) -> Result<FairStream<P>, Error> {
        match &self.membership {
            Membership::Address(groups, ip) => groups.register(*ip, stream),
            Membership::Own(sched, group) => {
                let group = {
                    let mut g = group.lock().unwrap_or_else(|e| e.into_inner());
                    match &*g {
                        Some(g) => g.clone(),
                        None => {
                            let made = sched.group()?;
                            *g = Some(made.clone());
                            made
                        }
                    }
                };
                sched.register_in(&group, stream, P::Params::default())
            }
        }
    }

    /// Opens a bidirectional stream, registered. QUIC announces a stream to the peer with its
    /// first bytes: the peer's `accept_bi` completes once something is written.
    ///
    /// # Errors
    /// [`Error::Io`] with the connection's error, or the scheduler's refusal.
    ///
    /// # Cancel safety
    /// Cancel safe: a stream opened but not returned is dropped (quinn finishes it, and the
    /// peer sees it end empty).
    pub async fn open_bi(&self) -> Result<FairStream<P>, Error> {
        let (send, recv) = self.conn.open_bi().await.map_err(io)?;
        self.register(tokio::io::join(Recv(recv), Send::new(send)))
    }

    /// Accepts the peer's next bidirectional stream, registered.
    ///
    /// # Errors
    /// As [`open_bi`](Self::open_bi); the connection's close ends the accepting.
    ///
    /// # Cancel safety
    /// Cancel safe, as quinn's `accept_bi`.
    pub async fn accept_bi(&self) -> Result<FairStream<P>, Error> {
        let (send, recv) = self.conn.accept_bi().await.map_err(io)?;
        self.register(tokio::io::join(Recv(recv), Send::new(send)))
    }

    /// Opens a stream to send on, registered; reads from it wait until the stream closes, or
    /// fail once the connection is lost.
    ///
    /// # Errors
    /// As [`open_bi`](Self::open_bi).
    ///
    /// # Cancel safety
    /// Cancel safe, as quinn's `open_uni`.
    pub async fn open_uni(&self) -> Result<FairStream<P>, Error> {
        let send = self.conn.open_uni().await.map_err(io)?;
        self.register(tokio::io::join(Nothing::new(&self.conn), Send::new(send)))
    }

    /// Accepts the peer's next stream to receive on, registered; a write to it fails it.
    ///
    /// # Errors
    /// As [`accept_bi`](Self::accept_bi).
    ///
    /// # Cancel safety
    /// Cancel safe, as quinn's `accept_uni`.
    pub async fn accept_uni(&self) -> Result<FairStream<P>, Error> {
        let recv = self.conn.accept_uni().await.map_err(io)?;
        self.register(tokio::io::join(Recv(recv), Refuse))
    }
}

/// quinn's connection error as fairio's I/O error.
fn io(e: quinn::ConnectionError) -> Error {
    Error::from(std::io::Error::from(e))
}
