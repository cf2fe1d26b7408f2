//! Many fairio processes share one bandwidth budget through Redis: fairly, and without
//! overshoot.
//!
//! Each process ([`Member`]) runs its own [`fairio::Scheduler`], which shares the process's
//! limit fairly among its connections. `fairio-fleet` sets that limit, per direction, from a
//! *lease*: every refresh interval (500 ms by default) the member reports to Redis what it
//! could use now, and one atomic Lua script computes max-min fair, weighted shares of the fleet
//! limit among the live members and returns this member's lease.
//!
//! ```no_run
//! # #[tokio::main]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let sched = fairio::Scheduler::new(fairio::Config::new(64 * 1024))?;
//! let member = fairio_fleet::Fleet::new("redis://127.0.0.1:6379/0", "uplink")
//!     .upload(Some(100 << 20)) // 100 MiB/s for the whole fleet
//!     .expected_members(4)     // 25 MiB/s each if Redis is gone
//!     .join(&sched)?;
//! // ... serve connections; the scheduler's upload limit follows the lease:
//! println!("{:?}", member.lease());
//! member.leave().await?; // the others take over its share at their next refresh
//! # Ok(())
//! # }
//! ```
//!
//! # How it works
//!
//! ```text
//!  member A ──report (weight, demand, holding)──▶ ┌──────────── Redis ────────────┐
//!           ◀─────────────lease─────────────────── │ lease.lua, atomic:            │
//!  member B ──report──▶ ... ◀──lease──            │  drop lapsed entries          │
//!                                                  │  targets = water-fill(limit)  │
//!  every refresh interval R, per direction         │  lease ≤ limit − Σ others'    │
//!                                                  │          max(holding, lease)  │
//!                                                  └───────────────────────────────┘
//! ```
//!
//! - **Demand.** A member that used 97% of its limit or more over the last interval is held
//!   back: it asks for the whole fleet limit. Otherwise it asks for the peak of what it moved
//!   in the last ten intervals, and 5% more. Every demand counts as at least a floor (0.5% of the limit, 1 KiB/s at least), so that an idle member keeps a small lease and shows new demand by filling it.
//! - **Targets** are weighted max-min fair (water-filling: a member gets at most its demand, the
//!   rest is split by weight); capacity left once every demand is met is split by weight as
//!   headroom.
//! - **No overshoot.** Each member's entry records what it *holds* (the limit it enforces when
//!   it reports) and the lease it was given. A member's lease is its target, but at most the
//!   limit minus, for every other live member, the larger of the two. A lease that shrinks is
//!   applied by its member as soon as it arrives; the room it frees goes to the others only
//!   once that member has reported holding less, one interval later. So at every script run
//!   the sum over live members of max(holding, lease) is at most the limit, and each member
//!   enforces at most that. A member's entry lapses one TTL after its report; a member applies
//!   a lease for one TTL from when it *sent* the report, so never after its entry has lapsed.
//! - **A member that dies** stops counting when its entry lapses: within one TTL (three
//!   intervals by default) the others may grow into its share.
//!
//! # Without Redis
//!
//! When a report fails (Redis unreachable, or no answer within half an interval), the member
//! lowers its limit at once to the smaller of its lease and its *safe share* (the fleet limit
//! divided by [`Fleet::expected_members`], or by the live members it last saw), and once its
//! last lease has lapsed it uses the safe share. It goes on trying every interval and follows
//! leases again as soon as Redis answers.
//!
//! That growth to the safe share waits one TTL because the TTL is at least two intervals and a
//! half (checked when joining): when one member's last lease lapses, every other member has
//! tried to report at least once since Redis went away, and has lowered its own limit to at
//! most its safe share. So while Redis is gone the total stays within the limit as long as
//! there are at most `expected_members` members.
//!
//! If Redis comes back *empty* (restarted without persistence), members it does not know yet
//! may still hold leases of the old table. A member that reports the epoch of an older table
//! starts a warm-up of one TTL during which no lease grows beyond what its member holds.
//!
//! Entries lapse by Redis's clock (`TIME`), and members count their leases on their own
//! monotonic clocks from when they sent their report. A step of the Redis host's wall clock
//! forward by `Δ` makes entries lapse `Δ` early: up to `min(Δ, T)` of overshoot while members
//! still use leases the table has dropped. Run Redis with a slewing clock (NTP, chrony).
//!
//! Leaving a fleet, or dropping a [`Member`], drops the scheduler's shared limits to 1 byte/s:
//! the others may take the share at once, so a process that goes on moving bytes after it left
//! would exceed the budget.
//!
//! # Worst cases
//!
//! With refresh interval `R`, TTL `T` (≥ 2.5 `R`), fleet limit `L`, `N` members and `E`
//! expected members:
//!
//! - **Overshoot:** none while Redis answers, but for 1 byte/s per member (a scheduler's limit
//!   is at least 1 byte/s, and a member with a lease of 0 keeps it). While Redis is gone: at most
//!   `max(0, N − E) × L / E`. A member cut off from Redis while the others still reach it uses
//!   its safe share on top of their leases: at most `L / E` per such member, until it is back
//!   or its entry has lapsed and the others' leases reflect it.
//! - **Under-use:** a member whose demand rises waits up to `R` to report it and up to `R` more
//!   for the others to report that they have shrunk: `2 R` (plus a round trip). A dead member's
//!   share is idle for up to `T + R`. Headroom: a light member holds 5% more than its
//!   peak over ten intervals, and an idle one 0.5% of `L`. During a warm-up after Redis lost its data, leases do not grow for `T`.
//!
//! # Beside a static split
//!
//! Running each of `N` processes at `L / N` wastes whatever the idle ones leave: one busy
//! process among four idle gets a fifth of the budget. A fleet gives it all but the idle
//! members' floors within `2 R`, and gives each its fair part back as they get busy, at the
//! cost of one Redis script call per member per direction per interval.
#![forbid(unsafe_code)]
#![warn(missing_docs, missing_debug_implementations)]

mod config;
mod error;
mod lane;
mod link;
mod member;
mod script;
pub mod share;
pub mod table;
#[cfg(feature = "test-util")]
pub mod testing;

pub use config::Fleet;
pub use error::Error;
pub use member::{DirLease, Lease, Member, Mode};
pub use script::{Keys, LEASE_SCRIPT, report_at};
