//! The listeners: one accept loop each, started and stopped as the settings change.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use fairio::Policy;
use tokio::task::JoinHandle;

use super::client::{self, Peer, Session};
use super::guard::{HeaderSlot, Throttled};
use super::inherit::{Giver, Inherited};
use super::pp;
use super::settings::{Listen, Route};
use super::{FromWeight, Proxy};

/// The accept loops running, by address; each reads its route (upstream, PROXY protocol)
/// from a cell a reload can change.
#[derive(Debug, Default)]
pub(super) struct Running {
    loops: HashMap<Listen, Loop>,
    /// Sockets handed over at start, taken by the first listeners bound to their addresses.
    pub(super) inherited: Inherited,
}

/// One accept loop.
#[derive(Debug)]
struct Loop {
    route: Arc<RwLock<Route>>,
    task: JoinHandle<()>,
    /// The listening socket (a second descriptor of it), to hand to a new process.
    socket: Option<socket2::Socket>,
    /// Handed over by systemd's socket activation: its Unix socket file is systemd's, and
    /// stays when the loop stops (one an older fairio handed over is this process's).
    inherited: bool,
}

impl Loop {
    /// Stops accepting; removes its Unix socket file unless the socket was handed over.
    fn stop(self, listen: &Listen) {
        self.task.abort();
        if let (Listen::Unix(path), false) = (listen, self.inherited) {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// A second descriptor of a listening socket (`None` if the process has none left).
fn dup(fd: std::os::fd::BorrowedFd<'_>) -> Option<socket2::Socket> {
    socket2::SockRef::from(&fd).try_clone().ok()
}

/// Removes a Unix socket file left by an earlier run: a socket nothing accepts on any more
/// (connecting is refused). Anything else at the path is left alone, and the bind reports it.
fn clear_stale(path: &Path) {
    use std::os::unix::fs::FileTypeExt;
    let is_socket = std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_socket());
    if is_socket
        && std::os::unix::net::UnixStream::connect(path)
            .is_err_and(|e| e.kind() == std::io::ErrorKind::ConnectionRefused)
    {
        let _ = std::fs::remove_file(path);
    }
}

impl Running {
    /// No listener yet; `inherited` serves the first listeners bound to their addresses.
    pub(super) fn with(inherited: Inherited) -> Self {
        Self {
            loops: HashMap::new(),
            inherited,
        }
    }

    /// Makes the listeners those `wanted` names: closes the ones it no longer names (clients
    /// already accepted stay), points the kept ones at their upstream, and opens the new ones.
    ///
    /// # Errors
    /// The addresses that could not be opened; every other change is made.
    pub(super) async fn update<P: Policy>(
        &mut self,
        proxy: &Arc<Proxy<P>>,
        wanted: &[(Listen, Route)],
    ) -> Result<(), String>
    where
        P::Params: FromWeight,
    {
        let gone: Vec<Listen> = self
            .loops
            .keys()
            .filter(|l| !wanted.iter().any(|(w, _)| w == *l))
            .cloned()
            .collect();
        for listen in gone {
            if let Some(mut l) = self.loops.remove(&listen) {
                l.task.abort();
                // Ended, and its socket closed, before any address is bound again (a move
                // from 0.0.0.0:8080 to 127.0.0.1:8080 needs the port free).
                let _ = (&mut l.task).await;
                l.socket = None;
                l.stop(&listen);
            }
            tracing::info!("stopped listening on {listen}");
        }
        let mut failed = Vec::new();
        for (listen, route) in wanted {
            if let Some(l) = self.loops.get(listen) {
                *l.route.write().unwrap_or_else(|e| e.into_inner()) = route.clone();
                continue;
            }
            let cell = Arc::new(RwLock::new(route.clone()));
            let mut inherited = false;
            let (task, socket) = match listen {
                Listen::Tcp(addr) => {
                    let bound = match self.inherited.take_tcp(*addr) {
                        Some((l, giver)) => {
                            inherited = giver == Giver::Systemd;
                            tokio::net::TcpListener::from_std(l)
                        }
                        None => tokio::net::TcpListener::bind(addr).await,
                    };
                    match bound {
                        Ok(l) => {
                            let socket = dup(std::os::fd::AsFd::as_fd(&l));
                            let task = accept_loop(Arc::clone(proxy), l, Arc::clone(&cell));
                            (tokio::spawn(task), socket)
                        }
                        Err(e) => {
                            failed.push(format!("cannot listen on {addr}: {e}"));
                            continue;
                        }
                    }
                }
                Listen::Unix(path) => {
                    let bound = match self.inherited.take_unix(path) {
                        Some((l, giver)) => {
                            inherited = giver == Giver::Systemd;
                            tokio::net::UnixListener::from_std(l)
                        }
                        None => {
                            clear_stale(path);
                            tokio::net::UnixListener::bind(path)
                        }
                    };
                    match bound {
                        Ok(l) => {
                            let socket = dup(std::os::fd::AsFd::as_fd(&l));
                            let task = accept_loop(Arc::clone(proxy), l, Arc::clone(&cell));
                            (tokio::spawn(task), socket)
                        }
                        Err(e) => {
                            failed.push(format!("cannot listen on unix:{}: {e}", path.display()));
                            continue;
                        }
                    }
                }
            };
            self.loops.insert(
                listen.clone(),
                Loop {
                    route: cell,
                    task,
                    socket,
                    inherited,
                },
            );
        }
        if failed.is_empty() {
            Ok(())
        } else {
            Err(failed.join("; "))
        }
    }

    /// Stops every accept loop, and removes the Unix socket files (those it bound itself).
    pub(super) fn stop(&mut self) {
        for (listen, l) in self.loops.drain() {
            l.stop(&listen);
        }
    }

    /// Second descriptors of the listening sockets, to hand to a new process, each with
    /// whether systemd gave it (and keeps its file).
    pub(super) fn sockets(&self) -> Vec<(&socket2::Socket, bool)> {
        self.loops
            .values()
            .filter_map(|l| l.socket.as_ref().map(|s| (s, l.inherited)))
            .collect()
    }

    /// Stops accepting, leaving the sockets (and the Unix socket files) to the process they
    /// were handed to: the connections waiting in their queues are its to accept.
    pub(super) fn hand_over(&mut self) {
        for (_, l) in self.loops.drain() {
            l.task.abort();
        }
    }
}

/// What an accept loop logs at most once a second.
#[derive(Debug)]
struct Logs {
    refusals: Mutex<Throttled>,
    proxy_refused: Mutex<Throttled>,
}

/// Admits a client under the settings in force, and serves it.
fn admit<P: Policy, S: fairio::Stream>(
    proxy: &Arc<Proxy<P>>,
    client: S,
    peer: Peer,
    route: &Route,
    logs: &Logs,
) where
    P::Params: FromWeight,
{
    let settings = proxy.settings();
    let class = settings.classes.get(settings.classes.of(peer.ip)).clone();
    let name: Arc<str> = Arc::from(class.name.as_str());
    let Some(ticket) = proxy.admission.admit(peer.ip, &name, class.max_connections) else {
        logs.refusals
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .hit(&peer.name);
        return;
    };
    let session = Session {
        sched: proxy.sched.clone(),
        hosts: proxy.hosts.clone(),
        classes: proxy.classes.clone(),
        live: Arc::clone(&proxy.settings),
        upstream: route.upstream.clone(),
        send_proxy: route.send_proxy,
        settings,
        admission: Arc::clone(&proxy.admission),
        pipes: proxy.pipes.clone(),
    };
    tokio::spawn(client::serve(session, client, peer, class, ticket));
}

/// Reads the PROXY protocol header of a client from a trusted load balancer, within the
/// connect timeout, then admits the client it names. A connection from an untrusted address,
/// or whose header is missing, bad or late, is closed, counted and logged (once a second).
async fn admit_proxied<P: Policy, S: fairio::Stream>(
    proxy: Arc<Proxy<P>>,
    mut client: S,
    mut peer: Peer,
    route: Route,
    logs: Arc<Logs>,
    slot: HeaderSlot,
) where
    P::Params: FromWeight,
{
    let trusted = route
        .accept_proxy_from
        .as_ref()
        .is_none_or(|t| peer.ip.is_some_and(|ip| t.trusts(ip)));
    let read = if trusted {
        let within = proxy.settings().connect_timeout;
        match tokio::time::timeout(within, pp::read_header(&mut client)).await {
            Ok(Ok(carried)) => Ok(carried),
            Ok(Err(pp::ReadError::Refused(r))) => Err(r),
            Ok(Err(pp::ReadError::Io(e))) => {
                tracing::debug!(peer = %peer.name, error = %e, "connection failed before its PROXY header");
                return;
            }
            Err(_) => Err(pp::Refused::Timeout),
        }
    } else {
        Err(pp::Refused::Untrusted)
    };
    match read {
        Ok(Some((src, dst))) => {
            peer = Peer {
                ip: Some(src.ip().to_canonical()),
                name: format!("{src} (via {})", peer.name),
                addrs: Some((src, dst)),
            };
        }
        // A header without addresses (a health check): the connection is taken as it is.
        Ok(None) => {}
        Err(r) => {
            proxy.admission.count_proxy_refused(r);
            logs.proxy_refused
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .hit(&format_args!("{} ({r})", peer.name));
            return;
        }
    }
    // Its place as a connection awaiting a header is given back first: admitted, it takes a
    // client's place instead (and must not count twice against the total).
    drop(slot);
    admit(&proxy, client, peer, &route, &logs);
}

/// A listener the accept loop takes clients from: TCP (with an address) or Unix (without).
trait Source {
    type Stream: fairio::Stream;
    fn accept(&self) -> impl Future<Output = std::io::Result<(Self::Stream, Peer)>> + Send;
}

impl Source for tokio::net::TcpListener {
    type Stream = tokio::net::TcpStream;

    async fn accept(&self) -> std::io::Result<(Self::Stream, Peer)> {
        let (client, addr) = Self::accept(self).await?;
        let peer = Peer {
            ip: Some(addr.ip().to_canonical()),
            name: addr.to_string(),
            addrs: client.local_addr().ok().map(|local| (addr, local)),
        };
        Ok((client, peer))
    }
}

impl Source for tokio::net::UnixListener {
    type Stream = tokio::net::UnixStream;

    async fn accept(&self) -> std::io::Result<(Self::Stream, Peer)> {
        let (client, _) = Self::accept(self).await?;
        let peer = Peer {
            ip: None,
            name: "unix client".to_owned(),
            addrs: None,
        };
        Ok((client, peer))
    }
}

/// Accepts clients until aborted. A failed accept (out of descriptors, say) backs off, up to
/// 1 s, and is logged once a second with a count.
async fn accept_loop<P: Policy, L: Source>(proxy: Arc<Proxy<P>>, l: L, route: Arc<RwLock<Route>>)
where
    P::Params: FromWeight,
{
    let mut failures = Throttled::new("accept failed");
    let logs = Arc::new(Logs {
        refusals: Mutex::new(Throttled::new("client refused: connection limit reached")),
        proxy_refused: Mutex::new(Throttled::new("PROXY protocol header refused")),
    });
    let mut pause = Duration::from_millis(10);
    loop {
        match l.accept().await {
            Ok((client, peer)) => {
                pause = Duration::from_millis(10);
                let route = route.read().unwrap_or_else(|e| e.into_inner()).clone();
                if route.accept_proxy_from.is_some() {
                    let Some(slot) = proxy.admission.await_header() else {
                        logs.refusals
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .hit(&peer.name);
                        continue;
                    };
                    // In a task of its own: a slow header holds up no other client.
                    let (proxy, logs) = (Arc::clone(&proxy), Arc::clone(&logs));
                    tokio::spawn(admit_proxied(proxy, client, peer, route, logs, slot));
                } else {
                    admit(&proxy, client, peer, &route, &logs);
                }
            }
            Err(e) => {
                proxy
                    .admission
                    .accept_errors
                    .fetch_add(1, Ordering::Relaxed);
                failures.hit(&e);
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(1));
            }
        }
    }
}
