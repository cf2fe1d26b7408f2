//! `--fair-by host`: one group per client address, so that a host's connections share one
//! part of the limits however many it opens.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use fairio::{Connection, Error, Group, Policy, Scheduler};
use tokio::net::TcpStream;

/// The groups of the hosts with clients connected, and how many each has.
#[derive(Debug)]
pub(super) struct Hosts<P: Policy> {
    groups: Mutex<HashMap<IpAddr, (Group<P>, usize)>>,
}

/// A client's place in its host's group: leaving it when dropped lets the group go with the
/// host's last client.
#[derive(Debug)]
pub(super) struct Seat<P: Policy> {
    hosts: Arc<Hosts<P>>,
    host: IpAddr,
}

impl<P: Policy> Hosts<P> {
    pub(super) fn new() -> Arc<Self> {
        Arc::new(Self {
            groups: Mutex::new(HashMap::new()),
        })
    }

    /// Registers `client` in its host's group (made on the host's first client).
    ///
    /// # Errors
    /// As [`Scheduler::register_in`]; the client is closed.
    pub(super) fn register(
        self: &Arc<Self>,
        sched: &Scheduler<P>,
        client: TcpStream,
        host: IpAddr,
    ) -> Result<(Connection<P>, Seat<P>), Error> {
        let group = {
            let mut groups = self.groups.lock().unwrap_or_else(|e| e.into_inner());
            if let Some((g, n)) = groups.get_mut(&host) {
                *n += 1;
                g.clone()
            } else {
                let g = sched.group()?;
                groups.insert(host, (g.clone(), 1));
                g
            }
        };
        let seat = Seat {
            hosts: Arc::clone(self),
            host,
        };
        // On failure the seat is dropped here, which gives the place back.
        let conn = sched.register_in(&group, client, P::Params::default())?;
        Ok((conn, seat))
    }

    /// How many hosts have clients connected.
    pub(super) fn len(&self) -> usize {
        self.groups.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

impl<P: Policy> Drop for Seat<P> {
    fn drop(&mut self) {
        let mut groups = self.hosts.groups.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, n)) = groups.get_mut(&self.host) {
            *n -= 1;
            if *n == 0 {
                groups.remove(&self.host);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_hosts_group_lives_as_long_as_its_clients() {
        let sched = Scheduler::new(fairio::Config::new(1024)).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let hosts = Hosts::new();
        let mut seats = Vec::new();
        for _ in 0..3 {
            let _client = TcpStream::connect(addr).await.unwrap();
            let (sock, peer) = listener.accept().await.unwrap();
            seats.push(hosts.register(&sched, sock, peer.ip()).unwrap());
        }
        assert_eq!(hosts.len(), 1);
        let group = seats[0].0.group().unwrap();
        assert_eq!(group.members().len(), 3);
        assert!(
            seats
                .iter()
                .all(|(c, _)| c.group().unwrap().id() == group.id())
        );
        seats.truncate(1);
        assert_eq!(hosts.len(), 1);
        seats.clear();
        assert_eq!(hosts.len(), 0);
        sched.shutdown(None).await;
    }
}
