//! `/metrics` in Prometheus text format, encoded with `prometheus-client`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use fairio::{Policy, Scheduler};
use fairio_fleet::Lease;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::proxy::Admission;

/// How long a client may take to send its request head.
const HEAD_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Direction {
    direction: &'static str,
}

/// Renders the scheduler's figures now.
/// Renders the scheduler's figures now: series per direction only (none per client, whose
/// number would grow without bound), the proxy's admission counters, and the fleet lease.
pub(crate) fn render<P: Policy>(
    sched: &Scheduler<P>,
    lease: Option<&Lease>,
    admission: Option<&Admission>,
) -> String {
    let mut registry = Registry::default();
    let conns = Gauge::<i64, std::sync::atomic::AtomicI64>::default();
    let bytes = Family::<Direction, Counter<u64, AtomicU64>>::default();
    let rate = Family::<Direction, Gauge<i64, std::sync::atomic::AtomicI64>>::default();
    registry.register(
        "fairio_connections",
        "Open client connections",
        conns.clone(),
    );
    registry.register(
        "fairio_bytes",
        "Bytes moved, all clients, closed ones included",
        bytes.clone(),
    );
    registry.register(
        "fairio_rate_bytes_per_second",
        "Moving-average rate, all clients",
        rate.clone(),
    );

    conns.set(i64::try_from(sched.connection_count()).unwrap_or(i64::MAX));
    let g = sched.global_stat();
    let to = Direction {
        direction: "to_clients",
    };
    let from = Direction {
        direction: "from_clients",
    };
    bytes.get_or_create(&to).inc_by(g.total_sent);
    bytes.get_or_create(&from).inc_by(g.total_recv);
    rate.get_or_create(&to)
        .set(i64::try_from(g.current_outflow).unwrap_or(i64::MAX));
    rate.get_or_create(&from)
        .set(i64::try_from(g.current_inflow).unwrap_or(i64::MAX));
    if let Some(a) = admission {
        let counter = |name: &str, help: &str, value: u64| {
            let c = Counter::<u64, AtomicU64>::default();
            c.inc_by(value);
            (name.to_owned(), help.to_owned(), c)
        };
        for (name, help, c) in [
            counter(
                "fairio_clients_refused",
                "Clients turned away by a connection limit",
                a.refused.load(Ordering::Relaxed),
            ),
            counter(
                "fairio_accept_errors",
                "Failed accepts (out of descriptors, say)",
                a.accept_errors.load(Ordering::Relaxed),
            ),
            counter(
                "fairio_clients_idle_closed",
                "Clients closed by the idle timeout",
                a.idle_closed.load(Ordering::Relaxed),
            ),
            counter(
                "fairio_pairs_half_close_closed",
                "Pairs closed by the half-close timeout",
                a.half_close_closed.load(Ordering::Relaxed),
            ),
        ] {
            registry.register(name, help, c);
        }
        let open = Gauge::<i64, std::sync::atomic::AtomicI64>::default();
        open.set(i64::try_from(a.open()).unwrap_or(i64::MAX));
        registry.register(
            "fairio_clients_open",
            "Clients admitted and not yet gone",
            open,
        );
    }
    if let Some(lease) = lease {
        let fleet_lease = Family::<Direction, Gauge<i64, std::sync::atomic::AtomicI64>>::default();
        let fleet_members =
            Family::<Direction, Gauge<i64, std::sync::atomic::AtomicI64>>::default();
        let fleet_fallback =
            Family::<Direction, Gauge<i64, std::sync::atomic::AtomicI64>>::default();
        registry.register(
            "fairio_fleet_lease_bytes_per_second",
            "This proxy's lease of the fleet limit, in force now",
            fleet_lease.clone(),
        );
        registry.register(
            "fairio_fleet_members",
            "Live members of the fleet budget, as Redis last counted them",
            fleet_members.clone(),
        );
        registry.register(
            "fairio_fleet_fallback",
            "1 while Redis does not answer and the safe share applies",
            fleet_fallback.clone(),
        );
        for (direction, d) in [
            ("to_clients", lease.upload),
            ("from_clients", lease.download),
        ] {
            let Some(d) = d else { continue };
            let l = Direction { direction };
            fleet_lease
                .get_or_create(&l)
                .set(i64::try_from(d.limit).unwrap_or(i64::MAX));
            fleet_members.get_or_create(&l).set(i64::from(d.live));
            fleet_fallback
                .get_or_create(&l)
                .set(i64::from(d.mode == fairio_fleet::Mode::Fallback));
        }
    }
    let mut out = String::new();
    // Writing into a String cannot fail.
    let _ = encode(&mut out, &registry);
    out
}

/// A minimal HTTP/1 responder: `GET /metrics` answers the figures, anything else 404.
pub(crate) async fn serve<P: Policy>(
    listener: TcpListener,
    sched: Scheduler<P>,
    lease: Option<watch::Receiver<Lease>>,
    admission: Option<Arc<Admission>>,
) {
    while let Ok((mut sock, _)) = listener.accept().await {
        let sched = sched.clone();
        let lease = lease.as_ref().map(|l| *l.borrow());
        let admission = admission.clone();
        tokio::spawn(async move {
            let mut head = Vec::new();
            let mut buf = [0u8; 1024];
            // Read the request head, bounded to 8 KiB and to 5 s: a client that sends it
            // slowly (slowloris) is dropped rather than held forever.
            let read_head = async {
                while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 8192 {
                    match sock.read(&mut buf).await {
                        Ok(0) | Err(_) => return false,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                true
            };
            if !matches!(
                tokio::time::timeout(HEAD_TIMEOUT, read_head).await,
                Ok(true)
            ) {
                return;
            }
            let ok = head.starts_with(b"GET /metrics ") || head.starts_with(b"GET /metrics?");
            let (status, body) = if ok {
                (
                    "200 OK",
                    render(&sched, lease.as_ref(), admission.as_deref()),
                )
            } else {
                ("404 Not Found", "not found: try /metrics\n".to_string())
            };
            let resp = format!(
                "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = sock.write_all(resp.as_bytes()).await;
            let _ = sock.shutdown().await;
        });
    }
}
