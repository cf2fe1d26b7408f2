//! The lock the queue uses: std's, or loom's when model-checking (`--cfg loom`), so that
//! `tests/loom.rs` explores every interleaving of pushers, poppers and waiters.

#[cfg(loom)]
pub(crate) use loom::sync::{Mutex, MutexGuard};
#[cfg(not(loom))]
pub(crate) use std::sync::{Mutex, MutexGuard};
