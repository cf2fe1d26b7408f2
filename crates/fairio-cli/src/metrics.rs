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
struct Class {
    class: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ClassDirection {
    class: String,
    direction: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Reason {
    reason: &'static str,
}

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

    let unacked = Gauge::<i64, std::sync::atomic::AtomicI64>::default();
    registry.register(
        "fairio_to_clients_unacked_bytes",
        "Bytes handed to open clients' sockets that their TCP has not acknowledged yet \
         (Linux TCP clients)",
        unacked.clone(),
    );
    let mut waiting = 0u64;
    sched.iter_connection(|c| waiting += c.stat().unacked.unwrap_or(0));
    unacked.set(i64::try_from(waiting).unwrap_or(i64::MAX));

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
    // The limits in force (a reload's, or the fleet lease's): no series for a direction
    // without one.
    let limit = Family::<Direction, Gauge<i64, std::sync::atomic::AtomicI64>>::default();
    registry.register(
        "fairio_limit_bytes_per_second",
        "The limit in force, by direction (absent when there is none)",
        limit.clone(),
    );
    for (d, l) in [
        (&to, sched.max_upload_speed()),
        (&from, sched.max_download_speed()),
    ] {
        if let Some(l) = l {
            limit
                .get_or_create(d)
                .set(i64::try_from(l).unwrap_or(i64::MAX));
        }
    }
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
            counter(
                "fairio_spliced_bytes",
                "Bytes moved between clients and upstreams by splice(2), not copied, counted as clients leave",
                a.spliced.load(Ordering::Relaxed),
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
        let per_class = Family::<Class, Gauge<i64, std::sync::atomic::AtomicI64>>::default();
        for (class, n) in a.per_class() {
            per_class
                .get_or_create(&Class {
                    class: class.to_string(),
                })
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
        registry.register(
            "fairio_class_clients_open",
            "Clients admitted and not yet gone, per class",
            per_class,
        );
        // Bytes per class: those of the clients that left, and those of the open ones.
        let mut bytes: std::collections::HashMap<String, (u64, u64)> = a
            .left_bytes()
            .into_iter()
            .map(|(c, b)| (c.to_string(), b))
            .collect();
        let clients = a.clients();
        sched.iter_connection(|c| {
            if let Some(info) = clients.get(&c.id()) {
                // Since it came into its class: a moved client's bytes before stay in the
                // class it left, so neither counter goes back.
                let s = c.stat();
                let e = bytes.entry(info.class.to_string()).or_default();
                e.0 += s.total_sent.saturating_sub(info.base.0);
                e.1 += s.total_recv.saturating_sub(info.base.1);
            }
        });
        let class_bytes = Family::<ClassDirection, Counter<u64, AtomicU64>>::default();
        for (class, (sent, recv)) in bytes {
            for (direction, v) in [("to_clients", sent), ("from_clients", recv)] {
                class_bytes
                    .get_or_create(&ClassDirection {
                        class: class.clone(),
                        direction,
                    })
                    .inc_by(v);
            }
        }
        registry.register(
            "fairio_class_bytes",
            "Bytes moved per class of clients, closed ones included",
            class_bytes,
        );
        let proxy_refused = Family::<Reason, Counter<u64, AtomicU64>>::default();
        for (why, n) in a.proxy_refused() {
            proxy_refused
                .get_or_create(&Reason {
                    reason: why.as_str(),
                })
                .inc_by(n);
        }
        registry.register(
            "fairio_proxy_protocol_refused",
            "Connections closed for their PROXY protocol header: untrusted (from outside the \
             trusted networks), missing, malformed, truncated, oversized, or timeout",
            proxy_refused,
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

/// Adds series per client address (`fairio_host_bytes{host, class, direction}`) to a
/// rendering, before its end marker.
pub(crate) fn with_hosts<P: Policy>(
    rendered: String,
    hosts: &fairio::GroupsBy<(std::sync::Arc<str>, std::net::IpAddr), P>,
) -> String {
    #[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
    struct Host {
        host: String,
        class: String,
        direction: &'static str,
    }
    let mut registry = Registry::default();
    let family = Family::<Host, Counter<u64, AtomicU64>>::default();
    hosts.for_each(|(class, ip), g| {
        let s = g.stat();
        for (direction, v) in [("to_clients", s.total_sent), ("from_clients", s.total_recv)] {
            family
                .get_or_create(&Host {
                    host: ip.to_string(),
                    class: class.to_string(),
                    direction,
                })
                .inc_by(v);
        }
    });
    registry.register(
        "fairio_host_bytes",
        "Bytes moved per client address (groups alive now)",
        family,
    );
    append(rendered, &registry)
}

/// Adds the series of the class groups under `policy = "hierarchical"` to a rendering, before
/// its end marker: each class's rate now, cap and guarantee (`fairio_class_rate`,
/// `fairio_class_cap`, `fairio_class_guarantee`, in bytes per second, by class and direction;
/// a cap or guarantee not set has no series).
pub(crate) fn with_classes<P: Policy>(
    rendered: String,
    classes: &fairio::GroupsBy<std::sync::Arc<str>, P>,
) -> String {
    #[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
    struct Class {
        class: String,
        direction: &'static str,
    }
    let mut registry = Registry::default();
    let rate = Family::<Class, Gauge<u64, AtomicU64>>::default();
    let cap = Family::<Class, Gauge<u64, AtomicU64>>::default();
    let guarantee = Family::<Class, Gauge<u64, AtomicU64>>::default();
    classes.for_each(|name, g| {
        let (s, caps, mins) = (g.stat(), g.caps(), g.guarantees());
        let label = |direction| Class {
            class: name.to_string(),
            direction,
        };
        for (direction, now, c, m) in [
            ("to_clients", s.current_outflow, caps.0, mins.0),
            ("from_clients", s.current_inflow, caps.1, mins.1),
        ] {
            rate.get_or_create(&label(direction)).set(now);
            if let Some(c) = c {
                cap.get_or_create(&label(direction)).set(c);
            }
            if let Some(m) = m {
                guarantee.get_or_create(&label(direction)).set(m);
            }
        }
    });
    registry.register(
        "fairio_class_rate",
        "Bytes per second each class moves now (policy = hierarchical)",
        rate,
    );
    registry.register(
        "fairio_class_cap",
        "Each class's cap on the whole class, in bytes per second",
        cap,
    );
    registry.register(
        "fairio_class_guarantee",
        "Each class's guarantee, in bytes per second",
        guarantee,
    );
    append(rendered, &registry)
}

/// A rendering with `registry`'s series added before its end marker (which the addition
/// brings again).
fn append(rendered: String, registry: &Registry) -> String {
    let mut extra = String::new();
    let _ = encode(&mut extra, registry);
    let head = rendered.trim_end().trim_end_matches("# EOF").to_owned();
    head + &extra
}
