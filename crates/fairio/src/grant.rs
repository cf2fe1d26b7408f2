//! [`GrantSlot`] and [`Grant`]: how granted bytes travel from a direction's dispatcher to a
//! connection's pump, and back when they are not used.
//!
//! The dispatcher adds each grant to the connection's slot, tagged with the limit's
//! *generation*; the pump takes the slot's content as a [`Grant`] value and spends it as bytes
//! move. Whatever is left when the `Grant` is dropped goes back to the arbiter, on every path:
//! a stalled write, an error, a `?`, a cancelled future. A grant of an older generation (made
//! under a limit since changed, or lifted) is worth nothing: it is neither spent nor refunded.

use fairio_policy::Policy;
use tokio::sync::Notify;

use crate::direction::Direction;
use crate::sync::{Mutex, MutexGuard};

/// Bytes granted to one connection in one direction and not yet taken by its pump.
#[derive(Debug)]
pub(crate) struct GrantSlot {
    /// `(generation, bytes)`: bytes of an older generation are void.
    granted: Mutex<(u64, u64)>,
    notify: Notify,
}

impl Default for GrantSlot {
    fn default() -> Self {
        Self {
            granted: Mutex::new((0, 0)),
            notify: Notify::new(),
        }
    }
}

impl GrantSlot {
    /// Adds a grant made under `generation`; what the slot held under an older one is voided.
    /// Called by the dispatcher under its direction's lock.
    pub(crate) fn add(&self, generation: u64, bytes: u64) {
        {
            let mut g = self.lock();
            if g.0 != generation {
                *g = (generation, 0);
            }
            g.1 += bytes;
        }
        self.notify.notify_one();
    }

    /// Voids what the slot holds and wakes its pump (the limit changed). Called under the
    /// direction's lock, after the generation changed.
    pub(crate) fn void(&self, generation: u64) {
        *self.lock() = (generation, 0);
        self.notify.notify_one();
    }

    /// What the slot holds under `generation` (0 under another).
    pub(crate) fn held(&self, generation: u64) -> u64 {
        let g = self.lock();
        if g.0 == generation { g.1 } else { 0 }
    }

    /// Takes everything granted so far, with its generation.
    pub(crate) fn take(&self) -> (u64, u64) {
        let mut g = self.lock();
        let out = *g;
        g.1 = 0;
        out
    }

    /// Waits for a grant or a nudge. `Notify` keeps a permit when nobody waits, so a grant added
    /// between a `take` and this call is not missed.
    pub(crate) async fn notified(&self) {
        self.notify.notified().await;
    }

    fn lock(&self) -> MutexGuard<'_, (u64, u64)> {
        // Every critical section is a single assignment: a poisoned lock holds a valid pair.
        self.granted.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Bytes a connection may move now, under the limit of one generation. Dropping it returns
/// what was not spent to the arbiter, if the limit has not changed since.
pub(crate) struct Grant<'a, P: Policy> {
    dir: &'a Direction<P>,
    key: fairio_policy::Key,
    generation: u64,
    bytes: u64,
}

impl<'a, P: Policy> Grant<'a, P> {
    /// Takes what `slot` holds for `key` as a grant; a void or empty slot gives an empty grant.
    pub(crate) fn take(dir: &'a Direction<P>, key: fairio_policy::Key, slot: &GrantSlot) -> Self {
        let (generation, bytes) = slot.take();
        let mut g = Self {
            dir,
            key,
            generation,
            bytes,
        };
        if !g.is_current() {
            g.bytes = 0;
        }
        g
    }

    /// The limit's generation the grant was made under.
    pub(crate) fn generation(&self) -> u64 {
        self.generation
    }

    /// Bytes left to spend, or 0 once the limit it was made under has changed.
    pub(crate) fn bytes(&self) -> u64 {
        if self.is_current() { self.bytes } else { 0 }
    }

    /// Whether the limit this grant was made under is still in force.
    pub(crate) fn is_current(&self) -> bool {
        self.dir.generation() == self.generation
    }

    /// Adds what `slot` holds now (a later grant of the same generation).
    pub(crate) fn top_up(&mut self, slot: &GrantSlot) {
        let mut more = Self::take(self.dir, self.key, slot);
        if more.generation == self.generation {
            self.bytes += std::mem::take(&mut more.bytes);
        } else if more.is_current() {
            // This one is stale: the newer grant replaces it, unrefunded.
            self.generation = more.generation;
            self.bytes = std::mem::take(&mut more.bytes);
        }
    }

    /// Marks `n` bytes moved. `n` must not exceed [`bytes`](Self::bytes).
    pub(crate) fn spend(&mut self, n: u64) {
        debug_assert!(n <= self.bytes, "spent {n} of a {}-byte grant", self.bytes);
        self.bytes -= n.min(self.bytes);
    }
}

impl<P: Policy> Drop for Grant<'_, P> {
    fn drop(&mut self) {
        if self.bytes > 0 {
            self.dir.refund(self.key, self.generation, self.bytes);
        }
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    //! `RUSTFLAGS="--cfg loom" cargo test -p fairio --lib --release loom_tests`
    use loom::sync::Arc;
    use loom::sync::atomic::{AtomicU64, Ordering};
    use loom::thread;

    use super::GrantSlot;

    /// The dispatcher grants under the generation it reads (holding the direction's lock in
    /// the engine, modelled here by reading the generation inside the slot's critical
    /// sequence); a limit change bumps the generation and voids the slot; the pump takes and
    /// accepts only bytes of the generation in force when it checks. Whatever the
    /// interleaving, the pump never accepts bytes granted under a generation that had already
    /// been replaced when it checked, and no accepted byte is counted twice.
    #[test]
    fn no_grant_survives_a_limit_change() {
        loom::model(|| {
            let slot = Arc::new(GrantSlot::default());
            let generation = Arc::new(AtomicU64::new(0));
            let lock = Arc::new(loom::sync::Mutex::new(()));
            let dispatcher = {
                let (slot, generation, lock) = (
                    Arc::clone(&slot),
                    Arc::clone(&generation),
                    Arc::clone(&lock),
                );
                thread::spawn(move || {
                    // Bytes granted under the new generation.
                    let mut new = 0;
                    for _ in 0..2 {
                        let _g = lock.lock().unwrap();
                        let g = generation.load(Ordering::Acquire);
                        slot.add(g, 10);
                        new += if g == 1 { 10 } else { 0 };
                    }
                    new
                })
            };
            let changer = {
                let (slot, generation, lock) = (
                    Arc::clone(&slot),
                    Arc::clone(&generation),
                    Arc::clone(&lock),
                );
                thread::spawn(move || {
                    let _g = lock.lock().unwrap();
                    let g = generation.fetch_add(1, Ordering::AcqRel) + 1;
                    slot.void(g);
                })
            };
            // Bytes the pump accepted as current after the change.
            let mut accepted_new = 0;
            for _ in 0..2 {
                let (g, bytes) = slot.take();
                if g == generation.load(Ordering::Acquire) && g == 1 {
                    accepted_new += bytes;
                }
            }
            let new = dispatcher.join().unwrap();
            changer.join().unwrap();
            let (g, rest) = slot.take();
            assert_eq!(g, 1, "the slot ends in the new generation");
            // Only grants of the new generation are accepted under it, each once.
            assert_eq!(
                accepted_new + rest,
                new,
                "accepted {accepted_new} + left {rest}"
            );
        });
    }
}
