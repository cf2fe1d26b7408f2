//! [`Queues`]: a group's children with bytes to move, in the orders the walk takes them.
//!
//! Each queue is a binary heap with lazy deletion: an entry carries its node's ticket when it
//! was pushed, and is stale once the node's ticket has moved on (the node was charged, held,
//! woken or went idle). So a decision costs O(log n) per level, not a scan of the children.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use crate::slab::Key;

/// An entry: its order (virtual time, or an instant), a sequence number that breaks ties first
/// come first served, the child, and the child's ticket when pushed.
pub(crate) type Entry<K> = Reverse<(K, u64, Key, u64)>;

#[derive(Debug, Default)]
pub(crate) struct Queues {
    /// Children that may move, by the start of their next turn beyond their guarantee.
    pub(crate) shared: BinaryHeap<Entry<u128>>,
    /// Children owed guaranteed bytes now, by the start of their next guaranteed turn.
    pub(crate) owed: BinaryHeap<Entry<u128>>,
    /// Children with a guarantee not owed yet, by when it will be.
    pub(crate) due: BinaryHeap<Entry<u64>>,
    /// Children held by a ceiling (theirs, or every child's below them), by when they may
    /// move again.
    pub(crate) held: BinaryHeap<Entry<u64>>,
}

impl Queues {
    /// How many entries, stale ones included.
    pub(crate) fn len(&self) -> usize {
        self.shared.len() + self.owed.len() + self.due.len() + self.held.len()
    }

    /// Keeps only the entries `live` accepts.
    pub(crate) fn retain(&mut self, live: impl Fn(Key, u64) -> bool) {
        self.shared.retain(|Reverse((_, _, k, t))| live(*k, *t));
        self.owed.retain(|Reverse((_, _, k, t))| live(*k, *t));
        self.due.retain(|Reverse((_, _, k, t))| live(*k, *t));
        self.held.retain(|Reverse((_, _, k, t))| live(*k, *t));
    }
}
