//! [`Permit`]: bytes a connection may move now, taken from its direction's budget by the task
//! that moves them.
//!
//! Whatever is left when a `Permit` is dropped goes back to the arbiter, on every path: a
//! stalled write, an error, a `?`, a cancelled future. A permit taken under a limit since
//! changed (or lifted) is worth nothing: it is neither spent nor given back.

use fairio_policy::{Key, Policy};

use super::Direction;

/// Bytes a connection may move now, under the limit of one generation.
pub(crate) struct Permit<'a, P: Policy> {
    pub(crate) dir: &'a Direction<P>,
    pub(crate) key: Key,
    pub(crate) generation: u64,
    pub(crate) bytes: u64,
}

impl<P: Policy> Permit<'_, P> {
    /// The limit's generation the permit was taken under.
    pub(crate) fn generation(&self) -> u64 {
        self.generation
    }

    /// Bytes left to spend, or 0 once the limit it was taken under has changed.
    pub(crate) fn bytes(&self) -> u64 {
        if self.is_current() { self.bytes } else { 0 }
    }

    /// Whether the limit this permit was taken under is still in force.
    pub(crate) fn is_current(&self) -> bool {
        self.dir.generation() == self.generation
    }

    /// Adds what the arbiter has granted the connection since (a later decision of the same
    /// generation), without waiting.
    pub(crate) fn top_up(&mut self) {
        let mut more = self.dir.take(self.key);
        if more.generation == self.generation {
            self.bytes += std::mem::take(&mut more.bytes);
        } else if more.is_current() {
            // This one is stale: the newer permit replaces it, and is not given back.
            self.generation = more.generation;
            self.bytes = std::mem::take(&mut more.bytes);
        }
    }

    /// Puts what is left back among the connection's grants, for its next permit: a mover
    /// that will use it next (its next round's bytes, asked for with this one's) keeps its
    /// place. Void bytes are dropped, as ever.
    // Only a splice keeps a permit, and loom builds no splice.
    #[cfg_attr(loom, allow(dead_code))]
    pub(crate) fn keep(mut self) {
        let bytes = std::mem::take(&mut self.bytes);
        if bytes > 0 {
            self.dir.keep(self.key, self.generation, bytes);
        }
    }

    /// Marks `n` bytes moved. `n` must not exceed [`bytes`](Self::bytes).
    pub(crate) fn spend(&mut self, n: u64) {
        debug_assert!(n <= self.bytes, "spent {n} of a {}-byte permit", self.bytes);
        self.bytes -= n.min(self.bytes);
    }
}

impl<P: Policy> Drop for Permit<'_, P> {
    fn drop(&mut self) {
        if self.bytes > 0 {
            self.dir.refund(self.key, self.generation, self.bytes);
        }
    }
}
