//! [`Members`]: the connections of one group, and which of them takes the group's turn.
//!
//! The group takes turns in the round like any connection (deficit round robin, see
//! [`Drr`](crate::Drr)). Inside it, each turn goes to the member with the smallest virtual time,
//! which advances by the bytes it is granted divided by its weight (start-time fair queueing):
//! members move in proportion to their weights, one that wants less than its part leaves the
//! rest to the others of its group, and one that comes back from idle starts at the group's
//! current virtual time, so it stores up no credit. A member held by its own cap waits in a
//! parking queue until the cap admits it; a group whose members are all held waits as a whole.

use std::collections::BTreeSet;

use crate::cap::Cap;
use crate::drr::Peek;
use crate::slab::{Key, Slab};

/// Where a member is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Place {
    /// No bytes to move.
    Idle,
    /// Bytes to move, in the ready set.
    Ready,
    /// Bytes to move, held by its cap until this time (ns).
    Parked(u64),
}

/// One connection of an arbiter: its group, parameters, demand and cap.
#[derive(Debug)]
pub(crate) struct Member<P> {
    /// The key of its group in the round.
    pub(crate) group: Key,
    pub(crate) params: P,
    pub(crate) weight: u32,
    pub(crate) demand: u64,
    /// Virtual time: bytes granted / weight, in 2⁻³² units, from when it last became ready.
    pass: u128,
    /// Its own cap, when it shares a group with others (a connection alone in its group has
    /// its cap on the group, where the round enforces it).
    pub(crate) cap: Option<Cap>,
    place: Place,
}

impl<P> Member<P> {
    pub(crate) fn new(group: Key, params: P, weight: u32, cap: Option<Cap>) -> Self {
        Self {
            group,
            params,
            weight: weight.max(1),
            demand: 0,
            pass: 0,
            cap,
            place: Place::Idle,
        }
    }
}

/// The members of one group: who is ready, who is held by a cap, and their total demand.
#[derive(Debug, Default)]
pub(crate) struct Members {
    /// Members with bytes to move and not held, by virtual time.
    ready: BTreeSet<(u128, Key)>,
    /// Members held by their own caps, by the time the cap admits them.
    parked: BTreeSet<(u64, Key)>,
    /// The virtual time of the member served last.
    vtime: u128,
    /// The sum of the members' demands (wide: each may be near `u64::MAX`).
    demand: u128,
    pub(crate) count: usize,
    /// Its owner removed it while members remained: it goes with the last of them.
    pub(crate) orphaned: bool,
}

impl Members {
    /// The group's demand in the round: the sum of its members'.
    pub(crate) fn demand(&self) -> u64 {
        u64::try_from(self.demand).unwrap_or(u64::MAX)
    }

    /// Makes a member ready, no earlier than the group's virtual time.
    fn ready<P>(&mut self, key: Key, m: &mut Member<P>) {
        m.pass = m.pass.max(self.vtime);
        m.place = Place::Ready;
        self.ready.insert((m.pass, key));
    }

    /// Takes a member out of the ready set or the parking queue.
    fn unplace<P>(&mut self, key: Key, m: &mut Member<P>) {
        match m.place {
            Place::Ready => {
                self.ready.remove(&(m.pass, key));
            }
            Place::Parked(until) => {
                self.parked.remove(&(until, key));
            }
            Place::Idle => {}
        }
        m.place = Place::Idle;
    }

    /// Sets a member's demand; the group's demand follows.
    pub(crate) fn set_demand<P>(&mut self, key: Key, m: &mut Member<P>, bytes: u64) {
        self.demand = self.demand - u128::from(m.demand).min(self.demand) + u128::from(bytes);
        m.demand = bytes;
        match (m.place, bytes > 0) {
            (Place::Idle, true) => {
                if let Some(cap) = m.cap.as_mut() {
                    cap.forget_idle();
                }
                self.ready(key, m);
            }
            (Place::Ready, false) => self.unplace(key, m),
            // A parked member keeps its place in the queue; it leaves it idle if it has no
            // demand by then.
            _ => {}
        }
    }

    /// A member has been removed from the arbiter.
    pub(crate) fn forget<P>(&mut self, key: Key, m: &mut Member<P>) {
        self.unplace(key, m);
        self.demand -= u128::from(m.demand).min(self.demand);
        self.count = self.count.saturating_sub(1);
    }

    /// A member's cap changed: a member held by the old one is let go, for the new one to
    /// decide at its next turn.
    pub(crate) fn recap<P>(&mut self, key: Key, m: &mut Member<P>) {
        if let Place::Parked(_) = m.place {
            self.unplace(key, m);
            if m.demand > 0 {
                self.ready(key, m);
            }
        }
    }

    fn unpark_due<P>(&mut self, members: &mut Slab<Member<P>>, t: u64) {
        while let Some(&(until, key)) = self.parked.first() {
            if until > t {
                break;
            }
            self.parked.pop_first();
            if let Some(m) = members.get_mut(key) {
                m.place = Place::Idle;
                if m.demand > 0 {
                    self.ready(key, m);
                }
            }
        }
    }

    /// Who takes a turn of up to `max` bytes at `t`: the ready member with the smallest virtual
    /// time that its cap admits. Members their caps hold are parked on the way.
    pub(crate) fn peek<P>(&mut self, members: &mut Slab<Member<P>>, max: u64, t: u64) -> Peek {
        self.unpark_due(members, t);
        while let Some(&(pass, key)) = self.ready.first() {
            let Some(m) = members.get_mut(key) else {
                self.ready.pop_first();
                continue;
            };
            let cap_max = m.cap.as_ref().map_or(u64::MAX, Cap::grant_max);
            let bytes = max.min(m.demand).min(cap_max);
            if bytes == 0 {
                self.ready.remove(&(pass, key));
                m.place = Place::Idle;
                continue;
            }
            if let Some(cap) = m.cap.as_mut() {
                if let Err(until) = cap.admit(bytes) {
                    self.ready.remove(&(pass, key));
                    m.place = Place::Parked(until);
                    self.parked.insert((until, key));
                    continue;
                }
            }
            return Peek::Member(key, bytes);
        }
        match self.parked.first() {
            Some(&(until, _)) => Peek::Blocked(until),
            None => Peek::Empty,
        }
    }

    /// The grant `peek` proposed was made: the member's virtual time advances by the bytes
    /// over its weight.
    pub(crate) fn commit<P>(&mut self, key: Key, m: &mut Member<P>, bytes: u64) {
        self.unplace(key, m);
        self.vtime = self.vtime.max(m.pass);
        m.pass += (u128::from(bytes) << 32) / u128::from(m.weight.max(1));
        m.demand -= bytes.min(m.demand);
        self.demand -= u128::from(bytes).min(self.demand);
        if let Some(cap) = m.cap.as_mut() {
            cap.spend(bytes);
        }
        if m.demand > 0 {
            m.place = Place::Ready;
            self.ready.insert((m.pass, key));
        }
    }
}
