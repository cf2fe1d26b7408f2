//! The listeners: one accept loop each, started and stopped as the settings change.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use fairio::Policy;
use tokio::task::JoinHandle;

use super::client::{self, Peer, Session};
use super::guard::Throttled;
use super::settings::Listen;
use super::{FromWeight, Proxy};

/// The accept loops running, by address and upstream.
#[derive(Debug, Default)]
pub(super) struct Running {
    loops: HashMap<(Listen, String), JoinHandle<()>>,
}

impl Running {
    /// Opens the listeners `wanted` names that are not open yet, then closes the ones it no
    /// longer names (clients already accepted stay).
    ///
    /// # Errors
    /// The first address that cannot be bound; the listeners opened before it stay open, and
    /// none is closed.
    pub(super) async fn update<P: Policy>(
        &mut self,
        proxy: &Arc<Proxy<P>>,
        wanted: &[(Listen, String)],
    ) -> Result<(), String>
    where
        P::Params: FromWeight,
    {
        for (listen, upstream) in wanted {
            let key = (listen.clone(), upstream.clone());
            if self.loops.contains_key(&key) {
                continue;
            }
            let task = match listen {
                Listen::Tcp(addr) => {
                    let l = tokio::net::TcpListener::bind(addr)
                        .await
                        .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
                    tokio::spawn(accept_tcp(Arc::clone(proxy), l, upstream.clone()))
                }
                Listen::Unix(path) => {
                    let l = tokio::net::UnixListener::bind(path)
                        .map_err(|e| format!("cannot listen on unix:{}: {e}", path.display()))?;
                    tokio::spawn(accept_unix(Arc::clone(proxy), l, upstream.clone()))
                }
            };
            self.loops.insert(key, task);
        }
        let keep: Vec<(Listen, String)> = wanted.to_vec();
        self.loops.retain(|k, task| {
            let kept = keep.contains(k);
            if !kept {
                task.abort();
                tracing::info!("stopped listening on {}", k.0);
            }
            kept
        });
        Ok(())
    }

    /// Stops every accept loop.
    pub(super) fn stop(&mut self) {
        for (_, task) in self.loops.drain() {
            task.abort();
        }
    }
}

/// Admits a client under the settings in force, and serves it.
fn admit<P: Policy, S: fairio::Stream>(
    proxy: &Arc<Proxy<P>>,
    client: S,
    peer: Peer,
    upstream: &str,
    refusals: &mut Throttled,
) where
    P::Params: FromWeight,
{
    let settings = proxy.settings();
    let class = settings.classes.get(settings.classes.of(peer.ip)).clone();
    let name: Arc<str> = Arc::from(class.name.as_str());
    let Some(ticket) = proxy.admission.admit(peer.ip, &name, class.max_connections) else {
        refusals.hit(&peer.name);
        return;
    };
    let session = Session {
        sched: proxy.sched.clone(),
        hosts: proxy.hosts.clone(),
        upstream: upstream.to_owned(),
        settings,
        admission: Arc::clone(&proxy.admission),
    };
    tokio::spawn(client::serve(session, client, peer, class, ticket));
}

/// After a failed accept (out of descriptors, say): back off, up to 1 s, and log once a second.
async fn failed(
    proxy: &Proxy<impl Policy>,
    failures: &mut Throttled,
    e: &std::io::Error,
    pause: &mut Duration,
) {
    proxy
        .admission
        .accept_errors
        .fetch_add(1, Ordering::Relaxed);
    failures.hit(e);
    tokio::time::sleep(*pause).await;
    *pause = (*pause * 2).min(Duration::from_secs(1));
}

async fn accept_tcp<P: Policy>(proxy: Arc<Proxy<P>>, l: tokio::net::TcpListener, upstream: String)
where
    P::Params: FromWeight,
{
    let mut failures = Throttled::new("accept failed");
    let mut refusals = Throttled::new("client refused: connection limit reached");
    let mut pause = Duration::from_millis(10);
    loop {
        match l.accept().await {
            Ok((client, addr)) => {
                pause = Duration::from_millis(10);
                let peer = Peer {
                    ip: Some(addr.ip().to_canonical()),
                    name: addr.to_string(),
                };
                admit(&proxy, client, peer, &upstream, &mut refusals);
            }
            Err(e) => failed(&proxy, &mut failures, &e, &mut pause).await,
        }
    }
}

async fn accept_unix<P: Policy>(proxy: Arc<Proxy<P>>, l: tokio::net::UnixListener, upstream: String)
where
    P::Params: FromWeight,
{
    let mut failures = Throttled::new("accept failed");
    let mut refusals = Throttled::new("client refused: connection limit reached");
    let mut pause = Duration::from_millis(10);
    loop {
        match l.accept().await {
            Ok((client, _)) => {
                pause = Duration::from_millis(10);
                let peer = Peer {
                    ip: None,
                    name: format!("unix client on {upstream}"),
                };
                admit(&proxy, client, peer, &upstream, &mut refusals);
            }
            Err(e) => failed(&proxy, &mut failures, &e, &mut pause).await,
        }
    }
}
