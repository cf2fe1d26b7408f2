//! The shared, thread-safe facts about one stream: id, byte counts, closing reason, and what
//! the peer has acknowledged.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock, PoisonError};

use crate::{CloseReason, UnsentBound};

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
    bound: UnsentBound,
    probe: Mutex<Probe>,
    /// The write side was shut down (a FIN queued): the kernel counts it as one more byte.
    fin: AtomicBool,
}

/// Where the count of unacknowledged bytes comes from.
#[derive(Debug)]
pub(crate) enum Probe {
    /// The platform cannot tell (not TCP, not Linux).
    Unknown,
    /// A TCP socket that is open: asked at each reading. The descriptor stays open while this
    /// is set, because the last half of the stream to go sets [`Probe::Final`] (under the lock)
    /// before it lets go of its part of the socket.
    #[cfg(all(target_os = "linux", not(loom)))]
    Live(std::os::fd::RawFd),
    /// The count read as the write half let go of the socket.
    Final(Option<u64>),
}

impl FdInfo {
    pub(crate) fn new(id: u64, bound: UnsentBound, probe: Probe) -> Self {
        Self {
            id,
            read: AtomicU64::new(0),
            written: AtomicU64::new(0),
            reason: OnceLock::new(),
            bound,
            probe: Mutex::new(probe),
            fin: AtomicBool::new(false),
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

    /// Bytes written to the stream so far (accepted by the stream, not necessarily delivered:
    /// see [`unacked`](Self::unacked)).
    pub fn bytes_written(&self) -> u64 {
        self.written.load(Ordering::Relaxed)
    }

    /// Of the [bytes written](Self::bytes_written), how many the peer has not acknowledged yet
    /// (waiting unsent in the kernel, or sent and not acknowledged), where the platform tells:
    /// a TCP stream on Linux (`SIOCOUTQ`). Once the stream is closed (both halves gone), the
    /// figure it had then. `None` where it cannot be known.
    ///
    /// `bytes_written() - unacked()` is what the peer's TCP has received (it may not have read
    /// it yet).
    pub fn unacked(&self) -> Option<u64> {
        let probe = self.probe.lock().unwrap_or_else(PoisonError::into_inner);
        let n = match &*probe {
            Probe::Unknown => None,
            #[cfg(all(target_os = "linux", not(loom)))]
            Probe::Live(fd) => crate::sys::unacked(*fd).ok(),
            Probe::Final(n) => *n,
        };
        // A queued FIN takes a sequence number, and bytes written around the Fd (a handshake
        // before it was wrapped) are in the kernel's count but not in ours.
        let fin = u64::from(self.fin.load(Ordering::Acquire));
        n.map(|n| n.saturating_sub(fin).min(self.bytes_written()))
    }

    /// What bounds the bytes the kernel takes ahead of the peer.
    pub fn unsent_bound(&self) -> UnsentBound {
        self.bound
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

    pub(crate) fn set_fin_sent(&self) {
        self.fin.store(true, Ordering::Release);
    }

    pub(crate) fn add_written(&self, n: usize) {
        self.written.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// Takes the last reading of a live probe; called before the socket's write half goes.
    pub(crate) fn retire_probe(&self) {
        let mut probe = self.probe.lock().unwrap_or_else(PoisonError::into_inner);
        #[cfg(all(target_os = "linux", not(loom)))]
        if let Probe::Live(fd) = &*probe {
            *probe = Probe::Final(crate::sys::unacked(*fd).ok());
        }
        let _ = &mut probe;
    }
}

/// Retires the probe of its `FdInfo` when dropped; shared by the halves of a split stream (or
/// held by the whole one), each declaring it before its part of the stream so it drops first.
#[derive(Debug)]
pub(crate) struct ProbeGuard(pub(crate) std::sync::Arc<FdInfo>);

impl Drop for ProbeGuard {
    fn drop(&mut self) {
        self.0.retire_probe();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The accounting of "sent" against "acknowledged", with the kernel's answer simulated.
    #[test]
    fn unacked_is_what_the_kernel_says_within_what_was_written() {
        let info = FdInfo::new(1, UnsentBound::Unbounded, Probe::Final(Some(30)));
        info.add_written(100);
        assert_eq!(info.unacked(), Some(30));
        // A queued FIN, or bytes written around the Fd, never count beyond what it wrote.
        let info = FdInfo::new(2, UnsentBound::Unbounded, Probe::Final(Some(500)));
        info.add_written(100);
        assert_eq!(info.unacked(), Some(100));
        // Platforms and streams that cannot tell.
        let info = FdInfo::new(3, UnsentBound::Unbounded, Probe::Unknown);
        info.add_written(100);
        assert_eq!(info.unacked(), None);
        info.retire_probe();
        assert_eq!(info.unacked(), None);
        let info = FdInfo::new(4, UnsentBound::Unbounded, Probe::Final(None));
        assert_eq!(info.unacked(), None);
        // After a FIN, the kernel counts it too: every data byte acknowledged reads 0.
        let info = FdInfo::new(5, UnsentBound::Unbounded, Probe::Final(Some(1)));
        info.add_written(100);
        info.set_fin_sent();
        assert_eq!(info.unacked(), Some(0));
    }
}
