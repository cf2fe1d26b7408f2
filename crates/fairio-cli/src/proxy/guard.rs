//! Admission: connection limits (total and per client host), and accept errors logged once a
//! second with a count rather than once each.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use super::pp::Refused;

/// What the proxy admits, and what it counted turning away.
#[derive(Debug)]
pub(crate) struct Admission {
    /// The limits; a reload changes them.
    max_total: std::sync::atomic::AtomicUsize,
    /// 0: no limit.
    max_per_host: std::sync::atomic::AtomicUsize,
    open: Mutex<Open>,
    /// Clients turned away by a connection limit.
    pub(crate) refused: AtomicU64,
    /// Failed accepts (out of descriptors, say).
    pub(crate) accept_errors: AtomicU64,
    /// Clients closed by the idle timeout.
    pub(crate) idle_closed: AtomicU64,
    /// Pairs closed by the half-close timeout.
    pub(crate) half_close_closed: AtomicU64,
    /// Bytes moved by splice(2), both ways, counted as each client leaves.
    pub(crate) spliced: AtomicU64,
    /// Connections closed for their PROXY protocol header, by [`Refused`]'s order.
    proxy_refused: [AtomicU64; Refused::ALL.len()],
    /// Connections whose PROXY protocol header is being read (not admitted yet).
    awaiting_header: std::sync::atomic::AtomicUsize,
    /// Clients an older process still serves after an upgrade: they count against the total.
    held_open: std::sync::atomic::AtomicUsize,
}

/// A connection's place while its PROXY protocol header is read: given back when dropped.
#[derive(Debug)]
pub(crate) struct HeaderSlot(Arc<Admission>);

impl Drop for HeaderSlot {
    fn drop(&mut self) {
        self.0.awaiting_header.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Open {
    /// A ticket's class now: a reload may have moved its client to another.
    fn class_of(&self, t: &Ticket) -> Arc<str> {
        t.conn
            .and_then(|id| self.clients.get(&id))
            .map_or_else(|| Arc::clone(&t.class), |c| Arc::clone(&c.class))
    }
}

#[derive(Debug, Default)]
struct Open {
    total: usize,
    per_host: HashMap<IpAddr, usize>,
    per_class: HashMap<Arc<str>, usize>,
    /// The registered clients: connection id → address and arrival, for `GET /clients`.
    clients: HashMap<u64, ClientInfo>,
    /// Bytes (to clients, from clients) of the clients of each class that have left.
    left_bytes: HashMap<Arc<str>, (u64, u64)>,
}

/// A registered client, for `GET /clients` and the per-class figures.
#[derive(Clone, Debug)]
pub(crate) struct ClientInfo {
    pub(crate) peer: String,
    /// The client's address, if it has one (a Unix client has none).
    pub(crate) ip: Option<IpAddr>,
    /// Its class now: the one it was admitted in, or the one a reload moved it to.
    pub(crate) class: Arc<str>,
    /// Its totals (to it, from it) when it came into that class: what it moved before counts
    /// in the class it left.
    pub(crate) base: (u64, u64),
    pub(crate) since: std::time::Instant,
}

/// A client's place: given back when dropped, however its session ends.
#[derive(Debug)]
pub(crate) struct Ticket {
    admission: Arc<Admission>,
    host: Option<IpAddr>,
    class: Arc<str>,
    conn: Option<u64>,
}

impl Ticket {
    /// Counts a leaving client's bytes in its class's totals (the class it is in now).
    pub(crate) fn left(&self, sent: u64, recv: u64) {
        let mut open = self
            .admission
            .open
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let class = open.class_of(self);
        let base = self
            .conn
            .and_then(|id| open.clients.get(&id))
            .map_or((0, 0), |c| c.base);
        let e = open.left_bytes.entry(class).or_default();
        e.0 += sent.saturating_sub(base.0);
        e.1 += recv.saturating_sub(base.1);
    }

    /// Names the client's connection once registered, for `GET /clients`.
    pub(crate) fn attach(&mut self, conn: u64, peer: String) {
        let class = Arc::clone(&self.class);
        self.conn = Some(conn);
        let mut open = self
            .admission
            .open
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        open.clients.insert(
            conn,
            ClientInfo {
                peer,
                ip: self.host,
                class,
                base: (0, 0),
                since: std::time::Instant::now(),
            },
        );
    }
}

impl Admission {
    pub(crate) fn new(max_total: usize, max_per_host: Option<usize>) -> Arc<Self> {
        Arc::new(Self {
            max_total: std::sync::atomic::AtomicUsize::new(max_total),
            max_per_host: std::sync::atomic::AtomicUsize::new(max_per_host.unwrap_or(0)),
            open: Mutex::new(Open::default()),
            refused: AtomicU64::new(0),
            accept_errors: AtomicU64::new(0),
            idle_closed: AtomicU64::new(0),
            half_close_closed: AtomicU64::new(0),
            spliced: AtomicU64::new(0),
            proxy_refused: Default::default(),
            awaiting_header: std::sync::atomic::AtomicUsize::new(0),
            held_open: std::sync::atomic::AtomicUsize::new(0),
        })
    }

    /// An older process still serves `n` clients: they count against the total limit.
    pub(crate) fn hold_open(&self, n: usize) {
        self.held_open.store(n, Ordering::Relaxed);
    }

    /// Clients in this process's hands: admitted (some still connecting to the upstream), and
    /// waiting for their PROXY protocol header. What an upgrade counts on either side.
    pub(crate) fn in_hand(&self) -> usize {
        self.open() + self.awaiting_header()
    }

    /// Connections waiting for their PROXY protocol header.
    pub(crate) fn awaiting_header(&self) -> usize {
        self.awaiting_header.load(Ordering::Relaxed)
    }

    /// A place for a connection whose PROXY protocol header is to be read: those waiting and
    /// those admitted together stay within the total limit (each holds descriptors); `None`,
    /// and counted as refused, beyond.
    pub(crate) fn await_header(self: &Arc<Self>) -> Option<HeaderSlot> {
        let max = self
            .max_total()
            .saturating_sub(self.open() + self.held_open.load(Ordering::Relaxed));
        let taken = self
            .awaiting_header
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                (n < max).then_some(n + 1)
            });
        if taken.is_err() {
            self.refused.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        Some(HeaderSlot(Arc::clone(self)))
    }

    /// Counts a connection closed for its PROXY protocol header.
    pub(crate) fn count_proxy_refused(&self, why: Refused) {
        let i = Refused::ALL.iter().position(|r| *r == why).unwrap_or(0);
        self.proxy_refused[i].fetch_add(1, Ordering::Relaxed);
    }

    /// Connections closed for their PROXY protocol header, by reason.
    pub(crate) fn proxy_refused(&self) -> impl Iterator<Item = (Refused, u64)> + '_ {
        Refused::ALL
            .into_iter()
            .zip(&self.proxy_refused)
            .map(|(r, n)| (r, n.load(Ordering::Relaxed)))
    }

    /// The total limit in force.
    pub(crate) fn max_total(&self) -> usize {
        self.max_total.load(Ordering::Relaxed)
    }

    /// New limits, from a reload; clients already in stay.
    pub(crate) fn set_limits(&self, max_total: usize, max_per_host: Option<usize>) {
        self.max_total.store(max_total, Ordering::Relaxed);
        self.max_per_host
            .store(max_per_host.unwrap_or(0), Ordering::Relaxed);
    }

    /// A ticket for a client from `host` (none for a Unix socket) in `class`, whose own limit
    /// is `class_max`; `None` (and counted) when a limit is reached.
    pub(crate) fn admit(
        self: &Arc<Self>,
        host: Option<IpAddr>,
        class: &Arc<str>,
        class_max: Option<usize>,
    ) -> Option<Ticket> {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let of_host = host.map_or(0, |h| open.per_host.get(&h).copied().unwrap_or(0));
        let of_class = open.per_class.get(class).copied().unwrap_or(0);
        let per_host = self.max_per_host.load(Ordering::Relaxed);
        // Connections awaiting their PROXY header hold descriptors too.
        if open.total + self.held_open.load(Ordering::Relaxed) + self.awaiting_header()
            >= self.max_total.load(Ordering::Relaxed)
            || (host.is_some() && per_host > 0 && of_host >= per_host)
            || class_max.is_some_and(|m| of_class >= m)
        {
            drop(open);
            self.refused.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        open.total += 1;
        if let Some(h) = host {
            *open.per_host.entry(h).or_default() += 1;
        }
        *open.per_class.entry(Arc::clone(class)).or_default() += 1;
        Some(Ticket {
            admission: Arc::clone(self),
            host,
            class: Arc::clone(class),
            conn: None,
        })
    }

    /// Counts client `conn` in `class` from now on (a reload moved it there), `totals` (to
    /// it, from it) being what it has moved so far: that stays in its old class. Its new
    /// class's `max_connections` does not turn it away: it is already connected.
    pub(crate) fn reclassify(&self, conn: u64, class: &Arc<str>, totals: (u64, u64)) {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let Some((old, base)) = open
            .clients
            .get(&conn)
            .map(|c| (Arc::clone(&c.class), c.base))
        else {
            return;
        };
        if old == *class {
            return;
        }
        let e = open.left_bytes.entry(Arc::clone(&old)).or_default();
        e.0 += totals.0.saturating_sub(base.0);
        e.1 += totals.1.saturating_sub(base.1);
        if let Some(n) = open.per_class.get_mut(&old) {
            *n -= 1;
            if *n == 0 {
                open.per_class.remove(&old);
            }
        }
        *open.per_class.entry(Arc::clone(class)).or_default() += 1;
        if let Some(c) = open.clients.get_mut(&conn) {
            c.class = Arc::clone(class);
            c.base = totals;
        }
    }

    /// Clients admitted and not yet gone, per class.
    pub(crate) fn per_class(&self) -> Vec<(Arc<str>, usize)> {
        let open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        open.per_class
            .iter()
            .map(|(c, n)| (Arc::clone(c), *n))
            .collect()
    }

    /// Bytes (to clients, from clients) of the clients of each class that have left.
    pub(crate) fn left_bytes(&self) -> HashMap<Arc<str>, (u64, u64)> {
        self.open
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .left_bytes
            .clone()
    }

    /// The registered clients, by connection id.
    pub(crate) fn clients(&self) -> HashMap<u64, ClientInfo> {
        self.open
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clients
            .clone()
    }

    /// Clients admitted and not yet gone.
    pub(crate) fn open(&self) -> usize {
        self.open.lock().unwrap_or_else(|e| e.into_inner()).total
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut open = self
            .admission
            .open
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        open.total = open.total.saturating_sub(1);
        if let Some(h) = self.host {
            if let Some(n) = open.per_host.get_mut(&h) {
                *n -= 1;
                if *n == 0 {
                    open.per_host.remove(&h);
                }
            }
        }
        let class = open.class_of(self);
        if let Some(id) = self.conn {
            open.clients.remove(&id);
        }
        if let Some(n) = open.per_class.get_mut(&class) {
            *n -= 1;
            if *n == 0 {
                open.per_class.remove(&class);
            }
        }
    }
}

/// Logs an event at most once a second, with how many happened since the last line.
#[derive(Debug)]
pub(crate) struct Throttled {
    what: &'static str,
    last: Option<Instant>,
    since: u64,
}

impl Throttled {
    pub(crate) fn new(what: &'static str) -> Self {
        Self {
            what,
            last: None,
            since: 0,
        }
    }

    /// Counts one event, and logs the count if a second has passed since the last line.
    pub(crate) fn hit(&mut self, detail: &dyn std::fmt::Display) {
        self.since += 1;
        let now = Instant::now();
        if self.last.is_none_or(|t| now - t >= Duration::from_secs(1)) {
            tracing::warn!(count = self.since, "{}: {detail}", self.what);
            self.last = Some(now);
            self.since = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_hold_and_tickets_give_their_place_back() {
        let a = Admission::new(4, Some(2));
        let (h1, h2): (IpAddr, IpAddr) = ([127, 0, 0, 2].into(), [127, 0, 0, 3].into());
        let (c, small): (Arc<str>, Arc<str>) = ("c".into(), "small".into());
        let t1 = a.admit(Some(h1), &c, None).unwrap();
        let _t2 = a.admit(Some(h1), &c, None).unwrap();
        assert!(a.admit(Some(h1), &c, None).is_none(), "per host");
        let _t3 = a.admit(Some(h2), &small, Some(1)).unwrap();
        assert!(a.admit(None, &small, Some(1)).is_none(), "per class");
        let _t4 = a.admit(None, &c, None).unwrap();
        assert!(a.admit(None, &c, None).is_none(), "total");
        assert_eq!((a.open(), a.refused.load(Ordering::Relaxed)), (4, 3));
        drop(t1);
        assert!(a.admit(Some(h1), &c, None).is_some());
    }

    #[test]
    fn connections_awaiting_a_header_are_bounded_and_give_their_place_back() {
        let a = Admission::new(3, None);
        let c: Arc<str> = "c".into();
        let _t = a.admit(None, &c, None).unwrap();
        let s1 = a.await_header().unwrap();
        let _s2 = a.await_header().unwrap();
        assert!(a.await_header().is_none(), "1 admitted + 2 waiting = 3");
        assert_eq!(a.refused.load(Ordering::Relaxed), 1);
        drop(s1);
        assert_eq!(a.awaiting_header(), 1);
        assert!(a.await_header().is_some());
    }

    #[test]
    fn connections_awaiting_a_header_count_against_direct_admissions() {
        let a = Admission::new(2, None);
        let c: Arc<str> = "c".into();
        let _slot = a.await_header().unwrap();
        let _t = a.admit(None, &c, None).unwrap();
        assert!(
            a.admit(None, &c, None).is_none(),
            "1 waiting + 1 admitted = 2"
        );
    }

    #[test]
    fn an_older_process_clients_count_against_the_total() {
        let a = Admission::new(3, None);
        let c: Arc<str> = "c".into();
        a.hold_open(2);
        let _t = a.admit(None, &c, None).unwrap();
        assert!(a.admit(None, &c, None).is_none());
        a.hold_open(0);
        assert!(a.admit(None, &c, None).is_some());
    }
}
