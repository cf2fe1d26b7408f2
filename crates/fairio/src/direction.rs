//! [`Direction`]: one direction's arbiter, and the dispatcher task that runs it on tokio's clock.

use std::collections::HashMap;
use std::num::NonZeroU64;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use fairio_policy::{Arbiter, Decision, Key, Policy};
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::grant::GrantSlot;

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
#[derive(Debug)]
pub(crate) struct Direction<P: Policy> {
    way: Way,
    state: Mutex<State<P::Arbiter>>,
    limited: AtomicBool,
    wake: Notify,
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
            wake: Notify::new(),
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

    pub(crate) fn deregister(&self, key: Key) {
        {
            let mut st = self.lock();
            st.arbiter.remove(key);
            st.slots.remove(&key);
        }
        // Its share goes to the others from the next decision.
        self.wake.notify_one();
    }

    /// Tells the arbiter how many bytes the connection could move now.
    pub(crate) fn request(&self, key: Key, bytes: u64) {
        self.lock().arbiter.set_demand(key, bytes, now());
        self.wake.notify_one();
    }

    pub(crate) fn unused(&self, key: Key, bytes: u64) {
        if bytes > 0 {
            self.lock().arbiter.unused(key, bytes);
        }
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

    /// Changes the limit. The dispatcher is woken, so no wait computed at the old rate survives;
    /// when the limit is lifted, waiting connections are released at once.
    pub(crate) fn set_limit(&self, limit: Option<NonZeroU64>) {
        let slots: Vec<Arc<GrantSlot>> = {
            let mut st = self.lock();
            st.arbiter.set_limit(limit, now());
            self.limited.store(limit.is_some(), Ordering::Release);
            if limit.is_none() {
                st.slots.values().cloned().collect()
            } else {
                Vec::new()
            }
        };
        for slot in slots {
            slot.nudge();
        }
        self.wake.notify_one();
        tracing::debug!(direction = self.way.name(), ?limit, "limit changed");
    }

    /// The dispatcher: asks the arbiter who moves next, hands out grants, and sleeps until the
    /// arbiter's time or until something changes. Ends when `cancel` fires.
    pub(crate) async fn dispatch(self: Arc<Self>, cancel: CancellationToken) {
        let mut grants_in_a_row = 0u32;
        loop {
            let decision = {
                let mut st = self.lock();
                let d = st.arbiter.next(now());
                if let Decision::Grant { key, bytes } = d {
                    if let Some(slot) = st.slots.get(&key) {
                        slot.add(bytes);
                    }
                }
                d
            };
            match decision {
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
