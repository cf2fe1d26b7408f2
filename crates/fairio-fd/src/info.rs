//! The shared, thread-safe facts about one stream: id, byte counts, closing reason.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::CloseReason;

/// Identity, byte counters and closing reason of one [`Fd`](crate::Fd).
///
/// Both halves of a split `Fd` share one `FdInfo` behind an `Arc`, so the counters stay exact
/// whichever half moves the bytes, and can be read from any thread.
#[derive(Debug)]
pub struct FdInfo {
    id: u64,
    read: AtomicU64,
    written: AtomicU64,
    reason: OnceLock<CloseReason>,
}

impl FdInfo {
    pub(crate) fn new(id: u64) -> Self {
        Self {
            id,
            read: AtomicU64::new(0),
            written: AtomicU64::new(0),
            reason: OnceLock::new(),
        }
    }

    /// The stream's unique id, never reused within a process.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Bytes read from the stream so far.
    pub fn bytes_read(&self) -> u64 {
        self.read.load(Ordering::Relaxed)
    }

    /// Bytes written to the stream so far (accepted by the stream, not necessarily delivered).
    pub fn bytes_written(&self) -> u64 {
        self.written.load(Ordering::Relaxed)
    }

    /// Why the stream closed, or `None` while it is open.
    pub fn close_reason(&self) -> Option<CloseReason> {
        self.reason.get().copied()
    }

    /// Records why the stream closed. The first reason recorded wins; returns whether this call
    /// recorded it.
    pub fn set_close_reason(&self, reason: CloseReason) -> bool {
        self.reason.set(reason).is_ok()
    }

    pub(crate) fn add_read(&self, n: usize) {
        self.read.fetch_add(n as u64, Ordering::Relaxed);
    }

    pub(crate) fn add_written(&self, n: usize) {
        self.written.fetch_add(n as u64, Ordering::Relaxed);
    }
}
