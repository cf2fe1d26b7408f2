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
//! # The algorithm: deficit round robin with a new-flow lane
//!
//! [`EqualShare`] and [`Weighted`] share one engine, [`Drr`]: deficit round robin (Shreedhar
//! and Varghese) over the backlogged connections, with the sparse-flow lane of FQ-CoDel, under a
//! global GCRA limit from governor.
//!
//! - **Why DRR, not start-time fair queueing.** Both give max-min fair shares. DRR decides in
//!   O(1) per grant (a deque rotation and a few additions), while SFQ keeps a priority queue of
//!   virtual start times, O(log n) per grant, and needs care with virtual time as connections
//!   come and go. DRR's unfairness is bounded by one quantum per round, and we make the
//!   quantum small (below), so DRR is fair in short windows too.
//! - **Quantum and grant size shrink with the share.** Each turn adds to a connection's deficit
//!   its share of the limit over a 5 ms horizon ([`tuning::GRANT_HORIZON_NANOS`]), and a grant
//!   is one turn: `w × max(⌈floor / w_min⌉, limit × 5 ms / W)` for a connection of weight `w`,
//!   with `W` and `w_min` the held sum of weights and smallest weight (below), at most 64 KiB
//!   ([`tuning::MAX_GRANT`]). The floor ([`tuning::floor`]) is 512 bytes at limits of 2 MiB/s
//!   and up, and 250 µs of the limit below that (at least 16 bytes), so at most 4,000
//!   floor-sized grants are made per second. With 64 connections at 1 MiB/s a grant is 262
//!   bytes, not 16 KiB, and every connection moves several times in every 250 ms. The floor
//!   scales with the weight relative to the lightest connection, so that a turn is always one
//!   grant and proportions stay exact in short windows; every turn ends in a grant (O(1)). A
//!   turn is `w` times one per-weight amount, rounded once, so rounding does not skew
//!   proportions either (at 64 KiB/s a turn is a few dozen bytes, where rounding each turn on
//!   its own would cost a light connection several per cent).
//! - **Held weights.** Turns are sized when they are topped up, so they must not depend on
//!   when that is. Connections that want less than their share (a slow consumer at the far end,
//!   a sparse sender) leave the round whenever their turn finds them with nothing to move, and
//!   come back as soon as they have: the sum of active weights dips and recovers many times a
//!   second, and with turns sized from the momentary sum, whoever happened to be topped up
//!   during a dip got a larger turn (measured: backlogged connections of weights 1 and 2 beside
//!   a slow one got 0.86 and 1.07 of their shares). So `W` and `w_min` are held
//!   ([`tuning::WEIGHT_HOLD_NANOS`]): `W` is the largest sum of weights of the backlogged
//!   connections seen in the current and the previous second, and `w_min` the smallest weight;
//!   a rise shows at once, a fall only once a whole second has passed without the old peak.
//!   Within a round every turn is then the same multiple of its weight, and backlogged
//!   connections move in exact proportion whatever the others do. The cost is only that turns
//!   stay smaller (more, smaller grants) for 1 to 2 s after connections leave for good; the
//!   limit is used in full meanwhile, since only the size of a turn depends on `W`, never
//!   whether there is one. Holding costs O(1): two values per period, kept from the arbiter's
//!   `now`.
//! - **Share credit.** A connection's use is tracked against its share (a credit refilled at its
//!   share rate, holding at most one grant). Only a connection not in debt may use the
//!   new-flow lane: one that empties its queue between bursts above its share cannot jump the
//!   round each time it comes back.
//! - **New-flow lane.** A connection that becomes backlogged is served before the others, for
//!   one turn, and then joins the back of the round. A sparse connection (one small message now
//!   and then) therefore waits for at most the grant under way, not for a whole round; a
//!   connection that joins a saturated set gets its share at once.
//! - **No stored-up burst.** A connection that turns idle leaves the round and loses its
//!   deficit.
//! - **Work-conserving water-filling.** Only backlogged connections take turns, so one that
//!   wants less than its share gets what it wants and the rest goes round the others. A
//!   connection held by its own cap ([`Arbiter::insert`]'s `cap`, a governor limiter per
//!   connection) is parked until its cap allows, and its turns go to the others meanwhile. A
//!   cap holds up to 250 ms of budget while its connection waits for its turn (but no more than
//!   two grants' worth after idling), so that round-robin does not waste it.
//! - **No burst at start.** A new limit (a new scheduler, or a limit where there was none)
//!   starts with 5 ms of budget, not a full burst; the burst builds up only while the limit is
//!   not used in full.
//! - **Global rate.** Every grant is checked with governor's `check_n` on a
//!   [`governor::clock::Clock`] that reads the arbiter's `now`, never a real clock. The GCRA's
//!   burst is at least the largest grant, so `InsufficientCapacity` cannot occur. Over any
//!   window of `T`, at most `limit × T + B` bytes are granted, with
//!   `B` = [`tuning::burst`] ≤ `max(64 KiB, limit × 50 ms)`.
//! - **Run-time changes.** A new limit replaces the GCRA with one that starts with the burst
//!   that was available (no fresh burst, no stall), and applies at the next decision; the
//!   scheduler wakes its budget timer so that no wait computed at the old rate survives. A limit
//!   newly imposed (none before) starts with an empty budget: connections take permits as they
//!   ask, so a budget there at the start would go to whoever asked first. Weights and caps
//!   apply from the connection's next grant.
//! - **A turn starts when it is granted.** A decision that ends in a wait for the global budget
//!   leaves the connection at the head of the round with its turn not yet reckoned: its
//!   quantum is computed when the budget comes, among the connections active then.
//! - **No limit, no cost.** With no global limit the scheduler does not consult the arbiter at
//!   all: no timer and no shared lock.
//!
//! # Measured: the Tezos window quota against DRR
//!
//! [`WindowQuota`] reproduces Tezos's algorithm. It is not expected to pass the fairness
//! properties; the same simulated scenarios were run on it and on [`EqualShare`] (test
//! `tests/compare.rs`, `cargo test -p fairio-policy --test compare -- --nocapture`):
//!
//! | measure | EqualShare | WindowQuota (Tezos) |
//! |---|---|---|
//! | newcomer reaches 90% of its share (8 conns, 1 MiB/s) | 0 ms | 0 ms |
//! | sparse conn delay p50 / p99 / max (64 conns, 16 MiB/s) | 0.00 / 0.01 / 0.01 ms | 490.00 / 980.00 / 990.00 ms |
//! | worst excess over the limit in 100 ms (1 MiB/s) | 5183 B | 943719 B |
//! | limit 4 → 1 MiB/s: until the 250 ms rate is within 10% | 0 ms | never (5 s) |
//! | smallest Jain index, 250 ms windows (64 conns, 1 MiB/s) | 0.9990 | 0.2500 |
//!
//! Tezos's window quota gives each connection a chunk in turn (here 64 KiB), spends a whole
//! second's budget at the start of each window, and ranks connections by a quota computed from
//! a moving average that lags by seconds; hence its bursts, its unfairness in short windows
//! and its long delays for small messages. DRR's burst is bounded by `B`
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
