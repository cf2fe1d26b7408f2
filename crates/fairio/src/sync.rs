//! The direction's lock, atomics and clock: std's and tokio's, or loom's and a fixed instant
//! when model-checking (`--cfg loom`), so that the models in `direction/loom.rs` explore every
//! interleaving of callers, refunds and limit changes, with decisions that do not depend on
//! when a model happens to run.

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicBool, AtomicU64, Ordering};
#[cfg(loom)]
pub(crate) use loom::sync::{Mutex, MutexGuard};
#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
#[cfg(not(loom))]
pub(crate) use std::sync::{Mutex, MutexGuard};

/// Now, on tokio's clock (which a test may pause).
#[cfg(not(loom))]
pub(crate) fn now() -> std::time::Instant {
    tokio::time::Instant::now().into_std()
}

/// One instant for every model: the arbiter decides on its budget at that instant alone.
#[cfg(loom)]
pub(crate) fn now() -> std::time::Instant {
    static T0: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    *T0.get_or_init(std::time::Instant::now)
}
