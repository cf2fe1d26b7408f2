//! The lock of the grant slots: std's, or loom's when model-checking (`--cfg loom`), so that
//! the unit tests in `grant.rs` explore every interleaving of the dispatcher, a limit change
//! and a pump.

#[cfg(loom)]
pub(crate) use loom::sync::{Mutex, MutexGuard};
#[cfg(not(loom))]
pub(crate) use std::sync::{Mutex, MutexGuard};
