//! [`Registry`]: every meter of a scheduler, the global figures, and their updates.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::watch;

use crate::{Ewma, Meter, Stat, StatsConfig};

/// Every [`Meter`] of a scheduler, plus the totals of the meters already retired, so that the
/// global figures include closed connections.
///
/// The lock here is taken by registration, retirement, refresh and snapshots, never by counting.
#[derive(Debug)]
pub struct Registry {
    config: StatsConfig,
    inner: Mutex<Inner>,
    updates: watch::Sender<Stat>,
}

#[derive(Debug)]
struct Inner {
    /// Keyed by the meter's address: unique while the map holds the meter, and found in O(1)
    /// when a connection closes.
    live: HashMap<usize, Tracked>,
    retired_sent: u64,
    retired_recv: u64,
    global_in: Ewma,
    global_out: Ewma,
}

#[derive(Debug)]
struct Tracked {
    meter: Arc<Meter>,
    inflow: Ewma,
    outflow: Ewma,
}

impl Registry {
    /// An empty registry.
    pub fn new(config: StatsConfig) -> Self {
        Self {
            config,
            inner: Mutex::new(Inner {
                live: HashMap::new(),
                retired_sent: 0,
                retired_recv: 0,
                global_in: Ewma::new(config.alpha()),
                global_out: Ewma::new(config.alpha()),
            }),
            updates: watch::Sender::new(Stat::default()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Every critical section completes its update or changes nothing, so a poisoned lock
        // holds consistent state.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The configuration the averages use.
    pub fn config(&self) -> StatsConfig {
        self.config
    }

    /// A new meter, tracked until [`retire`](Self::retire) is called with it.
    pub fn register(&self) -> Arc<Meter> {
        let meter = Arc::new(Meter::default());
        let alpha = self.config.alpha();
        self.lock().live.insert(
            key_of(&meter),
            Tracked {
                meter: Arc::clone(&meter),
                inflow: Ewma::new(alpha),
                outflow: Ewma::new(alpha),
            },
        );
        meter
    }

    /// Stops tracking `meter` and folds its totals into the global ones. Bytes counted on the
    /// meter afterwards are not counted globally. Retiring twice, or a foreign meter, does
    /// nothing.
    pub fn retire(&self, meter: &Arc<Meter>) {
        let mut inner = self.lock();
        if let Some(t) = inner.live.remove(&key_of(meter)) {
            t.meter.set_rates(0, 0);
            inner.retired_sent += t.meter.total_sent();
            inner.retired_recv += t.meter.total_recv();
        }
    }

    /// How many meters are tracked.
    pub fn live(&self) -> usize {
        self.lock().live.len()
    }

    /// The global figures: the sum over live and retired meters.
    pub fn global_stat(&self) -> Stat {
        global(&self.lock())
    }

    /// Refreshes every moving average, given the time `elapsed` since the last refresh, and
    /// publishes the new global figures to subscribers. A refresh task calls this; tests call it
    /// with exact durations.
    pub fn refresh(&self, elapsed: Duration) {
        let stat = {
            let mut guard = self.lock();
            let inner = &mut *guard;
            for t in inner.live.values_mut() {
                let inflow = t.inflow.update(t.meter.total_recv(), elapsed);
                let outflow = t.outflow.update(t.meter.total_sent(), elapsed);
                t.meter.set_rates(inflow, outflow);
            }
            let mut stat = global(inner);
            stat.current_inflow = inner.global_in.update(stat.total_recv, elapsed);
            stat.current_outflow = inner.global_out.update(stat.total_sent, elapsed);
            stat
        };
        self.updates.send_replace(stat);
    }

    /// Follows the global figures: the receiver sees a new value after every refresh.
    pub fn subscribe(&self) -> watch::Receiver<Stat> {
        self.updates.subscribe()
    }
}

fn key_of(meter: &Arc<Meter>) -> usize {
    Arc::as_ptr(meter) as usize
}

fn global(inner: &Inner) -> Stat {
    let mut stat = Stat {
        total_sent: inner.retired_sent,
        total_recv: inner.retired_recv,
        current_inflow: inner.global_in.rate(),
        current_outflow: inner.global_out.rate(),
        unacked: None,
    };
    for t in inner.live.values() {
        stat.total_sent += t.meter.total_sent();
        stat.total_recv += t.meter.total_recv();
    }
    stat
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn global_includes_retired_meters_and_exact_rates() {
        let r = Registry::new(StatsConfig::new(0.5, Duration::from_secs(1)).unwrap());
        let a = r.register();
        let b = r.register();
        a.add_sent(400);
        b.add_recv(1000);
        r.refresh(Duration::from_millis(500));
        assert_eq!(a.stat().current_outflow, 400); // 0.5 × 800 B/s
        assert_eq!(b.stat().current_inflow, 1000); // 0.5 × 2000 B/s
        let g = r.global_stat();
        assert_eq!((g.total_sent, g.total_recv), (400, 1000));
        assert_eq!((g.current_outflow, g.current_inflow), (400, 1000));

        r.retire(&b);
        r.retire(&b);
        assert_eq!(r.live(), 1);
        a.add_sent(100);
        let g = r.global_stat();
        assert_eq!((g.total_sent, g.total_recv), (500, 1000));
        r.refresh(Duration::from_secs(1));
        // Global inflow decays: nothing received in that second.
        assert_eq!(r.global_stat().current_inflow, 500);
        assert_eq!(b.stat().current_inflow, 0);
    }

    /// A retired meter's totals, both of them, stay in the global figures; `live` counts the
    /// meters still tracked; the registry keeps the configuration it was made with.
    #[test]
    fn retiring_keeps_both_totals_and_live_counts() {
        let config = StatsConfig::new(0.25, Duration::from_millis(300)).unwrap();
        let r = Registry::new(config);
        assert_eq!(r.config(), config);
        assert_eq!(r.live(), 0);
        let (a, b) = (r.register(), r.register());
        assert_eq!(r.live(), 2);
        a.add_sent(7);
        a.add_recv(11);
        b.add_sent(3);
        r.retire(&a);
        assert_eq!(r.live(), 1);
        let g = r.global_stat();
        assert_eq!((g.total_sent, g.total_recv), (10, 11));
        r.retire(&b);
        assert_eq!(r.live(), 0);
        let g = r.global_stat();
        assert_eq!((g.total_sent, g.total_recv), (10, 11));
    }

    #[test]
    fn subscribers_see_each_refresh() {
        let r = Registry::new(StatsConfig::default());
        let mut rx = r.subscribe();
        let m = r.register();
        m.add_recv(5000);
        r.refresh(Duration::from_secs(1));
        assert!(rx.has_changed().unwrap());
        let s = *rx.borrow_and_update();
        assert_eq!(s.total_recv, 5000);
        assert_eq!(s.current_inflow, 1000);
    }
}
