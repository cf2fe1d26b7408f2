//! Bandwidth-sharing policies for fairio: who may move how many bytes next, and when.
//!
//! A [`Policy`] is chosen at build time, as the scheduler's type parameter. For each direction
//! the scheduler gets an [`Arbiter`] from it: a deterministic state machine that never reads a
//! clock (every call takes `now`), so that the properties below are checked on a virtual clock.
//!
//! | policy | per-connection params | sharing |
//! |---|---|---|
//! | [`EqualShare`] | `()` | max-min fair, equal shares |
//! | [`Weighted`] | [`Weight`] | max-min fair, shares in proportion to weight |
//! | [`WindowQuota`] | `()` | Tezos's 1 s window quota, for comparison (flat: no groups) |
//!
//! Connections can be put in groups ([`Arbiter::insert_group`]): per host, per peer, per
//! tenant; and groups in groups ([`Arbiter::insert_group_in`]), as deep as needed (class ->
//! address -> connection, say). Both fair policies, [`EqualShare`] and [`Weighted`] (and
//! [`Hierarchical`], which is [`Weighted`] under the name of its tree), share like Linux HTB
//! ([`Htb`]): each node has a weight, an optional guarantee and an optional ceiling (its cap),
//! all changeable at run time, and the tree is max-min fair and work-conserving at every level:
//! guarantees first, then the rest by weight, each up to its ceiling; what a node cannot use
//! goes to its siblings, then upward (the rule is stated on [`Htb`], and checked against an
//! independent oracle in `tests/htb`). A connection added without a group is a child of the
//! root: the flat behaviour below is unchanged. Each grant is a grant horizon's worth of the
//! connection's share (the horizon's bytes of the limit, split by weight at every level), so
//! small shares move in small grants.
//!
//! [`Tree`], the two-level deficit round robin the fair policies used before, stays available
//! as an arbiter of its own.
//!
//! ```
//! use std::num::NonZeroU64;
//! use std::time::{Duration, Instant};
//! use fairio_policy::{Arbiter, Decision, EqualShare, Policy};
//!
//! let t0 = Instant::now();
//! let mut upload = EqualShare.arbiter(NonZeroU64::new(64 * 1024), t0); // 64 KiB/s
//! let conn = upload.insert((), None, t0);
//! upload.set_demand(conn, 1_000_000, t0);
//! let mut moved = 0;
//! let mut now = t0;
//! while now < t0 + Duration::from_secs(1) {
//!     match upload.next(now) {
//!         Decision::Grant { bytes, .. } => moved += bytes,
//!         Decision::Wait { until } => now = until,
//!         Decision::Idle => break,
//!     }
//! }
//! // One second at 64 KiB/s, plus at most the documented burst; a new limit starts with an
//! // empty budget, so the grant due at the second's end is not in it.
//! let limit = NonZeroU64::new(64 * 1024).unwrap();
//! assert!(moved <= 64 * 1024 + fairio_policy::tuning::burst(limit));
//! assert!(moved + fairio_policy::tuning::grant_max(limit) >= 64 * 1024);
//! ```
//!
//! # The algorithm: a tree of start-time fair queues, like Linux HTB
//!
//! [`EqualShare`] and [`Weighted`] share one engine, [`Htb`] (the rule it follows is stated
//! there). Each group keeps its children with bytes to move in heaps; each decision walks from
//! the root to a leaf, taking at each level the child most behind, and the global limit is a
//! pace of its own (a GCRA on the arbiter's `now`, never a real clock).
//!
//! - **Why start-time fair queueing, not deficit round robin.** Both give max-min fair shares;
//!   DRR decides in O(1), SFQ in O(log n) per level. But DRR's round lives at one level: the
//!   two-level [`Tree`] the fair policies used before nested a round inside a round, and went
//!   no deeper. Virtual times compose: each group orders its own children by theirs, so the
//!   tree nests as deep as groups do, with guarantees and ceilings at any node.
//! - **Grants sized to the share.** A grant is the connection's share of 5 ms of the limit
//!   ([`tuning::GRANT_HORIZON_NANOS`]): the limit's bytes over that horizon, split by weight
//!   among the children with bytes to move at each level on the way down, within
//!   [the floor](tuning::floor) (512 bytes at 2 MiB/s and up, 250 µs of the limit below, at
//!   least 16 bytes) and [`tuning::MAX_GRANT`]. With 64 connections at 1 MiB/s a grant is 262
//!   bytes, and every connection moves several times in every 250 ms; a small share moves in
//!   small grants, so it stays fair in short windows.
//! - **A lane for connections back from idle.** A connection (or group) that gets bytes to move
//!   again starts at its group's virtual clock, so it neither catches up on the time it rested
//!   nor falls behind; it goes first among the children at that clock, and if its last grant
//!   left it just ahead of the clock it is still let through at it. A sparse connection (one
//!   small message now and then) thus waits for the grant under way, not for a round. It is
//!   charged from its own virtual time, and such a turn does not move the clock, so going idle
//!   and back gains it at most one grant.
//! - **Work-conserving water-filling.** Only children with bytes to move are queued, so one that
//!   wants less than its share gets what it wants and the rest goes to its siblings, then
//!   upward. A child held by its ceiling (its cap) is passed over until the ceiling has room,
//!   and its turns go to the others meanwhile. A ceiling keeps up to 50 ms of what it could
//!   have let through while its node waited its turn (only its 5 ms tolerance after idle).
//! - **Guarantees first.** Among siblings, those still owed guaranteed bytes go first, in
//!   proportion to their guarantees when they do not all fit.
//! - **No burst at start.** A new limit (a new scheduler, or a limit where there was none)
//!   starts with an empty budget: connections take permits as they ask, so a budget there at
//!   the start would go to whoever asked first. Over any window of `T`, at most
//!   `limit × T + B` bytes are granted, with `B` = [`tuning::burst`] ≤
//!   `max(64 KiB, limit × 50 ms)`.
//! - **Run-time changes.** A new limit keeps the budget that was available (no fresh burst, no
//!   stall) and applies at the next decision; the scheduler wakes its budget timer so that no
//!   wait computed at the old rate survives. Weights, caps and guarantees apply from the
//!   connection's next grant.
//! - **No limit, no cost.** With no global limit the scheduler does not consult the arbiter at
//!   all: no timer and no shared lock.
//!
//! [`Drr`] and [`Tree`], the deficit round robin under a governor GCRA that the fair policies
//! used before, stay in the crate as arbiters of their own.
//!
//! # Measured: the Tezos window quota against the fair policies
//!
//! [`WindowQuota`] reproduces Tezos's algorithm. It is not expected to pass the fairness
//! properties; the same simulated scenarios were run on it and on [`EqualShare`] (test
//! `tests/compare.rs`, `cargo test -p fairio-policy --test compare -- --nocapture`):
//!
//! | measure | EqualShare | WindowQuota (Tezos) |
//! |---|---|---|
//! | newcomer reaches 90% of its share (8 conns, 1 MiB/s) | 0 ms | 0 ms |
//! | sparse conn delay p50 / p99 / max (64 conns, 16 MiB/s) | 0.00 / 0.01 / 0.01 ms | 490.00 / 980.00 / 990.00 ms |
//! | worst excess over the limit in 100 ms (1 MiB/s) | 655 B | 943719 B |
//! | limit 4 → 1 MiB/s: until the 250 ms rate is within 10% | 0 ms | never (5 s) |
//! | smallest Jain index, 250 ms windows (64 conns, 1 MiB/s) | 0.9990 | 0.2500 |
//!
//! Tezos's window quota gives each connection a chunk in turn (here 64 KiB), spends a whole
//! second's budget at the start of each window, and ranks connections by a quota computed from
//! a moving average that lags by seconds; hence its bursts, its unfairness in short windows
//! and its long delays for small messages. The fair policies' burst is bounded by `B`
//! ([`tuning::burst`], at most 64 KiB at 1 MiB/s). In the newcomer scenario both give the newcomer its
//! share at once: with equal chunks, Tezos's first-in-first-out queue is a round robin.
#![forbid(unsafe_code)]
#![warn(missing_docs, missing_debug_implementations)]

mod cap;
mod class;
mod clock;
mod drr;
mod equal;
mod gcra;
mod held;
mod hierarchical;
mod htb;
mod lanes;
mod members;
mod policy;
mod slab;
#[cfg(test)]
mod steps;
mod tree;
pub mod tuning;
mod weight;
mod weighted;
mod window;

pub use class::{Class, ClassError};
pub use drr::{Drr, FlowWeight};
pub use equal::EqualShare;
pub use hierarchical::Hierarchical;
pub use htb::Htb;
pub use policy::{Arbiter, Decision, Policy};
pub use slab::Key;
pub use tree::Tree;
pub use weight::{Weight, ZeroWeight};
pub use weighted::Weighted;
pub use window::{WindowArbiter, WindowQuota};
