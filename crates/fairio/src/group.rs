//! [`Group`]: connections that share one part of the limits (a host, a peer, a tenant).

use std::collections::HashMap;
use std::fmt;
use std::num::NonZeroU64;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use fairio_policy::{ClassError, Key, Policy};
use fairio_stats::{Meter, Stat};

use crate::Error;
use crate::config::speed;
use crate::direction::{Direction, Directions};

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// A group of connections that shares one part of the scheduler's limits: a client host, a
/// peer with several connections, a torrent, a tenant.
///
/// Under [`EqualShare`](crate::EqualShare) and [`Weighted`](crate::Weighted), the global limit
/// is split among the groups that have bytes to move (by the group's weight under `Weighted`,
/// each up to the group's caps), and each group's part among its connections (by their own
/// weights, each up to its own caps). What a connection cannot use goes to the others of its
/// group first, and what a group cannot use to the other groups: both levels are max-min fair
/// and work-conserving. A connection registered without a group is a group of its own.
/// [`WindowQuota`](crate::WindowQuota) ignores groups.
///
/// A `Group` is a cheap handle: clones share one group. It is removed from the scheduler once
/// every handle and every member is gone.
///
/// ```
/// use fairio::{Config, Scheduler, Weight, Weighted};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), fairio::Error> {
/// let sched = Scheduler::with_policy(Config::new(16 * 1024).max_upload_speed(Some(8 << 20)), Weighted)?;
/// // One group per client host: a host with eight connections gets as much as one with one.
/// let host_a = sched.group_with(Weight::new(1)?)?;
/// let host_b = sched.group_with(Weight::new(1)?)?;
/// host_b.set_caps(Some(1 << 20), None)?; // host B: at most 1 MiB/s up, whatever A leaves
/// for _ in 0..8 {
///     let (ours, _theirs) = tokio::io::duplex(1024);
///     sched.register_in(&host_a, ours, Weight::new(1)?)?;
/// }
/// let (ours, _theirs) = tokio::io::duplex(1024);
/// let conn = sched.register_in(&host_b, ours, Weight::new(1)?)?;
/// assert_eq!(host_a.members().len(), 8);
/// assert_eq!(conn.group().map(|g| g.id()), Some(host_b.id()));
/// println!("{:?}", host_a.stat()); // the sum over its members, closed ones included
/// sched.shutdown(None).await;
/// # Ok(())
/// # }
/// ```
pub struct Group<P: Policy> {
    pub(crate) inner: Arc<GroupInner<P>>,
}

/// What a group's handles and members share.
pub(crate) struct GroupInner<P: Policy> {
    id: u64,
    /// The scheduler's directions. Weak: the scheduler holds its connections, which hold their
    /// group; a strong reference back would be a cycle that outlives a runtime dropped with
    /// tasks still running.
    dirs: Weak<Directions<P>>,
    pub(crate) up: Key,
    pub(crate) down: Key,
    params: Mutex<P::Params>,
    caps: Mutex<(Option<u64>, Option<u64>)>,
    guarantees: Mutex<(Option<u64>, Option<u64>)>,
    book: Mutex<Book>,
    /// The group this one is in: kept alive while this one is.
    parent: Option<Arc<Self>>,
    /// The groups inside this one, for the statistics.
    children: Mutex<Vec<Weak<Self>>>,
}

/// The members' meters, each with its totals when it joined (a connection moved in brings
/// what it moved before, which stays in its old group), and the totals of the members that
/// have left.
#[derive(Debug, Default)]
struct Book {
    members: HashMap<u64, Member>,
    left_sent: u64,
    left_recv: u64,
}

impl<P: Policy> GroupInner<P> {
    pub(crate) fn new(dirs: &Arc<Directions<P>>, params: P::Params) -> Self {
        let up = dirs.up.register_group(params.clone());
        let down = dirs.down.register_group(params.clone());
        Self::with_keys(dirs, (up, down), params, None)
    }

    /// A group inside `parent`.
    fn new_in(parent: &Arc<Self>, dirs: &Arc<Directions<P>>, params: P::Params) -> Self {
        let up = dirs.up.register_group_in(parent.up, params.clone());
        let down = dirs.down.register_group_in(parent.down, params.clone());
        Self::with_keys(dirs, (up, down), params, Some(Arc::clone(parent)))
    }

    fn with_keys(
        dirs: &Arc<Directions<P>>,
        (up, down): (Key, Key),
        params: P::Params,
        parent: Option<Arc<Self>>,
    ) -> Self {
        Self {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            dirs: Arc::downgrade(dirs),
            up,
            down,
            params: Mutex::new(params),
            caps: Mutex::new((None, None)),
            guarantees: Mutex::new((None, None)),
            book: Mutex::new(Book::default()),
            parent,
            children: Mutex::new(Vec::new()),
        }
    }

    fn children(&self) -> Vec<Arc<Self>> {
        let mut kids = self.children.lock().unwrap_or_else(|e| e.into_inner());
        kids.retain(|k| k.strong_count() > 0);
        kids.iter().filter_map(Weak::upgrade).collect()
    }

    /// The totals of the group's members and of the groups inside it, closed ones included,
    /// and the rates of the open ones.
    fn stat(&self) -> Stat {
        let mut stat = {
            let book = self.book();
            let mut stat = Stat {
                total_sent: book.left_sent,
                total_recv: book.left_recv,
                ..Stat::default()
            };
            for m in book.members.values() {
                add(&mut stat, &m.stat());
            }
            stat
        };
        for child in self.children() {
            add(&mut stat, &child.stat());
        }
        stat
    }

    pub(crate) fn belongs_to(&self, dirs: &Arc<Directions<P>>) -> bool {
        std::ptr::eq(self.dirs.as_ptr(), Arc::as_ptr(dirs))
    }

    fn book(&self) -> MutexGuard<'_, Book> {
        // Every critical section is a single map or counter update.
        self.book.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A member joined.
    /// A member joined: a new connection, or one moved in (whose totals so far stay in the
    /// group it left).
    pub(crate) fn enlist(&self, id: u64, meter: &Arc<Meter>) {
        let base = (meter.total_sent(), meter.total_recv());
        let member = Member {
            meter: Arc::clone(meter),
            base,
        };
        self.book().members.insert(id, member);
    }

    /// A member left (closed, or moved out): what it moved while a member stays in the
    /// group's totals.
    pub(crate) fn retire(&self, id: u64) {
        let mut book = self.book();
        if let Some(m) = book.members.remove(&id) {
            let s = m.stat();
            book.left_sent += s.total_sent;
            book.left_recv += s.total_recv;
        }
    }
}

/// A member's meter and its totals (sent, received) when it joined.
#[derive(Debug)]
struct Member {
    meter: Arc<Meter>,
    base: (u64, u64),
}

impl Member {
    /// Its statistics since it joined.
    fn stat(&self) -> Stat {
        let s = self.meter.stat();
        Stat {
            total_sent: s.total_sent.saturating_sub(self.base.0),
            total_recv: s.total_recv.saturating_sub(self.base.1),
            ..s
        }
    }
}

/// Adds `s`'s totals and rates to `stat`.
fn add(stat: &mut Stat, s: &Stat) {
    stat.total_sent += s.total_sent;
    stat.total_recv += s.total_recv;
    stat.current_inflow += s.current_inflow;
    stat.current_outflow += s.current_outflow;
}

/// Sets one of a group's rates (a cap, a guarantee) in one direction.
type SetRate<P> = fn(&Direction<P>, Key, Option<NonZeroU64>) -> Result<(), ClassError>;

/// A refusal by the arbiter, as the user's error.
fn refused(what: &str, e: ClassError) -> Error {
    Error::InvalidConfig(format!("{what}: {e}"))
}

impl<P: Policy> Drop for GroupInner<P> {
    fn drop(&mut self) {
        // What this group moved stays in its parent's totals.
        if let Some(parent) = &self.parent {
            let s = self.stat();
            let mut book = parent.book();
            book.left_sent += s.total_sent;
            book.left_recv += s.total_recv;
        }
        if let Some(sh) = self.dirs.upgrade() {
            sh.up.deregister_group(self.up);
            sh.down.deregister_group(self.down);
        }
    }
}

impl<P: Policy> Group<P> {
    /// The group's unique id.
    pub fn id(&self) -> u64 {
        self.inner.id
    }

    /// The group's parameters (its weight, say).
    pub fn params(&self) -> P::Params {
        self.inner
            .params
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Changes the group's parameters in both directions; effective from its next grant.
    pub fn set_params(&self, params: P::Params) {
        // Held while the arbiters change, so that concurrent calls leave the value read back
        // and the arbiters agreeing.
        let mut stored = self.inner.params.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(sh) = self.inner.dirs.upgrade() {
            sh.up.set_group_params(self.inner.up, params.clone());
            sh.down.set_group_params(self.inner.down, params.clone());
        }
        *stored = params;
    }

    /// Caps the group's upload and download rates, in bytes per second, summed over its
    /// members, beneath the global limits (`None`: no cap). As a connection's cap, a group's cap
    /// applies while its direction has a global limit.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for a zero cap.
    pub fn set_caps(&self, upload: Option<u64>, download: Option<u64>) -> Result<(), Error> {
        self.set_both(
            "cap",
            &self.inner.caps,
            (upload, download),
            Direction::set_group_cap,
        )
    }

    /// Guarantees the group upload and download rates, in bytes per second, while it has bytes
    /// to move (`None`: no guarantee), under [`Hierarchical`](crate::Hierarchical): the group
    /// gets at least its guarantee (or what it wants, if less), and shares what is left with
    /// its siblings by weight; guarantees that do not fit in the parent's part are met in
    /// proportion.
    ///
    /// ```
    /// use fairio::{Config, Hierarchical, Scheduler};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), fairio::Error> {
    /// let config = Config::new(16 * 1024).max_download_speed(Some(8 << 20));
    /// let sched = Scheduler::with_policy(config, Hierarchical)?;
    /// let gold = sched.group()?;
    /// gold.set_guarantees(None, Some(6 << 20))?;
    /// // A class capped at 4 MiB/s cannot guarantee 6 MiB/s to a group inside it.
    /// let class = sched.group()?;
    /// class.set_caps(None, Some(4 << 20))?;
    /// let inside = class.subgroup()?;
    /// assert!(inside.set_guarantees(None, Some(6 << 20)).is_err());
    /// assert_eq!(inside.guarantees(), (None, None));
    /// sched.shutdown(None).await;
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for a zero rate, for a policy without guarantees
    /// ([`WindowQuota`](crate::WindowQuota)), and for a guarantee that can never fit: above the
    /// group's own cap, or making the guarantees inside its parent sum to more than the parent's
    /// cap. A refused call changes neither direction.
    pub fn set_guarantees(&self, upload: Option<u64>, download: Option<u64>) -> Result<(), Error> {
        self.set_both(
            "guarantee",
            &self.inner.guarantees,
            (upload, download),
            Direction::set_group_guarantee,
        )
    }

    /// Sets one of the group's rates (`what`: "cap", "guarantee") in both directions or in
    /// neither, through `apply`, and stores it once both are taken.
    fn set_both(
        &self,
        what: &str,
        stored: &Mutex<(Option<u64>, Option<u64>)>,
        (upload, download): (Option<u64>, Option<u64>),
        apply: SetRate<P>,
    ) -> Result<(), Error> {
        let (up_name, down_name) = (
            format!("group upload {what}"),
            format!("group download {what}"),
        );
        let up = speed(&up_name, upload)?;
        let down = speed(&down_name, download)?;
        let mut stored = stored.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(sh) = self.inner.dirs.upgrade() {
            let _one_at_a_time = sh.classes.lock().unwrap_or_else(|e| e.into_inner());
            apply(&sh.up, self.inner.up, up).map_err(|e| refused(&up_name, e))?;
            if let Err(e) = apply(&sh.down, self.inner.down, down) {
                // Both directions or neither: the upload side goes back to what it was, which
                // nothing can have made refusable meanwhile (`classes` is held).
                let old = speed(&up_name, stored.0).ok().flatten();
                let _ = apply(&sh.up, self.inner.up, old);
                return Err(refused(&down_name, e));
            }
        }
        *stored = (upload, download);
        Ok(())
    }

    /// The group's guarantees (upload, download).
    pub fn guarantees(&self) -> (Option<u64>, Option<u64>) {
        *self
            .inner
            .guarantees
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// A new group inside this one, with default parameters; see
    /// [`subgroup_with`](Self::subgroup_with).
    ///
    /// # Errors
    /// As [`subgroup_with`](Self::subgroup_with).
    pub fn subgroup(&self) -> Result<Self, Error> {
        self.subgroup_with(P::Params::default())
    }

    /// A new group inside this one (an address inside a class, say), with its own parameters.
    /// Under the fair policies its part comes out of this group's, as deep as groups nest
    /// ([`WindowQuota`](crate::WindowQuota), which has no groups, puts it beside this group).
    /// It keeps this group alive while it lives, and its statistics count in this group's.
    ///
    /// ```
    /// use fairio::{Config, Hierarchical, Scheduler, Weight};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), fairio::Error> {
    /// let config = Config::new(16 * 1024).max_upload_speed(Some(8 << 20));
    /// let sched = Scheduler::with_policy(config, Hierarchical)?;
    /// // class -> client address -> connection: the class's cap holds for all its addresses.
    /// let class = sched.group()?;
    /// class.set_caps(Some(2 << 20), None)?;
    /// let address = class.subgroup()?;
    /// let (ours, _theirs) = tokio::io::duplex(1024);
    /// let conn = sched.register_in(&address, ours, Weight::default())?;
    /// assert_eq!(address.parent().map(|p| p.id()), Some(class.id()));
    /// assert_eq!(conn.group().map(|g| g.id()), Some(address.id()));
    /// sched.shutdown(None).await;
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    /// [`Error::SchedulerClosed`] once the scheduler is gone.
    pub fn subgroup_with(&self, params: P::Params) -> Result<Self, Error> {
        let dirs = self.inner.dirs.upgrade().ok_or(Error::SchedulerClosed)?;
        let inner = Arc::new(GroupInner::new_in(&self.inner, &dirs, params));
        let mut kids = self
            .inner
            .children
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        // Dead subgroups are swept as the list doubles: a class whose addresses come and go
        // keeps a list the size of its live ones, at O(1) per subgroup on average.
        if kids.len() >= 16 && kids.len().is_power_of_two() {
            kids.retain(|k| k.strong_count() > 0);
        }
        kids.push(Arc::downgrade(&inner));
        drop(kids);
        Ok(Self { inner })
    }

    /// The group this one is inside, if any.
    pub fn parent(&self) -> Option<Self> {
        self.inner.parent.as_ref().map(|inner| Self {
            inner: Arc::clone(inner),
        })
    }

    /// The groups inside this one that are still alive.
    pub fn subgroups(&self) -> Vec<Self> {
        self.inner
            .children()
            .into_iter()
            .map(|inner| Self { inner })
            .collect()
    }

    /// The group's caps (upload, download).
    pub fn caps(&self) -> (Option<u64>, Option<u64>) {
        *self.inner.caps.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The ids of the group's open connections.
    pub fn members(&self) -> Vec<u64> {
        let mut ids: Vec<u64> = self.inner.book().members.keys().copied().collect();
        ids.sort_unstable();
        ids
    }

    /// The sum of the statistics of the group's connections and of the groups inside it,
    /// closed ones included; the rates are those of the open ones.
    pub fn stat(&self) -> Stat {
        self.inner.stat()
    }
}

impl<P: Policy> Clone for Group<P> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<P: Policy> fmt::Debug for Group<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Group")
            .field("id", &self.inner.id)
            .field("members", &self.inner.book().members.len())
            .field("caps", &self.caps())
            .finish_non_exhaustive()
    }
}
