//! [`Member`]: one process's part in a fleet budget, driving its scheduler's global limits.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use fairio::{Policy, Scheduler};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::lane::{Lane, Way};
use crate::link::Link;
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
/// Leaving ([`leave`](Self::leave)) or dropping it gives this process's share away: the task
/// stops, and the scheduler's limits in the shared directions drop to the minimum (1 byte/s),
/// since the other members may take the share at once (`leave` removes the entry now; after a
/// drop it lapses one TTL later). Leave once the traffic is done, after the scheduler's
/// shutdown, say.
pub struct Member {
    lease: watch::Receiver<Lease>,
    task: JoinHandle<()>,
    client: redis::Client,
    keys: Vec<Keys>,
    name: String,
    /// Drops the scheduler's shared limits to the minimum.
    yield_share: Box<dyn Fn() + Send + Sync>,
}

impl std::fmt::Debug for Member {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Member")
            .field("name", &self.name)
            .field("lease", &*self.lease.borrow())
            .finish_non_exhaustive()
    }
}

static NEXT: AtomicU64 = AtomicU64::new(0);

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
        // Process id, a counter and the clock's nanoseconds: unique on one host, and across
        // hosts (containers all run as pid 1) by the nanoseconds.
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
        let stat = sched.global_stat();
        let left = Arc::new(Mutex::new(false));
        let mut lanes = Vec::new();
        for (way, capacity, total) in [
            (Way::Up, self.upload, stat.total_sent),
            (Way::Down, self.download, stat.total_recv),
        ] {
            let Some(capacity) = capacity else { continue };
            let mut lane = Lane::new(
                way,
                &self.budget,
                capacity,
                total,
                self.lease_ttl(),
                Arc::clone(&left),
            );
            // The minimum until the first lease: this member is not counted yet.
            lane.set(sched, 1);
            lanes.push(lane);
        }
        let (tx, rx) = watch::channel(snapshot(&lanes));
        let keys = lanes.iter().map(|l| l.keys.clone()).collect();
        let yield_share = {
            let (sched, up, down) = (
                sched.clone(),
                self.upload.is_some(),
                self.download.is_some(),
            );
            Box::new(move || {
                if up {
                    sched.set_max_upload_speed(Some(1));
                }
                if down {
                    sched.set_max_download_speed(Some(1));
                }
            })
        };
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
            yield_share,
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

    /// Leaves the budget: stops reporting, drops the scheduler's shared limits to the minimum
    /// (1 byte/s) and removes this member's entry, so that the others get its share at their
    /// next refresh rather than one TTL later.
    ///
    /// # Errors
    /// The Redis error, if the entry could not be removed (it then lapses after its TTL).
    ///
    /// # Cancel safety
    /// The task is stopped at the first poll; if the future is dropped before the removal,
    /// the entry lapses after its TTL.
    pub async fn leave(self) -> Result<(), redis::RedisError> {
        self.task.abort();
        (self.yield_share)();
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
        (self.yield_share)();
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

/// Waits until the next round is due: the regular tick, or sooner when a lane's last lease
/// lapses, when a lane is growing
/// toward its target (it asks again every quarter interval, as the others make room), or when a
/// lane that was idle used 97% of its limit over the last quarter interval (it woke up: it
/// reports at once rather than at the next tick).
async fn next_round<P: Policy>(
    tick: &mut tokio::time::Interval,
    quarter: &mut tokio::time::Interval,
    lanes: &mut [Lane],
    sched: &Scheduler<P>,
) {
    loop {
        // Wake when a lease lapses: in fallback, to take the safe share then; leased, to stop
        // using a lease whose entry is gone even if rounds were late (a stalled runtime).
        let lapse = lanes
            .iter()
            .filter(|l| l.state.mode != Mode::Starting && l.until > Instant::now())
            .map(|l| l.until)
            .min();
        let lapsed = async {
            match lapse {
                Some(until) => tokio::time::sleep_until(until).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = tick.tick() => return,
            () = lapsed => return,
            _ = quarter.tick() => {
                let mut due = false;
                for lane in lanes.iter_mut() {
                    due |= lane.early(sched);
                }
                if due {
                    tick.reset();
                    return;
                }
            }
        }
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
    let mut link = Link::new(fleet.timeout(), fleet.lease_ttl());
    let mut tick = tokio::time::interval(fleet.refresh);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut quarter = tokio::time::interval(fleet.refresh / 4);
    quarter.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let ttl_ms = u64::try_from(fleet.lease_ttl().as_millis()).unwrap_or(u64::MAX);
    loop {
        next_round(&mut tick, &mut quarter, &mut lanes, &sched).await;
        if !link.is_up() {
            // With a lease in force (the connection failed after a lane's report succeeded),
            // setting up gets no more than a report would: the safety argument (crate docs)
            // needs every member that lost Redis to shrink to its safe share within a report's
            // timeout of its round. Without one (starting, or fallen back), it gets a TTL:
            // setting up takes several round trips, and a busy process needs them.
            let leased = lanes.iter().any(|l| l.state.mode == Mode::Leased);
            let patience = if leased {
                fleet.timeout()
            } else {
                fleet.lease_ttl().max(fleet.timeout())
            };
            link.connect(&client, Instant::now() + patience).await;
        }
        for lane in &mut lanes {
            if lane.state.mode == Mode::Leased && Instant::now() >= lane.until {
                // The lease lapsed without a report (this process stalled for a TTL): its
                // entry is gone and others may have its share. Back to the minimum, and ask.
                lane.set(&sched, 1);
            }
            let terms = Terms {
                capacity: lane.capacity as f64,
                ttl_ms,
                floor: lane.floor(),
            };
            let holding = lane.limit();
            let report = Report {
                member: &name,
                weight: f64::from(fleet.weight),
                demand: lane.demand(&sched, fleet.refresh),
                holding: holding as f64,
                last_epoch: lane.epoch,
                expected: fleet.expected.unwrap_or(lane.live).max(1),
            };
            let sent = Instant::now();
            let mut verdict = link.ask(&lane.keys, &report, &terms).await;
            if let Some(v) = verdict {
                let held = lane.apply(&sched, v.lease);
                if held < holding {
                    // Shrunk: say so at once, so that the room it frees goes to the others
                    // now rather than at the next interval.
                    let confirm = Report {
                        holding: held as f64,
                        ..report
                    };
                    if let Some(again) = link.ask(&lane.keys, &confirm, &terms).await {
                        lane.apply(&sched, again.lease);
                        verdict = Some(again);
                    }
                }
            }
            match verdict {
                Some(v) => {
                    lane.until = sent + fleet.lease_ttl();
                    lane.epoch = Some(v.epoch);
                    lane.live = v.live;
                    lane.state = DirLease {
                        limit: lane.limit(),
                        target: v.target,
                        live: v.live,
                        mode: Mode::Leased,
                    };
                }
                None => {
                    let safe = fleet.safe_share_among(lane.capacity, lane.live);
                    // A shrink is always safe, and never held back by the 1% margin; growing
                    // to the safe share waits until the last lease has lapsed, by when every
                    // member has noticed (see the crate docs).
                    if safe < lane.limit() {
                        lane.set(&sched, safe);
                    } else if Instant::now() >= lane.until {
                        lane.apply(&sched, safe);
                    }
                    if lane.state.mode != Mode::Fallback {
                        tracing::warn!(budget = %fleet.budget, "Redis did not answer: falling back to the safe share");
                    }
                    lane.state = DirLease {
                        limit: lane.limit(),
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
    }
}
