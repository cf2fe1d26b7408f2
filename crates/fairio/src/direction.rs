//! [`Direction`]: one direction's arbiter, and the dispatcher task that runs it on tokio's clock.

use std::collections::HashMap;
use std::num::NonZeroU64;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use fairio_policy::{Arbiter, Decision, Key, Policy};
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::grant::{Grant, GrantSlot};

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

/// One direction of a scheduler: the policy's arbiter, the grant slots of the connections, and
/// the flag that lets connections skip all of it when there is no limit.
///
/// Every change of the limit (to another value, to none, or back) starts a new *generation*:
/// grants of older generations are void, wherever they are (in a slot, or held by a pump), and
/// writes started under them are abandoned (see [`changed`](Self::changed)). So no byte moves
/// under a limit that is no longer in force.
#[derive(Debug)]
pub(crate) struct Direction<P: Policy> {
    way: Way,
    state: Mutex<State<P::Arbiter>>,
    limited: AtomicBool,
    generation: AtomicU64,
    /// Wakes the dispatcher: a demand, a refund, a limit, a connection changed.
    wake: Notify,
    /// Wakes every pump whose write was started under the limit now replaced.
    changed: Notify,
}

#[derive(Debug)]
struct State<A> {
    arbiter: A,
    slots: HashMap<Key, Arc<GrantSlot>>,
}

fn now() -> std::time::Instant {
    Instant::now().into_std()
}

impl<P: Policy> Direction<P> {
    pub(crate) fn new(way: Way, policy: &P, limit: Option<NonZeroU64>) -> Self {
        Self {
            way,
            state: Mutex::new(State {
                arbiter: policy.arbiter(limit, now()),
                slots: HashMap::new(),
            }),
            limited: AtomicBool::new(limit.is_some()),
            generation: AtomicU64::new(0),
            wake: Notify::new(),
            changed: Notify::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State<P::Arbiter>> {
        // The arbiter's methods do not panic on any input, and the map update is a single call:
        // a poisoned lock still holds consistent state.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether connections must ask for grants. Without a limit they move freely.
    pub(crate) fn is_limited(&self) -> bool {
        self.limited.load(Ordering::Acquire)
    }

    pub(crate) fn register(&self, params: P::Params, slot: Arc<GrantSlot>) -> Key {
        let mut st = self.lock();
        let key = st.arbiter.insert(params, None, now());
        st.slots.insert(key, slot);
        key
    }

    /// Registers a connection into a group made by [`register_group`](Self::register_group).
    pub(crate) fn register_in(&self, group: Key, params: P::Params, slot: Arc<GrantSlot>) -> Key {
        let mut st = self.lock();
        let key = st.arbiter.insert_into(group, params, None, now());
        st.slots.insert(key, slot);
        key
    }

    pub(crate) fn register_group(&self, params: P::Params) -> Key {
        self.lock().arbiter.insert_group(params, None, now())
    }

    /// Removes a group; the arbiter keeps it until its last member has gone.
    pub(crate) fn deregister_group(&self, group: Key) {
        self.lock().arbiter.remove_group(group);
        self.wake.notify_one();
    }

    pub(crate) fn set_group_params(&self, group: Key, params: P::Params) {
        self.lock().arbiter.set_group_params(group, params);
        self.wake.notify_one();
    }

    pub(crate) fn set_group_cap(&self, group: Key, cap: Option<NonZeroU64>) {
        self.lock().arbiter.set_group_cap(group, cap, now());
        self.wake.notify_one();
    }

    pub(crate) fn deregister(&self, key: Key) {
        {
            let mut st = self.lock();
            // A grant that arrived after the pump stopped goes back to the others.
            if let Some(slot) = st.slots.remove(&key) {
                let (generation, bytes) = slot.take();
                if generation == self.generation() && bytes > 0 {
                    st.arbiter.unused(key, bytes);
                }
            }
            st.arbiter.remove(key);
        }
        // Its share goes to the others from the next decision.
        self.wake.notify_one();
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

    /// Tells the arbiter how many bytes the connection could move now, under the limit of
    /// `generation`; ignored once that limit has been replaced (the pump asks again). What
    /// its slot holds already counts: a grant that landed after the pump's last take (on
    /// another thread) is not asked for again.
    pub(crate) fn request(&self, key: Key, bytes: u64, generation: u64) {
        {
            let mut st = self.lock();
            if self.generation() != generation {
                return;
            }
            let held = st.slots.get(&key).map_or(0, |s| s.held(generation));
            st.arbiter
                .set_demand(key, bytes.saturating_sub(held), now());
        }
        self.wake.notify_one();
    }

    /// Asks for `want` bytes (`want` > 0) and waits until some are granted under the limit in
    /// force. `None` when there is no limit, now or after a change while waiting: the pump then
    /// moves freely.
    ///
    /// # Cancel safety
    /// Cancel-safe: a grant that arrives later waits in the slot for the next call, or is
    /// refunded with the slot's next take.
    pub(crate) async fn acquire<'a>(
        &'a self,
        key: Key,
        slot: &GrantSlot,
        want: u64,
    ) -> Option<Grant<'a, P>> {
        loop {
            let generation = self.generation();
            if !self.is_limited() {
                return None;
            }
            let grant = Grant::take(self, key, slot);
            if grant.bytes() > 0 {
                return Some(grant);
            }
            self.request(key, want, generation);
            while self.generation() == generation {
                slot.notified().await;
                let grant = Grant::take(self, key, slot);
                if grant.bytes() > 0 {
                    return Some(grant);
                }
            }
        }
    }

    /// Withdraws the connection's demand (it cannot move bytes now) and returns what its slot
    /// holds, so that its share goes to the others at once.
    pub(crate) fn withdraw(&self, key: Key, slot: &GrantSlot) {
        let generation = self.generation();
        self.request(key, 0, generation);
        drop(Grant::take(self, key, slot));
    }

    /// A guard that withdraws the connection's demand when dropped: a pump that stops, on any
    /// path, leaves no demand behind for grants nobody would take.
    pub(crate) fn asking<'a>(&'a self, key: Key, slot: &'a GrantSlot) -> Asking<'a, P> {
        Asking {
            dir: self,
            key,
            slot,
        }
    }

    /// Returns `bytes` of a grant made under `generation` that were not used; void grants are
    /// dropped.
    pub(crate) fn refund(&self, key: Key, generation: u64, bytes: u64) {
        {
            let mut st = self.lock();
            if self.generation() != generation {
                return;
            }
            st.arbiter.unused(key, bytes);
        }
        // The dispatcher may be waiting for budget that is now back.
        self.wake.notify_one();
    }

    pub(crate) fn set_params(&self, key: Key, params: P::Params) {
        self.lock().arbiter.set_params(key, params);
        self.wake.notify_one();
    }

    pub(crate) fn set_cap(&self, key: Key, cap: Option<NonZeroU64>) {
        self.lock().arbiter.set_cap(key, cap, now());
        self.wake.notify_one();
    }

    pub(crate) fn limit(&self) -> Option<NonZeroU64> {
        self.lock().arbiter.limit()
    }

    /// Changes the limit, starting a new generation: every grant made so far is void, every
    /// demand is forgotten (the pumps ask again under the new limit), and every write under way
    /// on an old grant is abandoned. The dispatcher is woken, so no wait computed at the old
    /// rate survives.
    pub(crate) fn set_limit(&self, limit: Option<NonZeroU64>) {
        {
            let mut st = self.lock();
            let t = now();
            st.arbiter.set_limit(limit, t);
            self.limited.store(limit.is_some(), Ordering::Release);
            let generation = self.generation.fetch_add(1, Ordering::AcqRel) + 1;
            let State { arbiter, slots } = &mut *st;
            for (key, slot) in slots.iter() {
                arbiter.set_demand(*key, 0, t);
                slot.void(generation);
            }
        }
        self.changed.notify_waiters();
        self.wake.notify_one();
        tracing::debug!(direction = self.way.name(), ?limit, "limit changed");
    }

    /// One decision of the dispatcher: a grant goes into its connection's slot.
    fn step(&self) -> Decision {
        let mut st = self.lock();
        if !self.is_limited() {
            // Without a limit the pumps move freely and nothing is granted.
            return Decision::Idle;
        }
        let d = st.arbiter.next(now());
        if let Decision::Grant { key, bytes } = d {
            if let Some(slot) = st.slots.get(&key) {
                slot.add(self.generation(), bytes);
            }
        }
        d
    }

    /// The dispatcher: asks the arbiter who moves next, hands out grants, and sleeps until the
    /// arbiter's time or until something changes. Ends when `cancel` fires.
    pub(crate) async fn dispatch(self: Arc<Self>, cancel: CancellationToken) {
        let mut grants_in_a_row = 0u32;
        loop {
            match self.step() {
                Decision::Grant { .. } => {
                    grants_in_a_row += 1;
                    if grants_in_a_row % 64 == 0 {
                        // Let the pumps run between long runs of grants.
                        tokio::task::yield_now().await;
                    }
                    if cancel.is_cancelled() {
                        return;
                    }
                }
                Decision::Wait { until } => {
                    grants_in_a_row = 0;
                    tracing::trace!(direction = self.way.name(), "waiting for quota");
                    tokio::select! {
                        () = cancel.cancelled() => return,
                        () = tokio::time::sleep_until(Instant::from_std(until)) => {}
                        () = self.wake.notified() => {}
                    }
                }
                Decision::Idle => {
                    grants_in_a_row = 0;
                    tokio::select! {
                        () = cancel.cancelled() => return,
                        () = self.wake.notified() => {}
                    }
                }
            }
        }
    }
}

/// See [`Direction::asking`].
pub(crate) struct Asking<'a, P: Policy> {
    dir: &'a Direction<P>,
    key: Key,
    slot: &'a GrantSlot,
}

impl<P: Policy> Drop for Asking<'_, P> {
    fn drop(&mut self) {
        self.dir.withdraw(self.key, self.slot);
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use fairio_policy::EqualShare;

    use super::*;

    /// The read pump takes a grant, a second grant lands in the slot (the dispatcher, on
    /// another thread), then the pump asks for the rest of what it holds: the second grant
    /// counts, and no more than the bytes asked for are granted in all.
    #[tokio::test(start_paused = true)]
    async fn a_grant_that_lands_before_a_request_is_not_granted_twice() {
        let want = 1 << 20;
        let dir = Direction::new(Way::Download, &EqualShare, NonZeroU64::new(1 << 30));
        let slot = Arc::new(GrantSlot::default());
        let key = dir.register((), Arc::clone(&slot));
        let generation = dir.generation();
        dir.request(key, want, generation);
        // The next grant, waiting for budget on the paused clock; `None` when idle.
        async fn next(dir: &Direction<EqualShare>) -> Option<u64> {
            // Bounded: the budget refills within a few waits.
            for _ in 0..1000 {
                match dir.step() {
                    Decision::Grant { bytes, .. } => return Some(bytes),
                    Decision::Wait { until } => {
                        tokio::time::advance(Instant::from_std(until) - Instant::now()).await;
                    }
                    Decision::Idle => return None,
                }
            }
            None
        }
        let first = next(&dir).await.unwrap();
        assert_eq!(slot.take().1, first);
        assert!(first < want, "{first}");
        let second = next(&dir).await.expect("a second grant lands in the slot");
        dir.request(key, want - first, generation);
        let mut granted = first + second;
        // Bounded: every grant is at least one byte of what is asked.
        for _ in 0..10_000 {
            let Some(bytes) = next(&dir).await else {
                break;
            };
            granted += bytes;
        }
        assert!(granted <= want, "granted {granted} for {want} asked");
        assert_eq!(granted, want);
    }
}
