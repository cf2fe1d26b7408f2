//! [`GrantSlot`]: where a connection's granted bytes wait for its pump.

use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::Notify;

/// Bytes granted to one connection in one direction, not yet used.
///
/// The dispatcher adds; the connection's pump takes. Grants can arrive while the pump is busy
/// moving bytes; they add up here.
#[derive(Debug, Default)]
pub(crate) struct GrantSlot {
    granted: AtomicU64,
    notify: Notify,
}

impl GrantSlot {
    pub(crate) fn add(&self, bytes: u64) {
        self.granted.fetch_add(bytes, Ordering::AcqRel);
        self.notify.notify_one();
    }

    /// Takes everything granted so far.
    pub(crate) fn take(&self) -> u64 {
        self.granted.swap(0, Ordering::AcqRel)
    }

    /// Wakes the pump without a grant (the limit was lifted, say).
    pub(crate) fn nudge(&self) {
        self.notify.notify_one();
    }

    /// Waits for a grant or a nudge. `Notify` keeps a permit when nobody waits, so a grant added
    /// between a `take` and this call is not missed.
    pub(crate) async fn notified(&self) {
        self.notify.notified().await;
    }
}
