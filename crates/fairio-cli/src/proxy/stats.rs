//! The periodic stats lines: rates measured over the interval just ended, from byte totals, so
//! that they track what really flowed (the library's moving averages lag by seconds).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use fairio::{GroupsBy, Policy, Scheduler};
use tokio::time::Instant;

use crate::rate::human;

/// Totals at the previous tick: per client, and for the whole proxy.
#[derive(Debug, Default)]
struct Previous {
    clients: HashMap<u64, (u64, u64)>,
    global: (u64, u64),
}

/// Bytes per second of `now - before` over `secs`.
fn per_sec(now: u64, before: u64, secs: f64) -> f64 {
    now.saturating_sub(before) as f64 / secs
}

/// Prints a line per client and a global line every `every`, until the task is aborted.
pub(super) async fn print<P: Policy>(
    sched: Scheduler<P>,
    hosts: Option<GroupsBy<(Arc<str>, IpAddr), P>>,
    every: Duration,
) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    let mut last = Instant::now();
    let mut prev = Previous::default();
    let g = sched.global_stat();
    prev.global = (g.total_sent, g.total_recv);
    loop {
        tick.tick().await;
        let now = Instant::now();
        let secs = (now - last).as_secs_f64().max(1e-3);
        last = now;
        let mut clients = HashMap::new();
        sched.iter_connection(|c| {
            let s = c.stat();
            // A client that joined during the interval moved all its bytes within it.
            let (sent0, recv0) = prev.clients.get(&c.id()).copied().unwrap_or((0, 0));
            println!(
                "client {:>5}: to client {}/s ({} total), from client {}/s ({} total)",
                c.id(),
                human(per_sec(s.total_sent, sent0, secs)),
                human(s.total_sent as f64),
                human(per_sec(s.total_recv, recv0, secs)),
                human(s.total_recv as f64)
            );
            clients.insert(c.id(), (s.total_sent, s.total_recv));
        });
        let g = sched.global_stat();
        let from = hosts
            .as_ref()
            .map(|h| format!(" in {} host groups", h.len()))
            .unwrap_or_default();
        println!(
            "global: {} clients{from}, to clients {}/s ({} total), from clients {}/s ({} total)",
            clients.len(),
            human(per_sec(g.total_sent, prev.global.0, secs)),
            human(g.total_sent as f64),
            human(per_sec(g.total_recv, prev.global.1, secs)),
            human(g.total_recv as f64)
        );
        prev = Previous {
            clients,
            global: (g.total_sent, g.total_recv),
        };
    }
}
