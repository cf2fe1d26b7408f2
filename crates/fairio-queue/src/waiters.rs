//! A first-come-first-served list of waiting tasks, one per side of the queue.

use std::collections::VecDeque;
use std::task::Waker;

/// The ticket of a waiting future; unique within its list.
pub(crate) type Ticket = u64;

/// Waiting tasks in arrival order. Only the head may proceed, which is what makes the queue
/// first come, first served. Lists stay short (one entry per concurrent caller), so the linear
/// removal of a cancelled waiter is cheap.
///
/// A *lapsing* place belongs to a poll-based owner (an `AsyncRead`/`AsyncWrite` adapter), which
/// may stop polling without a word: a caller that gives up on a pending `poll_write` keeps no
/// future whose drop could leave the line. Such a place, once woken for its turn by the queue
/// (room, or bytes, came), keeps it only until another caller comes first; it then rejoins at
/// the back when it polls again. So an abandoned poll never holds up the others, and a live
/// poller loses at most its place, never bytes. A turn handed on by the waiter before it
/// (which proceeded and left) does not lapse: the leaver's next call must not take it.
#[derive(Debug, Default)]
pub(crate) struct Waiters {
    next: Ticket,
    list: VecDeque<Entry>,
}

#[derive(Debug)]
struct Entry {
    ticket: Ticket,
    waker: Waker,
    lapsing: bool,
    /// Woken for its turn, and not back since.
    woken: bool,
}

/// The wakers to wake for the head's turn: the head's and, when the head's place may lapse,
/// the next one's, which takes the turn if the head does not come back first.
#[derive(Debug, Default)]
pub(crate) struct Heads(Option<Waker>, Option<Waker>);

impl Heads {
    /// Wakes them, once the queue's lock is released.
    pub(crate) fn wake(self) {
        for w in [self.0, self.1].into_iter().flatten() {
            w.wake();
        }
    }
}

impl Waiters {
    /// Whether a caller holding `ticket` (or none, for a newcomer) may proceed now. A lapsed
    /// head gives way first; a caller whose place lapsed counts as a newcomer.
    pub(crate) fn may_proceed(&mut self, ticket: &mut Option<Ticket>) -> bool {
        while self
            .list
            .front()
            .is_some_and(|e| e.lapsing && e.woken && Some(e.ticket) != *ticket)
        {
            self.list.pop_front();
        }
        if let Some(t) = *ticket {
            if !self.list.iter().any(|e| e.ticket == t) {
                *ticket = None;
            }
        }
        match *ticket {
            None => self.list.is_empty(),
            Some(t) => match self.list.front_mut() {
                Some(head) if head.ticket == t => {
                    // Back for its turn.
                    head.woken = false;
                    true
                }
                _ => false,
            },
        }
    }

    /// Joins the line (at the back, also for a caller whose place lapsed), or refreshes the
    /// waker of a caller already in it. `lapsing`: see [`Waiters`].
    pub(crate) fn wait(&mut self, ticket: &mut Option<Ticket>, waker: &Waker, lapsing: bool) {
        if let Some(t) = *ticket {
            if let Some(e) = self.list.iter_mut().find(|e| e.ticket == t) {
                e.waker.clone_from(waker);
                e.woken = false;
                return;
            }
        }
        let t = self.next;
        self.next += 1;
        self.list.push_back(Entry {
            ticket: t,
            waker: waker.clone(),
            lapsing,
            woken: false,
        });
        *ticket = Some(t);
    }

    /// Leaves the line. Returns the wakers of the new head when the leaver was the head, since
    /// the head may have been woken for something the leaver no longer takes.
    pub(crate) fn leave(&mut self, ticket: &mut Option<Ticket>) -> Heads {
        let Some(t) = ticket.take() else {
            return Heads::default();
        };
        let Some(pos) = self.list.iter().position(|e| e.ticket == t) else {
            return Heads::default();
        };
        self.list.remove(pos);
        match self.list.front() {
            // The turn passes to the new head: it does not lapse for this wake-up, which came
            // from the one before it and not from the queue (a newcomer arriving in the same
            // breath, such as the leaver's next call, must not take the turn from it).
            Some(head) if pos == 0 => Heads(Some(head.waker.clone()), None),
            _ => Heads::default(),
        }
    }

    /// The wakers for the head's turn (see [`Heads`]), to be woken once the lock is released.
    pub(crate) fn head(&mut self) -> Heads {
        let mut it = self.list.iter_mut();
        let Some(head) = it.next() else {
            return Heads::default();
        };
        head.woken = true;
        let next = if head.lapsing {
            it.next().map(|e| e.waker.clone())
        } else {
            None
        };
        Heads(Some(head.waker.clone()), next)
    }

    /// Every waker in the line, for close.
    pub(crate) fn all(&self) -> Vec<Waker> {
        self.list.iter().map(|e| e.waker.clone()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lapsed_head_gives_way_and_rejoins_at_the_back() {
        let w = Waker::noop();
        let mut line = Waiters::default();
        let (mut a, mut b) = (None, None);
        line.wait(&mut a, w, true);
        line.wait(&mut b, w, false);
        assert!(!line.may_proceed(&mut b));
        // Not woken yet: the head keeps its place.
        assert!(!line.may_proceed(&mut None));
        // Woken for its turn, and the next is woken with it.
        let heads = line.head();
        assert!(heads.0.is_some() && heads.1.is_some());
        assert!(line.may_proceed(&mut b), "the next takes the turn");
        let _ = line.leave(&mut b);
        // The lapsed owner comes back: a newcomer now, and alone, so it may go.
        assert!(line.may_proceed(&mut a));
        assert_eq!(a, None);
        line.wait(&mut a, w, true);
        assert!(line.may_proceed(&mut a));
    }

    #[test]
    fn a_lapsing_head_that_comes_back_first_keeps_its_turn() {
        let w = Waker::noop();
        let mut line = Waiters::default();
        let (mut a, mut b) = (None, None);
        line.wait(&mut a, w, true);
        line.wait(&mut b, w, false);
        let _ = line.head();
        assert!(line.may_proceed(&mut a));
        assert!(!line.may_proceed(&mut b));
    }

    #[test]
    fn a_holding_head_keeps_its_place_when_woken() {
        let w = Waker::noop();
        let mut line = Waiters::default();
        let (mut a, mut b) = (None, None);
        line.wait(&mut a, w, false);
        line.wait(&mut b, w, false);
        let heads = line.head();
        assert!(heads.1.is_none());
        assert!(!line.may_proceed(&mut b));
        assert!(!line.may_proceed(&mut None));
        assert!(line.may_proceed(&mut a));
    }
}
