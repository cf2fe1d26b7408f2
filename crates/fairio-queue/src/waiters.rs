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
/// future whose drop could leave the line. Once such a place has been woken for its turn and
/// its owner has not come back, it is *passable*: any other caller may go ahead of it, and it
/// keeps its place for when its owner comes back. So an abandoned poll never holds up the
/// others, and a live poller loses at most a turn, never its place or bytes.
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

impl Entry {
    fn passable(&self) -> bool {
        self.lapsing && self.woken
    }
}

/// The wakers to wake for a turn (see [`Waiters::turn`]), once the queue's lock is released.
/// The usual turn wakes one waiter, with no allocation; places that may lapse add more.
#[derive(Debug, Default)]
pub(crate) struct Heads(Option<Waker>, Vec<Waker>);

impl Heads {
    fn push(&mut self, w: Waker) {
        if self.0.is_none() {
            self.0 = Some(w);
        } else {
            self.1.push(w);
        }
    }

    /// How many wakers.
    #[cfg(test)]
    fn len(&self) -> usize {
        usize::from(self.0.is_some()) + self.1.len()
    }

    /// Wakes them.
    pub(crate) fn wake(self) {
        for w in self.0.into_iter().chain(self.1) {
            w.wake();
        }
    }
}

impl Waiters {
    /// Whether a caller holding `ticket` (or none, for a newcomer) may proceed now: every place
    /// ahead of it is passable (or there is none). A caller whose place is gone counts as a
    /// newcomer.
    pub(crate) fn may_proceed(&mut self, ticket: &mut Option<Ticket>) -> bool {
        if let Some(t) = *ticket {
            if !self.list.iter().any(|e| e.ticket == t) {
                *ticket = None;
            }
        }
        let Some(t) = *ticket else {
            return self.list.iter().all(Entry::passable);
        };
        for e in &mut self.list {
            if e.ticket == t {
                // Back for its turn.
                e.woken = false;
                return true;
            }
            if !e.passable() {
                return false;
            }
        }
        false
    }

    /// Joins the line at the back, or refreshes the waker of a caller already in it.
    /// `lapsing`: see [`Waiters`].
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

    /// Leaves the line. When the leaver had the turn (every place ahead of it passable), the
    /// turn passes on: the wakers to wake for it.
    pub(crate) fn leave(&mut self, ticket: &mut Option<Ticket>) -> Heads {
        let Some(t) = ticket.take() else {
            return Heads::default();
        };
        let Some(pos) = self.list.iter().position(|e| e.ticket == t) else {
            return Heads::default();
        };
        self.list.remove(pos);
        if self.list.iter().take(pos).all(Entry::passable) {
            self.turn()
        } else {
            Heads::default()
        }
    }

    /// The turn comes (room, or bytes, or the one before left): the places at the front that
    /// may lapse are woken and marked (each may be abandoned), and so is the first that may not,
    /// which takes the turn if none of them comes back first. Wake them once the lock is
    /// released.
    pub(crate) fn turn(&mut self) -> Heads {
        let mut heads = Heads::default();
        for e in &mut self.list {
            if !e.lapsing {
                heads.push(e.waker.clone());
                break;
            }
            // Woken once is enough: its owner clears the mark whenever it comes back.
            if !e.woken {
                heads.push(e.waker.clone());
                e.woken = true;
            }
        }
        heads
    }

    /// Every waker in the line, for close.
    pub(crate) fn all(&self) -> Vec<Waker> {
        self.list.iter().map(|e| e.waker.clone()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line_of(lapsing: &[bool]) -> (Waiters, Vec<Option<Ticket>>) {
        let mut line = Waiters::default();
        let tickets = lapsing
            .iter()
            .map(|&l| {
                let mut t = None;
                line.wait(&mut t, Waker::noop(), l);
                t
            })
            .collect();
        (line, tickets)
    }

    #[test]
    fn a_woken_lapsing_head_is_passed_and_keeps_its_place() {
        let (mut line, mut t) = line_of(&[true, false]);
        assert!(!line.may_proceed(&mut t[1]));
        // Not woken yet: the head keeps its turn.
        assert!(!line.may_proceed(&mut None));
        // Woken for its turn, and the next is woken with it.
        assert_eq!(line.turn().len(), 2);
        assert!(line.may_proceed(&mut t[1]), "the next takes the turn");
        let _ = line.leave(&mut t[1]);
        // The owner comes back: still first in line.
        assert!(line.may_proceed(&mut t[0]));
        assert!(t[0].is_some());
        assert!(
            !line.may_proceed(&mut None),
            "back, it holds its turn again"
        );
    }

    #[test]
    fn a_lapsing_head_that_comes_back_first_keeps_its_turn() {
        let (mut line, mut t) = line_of(&[true, false]);
        let _ = line.turn();
        assert!(line.may_proceed(&mut t[0]));
        assert!(!line.may_proceed(&mut t[1]));
    }

    #[test]
    fn a_holding_head_keeps_its_turn_when_woken() {
        let (mut line, mut t) = line_of(&[false, false]);
        assert_eq!(line.turn().len(), 1);
        assert!(!line.may_proceed(&mut t[1]));
        assert!(!line.may_proceed(&mut None));
        assert!(line.may_proceed(&mut t[0]));
    }

    /// Two abandoned pollers in a row: one turn makes both passable.
    #[test]
    fn a_chain_of_abandoned_places_holds_up_no_one() {
        let (mut line, _abandoned) = line_of(&[true, true]);
        let _ = line.turn();
        assert!(line.may_proceed(&mut None));
    }

    /// The turn handed on by a leaver to an abandoned place: passable at once, so a newcomer
    /// goes on with no further event (a reader with bytes still queued).
    #[test]
    fn a_turn_handed_to_an_abandoned_place_is_passable() {
        let (mut line, mut t) = line_of(&[false, true]);
        let _ = line.turn();
        assert!(line.may_proceed(&mut t[0]));
        let heads = line.leave(&mut t[0]);
        assert_eq!(heads.len(), 1);
        assert!(line.may_proceed(&mut None));
    }

    /// A caller that went ahead of passable places hands the turn on when it leaves.
    #[test]
    fn a_caller_that_passed_hands_the_turn_on() {
        let (mut line, mut t) = line_of(&[true, false, false]);
        let _ = line.turn();
        assert!(line.may_proceed(&mut t[1]));
        assert!(!line.may_proceed(&mut t[2]));
        let heads = line.leave(&mut t[1]);
        // The next that may take the turn (the abandoned head was woken already).
        assert_eq!(heads.len(), 1);
        assert!(line.may_proceed(&mut t[2]));
    }
}
