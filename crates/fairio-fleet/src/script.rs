//! The lease script in Redis, and the calls that run it.

use redis::aio::MultiplexedConnection;

use crate::table::{Report, Terms, Verdict};

/// The script: the same rule as [`decide`](crate::table::decide).
pub const LEASE_SCRIPT: &str = include_str!("lease.lua");

/// A budget's keys in one direction. The `{…}` hash tag keeps both on one Redis Cluster slot.
#[derive(Clone, Debug)]
pub struct Keys {
    members: String,
    epoch: String,
}

impl Keys {
    /// The keys of budget `budget` in direction `way` (`"up"` or `"down"`).
    pub fn new(budget: &str, way: &str) -> Self {
        Self {
            members: format!("fairio:{{{budget}}}:{way}:members"),
            epoch: format!("fairio:{{{budget}}}:{way}:epoch"),
        }
    }
}

/// Runs the lease script once: records `report` and returns the member's lease. `now_ms`
/// replaces Redis's clock (`None`: Redis's `TIME`, as members use it); for tools and tests that
/// drive the rule themselves.
///
/// # Errors
/// The Redis error.
///
/// # Cancel safety
/// Redis runs the script whole or not at all; if the future is dropped after sending, the
/// report may or may not have been recorded.
pub async fn report_at(
    conn: &mut MultiplexedConnection,
    keys: &Keys,
    report: &Report<'_>,
    terms: &Terms,
    now_ms: Option<u64>,
) -> redis::RedisResult<Verdict> {
    let script = redis::Script::new(LEASE_SCRIPT);
    let out: Vec<i64> = script
        .key(&keys.members)
        .key(&keys.epoch)
        .arg(report.member)
        .arg(report.weight)
        .arg(report.demand)
        .arg(report.holding)
        .arg(report.last_epoch.map(|e| e.to_string()).unwrap_or_default())
        .arg(report.expected)
        .arg(terms.capacity)
        .arg(terms.ttl_ms)
        .arg(terms.floor)
        .arg(now_ms.map(|t| t.to_string()).unwrap_or_default())
        .invoke_async(conn)
        .await?;
    let get = |i: usize| u64::try_from(out.get(i).copied().unwrap_or(0)).unwrap_or(0);
    Ok(Verdict {
        lease: get(0),
        target: get(1),
        live: u32::try_from(get(2)).unwrap_or(u32::MAX),
        epoch: get(3),
    })
}

/// Runs the script for `report` on Redis's clock.
pub(crate) async fn report(
    conn: &mut MultiplexedConnection,
    keys: &Keys,
    report: &Report<'_>,
    terms: &Terms,
) -> redis::RedisResult<Verdict> {
    report_at(conn, keys, report, terms, None).await
}

/// Loads the lease script into Redis's script cache, so that reports run it by its hash in one
/// round trip (a report still loads it itself if Redis has lost it).
///
/// # Errors
/// The Redis error.
pub(crate) async fn load(conn: &mut MultiplexedConnection) -> redis::RedisResult<()> {
    redis::Script::new(LEASE_SCRIPT)
        .prepare_invoke()
        .load_async(conn)
        .await
        .map(drop)
}

/// Removes a member's entry.
pub(crate) async fn remove(
    conn: &mut MultiplexedConnection,
    keys: &Keys,
    member: &str,
) -> redis::RedisResult<()> {
    redis::cmd("HDEL")
        .arg(&keys.members)
        .arg(member)
        .query_async(conn)
        .await
}
