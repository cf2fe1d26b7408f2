//! `/metrics` in Prometheus text format, encoded with `prometheus-client` (served by the admin
//! API).

use std::sync::atomic::{AtomicU64, Ordering};

use fairio::{Policy, Scheduler};
use fairio_fleet::Lease;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::proxy::Admission;

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
