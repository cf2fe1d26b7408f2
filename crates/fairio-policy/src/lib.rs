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
//! | [`WindowQuota`] | `()` | Tezos's 1 s window quota, for comparison |
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
//! // One second at 64 KiB/s, plus at most the documented burst.
//! assert!(moved <= 64 * 1024 + fairio_policy::tuning::burst(NonZeroU64::new(64 * 1024).unwrap()));
//! assert!(moved >= 64 * 1024);
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
//!   its share of the limit over a 10 ms horizon ([`tuning::GRANT_HORIZON_NANOS`]), and a grant
//!   is at most `max(floor, share × 10 ms)`, with a floor of [`tuning::GRANT_FLOOR`] = 512
//!   bytes and a ceiling of [`tuning::MAX_GRANT`] = 64 KiB. With 64 connections at 1 MiB/s, a
//!   grant is 512 bytes, not 16 KiB, so every connection moves several times in every 250 ms.
//!   Weights scale the quantum; the lightest connection always gets at least the floor per turn,
//!   so every turn ends in a grant (O(1)), and heavier connections take several consecutive
//!   grants, which keeps proportions exact.
//! - **New-flow lane.** A connection that becomes backlogged is served before the others, for
//!   one turn, and then joins the back of the round. A sparse connection (one small message now
//!   and then) therefore waits for at most the grant under way, not for a whole round; a
//!   connection that joins a saturated set gets its share at once.
//! - **No stored-up burst.** A connection that turns idle leaves the round and loses its
//!   deficit.
//! - **Work-conserving water-filling.** Only backlogged connections take turns, so one that
//!   wants less than its share gets what it wants and the rest goes round the others. A
//!   connection held by its own cap ([`Arbiter::insert`]'s `cap`, a governor limiter per
//!   connection) is parked until its cap allows, and its share goes to the others meanwhile.
//! - **Global rate.** Every grant is checked with governor's `check_n` on a
//!   [`governor::clock::Clock`] that reads the arbiter's `now`, never a real clock. The GCRA's
//!   burst is at least the largest grant, so `InsufficientCapacity` cannot occur. Over any
//!   window of `T`, at most `limit × T + B` bytes are granted, with
//!   `B` = [`tuning::burst`] ≤ `max(64 KiB, limit × 50 ms)`.
//! - **Run-time changes.** A new limit replaces the GCRA with one that starts with the burst
//!   that was available (no fresh burst, no stall), and applies at the next decision; the
//!   scheduler wakes its dispatcher so that no wait computed at the old rate survives. Weights
//!   and caps apply from the connection's next grant.
//! - **No limit, no cost.** With no global limit the scheduler does not consult the arbiter at
//!   all: no timer and no shared lock.
//!
//! # Measured: the Tezos window quota against DRR
//!
//! [`WindowQuota`] reproduces Tezos's algorithm. It is not expected to pass the fairness
//! properties; the same simulated scenarios were run on it and on [`EqualShare`] (test
//! `tests/compare.rs`, `cargo test -p fairio-policy --test compare -- --nocapture`):
//!
//! WINDOW_TABLE
#![forbid(unsafe_code)]
#![warn(missing_docs, missing_debug_implementations)]

mod cap;
mod clock;
mod drr;
mod equal;
mod gcra;
mod lanes;
mod policy;
mod slab;
pub mod tuning;
mod weight;
mod weighted;
mod window;

pub use drr::{Drr, FlowWeight};
pub use equal::EqualShare;
pub use policy::{Arbiter, Decision, Policy};
pub use slab::Key;
pub use weight::{Weight, ZeroWeight};
pub use weighted::Weighted;
pub use window::{WindowArbiter, WindowQuota};
