//! [`Direction`]: one direction's budget. Whoever moves bytes takes its [`Permit`] here, in its
//! own task; a timer wakes the chosen waiter when the budget refills.
//!
//! ```text
//!  pump ── poll_acquire(key, want) ──▶ lock: arbiter.set_demand, arbiter.next … ──▶ Permit
//!            │ nothing for us yet                      │ granted to others: ledger + wake
//!            ▼                                          ▼
//!        park waker (ledger)          arbiter says "wait until t": the timer sleeps until t,
//!                                     then runs the same decisions and wakes whom they chose
//! ```
//!
//! Every decision is taken under one lock, by whoever changed something: a caller asking, a
//! permit given back, a connection joining or leaving, the timer at the arbiter's instant. The
//! bytes it grants go into the [`Ledger`] entry of the connection the arbiter chose, and that
//! connection's parked task, if any, is woken; a caller chosen while it asks takes them at once,
//! with no wake-up of anyone.

use std::num::NonZeroU64;
use std::pin::pin;
// A connection's flag, outside the models loom explores.
use std::task::{Context, Poll};

use fairio_policy::{Arbiter, ClassError, Decision, Key, Policy};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::ledger::{Ledger, Wakes};
use crate::sync::{AtomicBool, AtomicU64, Mutex, MutexGuard, Ordering, now};

/// Which way bytes move.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Way {
    Upload,
    Download,
}

impl Way {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Upload => "upload",
            Self::Download => "download",
        }
    }
}

/// One direction of a scheduler: the policy's arbiter, the ledger of what each connection was
/// granted, and the flag that lets connections skip all of it when there is no limit.
///
/// Every change of the limit (to another value, to none, or back) starts a new *generation*:
/// permits of older generations are void, wherever they are (in the ledger, or held by a
/// pump), and writes started under them are abandoned (see [`changed`](Self::changed)). So no
/// byte moves under a limit that is no longer in force.
#[derive(Debug)]
pub(crate) struct Direction<P: Policy> {
    way: Way,
    state: Mutex<State<P::Arbiter>>,
    limited: AtomicBool,
    generation: AtomicU64,
    /// Wakes the timer: the arbiter's next instant moved earlier.
    timer: Notify,
    /// Wakes every pump whose write was started under the limit now replaced.
    changed: Notify,
}

/// A scheduler's two directions, shared by its connections and groups.
pub(crate) struct Directions<P: Policy> {
    pub(crate) up: std::sync::Arc<Direction<P>>,
    pub(crate) down: std::sync::Arc<Direction<P>>,
    /// Held through a group's change of caps or guarantees in both directions: a change
    /// refused in one direction rolls the other back, and no other group's change (a parent's
    /// cap, a sibling's guarantee) may come between and make the rollback refused in turn.
    pub(crate) classes: Mutex<()>,
}

#[derive(Debug)]
struct State<A> {
    arbiter: A,
    ledger: Ledger,
    /// When the timer runs the arbiter next, if someone waits for budget.
    timer_at: Option<std::time::Instant>,
}

impl<P: Policy> Direction<P> {
    pub(crate) fn new(way: Way, policy: &P, limit: Option<NonZeroU64>) -> Self {
        Self {
            way,
            state: Mutex::new(State {
                arbiter: policy.arbiter(limit, now()),
                ledger: Ledger::default(),
                timer_at: None,
            }),
            limited: AtomicBool::new(limit.is_some()),
            generation: AtomicU64::new(0),
            timer: Notify::new(),
            changed: Notify::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State<P::Arbiter>> {
        // The arbiter's methods do not panic on any input, and each ledger update is a single
        // step: a poisoned lock still holds consistent state.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `f` under the lock, then lets the arbiter decide (on behalf of `running`, who looks
    /// at its own entry itself), and wakes whom it chose once the lock is released.
    fn deciding<T>(
        &self,
        running: Option<Key>,
        f: impl FnOnce(&mut State<P::Arbiter>, std::time::Instant) -> T,
    ) -> T {
        let (out, wakes) = {
            let mut st = self.lock();
            let t = now();
            let out = f(&mut st, t);
            (out, self.decide(&mut st, t, running))
        };
        wakes.wake(|| self.timer.notify_one());
        out
    }

    /// Grants whatever the arbiter allows now into the ledger. Wakes nobody itself: the wakers
    /// come back in the [`Wakes`], to be woken outside the lock.
    fn decide(
        &self,
        st: &mut State<P::Arbiter>,
        t: std::time::Instant,
        running: Option<Key>,
    ) -> Wakes {
        let mut wakes = Wakes::default();
        if !self.is_limited() {
            return wakes;
        }
        let State {
            arbiter,
            ledger,
            timer_at,
        } = st;
        loop {
            match arbiter.next(t) {
                Decision::Grant { key, bytes } => {
                    if ledger.contains(key) {
                        ledger.grant(key, bytes, running, &mut wakes);
                    } else {
                        // Not ours (cannot happen: keys enter the ledger with the arbiter).
                        arbiter.unused(key, bytes);
                        arbiter.set_demand(key, 0, t);
                    }
                }
                Decision::Wait { until } => {
                    if timer_at.is_none_or(|at| until < at) {
                        *timer_at = Some(until);
                        wakes.timer = true;
                    }
                    return wakes;
                }
                Decision::Idle => return wakes,
            }
        }
    }

    /// Whether connections must take permits. Without a limit they move freely.
    pub(crate) fn is_limited(&self) -> bool {
        self.limited.load(Ordering::Acquire)
    }

    /// The limit's generation: it changes with every change of the limit.
    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// A future that completes at the next change of the limit. Enable it (or poll it once)
    /// before checking [`generation`](Self::generation), so that no change slips in between.
    pub(crate) fn changed(&self) -> tokio::sync::futures::Notified<'_> {
        self.changed.notified()
    }

    pub(crate) fn register(&self, params: P::Params) -> Key {
        let mut st = self.lock();
        let key = st.arbiter.insert(params, None, now());
        st.ledger.open(key);
        key
    }

    /// Registers a connection into a group made by [`register_group`](Self::register_group).
    pub(crate) fn register_in(&self, group: Key, params: P::Params) -> Key {
        let mut st = self.lock();
        let key = st.arbiter.insert_into(group, params, None, now());
        st.ledger.open(key);
        key
    }

    pub(crate) fn register_group(&self, params: P::Params) -> Key {
        self.lock().arbiter.insert_group(params, None, now())
    }

    /// Removes a group; the arbiter keeps it until its last member has gone.
    pub(crate) fn deregister_group(&self, group: Key) {
        self.deciding(None, |st, _| st.arbiter.remove_group(group));
    }

    pub(crate) fn set_group_params(&self, group: Key, params: P::Params) {
        self.deciding(None, |st, _| st.arbiter.set_group_params(group, params));
    }

    /// Changes a group's cap; an arbiter with guarantees may refuse it.
    pub(crate) fn set_group_cap(
        &self,
        group: Key,
        cap: Option<NonZeroU64>,
    ) -> Result<(), ClassError> {
        self.deciding(None, |st, t| st.arbiter.try_set_group_cap(group, cap, t))
    }

    /// Adds a group inside `parent`.
    pub(crate) fn register_group_in(&self, parent: Key, params: P::Params) -> Key {
        self.lock()
            .arbiter
            .insert_group_in(parent, params, None, now())
    }

    /// Moves a connection into another group.
    pub(crate) fn move_into(&self, key: Key, group: Key) -> Result<(), ClassError> {
        self.deciding(None, |st, t| st.arbiter.move_into(key, group, t))
    }

    pub(crate) fn set_group_guarantee(
        &self,
        group: Key,
        rate: Option<NonZeroU64>,
    ) -> Result<(), ClassError> {
        self.deciding(None, |st, t| st.arbiter.set_group_guarantee(group, rate, t))
    }

    /// Takes the connection out; what it was granted and did not take goes to the others, and
    /// its share too, from this decision on.
    pub(crate) fn deregister(&self, key: Key) {
        self.deciding(None, |st, _| {
            // The ledger holds grants of the limit in force only: a change voids it.
            let held = st.ledger.close(key);
            if held > 0 {
                st.arbiter.unused(key, held);
            }
            st.arbiter.remove(key);
        });
    }

    /// Takes a permit for up to `want` bytes (`want` > 0): what the arbiter has granted the
    /// connection, or, if nothing, asks for `want` and lets the arbiter decide at once. `None`
    /// when there is no limit: the caller moves freely.
    ///
    /// When the arbiter chooses the caller, it gets its permit from this call, with no wake-up
    /// of anyone; when it chooses others, they are woken; when it says "wait", the caller is
    /// parked, and woken when a later decision (the timer's, a refund's) grants it something,
    /// or when the limit changes.
    pub(crate) fn poll_acquire(
        &self,
        cx: &Context<'_>,
        key: Key,
        want: u64,
    ) -> Poll<Option<Permit<'_, P>>> {
        let (out, wakes) = {
            let mut st = self.lock();
            // A key without an entry has been deregistered, which happens only once the
            // connection's task (its pumps with it) has ended: no caller is left to spin on it.
            if !self.is_limited() || !st.ledger.contains(key) {
                return Poll::Ready(None);
            }
            let t = now();
            let mut wakes = Wakes::default();
            if st.ledger.held(key) == 0 {
                st.arbiter.set_demand(key, want, t);
                wakes = self.decide(&mut st, t, Some(key));
            }
            let bytes = st.ledger.take(key);
            let out = if bytes > 0 {
                Poll::Ready(Some(self.permit(key, bytes)))
            } else {
                st.ledger.park(key, cx.waker());
                Poll::Pending
            };
            (out, wakes)
        };
        wakes.wake(|| self.timer.notify_one());
        out
    }

    /// Waits for a permit for up to `want` bytes; see [`poll_acquire`](Self::poll_acquire).
    ///
    /// # Cancel safety
    /// Cancel-safe: what is granted after the future is dropped waits in the ledger for the
    /// next call, or goes back at the next [`withdraw`](Self::withdraw).
    pub(crate) async fn acquire(&self, key: Key, want: u64) -> Option<Permit<'_, P>> {
        std::future::poll_fn(|cx| self.poll_acquire(cx, key, want)).await
    }

    /// Takes what the arbiter has granted the connection so far, as a permit (maybe empty).
    pub(crate) fn take(&self, key: Key) -> Permit<'_, P> {
        // The permit is made under the lock: a limit changed between the take and a later
        // read of the generation would pass old bytes off as new.
        let mut st = self.lock();
        let bytes = st.ledger.take(key);
        self.permit(key, bytes)
    }

    /// A permit, to be made under the lock, so that its generation is the one its bytes were
    /// granted under: a change of the limit voids the ledger under the same lock.
    fn permit(&self, key: Key, bytes: u64) -> Permit<'_, P> {
        Permit {
            dir: self,
            key,
            generation: self.generation(),
            bytes,
        }
    }

    /// Ready once the connection holds a grant, or the limit is no longer that of
    /// `generation`; parks the caller otherwise.
    pub(crate) fn poll_granted(&self, cx: &Context<'_>, key: Key, generation: u64) -> Poll<()> {
        let mut st = self.lock();
        if self.generation() != generation || st.ledger.held(key) > 0 {
            return Poll::Ready(());
        }
        st.ledger.park(key, cx.waker());
        Poll::Pending
    }

    /// Tells the arbiter how many bytes the connection could move now, under the limit of
    /// `generation` (ignored once that limit has been replaced: the pump asks again), and lets
    /// it decide. What the connection holds already counts.
    pub(crate) fn request(&self, key: Key, bytes: u64, generation: u64) {
        self.deciding(Some(key), |st, t| {
            if self.generation() == generation {
                let held = st.ledger.held(key);
                st.arbiter.set_demand(key, bytes.saturating_sub(held), t);
            }
        });
    }

    /// Withdraws the connection's demand (it cannot move bytes now) and gives back what it
    /// holds, so that its share goes to the others at once.
    pub(crate) fn withdraw(&self, key: Key) {
        self.deciding(None, |st, t| {
            st.arbiter.set_demand(key, 0, t);
            let held = st.ledger.take(key);
            if held > 0 {
                st.arbiter.unused(key, held);
            }
        });
    }

    /// [`withdraw`](Self::withdraw), unless `others` says, under the lock, that another mover
    /// of the same connection's bytes may have its demand in the arbiter now (a splice that
    /// counted itself, a writer with bytes queued). Read under the lock, so that a mover that
    /// shows itself before it asks is never withdrawn.
    pub(crate) fn withdraw_unless(&self, key: Key, others: impl FnOnce() -> bool) {
        self.deciding(None, |st, t| {
            if others() {
                return;
            }
            st.arbiter.set_demand(key, 0, t);
            let held = st.ledger.take(key);
            if held > 0 {
                st.arbiter.unused(key, held);
            }
        });
    }

    /// A guard that withdraws the connection's demand when dropped: a pump that stops, on any
    /// path, leaves no demand behind for grants nobody would take.
    pub(crate) fn asking(&self, key: Key) -> Asking<'_, P> {
        Asking { dir: self, key }
    }

    /// Gives back `bytes` of a permit taken under `generation` that were not used; void
    /// permits are dropped. The bytes go to whoever the arbiter chooses, at once.
    pub(crate) fn refund(&self, key: Key, generation: u64, bytes: u64) {
        if self.generation() != generation {
            return;
        }
        self.deciding(None, |st, _| {
            // Checked again under the lock: a change of the limit in between voids them.
            if self.generation() == generation {
                st.arbiter.unused(key, bytes);
            }
        });
    }

    /// Puts `bytes` of a permit taken under `generation` back among `key`'s grants (see
    /// [`Permit::keep`]); a connection gone meanwhile gives them back instead.
    // Only a splice keeps a permit, and loom builds no splice.
    #[cfg_attr(loom, allow(dead_code))]
    pub(crate) fn keep(&self, key: Key, generation: u64, bytes: u64) {
        let mut wakes = Wakes::default();
        let kept = {
            let mut st = self.lock();
            if self.generation() != generation {
                return;
            }
            // Whoever of the connection's movers is parked takes them.
            st.ledger.contains(key) && {
                st.ledger.grant(key, bytes, None, &mut wakes);
                true
            }
        };
        if kept {
            wakes.wake(|| self.timer.notify_one());
        } else {
            self.refund(key, generation, bytes);
        }
    }

    pub(crate) fn set_params(&self, key: Key, params: P::Params) {
        self.deciding(None, |st, _| st.arbiter.set_params(key, params));
    }

    pub(crate) fn set_cap(&self, key: Key, cap: Option<NonZeroU64>) {
        self.deciding(None, |st, t| st.arbiter.set_cap(key, cap, t));
    }

    pub(crate) fn limit(&self) -> Option<NonZeroU64> {
        self.lock().arbiter.limit()
    }

    /// Changes the limit, starting a new generation: every permit taken so far is void, every
    /// demand is forgotten (the pumps ask again under the new limit, woken now), and every
    /// write under way on an old permit is abandoned. The timer looks again, so no wait
    /// computed at the old rate survives.
    pub(crate) fn set_limit(&self, limit: Option<NonZeroU64>) {
        let wakes = {
            let mut st = self.lock();
            let t = now();
            st.arbiter.set_limit(limit, t);
            self.limited.store(limit.is_some(), Ordering::Release);
            self.generation.fetch_add(1, Ordering::AcqRel);
            let State {
                arbiter,
                ledger,
                timer_at,
            } = &mut *st;
            let mut wakes = Wakes::default();
            for key in ledger.keys() {
                arbiter.set_demand(key, 0, t);
            }
            ledger.void_all(&mut wakes);
            *timer_at = None;
            wakes.timer = true;
            wakes
        };
        self.changed.notify_waiters();
        wakes.wake(|| self.timer.notify_one());
        tracing::debug!(direction = self.way.name(), ?limit, "limit changed");
    }

    /// The timer: sleeps until the arbiter's next instant, while someone waits for budget, then
    /// lets it decide and wakes whom it chose. Ends when `cancel` fires.
    pub(crate) async fn run_timer(self: std::sync::Arc<Self>, cancel: CancellationToken) {
        loop {
            // Enabled before `timer_at` is read, so that no earlier instant set in between is
            // missed.
            let mut moved = pin!(self.timer.notified());
            moved.as_mut().enable();
            let at = self.lock().timer_at;
            match at {
                None => tokio::select! {
                    () = cancel.cancelled() => return,
                    () = moved => {}
                },
                Some(at) => tokio::select! {
                    () = cancel.cancelled() => return,
                    () = moved => {}
                    () = tokio::time::sleep_until(at.into()) => self.refilled(),
                },
            }
        }
    }

    /// The timer's step at the arbiter's instant: decides, and wakes whom it chose. The timer
    /// reads its next instant itself, so it is not woken for it.
    fn refilled(&self) {
        tracing::trace!(direction = self.way.name(), "budget refilled");
        let mut wakes = {
            let mut st = self.lock();
            st.timer_at = None;
            self.decide(&mut st, now(), None)
        };
        wakes.timer = false;
        wakes.wake(|| {});
    }
}

mod permit;

pub(crate) use permit::Permit;

#[cfg(test)]
mod tokens;

#[cfg(all(test, not(loom)))]
mod tests;

#[cfg(all(test, loom))]
mod loom;

/// See [`Direction::asking`].
pub(crate) struct Asking<'a, P: Policy> {
    dir: &'a Direction<P>,
    key: Key,
}

impl<P: Policy> Asking<'_, P> {
    /// Keeps the demand: the wait it guarded is over, and the caller took its permit.
    #[cfg_attr(loom, allow(dead_code))]
    pub(crate) fn disarm(self) {
        std::mem::forget(self);
    }
}

impl<P: Policy> Drop for Asking<'_, P> {
    fn drop(&mut self) {
        self.dir.withdraw(self.key);
    }
}
