//! [`Member`]: one process's part in a fleet budget, driving its scheduler's global limits.

use std::sync::atomic::{AtomicU64, Ordering};

use fairio::{Policy, Scheduler};
use redis::aio::MultiplexedConnection;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::script::{self, Keys};
use crate::table::{Report, Terms};
use crate::{Error, Fleet};

/// Where a member's lease in one direction comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Joined, no lease yet: the scheduler runs at the minimum.
    Starting,
    /// A lease from Redis is in force.
    Leased,
    /// Redis did not answer: the lease shrank to the safe share at once, and is the safe share
    /// once the last lease has expired.
    Fallback,
}

/// A member's lease in one direction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DirLease {
    /// The limit in force in this process, bytes per second.
    pub limit: u64,
    /// Its fair share of the fleet limit, as Redis last computed it.
    pub target: u64,
    /// The live members Redis last counted, this one included.
    pub live: u32,
    /// Where the limit comes from.
    pub mode: Mode,
}

/// A member's leases.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Lease {
    /// Upload, when the fleet shares it.
    pub upload: Option<DirLease>,
    /// Download, when the fleet shares it.
    pub download: Option<DirLease>,
}

/// A process's membership of a fleet budget: a task that reports this process's demand every
/// refresh interval and sets its scheduler's global limits from the leases it gets.
///
/// Dropping it stops the task; its entry in Redis lapses one TTL later (call
/// [`leave`](Self::leave) to give its share to the others at once). The scheduler keeps the
/// last limits set.
#[derive(Debug)]
pub struct Member {
    lease: watch::Receiver<Lease>,
    task: JoinHandle<()>,
    client: redis::Client,
    keys: Vec<Keys>,
    name: String,
}

static NEXT: AtomicU64 = AtomicU64::new(0);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Way {
    Up,
    Down,
}

/// One direction the member shares.
struct Lane {
    way: Way,
    keys: Keys,
    capacity: u64,
    /// When the lease in force lapses: the safe share applies after that.
    until: Instant,
    epoch: Option<u64>,
    last_total: u64,
    live: u32,
    state: DirLease,
}

impl Fleet {
    /// Joins the budget with `sched`: its global limits follow this member's leases from now
    /// on (starting at the minimum until the first lease, within one round trip to Redis).
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for bad settings, [`Error::Url`] for a bad Redis URL. An
    /// unreachable Redis is not an error: the member falls back to its safe share, and
    /// recovers when Redis answers.
    ///
    /// # Cancel safety
    /// Not async: nothing to cancel. The member's task runs on the current tokio runtime.
    pub fn join<P: Policy>(self, sched: &Scheduler<P>) -> Result<Member, Error> {
        self.check()?;
        let client = redis::Client::open(self.url.as_str())?;
        let name = self.name.clone().unwrap_or_else(|| {
            format!(
                "pid{}-{}-{}",
                std::process::id(),
                NEXT.fetch_add(1, Ordering::Relaxed),
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.subsec_nanos())
            )
        });
        let now = Instant::now();
        let stat = sched.global_stat();
        let mut lanes = Vec::new();
        for (way, capacity, total) in [
            (Way::Up, self.upload, stat.total_sent),
            (Way::Down, self.download, stat.total_recv),
        ] {
            let Some(capacity) = capacity else { continue };
            let lane = Lane {
                way,
                keys: Keys::new(&self.budget, if way == Way::Up { "up" } else { "down" }),
                capacity,
                until: now + self.lease_ttl(),
                epoch: None,
                last_total: total,
                live: 1,
                state: DirLease {
                    limit: 1,
                    target: 0,
                    live: 0,
                    mode: Mode::Starting,
                },
            };
            set_limit(sched, way, 1);
            lanes.push(lane);
        }
        let (tx, rx) = watch::channel(snapshot(&lanes));
        let keys = lanes.iter().map(|l| l.keys.clone()).collect();
        let task = tokio::spawn(drive(
            self,
            name.clone(),
            client.clone(),
            sched.clone(),
            lanes,
            tx,
        ));
        Ok(Member {
            lease: rx,
            task,
            client,
            keys,
            name,
        })
    }
}

impl Member {
    /// The leases now.
    pub fn lease(&self) -> Lease {
        *self.lease.borrow()
    }

    /// Follows the leases: a new value after every refresh that changed them.
    pub fn subscribe(&self) -> watch::Receiver<Lease> {
        self.lease.clone()
    }

    /// This member's name in the budget.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Leaves the budget: stops reporting and removes this member's entry, so that the others
    /// get its share at their next refresh rather than one TTL later. The scheduler keeps the
    /// last limits set.
    ///
    /// # Errors
    /// The Redis error, if the entry could not be removed (it then lapses after its TTL).
    ///
    /// # Cancel safety
    /// The task is stopped at the first poll; if the future is dropped before the removal,
    /// the entry lapses after its TTL.
    pub async fn leave(self) -> Result<(), redis::RedisError> {
        self.task.abort();
        let mut conn = self.client.get_multiplexed_async_connection().await?;
        for k in &self.keys {
            script::remove(&mut conn, k, &self.name).await?;
        }
        Ok(())
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn snapshot(lanes: &[Lane]) -> Lease {
    let mut lease = Lease::default();
    for l in lanes {
        match l.way {
            Way::Up => lease.upload = Some(l.state),
            Way::Down => lease.download = Some(l.state),
        }
    }
    lease
}

fn set_limit<P: Policy>(sched: &Scheduler<P>, way: Way, limit: u64) {
    match way {
        Way::Up => sched.set_max_upload_speed(Some(limit)),
        Way::Down => sched.set_max_download_speed(Some(limit)),
    }
}

fn limit_now<P: Policy>(sched: &Scheduler<P>, way: Way) -> Option<u64> {
    match way {
        Way::Up => sched.max_upload_speed(),
        Way::Down => sched.max_download_speed(),
    }
}

/// Applies a new limit: every shrink, and growth beyond half a per cent (a new limit starts a
/// new generation of grants, which costs a little every time).
fn apply<P: Policy>(sched: &Scheduler<P>, way: Way, limit: u64) {
    let limit = limit.max(1);
    let now = limit_now(sched, way).unwrap_or(u64::MAX);
    if limit < now || limit as f64 > now as f64 * 1.005 {
        set_limit(sched, way, limit);
    }
}

/// The demand a member reports: the whole fleet limit when it used 95% of its limit or more
/// (it is held back: it could use more), else what it moved and a tenth more, to grow into.
fn demand(moved_per_sec: f64, holding: u64, capacity: u64) -> f64 {
    if moved_per_sec >= 0.95 * holding as f64 {
        capacity as f64
    } else {
        moved_per_sec * 1.1
    }
}

async fn drive<P: Policy>(
    fleet: Fleet,
    name: String,
    client: redis::Client,
    sched: Scheduler<P>,
    mut lanes: Vec<Lane>,
    tx: watch::Sender<Lease>,
) {
    let mut conn: Option<MultiplexedConnection> = None;
    let mut tick = tokio::time::interval(fleet.refresh);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last = Instant::now();
    loop {
        tick.tick().await;
        let now = Instant::now();
        let secs = (now - last).as_secs_f64().max(1e-3);
        last = now;
        let stat = sched.global_stat();
        for lane in &mut lanes {
            let total = if lane.way == Way::Up {
                stat.total_sent
            } else {
                stat.total_recv
            };
            let moved = total.saturating_sub(lane.last_total) as f64 / secs;
            lane.last_total = total;
            if lane.state.mode == Mode::Leased && Instant::now() >= lane.until {
                // The lease lapsed without a report (this process stalled for a TTL): its
                // entry is gone and others may have its share. Back to the minimum, and ask.
                apply(&sched, lane.way, 1);
            }
            let holding = limit_now(&sched, lane.way).unwrap_or(lane.capacity);
            let terms = Terms {
                capacity: lane.capacity as f64,
                ttl_ms: u64::try_from(fleet.lease_ttl().as_millis()).unwrap_or(u64::MAX),
                floor: (lane.capacity as f64 / 1000.0).max(1024.0),
            };
            let report = Report {
                member: &name,
                weight: f64::from(fleet.weight),
                demand: demand(moved, holding, lane.capacity),
                holding: holding as f64,
                last_epoch: lane.epoch,
                expected: fleet.expected.unwrap_or(lane.live).max(1),
            };
            let sent = Instant::now();
            let verdict = match conn.as_mut() {
                Some(c) => {
                    tokio::time::timeout(fleet.timeout(), script::report(c, &lane.keys, &report, &terms))
                        .await
                        .ok()
                        .and_then(Result::ok)
                }
                None => None,
            };
            match verdict {
                Some(v) => {
                    apply(&sched, lane.way, v.lease);
                    lane.until = sent + fleet.lease_ttl();
                    lane.epoch = Some(v.epoch);
                    lane.live = v.live;
                    lane.state = DirLease {
                        limit: v.lease.max(1),
                        target: v.target,
                        live: v.live,
                        mode: Mode::Leased,
                    };
                }
                None => {
                    conn = None;
                    let safe = fleet.safe_share_among(lane.capacity, lane.live);
                    // A shrink is always safe; growing to the safe share waits until the last
                    // lease has lapsed, by when every member has noticed (see the crate docs).
                    let limit = if Instant::now() < lane.until {
                        holding.min(safe)
                    } else {
                        safe
                    };
                    apply(&sched, lane.way, limit);
                    if lane.state.mode != Mode::Fallback {
                        tracing::warn!(budget = %fleet.budget, "Redis did not answer: falling back to the safe share");
                    }
                    lane.state = DirLease {
                        limit: limit.max(1),
                        mode: Mode::Fallback,
                        ..lane.state
                    };
                }
            }
        }
        tx.send_if_modified(|l| {
            let new = snapshot(&lanes);
            let changed = *l != new;
            *l = new;
            changed
        });
        if conn.is_none() {
            conn = tokio::time::timeout(fleet.timeout(), client.get_multiplexed_async_connection())
                .await
                .ok()
                .and_then(Result::ok);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_member_held_at_its_limit_asks_for_everything() {
        assert_eq!(demand(960.0, 1000, 10_000), 10_000.0);
        assert_eq!(demand(500.0, 1000, 10_000), 550.0);
        // A light member at its target with the tenth more it asked: not held back.
        assert!(demand(1000.0, 1100, 10_000) < 10_000.0);
    }
}
