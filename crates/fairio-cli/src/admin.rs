//! The proxy's admin API over HTTP/1, served with hyper: `GET /metrics` (Prometheus text),
//! `GET /clients` (JSON), `PUT /limits` (JSON), `POST /reload` (re-reads the config file). One request per connection, a 5 s limit on the
//! request head and 30 s on the whole exchange, so that a slow client holds nothing for long.
//! It has no authentication of its own: it binds to loopback unless a token is set, and then
//! asks every request for `Authorization: Bearer TOKEN`, compared in constant time.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use fairio::{Policy, Scheduler};
use fairio_fleet::Lease;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::metrics;
use crate::proxy::Admission;
use crate::rate::parse_rate;

/// How long a client may take to send its request head.
pub(crate) const HEAD_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a whole exchange may take.
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(30);

/// What the admin API reads and changes.
pub(crate) struct Admin<P: Policy> {
    pub(crate) sched: Scheduler<P>,
    pub(crate) admission: Arc<Admission>,
    pub(crate) lease: Option<watch::Receiver<Lease>>,
    /// The token, if any; a reload may change it.
    pub(crate) token: Arc<std::sync::RwLock<Option<String>>>,
    /// Asks the proxy to re-read its config file, as SIGHUP does.
    pub(crate) reload: Arc<tokio::sync::Notify>,
    /// The proxy's groups by (class, client address), when fair by host.
    pub(crate) hosts: Option<fairio::GroupsBy<(Arc<str>, std::net::IpAddr), P>>,
    /// Whether `/metrics` has series per client address.
    pub(crate) per_host: bool,
    /// The proxy's groups by class, under `policy = "hierarchical"`.
    pub(crate) classes: Option<fairio::GroupsBy<Arc<str>, P>>,
    /// The settings in force (a reload replaces them): what needs a global limit.
    pub(crate) settings: Arc<std::sync::RwLock<Arc<crate::proxy::Settings>>>,
}

/// One class in `GET /clients`, under `policy = "hierarchical"`: the class's group, above its
/// client addresses' groups.
#[derive(Debug, Serialize)]
struct ClassView {
    id: u64,
    class: String,
    /// The groups of its client addresses.
    groups: Vec<u64>,
    /// Its clients that are in no address group (fair by connection, Unix clients).
    members: Vec<u64>,
    to_client_cap: Option<u64>,
    from_client_cap: Option<u64>,
    to_client_guarantee: Option<u64>,
    from_client_guarantee: Option<u64>,
    to_client_bytes: u64,
    from_client_bytes: u64,
    to_client_rate: u64,
    from_client_rate: u64,
}

/// One group in `GET /clients`: a client address in its class.
#[derive(Debug, Serialize)]
struct GroupView {
    id: u64,
    class: String,
    host: String,
    members: Vec<u64>,
    to_client_bytes: u64,
    from_client_bytes: u64,
    to_client_rate: u64,
    from_client_rate: u64,
}

/// One client in `GET /clients`.
#[derive(Debug, Serialize)]
struct ClientView {
    id: u64,
    peer: Option<String>,
    class: Option<String>,
    group: Option<u64>,
    age_secs: Option<f64>,
    /// Handed to the client's socket.
    to_client_bytes: u64,
    /// Of those, acknowledged by the client's TCP (Linux TCP clients; null elsewhere).
    to_client_acked_bytes: Option<u64>,
    from_client_bytes: u64,
    to_client_rate: u64,
    from_client_rate: u64,
}

/// The body of `PUT /limits`: rates as on the command line ("8MiB"), or null for none.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Limits {
    to_clients: Option<String>,
    from_clients: Option<String>,
}

/// Compares without an early exit, so that the time taken says nothing of where a guess went
/// wrong.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn reply(status: StatusCode, kind: &str, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    if let Ok(v) = kind.parse() {
        r.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
    }
    r
}

fn text(status: StatusCode, body: impl Into<String>) -> Response<Full<Bytes>> {
    reply(status, "text/plain; charset=utf-8", body.into())
}

async fn handle<P: Policy>(
    req: Request<Incoming>,
    admin: Arc<Admin<P>>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let token = admin
        .token
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    if let Some(token) = &token {
        let given = req
            .headers()
            .get(hyper::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        if !same(given.as_bytes(), token.as_bytes()) {
            return Ok(text(
                StatusCode::UNAUTHORIZED,
                "missing or wrong bearer token\n",
            ));
        }
    }
    let response = match (req.method(), req.uri().path()) {
        (&Method::GET, "/metrics") => {
            let lease = admin.lease.as_ref().map(|l| *l.borrow());
            let mut body = metrics::render(&admin.sched, lease.as_ref(), Some(&admin.admission));
            if let Some(hosts) = admin.hosts.as_ref().filter(|_| admin.per_host) {
                body = metrics::with_hosts(body, hosts);
            }
            if let Some(classes) = &admin.classes {
                body = metrics::with_classes(body, classes);
            }
            reply(
                StatusCode::OK,
                "text/plain; version=0.0.4; charset=utf-8",
                body,
            )
        }
        (&Method::GET, "/clients") => {
            let peers = admin.admission.clients();
            let mut clients = Vec::new();
            admin.sched.iter_connection(|c| {
                let s = c.stat();
                let info = peers.get(&c.id());
                clients.push(ClientView {
                    id: c.id(),
                    peer: info.map(|i| i.peer.clone()),
                    class: info.map(|i| i.class.to_string()),
                    group: c.group().map(|g| g.id()),
                    age_secs: info.map(|i| i.since.elapsed().as_secs_f64()),
                    to_client_bytes: s.total_sent,
                    to_client_acked_bytes: s.acked(),
                    from_client_bytes: s.total_recv,
                    to_client_rate: s.current_outflow,
                    from_client_rate: s.current_inflow,
                });
            });
            clients.sort_by_key(|c| c.id);
            let mut groups = Vec::new();
            if let Some(hosts) = &admin.hosts {
                hosts.for_each(|(class, ip), g| {
                    let s = g.stat();
                    groups.push(GroupView {
                        id: g.id(),
                        class: class.to_string(),
                        host: ip.to_string(),
                        members: g.members(),
                        to_client_bytes: s.total_sent,
                        from_client_bytes: s.total_recv,
                        to_client_rate: s.current_outflow,
                        from_client_rate: s.current_inflow,
                    });
                });
            }
            groups.sort_by_key(|g| g.id);
            let mut classes = Vec::new();
            if let Some(by_class) = &admin.classes {
                by_class.for_each(|name, g| {
                    let s = g.stat();
                    let (caps, mins) = (g.caps(), g.guarantees());
                    let mut subgroups: Vec<u64> = g.subgroups().iter().map(|s| s.id()).collect();
                    subgroups.sort_unstable();
                    classes.push(ClassView {
                        id: g.id(),
                        class: name.to_string(),
                        groups: subgroups,
                        members: g.members(),
                        to_client_cap: caps.0,
                        from_client_cap: caps.1,
                        to_client_guarantee: mins.0,
                        from_client_guarantee: mins.1,
                        to_client_bytes: s.total_sent,
                        from_client_bytes: s.total_recv,
                        to_client_rate: s.current_outflow,
                        from_client_rate: s.current_inflow,
                    });
                });
            }
            classes.sort_by(|a, b| a.class.cmp(&b.class));
            let mut view = serde_json::json!({
                "clients": clients,
                "groups": groups,
            });
            if admin.classes.is_some() {
                view["classes"] = serde_json::json!(classes);
            }
            let body = serde_json::to_string_pretty(&view).unwrap_or_default();
            reply(StatusCode::OK, "application/json", body)
        }
        (&Method::PUT, "/limits") => put_limits(req, &admin).await,
        (&Method::POST, "/reload") => {
            admin.reload.notify_one();
            text(
                StatusCode::ACCEPTED,
                "reloading; the log says how it went\n",
            )
        }
        (_, "/metrics" | "/clients" | "/limits" | "/reload") => text(
            StatusCode::METHOD_NOT_ALLOWED,
            "GET /metrics, GET /clients, PUT /limits, POST /reload\n",
        ),
        _ => text(
            StatusCode::NOT_FOUND,
            "not found: try /metrics, /clients, /limits or /reload\n",
        ),
    };
    Ok(response)
}

async fn put_limits<P: Policy>(req: Request<Incoming>, admin: &Admin<P>) -> Response<Full<Bytes>> {
    if admin.lease.is_some() {
        return text(
            StatusCode::CONFLICT,
            "the limits come from the fleet (--fleet): change them there\n",
        );
    }
    let body = match Limited::new(req.into_body(), 4096).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            return text(
                StatusCode::BAD_REQUEST,
                format!("cannot read the body: {e}\n"),
            );
        }
    };
    let limits: Limits = match serde_json::from_slice(&body) {
        Ok(l) => l,
        Err(e) => {
            return text(
                StatusCode::BAD_REQUEST,
                format!(
                    "{e}; expected {{\"to_clients\": \"8MiB\" or null, \"from_clients\": \"1MiB\" or null}}\n"
                ),
            );
        }
    };
    let parse = |v: &Option<String>| v.as_deref().map(parse_rate).transpose();
    match (parse(&limits.to_clients), parse(&limits.from_clients)) {
        (Ok(to), Ok(from)) => {
            // Held while the limits change: a reload stores its settings before it sets its
            // limits, so none slips in between the check and the change.
            let settings = admin.settings.read().unwrap_or_else(|e| e.into_inner());
            if let Some(why) = cannot_lift(&settings, to, from) {
                return text(StatusCode::CONFLICT, format!("{why}\n"));
            }
            admin.sched.set_max_upload_speed(to);
            admin.sched.set_max_download_speed(from);
            drop(settings);
            tracing::info!(?to, ?from, "limits changed through the admin API");
            text(StatusCode::OK, "limits changed\n")
        }
        (Err(e), _) | (_, Err(e)) => text(StatusCode::BAD_REQUEST, format!("{e}\n")),
    }
}

/// Why `to` and `from` cannot be the limits: a limit lifted beneath which a class's cap or
/// per-address cap, or the per-client cap, applies (it would silently stop applying). `None`
/// when they can.
fn cannot_lift(
    settings: &crate::proxy::Settings,
    to: Option<u64>,
    from: Option<u64>,
) -> Option<String> {
    for (limit, to_clients, key) in [(to, true, "to_clients"), (from, false, "from_clients")] {
        if let Some(what) = settings.needs_limit(to_clients).filter(|_| limit.is_none()) {
            return Some(format!(
                "`{key}` cannot be lifted: {what}, which applies beneath it (set a limit instead)"
            ));
        }
    }
    (to.is_none() && from.is_none() && settings.per_client_cap.is_some()).then(|| {
        "both limits cannot be lifted: the per-client cap applies beneath one of them".to_owned()
    })
}

/// At most this many admin connections at once: they come out of the descriptors' margin.
const MAX_EXCHANGES: usize = 8;

/// Serves the admin API on `listener` until the task is aborted. Accept errors (out of
/// descriptors) are retried after a pause; beyond [`MAX_EXCHANGES`] connections, the next
/// waits for one to end.
pub(crate) async fn serve<P: Policy>(listener: TcpListener, admin: Arc<Admin<P>>) {
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_EXCHANGES));
    loop {
        let Ok(slot) = Arc::clone(&slots).acquire_owned().await else {
            return;
        };
        let sock = match listener.accept().await {
            Ok((sock, _)) => sock,
            Err(e) => {
                tracing::debug!(error = %e, "admin accept failed; retrying");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let admin = Arc::clone(&admin);
        tokio::spawn(async move {
            let _slot = slot;
            let service = hyper::service::service_fn(move |req| handle(req, Arc::clone(&admin)));
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEAD_TIMEOUT)
                .keep_alive(false)
                // A client that ends its sending side after the request still gets the answer
                // (hyper's default drops it).
                .half_close(true)
                .serve_connection(TokioIo::new(sock), service);
            let _ = tokio::time::timeout(EXCHANGE_TIMEOUT, conn).await;
        });
    }
}

/// Whether `addr` may serve the admin API without a token: loopback only.
pub(crate) fn needs_token(addr: SocketAddr) -> bool {
    !addr.ip().is_loopback()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_compare_whole() {
        assert!(same(b"secret", b"secret"));
        assert!(!same(b"secret", b"secreT"));
        assert!(!same(b"secret", b"secret2"));
        assert!(!same(b"", b"x"));
    }
}
