//! The scheduler's side of an endpoint: which group each connection's streams join.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use fairio::{EqualShare, GroupsBy, Policy, Scheduler};

use crate::connection::{FairConnection, Membership};

/// What the streams of a connection share a part with.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Grouping {
    /// Every stream of every connection from one remote IP address shares one part: a peer
    /// gets as much with a hundred streams over four connections as with one.
    #[default]
    Address,
    /// Each connection has its own part, shared by its streams.
    Connection,
}

/// Registers the streams of quinn connections with one scheduler.
///
/// Cheap to clone; clones share the groups.
pub struct FairEndpoint<P: Policy = EqualShare> {
    sched: Scheduler<P>,
    by_addr: GroupsBy<IpAddr, P>,
    grouping: Grouping,
}

impl<P: Policy> Clone for FairEndpoint<P> {
    fn clone(&self) -> Self {
        Self {
            sched: self.sched.clone(),
            by_addr: self.by_addr.clone(),
            grouping: self.grouping,
        }
    }
}

impl<P: Policy> std::fmt::Debug for FairEndpoint<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FairEndpoint")
            .field("grouping", &self.grouping)
            .field("addresses", &self.by_addr.len())
            .finish_non_exhaustive()
    }
}

impl<P: Policy> FairEndpoint<P> {
    /// Streams registered with `sched`, grouped by remote address.
    pub fn new(sched: &Scheduler<P>) -> Self {
        Self {
            sched: sched.clone(),
            by_addr: GroupsBy::new(sched),
            grouping: Grouping::Address,
        }
    }

    /// The same, grouped as `grouping` says.
    #[must_use]
    pub fn grouping(mut self, grouping: Grouping) -> Self {
        self.grouping = grouping;
        self
    }

    /// The scheduler the streams are registered with.
    pub fn scheduler(&self) -> &Scheduler<P> {
        &self.sched
    }

    /// Takes `conn` (accepted or dialled): the streams opened and accepted through the result
    /// go through the scheduler.
    pub fn connection(&self, conn: quinn::Connection) -> FairConnection<P> {
        let membership = match self.grouping {
            Grouping::Address => Membership::Address(
                self.by_addr.clone(),
                conn.remote_address().ip().to_canonical(),
            ),
            Grouping::Connection => Membership::Own(self.sched.clone(), Arc::default()),
        };
        FairConnection::new(conn, membership)
    }
}

/// A quinn transport configuration whose send window (what quinn holds written but not yet
/// sent, over all of a connection's streams) is 1 MiB instead of quinn's default of about
/// 10 MB: with the scheduler deciding the rates, a smaller window lets the sharing follow a
/// slow peer sooner, as `fairio`'s unsent limit does for TCP. Set it on a `ServerConfig`
/// (`transport_config(Arc::new(...))`) or a `ClientConfig`.
pub fn transport_config() -> quinn::TransportConfig {
    let mut t = quinn::TransportConfig::default();
    t.send_window(1 << 20);
    t.keep_alive_interval(Some(Duration::from_secs(10)));
    t
}
