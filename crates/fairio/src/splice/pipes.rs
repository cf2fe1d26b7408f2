//! [`Pipes`]: a bounded pool of pipes for splices. A splice holds a pipe only while bytes are
//! in it, so the pool's bound is on the directions with bytes in flight, not on the
//! connections.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// A bounded pool of pipes for [`Splice`](crate::Splice)s.
///
/// At most `max` pipes exist at once (two descriptors each); a splice that finds none free
/// copies through user space instead, so a full pool slows bytes down a little and never
/// stops them. Empty pipes go back to the pool; a pipe dropped with bytes in it is closed.
/// Clones share one pool.
///
/// ```
/// let pipes = fairio::Pipes::new(1024);
/// assert_eq!(pipes.in_use(), 0);
/// ```
#[derive(Clone, Debug)]
pub struct Pipes {
    inner: Arc<Pool>,
}

#[derive(Debug)]
struct Pool {
    max: usize,
    /// Pipes made and not closed: free or taken.
    live: AtomicUsize,
    #[cfg(all(target_os = "linux", not(loom)))]
    free: Mutex<Vec<fairio_fd::splice::Pipe>>,
    #[cfg(not(all(target_os = "linux", not(loom))))]
    free: Mutex<Vec<()>>,
}

impl Pipes {
    /// A pool of at most `max` pipes; 0 turns splicing off (every splice copies).
    pub fn new(max: usize) -> Self {
        Self {
            inner: Arc::new(Pool {
                max,
                live: AtomicUsize::new(0),
                free: Mutex::new(Vec::new()),
            }),
        }
    }

    /// Pipes taken by splices now (holding bytes).
    pub fn in_use(&self) -> usize {
        let free = self
            .inner
            .free
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .len();
        self.inner.live.load(Ordering::Acquire).saturating_sub(free)
    }

    /// The most pipes that exist at once.
    pub fn max(&self) -> usize {
        self.inner.max
    }

    /// Whether splices may use pipes at all (`max` > 0, and the platform splices).
    pub(crate) fn enabled(&self) -> bool {
        self.inner.max > 0 && cfg!(all(target_os = "linux", not(loom)))
    }
}

#[cfg(all(target_os = "linux", not(loom)))]
impl Pipes {
    /// A free pipe, or a new one while fewer than `max` exist; `None` when the pool is full or
    /// the system has no descriptor left (the caller copies).
    pub(crate) fn take(&self) -> Option<fairio_fd::splice::Pipe> {
        let pool = &self.inner;
        if let Some(p) = pool.free.lock().unwrap_or_else(|e| e.into_inner()).pop() {
            return Some(p);
        }
        let claimed = pool
            .live
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < pool.max).then_some(n + 1)
            })
            .is_ok();
        if !claimed {
            return None;
        }
        match fairio_fd::splice::Pipe::new() {
            Ok(p) => Some(p),
            Err(e) => {
                pool.live.fetch_sub(1, Ordering::AcqRel);
                tracing::debug!(error = %e, "no pipe for a splice; copying");
                None
            }
        }
    }

    /// Gives a pipe back: kept if empty, closed if it holds bytes (they are counted by whoever
    /// held the pipe).
    pub(crate) fn put(&self, pipe: fairio_fd::splice::Pipe) {
        if pipe.is_empty() {
            self.inner
                .free
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(pipe);
        } else {
            drop(pipe);
            self.inner.live.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

#[cfg(all(test, target_os = "linux", not(loom)))]
mod tests {
    use super::*;

    /// The pool never makes more than its bound, reuses empty pipes, and closes one given back
    /// with bytes in it.
    #[test]
    fn bounded_and_reused() {
        let pipes = Pipes::new(2);
        let a = pipes.take().expect("first");
        let b = pipes.take().expect("second");
        assert!(pipes.take().is_none(), "a third is over the bound");
        assert_eq!(pipes.in_use(), 2);
        pipes.put(a);
        assert_eq!(pipes.in_use(), 1);
        let c = pipes.take().expect("the one given back");
        pipes.put(b);
        pipes.put(c);
        assert_eq!(pipes.in_use(), 0);
        assert_eq!(pipes.inner.live.load(Ordering::Acquire), 2);
        assert!(!Pipes::new(0).enabled());
    }
}
