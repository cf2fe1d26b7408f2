//! A first-come-first-served list of waiting tasks, one per side of the queue.

use std::collections::VecDeque;
use std::task::Waker;

/// The ticket of a waiting future; unique within its list.
pub(crate) type Ticket = u64;

/// Waiting tasks in arrival order. Only the head may proceed, which is what makes the queue
/// first come, first served. Lists stay short (one entry per concurrent caller), so the linear
/// removal of a cancelled waiter is cheap.
#[derive(Debug, Default)]
pub(crate) struct Waiters {
    next: Ticket,
    list: VecDeque<(Ticket, Waker)>,
}

impl Waiters {
    /// Whether a caller holding `ticket` (or none, for a newcomer) may proceed now.
    pub(crate) fn may_proceed(&self, ticket: Option<Ticket>) -> bool {
        match ticket {
            None => self.list.is_empty(),
            Some(t) => self.list.front().is_some_and(|(head, _)| *head == t),
        }
    }

    /// Joins the line, or refreshes the waker of a caller already in it.
    pub(crate) fn wait(&mut self, ticket: &mut Option<Ticket>, waker: &Waker) {
        match ticket {
            Some(t) => {
                if let Some((_, w)) = self.list.iter_mut().find(|(id, _)| id == t) {
                    w.clone_from(waker);
                }
            }
            None => {
                let t = self.next;
                self.next += 1;
                self.list.push_back((t, waker.clone()));
                *ticket = Some(t);
            }
        }
    }

    /// Leaves the line. Returns the waker of the new head when the leaver was the head, since the
    /// head may have been woken for something the leaver no longer takes.
    pub(crate) fn leave(&mut self, ticket: &mut Option<Ticket>) -> Option<Waker> {
        let t = ticket.take()?;
        let pos = self.list.iter().position(|(id, _)| *id == t)?;
        self.list.remove(pos);
        if pos == 0 { self.head() } else { None }
    }

    /// The waker of the head of the line, to be woken once the lock is released.
    pub(crate) fn head(&self) -> Option<Waker> {
        self.list.front().map(|(_, w)| w.clone())
    }

    /// Every waker in the line, for close.
    pub(crate) fn all(&self) -> Vec<Waker> {
        self.list.iter().map(|(_, w)| w.clone()).collect()
    }
}
