//! Lists of waiting connections with lazy removal, and a timed parking lot.
//!
//! A connection can leave a list from anywhere (it went idle, or was removed). Rather than
//! search the list, each connection carries a ticket that changes whenever it joins a list or
//! the parking lot; an entry whose ticket no longer matches is stale and skipped when it reaches
//! the front. Every operation is O(1) amortised.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};

use crate::Key;

/// A place in a list or in the parking lot.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Entry {
    pub(crate) key: Key,
    pub(crate) ticket: u32,
}

/// A first-in-first-out list of waiting connections.
#[derive(Debug, Default)]
pub(crate) struct Lane(VecDeque<Entry>);

impl Lane {
    pub(crate) fn push(&mut self, entry: Entry) {
        self.0.push_back(entry);
    }

    /// The first entry still valid, dropping stale ones on the way.
    pub(crate) fn front(&mut self, valid: impl Fn(Entry) -> bool) -> Option<Entry> {
        while let Some(&e) = self.0.front() {
            if valid(e) {
                return Some(e);
            }
            self.0.pop_front();
        }
        None
    }

    pub(crate) fn pop(&mut self) -> Option<Entry> {
        self.0.pop_front()
    }
}

/// Connections waiting until a time (their own cap), earliest first.
#[derive(Debug, Default)]
pub(crate) struct Parking(BinaryHeap<Reverse<(u64, Entry)>>);

impl Parking {
    pub(crate) fn park(&mut self, until: u64, entry: Entry) {
        self.0.push(Reverse((until, entry)));
    }

    /// Takes the next valid entry due at or before `now`.
    pub(crate) fn due(&mut self, now: u64, valid: impl Fn(Entry) -> bool) -> Option<Entry> {
        while let Some(&Reverse((until, e))) = self.0.peek() {
            if !valid(e) {
                self.0.pop();
                continue;
            }
            if until > now {
                return None;
            }
            self.0.pop();
            return Some(e);
        }
        None
    }

    /// When the next valid entry is due.
    pub(crate) fn next_due(&mut self, valid: impl Fn(Entry) -> bool) -> Option<u64> {
        while let Some(&Reverse((until, e))) = self.0.peek() {
            if valid(e) {
                return Some(until);
            }
            self.0.pop();
        }
        None
    }
}
