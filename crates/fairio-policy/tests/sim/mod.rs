//! A discrete-event simulation that drives an arbiter on a virtual clock, and the oracle the
//! properties are checked against. The oracle is computed here, independently of the policy.
#![allow(dead_code, unreachable_pub, missing_docs)]

pub mod checks;

use std::num::NonZeroU64;
use std::time::{Duration, Instant};

use fairio_policy::{Arbiter, Decision, EqualShare, Key, Policy, Weight, Weighted};

pub const MS: u64 = 1_000_000;
pub const SEC: u64 = 1_000_000_000;

/// What one connection wants.
#[derive(Clone, Debug)]
pub struct Conn {
    pub weight: u32,
    pub cap: Option<u64>,
    /// Bytes per second it produces; `None`: always backlogged.
    pub rate: Option<u64>,
    /// Size of each arriving chunk, for producers with a rate.
    pub chunk: u64,
    pub join: u64,
    pub leave: Option<u64>,
    /// A slow consumer at the far end: the connection always has bytes to send (`rate` must be
    /// `None`), but can move only as many as the consumer's buffer has room for.
    pub sink: Option<Sink>,
}

impl Conn {
    pub fn backlogged(weight: u32) -> Self {
        Self {
            weight,
            cap: None,
            rate: None,
            chunk: 1,
            join: 0,
            leave: None,
            sink: None,
        }
    }

    /// A sender with bytes always waiting, held back by a slow consumer, not by a cap: the
    /// arbiter only sees a connection with little demand.
    pub fn slow_consumer(weight: u32, sink: Sink) -> Self {
        Self {
            sink: Some(sink),
            ..Self::backlogged(weight)
        }
    }
}

/// A rate-limited consumer (a slow peer): a buffer of `buffer` bytes that its reader drains at
/// `rate` bytes/s, continuously, whenever it holds anything. The connection's demand is the free
/// room in the buffer. As a window update would, the room is told to the arbiter once it has
/// grown by `chunk` bytes since last told, or at once when the reader has emptied the buffer.
/// A reader that finds the buffer empty loses that time: it never reads faster than `rate`.
/// The buffer starts full (a peer that is behind already), so that the connection is held by
/// its reader from the start, not first by the time it takes to fill the buffer.
#[derive(Clone, Copy, Debug)]
pub struct Sink {
    pub rate: u64,
    pub buffer: u64,
    pub chunk: u64,
}

#[derive(Clone, Debug)]
pub struct Scenario {
    pub limit: u64,
    pub conns: Vec<Conn>,
    pub duration: u64,
    /// (time, new limit)
    pub limit_changes: Vec<(u64, u64)>,
}

#[derive(Debug, Default)]
pub struct Trace {
    /// (time, connection index, bytes)
    pub grants: Vec<(u64, usize, u64)>,
    /// Per connection, the intervals during which it had bytes waiting.
    pub backlog: Vec<Vec<(u64, u64)>>,
    /// Per connection, (arrival, time the arrival's last byte was granted).
    pub waits: Vec<Vec<(u64, u64)>>,
    /// Per slow consumer, (time, bytes its reader consumed so far, bytes in its buffer), at
    /// every step where either changed; the buffer drains at the sink's rate in between.
    pub drains: Vec<Vec<(u64, u64, u64)>>,
    /// Per connection, its sink's rate (0: no sink).
    pub drain_rates: Vec<u64>,
    pub duration: u64,
}

const INFINITE: u64 = u64::MAX / 4;

struct Live {
    key: Option<Key>,
    queued: u64,
    next_arrival: u64,
    backlog_since: Option<u64>,
    /// Arrivals not yet fully granted: (arrival time, bytes left of it).
    pending: std::collections::VecDeque<(u64, u64)>,
    /// A slow consumer's state: the demand the arbiter knows (its own, lowered by grants), the
    /// bytes in the buffer, the time the buffer was last drained to, the fraction of a byte
    /// (in byte·ns) drained beyond that, and the bytes consumed so far.
    told: u64,
    fill: u64,
    drained_at: u64,
    drain_rem: u128,
    consumed: u64,
}

impl Live {
    /// Drains a slow consumer's buffer at its rate up to `t`.
    fn drain(&mut self, sink: &Sink, t: u64) {
        let dt = t.saturating_sub(self.drained_at);
        self.drained_at = self.drained_at.max(t);
        if self.fill == 0 {
            self.drain_rem = 0;
            return;
        }
        let total = self.drain_rem + u128::from(sink.rate) * u128::from(dt);
        let can = total / u128::from(SEC);
        if can >= u128::from(self.fill) {
            self.consumed += self.fill;
            self.fill = 0;
            self.drain_rem = 0;
        } else {
            let can = u64::try_from(can).unwrap();
            self.fill -= can;
            self.consumed += can;
            self.drain_rem = total % u128::from(SEC);
        }
    }

    /// When a slow consumer's room next becomes worth telling: it has grown by a chunk since
    /// last told, or the buffer is empty. `None` if the buffer is empty already.
    fn next_window_update(&self, sink: &Sink) -> Option<u64> {
        if self.fill == 0 {
            return None;
        }
        let room = sink.buffer - self.fill;
        let need = (self.told + sink.chunk)
            .saturating_sub(room)
            .clamp(1, self.fill);
        let ns = (u128::from(need) * u128::from(SEC)).saturating_sub(self.drain_rem);
        let dt = ns.div_ceil(u128::from(sink.rate.max(1)));
        Some(self.drained_at + u64::try_from(dt).unwrap_or(INFINITE).max(1))
    }
}

/// Groups of connections: each group's weight and cap, and each connection's group (`None`:
/// a group of its own).
#[derive(Clone, Debug, Default)]
pub struct Groups {
    pub specs: Vec<(u32, Option<u64>)>,
    pub of: Vec<Option<usize>>,
}

/// Runs `scenario` on `arb` (made with the scenario's limit at `t0`).
pub fn run<A: Arbiter>(
    arb: &mut A,
    params: impl Fn(u32) -> A::Params,
    t0: Instant,
    s: &Scenario,
) -> Trace {
    run_grouped(arb, params, t0, s, &Groups::default())
}

/// Runs `scenario` on `arb` with its connections in `groups`.
pub fn run_grouped<A: Arbiter>(
    arb: &mut A,
    params: impl Fn(u32) -> A::Params,
    t0: Instant,
    s: &Scenario,
    groups: &Groups,
) -> Trace {
    let group_keys: Vec<Key> = groups
        .specs
        .iter()
        .map(|&(w, cap)| arb.insert_group(params(w), cap.and_then(NonZeroU64::new), t0))
        .collect();
    let at = |t: u64| t0 + Duration::from_nanos(t);
    let n = s.conns.len();
    let mut trace = Trace {
        backlog: vec![Vec::new(); n],
        waits: vec![Vec::new(); n],
        drains: vec![Vec::new(); n],
        drain_rates: s
            .conns
            .iter()
            .map(|c| c.sink.map_or(0, |k| k.rate))
            .collect(),
        duration: s.duration,
        ..Trace::default()
    };
    let mut live: Vec<Live> = s
        .conns
        .iter()
        .map(|c| Live {
            key: None,
            queued: 0,
            next_arrival: c.join,
            backlog_since: None,
            pending: Default::default(),
            told: 0,
            fill: 0,
            drained_at: 0,
            drain_rem: 0,
            consumed: 0,
        })
        .collect();
    for c in &s.conns {
        if let Some(k) = c.sink {
            assert!(
                c.rate.is_none() && k.rate > 0 && k.chunk > 0 && k.buffer >= k.chunk,
                "a slow consumer's sender is backlogged, and its sink drains: {c:?}"
            );
        }
    }
    let mut changes = s.limit_changes.clone();
    changes.sort();
    let mut next_change = 0;
    let mut t = 0u64;
    for step in 0..50_000_000u64 {
        assert!(
            step < 5_000_000,
            "the simulation made no progress in 5,000,000 steps"
        );
        // Events due now: limit changes, joins, leaves, arrivals.
        while next_change < changes.len() && changes[next_change].0 <= t {
            arb.set_limit(NonZeroU64::new(changes[next_change].1), at(t));
            next_change += 1;
        }
        for (i, c) in s.conns.iter().enumerate() {
            let l = &mut live[i];
            if l.key.is_none()
                && t >= c.join
                && c.leave.is_none_or(|e| t < e)
                && l.next_arrival != u64::MAX
            {
                let cap = c.cap.and_then(NonZeroU64::new);
                l.key = Some(match groups.of.get(i).copied().flatten() {
                    Some(g) => arb.insert_into(group_keys[g], params(c.weight), cap, at(t)),
                    None => arb.insert(params(c.weight), cap, at(t)),
                });
                if c.rate.is_none() {
                    l.queued = INFINITE;
                    match c.sink {
                        None => {
                            arb.set_demand(l.key.unwrap(), INFINITE, at(t));
                            l.backlog_since = Some(t);
                        }
                        Some(k) => {
                            l.drained_at = t;
                            l.fill = k.buffer;
                        }
                    }
                }
            }
            if let (Some(key), Some(e)) = (l.key, c.leave) {
                if t >= e {
                    arb.remove(key);
                    l.key = None;
                    l.next_arrival = u64::MAX;
                    if let Some(s0) = l.backlog_since.take() {
                        trace.backlog[i].push((s0, t));
                    }
                    continue;
                }
            }
            if let (Some(key), Some(rate)) = (l.key, c.rate) {
                while l.next_arrival <= t {
                    if l.queued == 0 {
                        l.backlog_since = Some(t);
                    }
                    l.queued += c.chunk;
                    l.pending.push_back((l.next_arrival, c.chunk));
                    l.next_arrival += (c.chunk * SEC / rate.max(1)).max(1);
                    arb.set_demand(key, l.queued, at(t));
                }
            }
            if let (Some(key), Some(sink)) = (l.key, c.sink) {
                l.drain(&sink, t);
                // Grants lower the told demand and the room alike, so room ≥ told.
                let room = sink.buffer - l.fill;
                if room > l.told && (room - l.told >= sink.chunk || l.fill == 0) {
                    arb.set_demand(key, room, at(t));
                    if l.told == 0 {
                        l.backlog_since = Some(t);
                    }
                    l.told = room;
                }
            }
        }
        // Grants until the arbiter says wait.
        let mut wake = u64::MAX;
        for _ in 0..1_000_000 {
            match arb.next(at(t)) {
                Decision::Grant { key, bytes } => {
                    let i = live
                        .iter()
                        .position(|l| l.key == Some(key))
                        .expect("grant to a live connection");
                    let l = &mut live[i];
                    assert!(
                        bytes > 0 && bytes <= l.queued,
                        "grant of {bytes} with {} queued",
                        l.queued
                    );
                    l.queued -= bytes;
                    if s.conns[i].sink.is_some() {
                        assert!(
                            bytes <= l.told,
                            "grant of {bytes} to a slow consumer with room for {}",
                            l.told
                        );
                        l.told -= bytes;
                        l.fill += bytes;
                        if l.told == 0 {
                            if let Some(s0) = l.backlog_since.take() {
                                trace.backlog[i].push((s0, t));
                            }
                        }
                    }
                    trace.grants.push((t, i, bytes));
                    let mut left = bytes;
                    while left > 0 {
                        let Some(front) = l.pending.front_mut() else {
                            break;
                        };
                        let take = left.min(front.1);
                        front.1 -= take;
                        left -= take;
                        if front.1 == 0 {
                            trace.waits[i].push((front.0, t));
                            l.pending.pop_front();
                        }
                    }
                    if l.queued == 0 {
                        if let Some(s0) = l.backlog_since.take() {
                            trace.backlog[i].push((s0, t));
                        }
                    }
                }
                Decision::Wait { until } => {
                    let u = u64::try_from(until.duration_since(t0).as_nanos()).unwrap();
                    assert!(
                        u > t,
                        "the arbiter asked to be woken at {u}, not after now ({t})"
                    );
                    wake = u;
                    break;
                }
                Decision::Idle => break,
            }
        }
        for (i, c) in s.conns.iter().enumerate() {
            let l = &live[i];
            if c.sink.is_some() && l.key.is_some() {
                let point = (t, l.consumed, l.fill);
                let d = &mut trace.drains[i];
                if d.last().is_none_or(|p| (p.1, p.2) != (point.1, point.2)) {
                    d.push(point);
                }
            }
        }
        let mut next = wake.min(s.duration);
        for (i, c) in s.conns.iter().enumerate() {
            let l = &live[i];
            if l.key.is_none() && l.next_arrival != u64::MAX && c.join > t {
                next = next.min(c.join);
            }
            if l.key.is_some() {
                if let Some(e) = c.leave {
                    next = next.min(e);
                }
                if c.rate.is_some() {
                    next = next.min(l.next_arrival);
                }
                if let Some(u) = c.sink.and_then(|k| l.next_window_update(&k)) {
                    next = next.min(u);
                }
            }
        }
        if next_change < changes.len() {
            next = next.min(changes[next_change].0);
        }
        if next >= s.duration {
            break;
        }
        t = next.max(t + if next <= t { 1 } else { 0 });
    }
    for (i, l) in live.iter_mut().enumerate() {
        if let Some(s0) = l.backlog_since.take() {
            trace.backlog[i].push((s0, s.duration));
        }
    }
    trace
}

/// Runs a scenario on EqualShare (weights ignored) or Weighted.
pub fn simulate(s: &Scenario, weighted: bool) -> Trace {
    let t0 = Instant::now();
    let limit = NonZeroU64::new(s.limit);
    if weighted {
        let mut arb = Weighted.arbiter(limit, t0);
        run(&mut arb, |w| Weight::new(w).unwrap(), t0, s)
    } else {
        let mut arb = EqualShare.arbiter(limit, t0);
        run(&mut arb, |_| (), t0, s)
    }
}

/// Runs a scenario with groups on EqualShare (weights ignored) or Weighted.
pub fn simulate_grouped(s: &Scenario, groups: &Groups, weighted: bool) -> Trace {
    let t0 = Instant::now();
    let limit = NonZeroU64::new(s.limit);
    if weighted {
        let mut arb = Weighted.arbiter(limit, t0);
        run_grouped(&mut arb, |w| Weight::new(w).unwrap(), t0, s, groups)
    } else {
        let mut arb = EqualShare.arbiter(limit, t0);
        run_grouped(&mut arb, |_| (), t0, s, groups)
    }
}

/// Two-level max-min fair shares, computed independently of the policy: the limit is
/// water-filled among the groups (a connection without a group is a group of its own) by
/// group weight, each group wanting at most its cap and what its members want; then each
/// group's part is water-filled among its members by their weights, each wanting at most its
/// cap and its rate.
pub fn tree_water_fill(limit: f64, s: &Scenario, groups: &Groups) -> Vec<f64> {
    let want = |c: &Conn| {
        c.rate
            .or(c.sink.map(|k| k.rate))
            .map_or(f64::INFINITY, |r| r as f64)
            .min(c.cap.map_or(f64::INFINITY, |k| k as f64))
    };
    let n = s.conns.len();
    // Units: each group, then each connection without one.
    let mut units: Vec<(f64, f64, Vec<usize>)> = groups
        .specs
        .iter()
        .map(|&(w, cap)| {
            (
                f64::from(w),
                cap.map_or(f64::INFINITY, |k| k as f64),
                Vec::new(),
            )
        })
        .collect();
    for i in 0..n {
        match groups.of.get(i).copied().flatten() {
            Some(g) => units[g].2.push(i),
            None => units.push((f64::from(s.conns[i].weight), f64::INFINITY, vec![i])),
        }
    }
    let demands: Vec<(f64, f64)> = units
        .iter()
        .map(|(w, cap, members)| {
            let sum: f64 = members.iter().map(|&i| want(&s.conns[i])).sum();
            (*w, sum.min(*cap))
        })
        .collect();
    let parts = water_fill(limit, &demands);
    let mut out = vec![0.0; n];
    for ((_, _, members), part) in units.iter().zip(parts) {
        let inner: Vec<(f64, f64)> = members
            .iter()
            .map(|&i| (f64::from(s.conns[i].weight), want(&s.conns[i])))
            .collect();
        for (&i, share) in members.iter().zip(water_fill(part, &inner)) {
            out[i] = share;
        }
    }
    out
}

/// Max-min fair shares by water-filling: each connection gets at most its demand, and the rest
/// is split in proportion to weight. `demands` are (weight, demand in bytes/s; infinite allowed).
pub fn water_fill(limit: f64, demands: &[(f64, f64)]) -> Vec<f64> {
    let mut alloc = vec![0.0; demands.len()];
    let mut open: Vec<usize> = (0..demands.len()).collect();
    let mut left = limit;
    while !open.is_empty() && left > 0.0 {
        let wsum: f64 = open.iter().map(|&i| demands[i].0).sum();
        let level = left / wsum;
        let (sat, rest): (Vec<usize>, Vec<usize>) = open
            .iter()
            .partition(|&&i| demands[i].1 <= level * demands[i].0);
        if sat.is_empty() {
            for &i in &open {
                alloc[i] = level * demands[i].0;
            }
            break;
        }
        for &i in &sat {
            alloc[i] = demands[i].1;
            left -= demands[i].1;
        }
        open = rest;
    }
    alloc
}

impl Trace {
    /// Per connection: its grants' times, and the running total of its bytes.
    pub fn index(&self) -> TraceIndex {
        let n = self.backlog.len();
        let mut times = vec![Vec::new(); n];
        let mut sums = vec![vec![0u64]; n];
        let mut largest = vec![0u64; n];
        for &(t, i, b) in &self.grants {
            times[i].push(t);
            let last = *sums[i].last().unwrap();
            sums[i].push(last + b);
            largest[i] = largest[i].max(b);
        }
        TraceIndex {
            times,
            sums,
            largest,
        }
    }

    /// Bytes granted to anyone in [a, b).
    pub fn total(&self, a: u64, b: u64) -> u64 {
        let i = self.grants.partition_point(|g| g.0 < a);
        let j = self.grants.partition_point(|g| g.0 < b);
        self.grants[i..j].iter().map(|g| g.2).sum()
    }

    /// Bytes slow consumer `i`'s reader consumed in [a, b) (to within a byte of rounding).
    pub fn consumed(&self, i: usize, a: u64, b: u64) -> u64 {
        self.consumed_by(i, b) - self.consumed_by(i, a)
    }

    /// Bytes slow consumer `i`'s reader consumed before `t`: from the last point at or before
    /// `t`, the buffer drained at the sink's rate until empty (no grant came in between).
    fn consumed_by(&self, i: usize, t: u64) -> u64 {
        let d = &self.drains[i];
        let k = d.partition_point(|p| p.0 <= t);
        if k == 0 {
            return 0;
        }
        let (t1, consumed, fill) = d[k - 1];
        let more = u128::from(self.drain_rates[i]) * u128::from(t - t1) / u128::from(SEC);
        consumed + u64::try_from(more).unwrap_or(u64::MAX).min(fill)
    }

    /// Whether connection `i` had bytes waiting throughout [a, b).
    pub fn backlogged(&self, i: usize, a: u64, b: u64) -> bool {
        self.backlog[i].iter().any(|&(s, e)| s <= a && e >= b)
    }
}

/// Per-connection lookups over a trace.
pub struct TraceIndex {
    times: Vec<Vec<u64>>,
    sums: Vec<Vec<u64>>,
    largest: Vec<u64>,
}

impl TraceIndex {
    /// Bytes granted to connection `i` in [a, b).
    pub fn bytes(&self, i: usize, a: u64, b: u64) -> u64 {
        let x = self.times[i].partition_point(|&t| t < a);
        let y = self.times[i].partition_point(|&t| t < b);
        self.sums[i][y] - self.sums[i][x]
    }

    /// The largest grant connection `i` received in the whole run.
    pub fn largest(&self, i: usize) -> u64 {
        self.largest[i]
    }
}

/// Jain's fairness index of some amounts.
pub fn jain(xs: &[f64]) -> f64 {
    let s: f64 = xs.iter().sum();
    let q: f64 = xs.iter().map(|x| x * x).sum();
    if q == 0.0 {
        1.0
    } else {
        s * s / (xs.len() as f64 * q)
    }
}
