//! [`GroupsBy`]: a group per key (client address, peer id, tenant), made on the key's first
//! connection and gone with its last.

use std::collections::HashMap;
use std::fmt;
use std::hash::Hash;
use std::sync::{Arc, Mutex, Weak};

use fairio_fd::Stream;
use fairio_policy::Policy;

use crate::group::{Group, GroupInner};
use crate::{Connection, Error, Scheduler};

/// Groups connections by a key: the first connection with a key makes its group, the next
/// ones join it, and the group goes when its last connection does. This is how a server shares
/// bandwidth per client host rather than per connection.
///
/// A cheap handle: clones share one map.
///
/// ```
/// use std::net::IpAddr;
/// use fairio::{Config, GroupsBy, Scheduler};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), fairio::Error> {
/// let sched = Scheduler::new(Config::new(16 * 1024).max_upload_speed(Some(8 << 20)))?;
/// let by_host: GroupsBy<IpAddr> = GroupsBy::new(&sched);
/// let host: IpAddr = [127, 0, 0, 2].into();
/// let (a, _) = tokio::io::duplex(1024);
/// let (b, _) = tokio::io::duplex(1024);
/// let first = by_host.register(host, a)?;
/// let second = by_host.register(host, b)?;
/// assert_eq!(first.group().unwrap().id(), second.group().unwrap().id());
/// assert_eq!(by_host.len(), 1);
/// sched.shutdown(None).await;
/// # Ok(())
/// # }
/// ```
pub struct GroupsBy<K, P: Policy = fairio_policy::EqualShare> {
    sched: Scheduler<P>,
    map: Arc<Mutex<Map<K, P>>>,
}

struct Map<K, P: Policy> {
    groups: HashMap<K, Weak<GroupInner<P>>>,
    /// The map's size after the last sweep of dead entries: the next sweep comes when it has
    /// doubled, so sweeping costs O(1) per registration on average.
    swept: usize,
}

impl<K: Eq + Hash + Clone, P: Policy> GroupsBy<K, P> {
    /// An empty map over `sched`'s connections.
    pub fn new(sched: &Scheduler<P>) -> Self {
        Self {
            sched: sched.clone(),
            map: Arc::new(Mutex::new(Map {
                groups: HashMap::new(),
                swept: 0,
            })),
        }
    }

    /// The group of `key`, made (with the policy's default parameters) if it has none.
    ///
    /// # Errors
    /// [`Error::SchedulerClosed`] after the scheduler's shutdown.
    pub fn group(&self, key: K) -> Result<Group<P>, Error> {
        self.group_init(key, |_| {})
    }

    /// The group of `key`, made if it has none and then set up by `init` (its parameters and
    /// caps, say) before any connection joins it.
    ///
    /// `init` runs with no lock held, so it may use this map (or anything else). If two
    /// callers make the same key's group at once, both `init`s run, the first group stored
    /// wins, and the other is discarded before any connection joins it.
    ///
    /// # Errors
    /// [`Error::SchedulerClosed`] after the scheduler's shutdown.
    pub fn group_init(&self, key: K, init: impl FnOnce(&Group<P>)) -> Result<Group<P>, Error> {
        self.made_with(key, || self.sched.group(), init)
    }

    /// The group of `key`, made inside `parent` if it has none (a client address inside its
    /// class, say; see [`Group::subgroup`]) and then set up by `init`, as
    /// [`group_init`](Self::group_init) does. A key's group stays where it was first made: a
    /// later call with another parent returns it unmoved.
    ///
    /// # Errors
    /// [`Error::SchedulerClosed`] after the scheduler's shutdown.
    pub fn group_in(
        &self,
        parent: &Group<P>,
        key: K,
        init: impl FnOnce(&Group<P>),
    ) -> Result<Group<P>, Error> {
        self.made_with(key, || parent.subgroup(), init)
    }

    fn made_with(
        &self,
        key: K,
        make: impl FnOnce() -> Result<Group<P>, Error>,
        init: impl FnOnce(&Group<P>),
    ) -> Result<Group<P>, Error> {
        if let Some(inner) = self.lock().groups.get(&key).and_then(Weak::upgrade) {
            return Ok(Group { inner });
        }
        let group = make()?;
        init(&group);
        let mut map = self.lock();
        if let Some(inner) = map.groups.get(&key).and_then(Weak::upgrade) {
            // Another caller stored this key's group meanwhile. Ours has no member and no
            // other handle: it leaves the scheduler as it drops, after the lock is released.
            drop(map);
            drop(group);
            return Ok(Group { inner });
        }
        map.groups.insert(key, Arc::downgrade(&group.inner));
        if map.groups.len() >= 2 * map.swept.max(16) {
            map.groups.retain(|_, g| g.strong_count() > 0);
            map.swept = map.groups.len();
        }
        Ok(group)
    }

    /// Calls `f` on every live group and its key (a snapshot: groups made meanwhile may be
    /// missed).
    pub fn for_each(&self, mut f: impl FnMut(&K, &Group<P>)) {
        let live: Vec<(K, Group<P>)> = {
            let map = self.lock();
            map.groups
                .iter()
                .filter_map(|(k, w)| w.upgrade().map(|inner| (k.clone(), Group { inner })))
                .collect()
        };
        for (k, g) in &live {
            f(k, g);
        }
    }

    /// Registers `stream` in the group of `key` with the policy's default parameters.
    ///
    /// # Errors
    /// As [`Scheduler::register_in`]; the stream is closed.
    pub fn register<S: Stream>(&self, key: K, stream: S) -> Result<Connection<P>, Error> {
        self.register_with(key, stream, P::Params::default())
    }

    /// Registers `stream` in the group of `key` with `params` within the group.
    ///
    /// # Errors
    /// As [`Scheduler::register_in`]; the stream is closed.
    pub fn register_with<S: Stream>(
        &self,
        key: K,
        stream: S,
        params: P::Params,
    ) -> Result<Connection<P>, Error> {
        let group = self.group(key)?;
        self.sched.register_in(&group, stream, params)
    }

    /// How many keys have a live group.
    pub fn len(&self) -> usize {
        let map = self.lock();
        map.groups.values().filter(|g| g.strong_count() > 0).count()
    }

    /// Whether no key has a live group.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<K, P: Policy> GroupsBy<K, P> {
    fn lock(&self) -> std::sync::MutexGuard<'_, Map<K, P>> {
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl<K, P: Policy> Clone for GroupsBy<K, P> {
    fn clone(&self) -> Self {
        Self {
            sched: self.sched.clone(),
            map: Arc::clone(&self.map),
        }
    }
}

impl<K, P: Policy> fmt::Debug for GroupsBy<K, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let map = self.lock();
        f.debug_struct("GroupsBy")
            .field("keys", &map.groups.len())
            .finish_non_exhaustive()
    }
}
