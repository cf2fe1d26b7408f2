//! [`Pipes`]: a bounded pool of pipes for splices.

use std::sync::{Arc, Mutex, MutexGuard};

#[cfg(all(target_os = "linux", not(loom)))]
type Pipe = fairio_fd::splice::Pipe;
#[cfg(not(all(target_os = "linux", not(loom))))]
type Pipe = ();

/// A bounded pool of pipes for [`Splice`](crate::Splice)s.
///
/// At most `max` pipes exist at once (two descriptors each); a splice that finds none free
/// copies through user space instead, so a full pool slows bytes down a little and never
/// stops them. A splice takes a pipe once it has bytes to move, keeps it while it stays busy,
/// and gives it back when it must wait (for bytes, or a permit), so the bound is on the busy
/// directions, and an idle connection holds none. Empty pipes given back are kept for the
/// next splice while others are in use (making one costs two system calls), and all are
/// closed once none is: at rest the pool holds no descriptor. A pipe given back with bytes
/// in it is closed. Clones share one pool.
///
/// ```
/// let pipes = fairio::Pipes::new(1024);
/// assert_eq!((pipes.in_use(), pipes.max()), (0, 1024));
/// ```
#[derive(Clone, Debug)]
pub struct Pipes {
    inner: Arc<Pool>,
}

#[derive(Debug)]
struct Pool {
    max: usize,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// Pipes made and not closed: free or taken.
    live: usize,
    free: Vec<Pipe>,
}

impl Pipes {
    /// A pool of at most `max` pipes; 0 turns splicing off (every splice copies).
    pub fn new(max: usize) -> Self {
        Self {
            inner: Arc::new(Pool {
                max,
                state: Mutex::new(State::default()),
            }),
        }
    }

    /// Pipes taken by running splices now.
    pub fn in_use(&self) -> usize {
        let st = self.state();
        st.live - st.free.len()
    }

    /// The most pipes that exist at once.
    pub fn max(&self) -> usize {
        self.inner.max
    }

    /// Whether splices may use pipes at all (`max` > 0, and the platform splices).
    pub(crate) fn enabled(&self) -> bool {
        self.inner.max > 0 && cfg!(all(target_os = "linux", not(loom)))
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // Each change is a single step on plain counts: a poisoned lock holds usable state.
        self.inner.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(all(target_os = "linux", not(loom)))]
impl Pipes {
    /// A free pipe, or a new one while fewer than `max` exist; `None` when the pool is full or
    /// the system has no descriptor left (the caller copies).
    pub(crate) fn take(&self) -> Option<Pipe> {
        {
            let mut st = self.state();
            if let Some(p) = st.free.pop() {
                return Some(p);
            }
            if st.live >= self.inner.max {
                return None;
            }
            st.live += 1;
        }
        match Pipe::new() {
            Ok(p) => Some(p),
            Err(e) => {
                let idle = {
                    let mut st = self.state();
                    st.live -= 1;
                    // A `put` meanwhile counted this one as in use and kept its pipe: at rest
                    // now, nothing is kept.
                    if st.live == st.free.len() {
                        st.live = 0;
                        std::mem::take(&mut st.free)
                    } else {
                        Vec::new()
                    }
                };
                drop(idle);
                tracing::debug!(error = %e, "no pipe for a splice; copying");
                None
            }
        }
    }

    /// Gives a pipe back: kept if it is empty and others are in use, else closed (bytes in it
    /// are counted by whoever held it).
    pub(crate) fn put(&self, pipe: Pipe) {
        let mut closed = Vec::new();
        {
            let mut st = self.state();
            let in_use_after = st.live - st.free.len() - 1;
            if pipe.is_empty() && in_use_after > 0 {
                st.free.push(pipe);
            } else {
                closed.push(pipe);
                if in_use_after == 0 {
                    closed.append(&mut st.free);
                }
                st.live -= closed.len();
            }
        }
        // Closed outside the lock.
        drop(closed);
    }
}

#[cfg(all(test, target_os = "linux", not(loom)))]
mod tests {
    use super::*;

    /// The pool never makes more than its bound, reuses an empty pipe while others are in use,
    /// and keeps none once none is in use.
    #[test]
    fn bounded_reused_and_empty_at_rest() {
        let pipes = Pipes::new(2);
        let a = pipes.take().expect("first");
        let b = pipes.take().expect("second");
        assert!(pipes.take().is_none(), "a third is over the bound");
        assert_eq!(pipes.in_use(), 2);
        pipes.put(a);
        assert_eq!(
            (pipes.in_use(), pipes.state().live),
            (1, 2),
            "kept for reuse"
        );
        let c = pipes.take().expect("the one given back");
        assert_eq!(pipes.state().live, 2, "reused, not made");
        pipes.put(b);
        pipes.put(c);
        assert_eq!(
            (pipes.in_use(), pipes.state().live),
            (0, 0),
            "none kept at rest"
        );
        assert!(!Pipes::new(0).enabled());
    }
}
