//! [`Ledger`]: the bytes each connection of a direction has been granted and not yet taken, and
//! the task that waits for them.
//!
//! It lives under the direction's lock, beside the arbiter, so that a grant, a take and a park
//! are each one critical section with the arbiter's decision: a grant cannot land between a
//! caller's look at its entry and the moment it parks, and nobody is woken who was not chosen.
//! Wakers are collected while the lock is held and woken once it is released ([`Wakes`]), so no
//! task's code runs under the lock.

use std::collections::HashMap;
use std::task::Waker;

use fairio_policy::Key;

/// Per-connection grants not yet taken, and parked callers.
#[derive(Debug, Default)]
pub(crate) struct Ledger {
    flows: HashMap<Key, Flow>,
}

#[derive(Debug, Default)]
struct Flow {
    /// Granted under the limit in force and not yet taken. A change of the limit voids it.
    granted: u64,
    /// The task parked until this connection is granted something.
    waker: Option<Waker>,
}

/// Wakers to wake, and whether the timer must look again, once the direction's lock is released.
#[derive(Debug, Default)]
#[must_use = "the chosen tasks are woken only by `Wakes::wake`"]
pub(crate) struct Wakes {
    wakers: Vec<Waker>,
    /// The arbiter's next instant moved earlier than the timer's (or the timer had none).
    pub(crate) timer: bool,
}

impl Wakes {
    /// Wakes the chosen tasks; `timer` runs when the timer must look again.
    pub(crate) fn wake(self, timer: impl FnOnce()) {
        for w in self.wakers {
            w.wake();
        }
        if self.timer {
            timer();
        }
    }
}

impl Ledger {
    /// Opens an empty entry for a new connection.
    pub(crate) fn open(&mut self, key: Key) {
        self.flows.insert(key, Flow::default());
    }

    /// Closes a connection's entry; returns what it held (to be given back to the arbiter).
    pub(crate) fn close(&mut self, key: Key) -> u64 {
        self.flows.remove(&key).map_or(0, |f| f.granted)
    }

    /// Whether `key` has an entry.
    pub(crate) fn contains(&self, key: Key) -> bool {
        self.flows.contains_key(&key)
    }

    /// Adds a grant. The connection's parked task is woken, unless it is `running`: the caller
    /// that made the decision inline looks at its entry itself before it parks again.
    pub(crate) fn grant(&mut self, key: Key, bytes: u64, running: Option<Key>, wakes: &mut Wakes) {
        let Some(flow) = self.flows.get_mut(&key) else {
            return;
        };
        flow.granted += bytes;
        if running != Some(key) {
            if let Some(w) = flow.waker.take() {
                wakes.wakers.push(w);
            }
        }
    }

    /// What the connection holds.
    pub(crate) fn held(&self, key: Key) -> u64 {
        self.flows.get(&key).map_or(0, |f| f.granted)
    }

    /// Takes what the connection holds.
    pub(crate) fn take(&mut self, key: Key) -> u64 {
        self.flows
            .get_mut(&key)
            .map_or(0, |f| std::mem::take(&mut f.granted))
    }

    /// Parks `waker` until the connection is granted something (or every grant is voided).
    /// A waker it replaces is dropped under the direction's lock: the parked wakers are those
    /// of the connections' own tokio tasks, whose drop only lowers a count.
    pub(crate) fn park(&mut self, key: Key, waker: &Waker) {
        if let Some(flow) = self.flows.get_mut(&key) {
            match &mut flow.waker {
                Some(w) if w.will_wake(waker) => {}
                w => *w = Some(waker.clone()),
            }
        }
    }

    /// Voids every grant (the limit changed) and wakes every parked task, so that each asks
    /// again under the new limit.
    pub(crate) fn void_all(&mut self, wakes: &mut Wakes) {
        for flow in self.flows.values_mut() {
            flow.granted = 0;
            wakes.wakers.extend(flow.waker.take());
        }
    }

    /// The connections with an entry.
    pub(crate) fn keys(&self) -> impl Iterator<Item = Key> + '_ {
        self.flows.keys().copied()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use std::sync::Arc;

    use fairio_policy::{Arbiter, EqualShare, Policy};

    use super::*;
    use crate::testing::waker;

    /// Two distinct keys, each with an entry.
    fn two(ledger: &mut Ledger) -> (Key, Key) {
        let now = std::time::Instant::now();
        let mut arbiter = EqualShare.arbiter(None, now);
        let (a, b) = (arbiter.insert((), None, now), arbiter.insert((), None, now));
        ledger.open(a);
        ledger.open(b);
        (a, b)
    }

    #[test]
    fn a_grant_wakes_the_parked_task_once_and_not_the_running_one() {
        let mut l = Ledger::default();
        let (a, b) = two(&mut l);
        let ((ca, wa), (cb, wb)) = (waker(), waker());
        l.park(a, &wa);
        l.park(b, &wb);
        let mut wakes = Wakes::default();
        l.grant(a, 10, Some(b), &mut wakes);
        l.grant(a, 5, Some(b), &mut wakes);
        l.grant(b, 7, Some(b), &mut wakes);
        wakes.wake(|| panic!("no timer"));
        assert_eq!(ca.get(), 1, "woken once for two grants");
        assert_eq!(cb.get(), 0, "the running caller looks itself");
        assert_eq!((l.held(a), l.take(a), l.take(a)), (15, 15, 0));
        assert_eq!(l.close(b), 7);
        assert!(!l.contains(b));
        let mut wakes = Wakes::default();
        l.grant(b, 3, None, &mut wakes);
        assert_eq!(l.held(b), 0, "a closed entry takes nothing");
    }

    /// A park with another waker replaces the one parked (the task that polls last is the
    /// one to wake); the same waker again is kept, not cloned.
    #[test]
    fn the_last_parked_waker_is_the_one_woken() {
        let mut l = Ledger::default();
        let (a, _) = two(&mut l);
        let ((first, w1), (second, w2)) = (waker(), waker());
        l.park(a, &w1);
        l.park(a, &w2);
        // Another waker of the same task.
        l.park(a, &Waker::from(Arc::clone(&second)));
        let mut wakes = Wakes::default();
        l.grant(a, 1, None, &mut wakes);
        wakes.wake(|| {});
        assert_eq!((first.get(), second.get()), (0, 1));
    }

    #[test]
    fn voiding_empties_every_entry_and_wakes_every_parked_task() {
        let mut l = Ledger::default();
        let (a, b) = two(&mut l);
        let (c, w) = waker();
        l.park(a, &w);
        let mut wakes = Wakes::default();
        l.grant(b, 9, None, &mut wakes);
        l.void_all(&mut wakes);
        let mut timer = false;
        wakes.timer = true;
        wakes.wake(|| timer = true);
        assert!(timer);
        assert_eq!(c.get(), 1);
        assert_eq!((l.held(a), l.held(b)), (0, 0));
        assert_eq!(l.keys().count(), 2);
    }
}
