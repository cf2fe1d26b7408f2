//! The lease rule, as a pure function over a budget's table: what the Lua script does in
//! Redis, written in Rust so that properties can be checked on it (a test runs both on the same
//! inputs).
//!
//! A member reports its weight, its demand and what it *holds* (the limit it enforces now).
//! Its lease is its fair target, but never more than the capacity minus what the other live
//! members may be using: for each, the larger of what it last said it holds and the lease it
//! was last given. So a lease that grows waits for the others to report that they have shrunk,
//! and at every decision the sum over live members of max(held, leased) stays within the
//! capacity. A new table (the first, or one that replaced a table Redis lost) warms up: for one
//! TTL, or until as many members as the reporter expects have reported, no lease grows beyond
//! what its member holds, since members the table does not know yet may still hold leases of
//! the old one.

use std::collections::BTreeMap;

use crate::share::{Want, targets};

/// One member's entry.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Record {
    /// Its weight.
    pub weight: f64,
    /// The rate it could use, as it last reported.
    pub demand: f64,
    /// The limit it enforced when it last reported.
    pub holding: f64,
    /// The lease it was given then.
    pub lease: f64,
    /// When the entry lapses (ms): the member is then dead to the others.
    pub expires: u64,
}

/// A budget's state in one direction.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Table {
    /// The table's epoch (ms at its creation); `None` before the first report, or after Redis
    /// lost everything.
    pub epoch: Option<u64>,
    /// Until when leases may not grow (ms).
    pub warm_until: u64,
    /// The entries, by member name.
    pub members: BTreeMap<String, Record>,
}

/// What a member sends.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Report<'a> {
    /// Its name in the budget.
    pub member: &'a str,
    /// Its weight.
    pub weight: f64,
    /// The rate it could use now.
    pub demand: f64,
    /// The limit it enforces now.
    pub holding: f64,
    /// The epoch it last saw, if any.
    pub last_epoch: Option<u64>,
    /// How many members it expects: a new table's warm-up ends once that many have reported.
    pub expected: u32,
}

/// The budget's terms.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Terms {
    /// The fleet limit, bytes per second.
    pub capacity: f64,
    /// How long an entry lives after its report (ms).
    pub ttl_ms: u64,
    /// The smallest demand counted: an idle member keeps a lease it can show demand with.
    pub floor: f64,
}

/// What the member gets back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Verdict {
    /// Its lease, bytes per second.
    pub lease: u64,
    /// Its fair target (what it will get once the others have made room).
    pub target: u64,
    /// The live members, itself included.
    pub live: u32,
    /// The table's epoch.
    pub epoch: u64,
}

/// Records `report` at `now` (ms) and decides the member's lease.
pub fn decide(table: &mut Table, now: u64, report: &Report<'_>, terms: &Terms) -> Verdict {
    let epoch = match table.epoch {
        Some(e) => e,
        None => {
            // A new table: the first ever, or one that replaced a lost one, which members it
            // does not know yet may hold leases of.
            table.epoch = Some(now);
            table.warm_until = now + terms.ttl_ms;
            now
        }
    };
    // A member that knew another epoch: the table was lost, and members it does not know may
    // hold leases of the old one.
    if report.last_epoch.is_some_and(|e| e != epoch) {
        table.warm_until = table.warm_until.max(now + terms.ttl_ms);
    }
    table.members.retain(|_, r| r.expires > now);
    let others: Vec<(&String, &Record)> = table
        .members
        .iter()
        .filter(|(name, _)| name.as_str() != report.member)
        .collect();
    let mut wants: Vec<Want> = others
        .iter()
        .map(|(_, r)| Want {
            weight: r.weight,
            demand: r.demand.max(terms.floor),
        })
        .collect();
    wants.push(Want {
        weight: report.weight,
        demand: report.demand.max(terms.floor),
    });
    let target = *targets(terms.capacity, &wants).last().unwrap_or(&0.0);
    let used: f64 = others.iter().map(|(_, r)| r.holding.max(r.lease)).sum();
    let mut room = terms.capacity - used;
    if now < table.warm_until && others.len() + 1 < report.expected as usize {
        room = room.min(report.holding);
    }
    let lease = target.min(room).max(0.0).floor();
    let live = u32::try_from(others.len() + 1).unwrap_or(u32::MAX);
    table.members.insert(
        report.member.to_owned(),
        Record {
            weight: report.weight,
            demand: report.demand,
            holding: report.holding,
            lease,
            expires: now + terms.ttl_ms,
        },
    );
    Verdict {
        lease: lease as u64,
        target: target.floor() as u64,
        live,
        epoch,
    }
}
