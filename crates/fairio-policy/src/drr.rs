//! [`Drr`]: deficit round robin with a new-flow lane, over a governor GCRA. The arbiter of
//! [`EqualShare`](crate::EqualShare) and [`Weighted`](crate::Weighted).

use std::collections::BTreeMap;
use std::num::NonZeroU64;
use std::time::Instant;

use crate::cap::{Cap, cap_for};
use crate::clock::{Epoch, ManualClock};
use crate::gcra::Gcra;
use crate::held::HeldWeights;
use crate::lanes::{Entry, Lane, Parking};
use crate::policy::{Arbiter, Decision};
use crate::tuning::{GRANT_HORIZON_NANOS, MAX_GRANT, credit_cap, floor, gcra_burst, grant_max};
use crate::{Key, Weight, slab::Slab};

/// Per-connection parameters that carry a weight. `()` weighs 1.
pub trait FlowWeight: Clone + Send + Sync + Default + 'static {
    /// The weight, at least 1.
    fn weight(&self) -> u32;
}

impl FlowWeight for () {
    fn weight(&self) -> u32 {
        1
    }
}

impl FlowWeight for Weight {
    fn weight(&self) -> u32 {
        self.get()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// No demand: in no lane.
    Idle,
    /// Backlogged, in the fresh or the old lane.
    Listed,
    /// Backlogged but held by its own cap until a time.
    Parked,
}

impl State {
    /// Backlogged connections, parked ones included, make up the active weight. Counting parked
    /// ones keeps quanta steady while capped connections come and go from parking; their turns
    /// still go to the others while they are parked.
    fn is_backlogged(self) -> bool {
        matches!(self, Self::Listed | Self::Parked)
    }
}

#[derive(Debug)]
struct Flow<P> {
    params: P,
    weight: u32,
    demand: u64,
    deficit: u64,
    /// Whether this visit's quantum was added already.
    topped: bool,
    state: State,
    ticket: u32,
    cap: Option<Cap>,
    /// Share credit: bytes the connection may still take without exceeding its share, refilled
    /// at its share rate up to one grant, and charged with every grant. Only a connection not
    /// in debt may use the fresh lane.
    credit: i64,
    credit_at: u64,
    /// Parked because every member with bytes to move was held by its own cap (a group), not
    /// by the flow's own cap: a member's new demand or cap may let it move.
    members_held: bool,
}

impl<P> Flow<P> {
    /// Refills the share credit for the time since the last refill, at `share` bytes/s.
    fn refill(&mut self, t: u64, share: u64, grant_cap: u64) {
        let dt = t.saturating_sub(self.credit_at);
        self.credit_at = t;
        let add = i64::try_from(mul_div(share, dt, 1_000_000_000)).unwrap_or(i64::MAX);
        let cap = i64::try_from(grant_cap).unwrap_or(i64::MAX);
        self.credit = self.credit.saturating_add(add).min(cap);
    }

    /// Whether the connection has share left over for the fresh lane: credit for the grant it
    /// is about to take.
    fn has_spare_share(&self, demand: u64, grant_cap: u64) -> bool {
        self.credit >= i64::try_from(demand.min(grant_cap)).unwrap_or(i64::MAX)
    }

    /// Charges a grant to the share credit; the debt is bounded so that a change of shares is
    /// forgotten after a few grants.
    fn charge(&mut self, bytes: u64, grant_cap: u64) {
        let floor = -4 * i64::try_from(grant_cap).unwrap_or(i64::MAX / 8);
        let bytes = i64::try_from(bytes).unwrap_or(i64::MAX);
        self.credit = self.credit.saturating_sub(bytes).max(floor);
    }
}

/// What the members of a flow answer when the flow's turn comes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Peek {
    /// This member takes the turn, with up to this many bytes.
    Member(Key, u64),
    /// Every member with bytes to move is held by its own cap until this time (ns).
    Blocked(u64),
    /// No member has bytes to move.
    Empty,
}

/// Chooses, inside a flow whose turn it is, the member that takes the grant: the flow is a
/// group of connections, and the member one of them.
pub(crate) trait Inner {
    /// Who takes a turn of up to `max` bytes of flow `flow` at `t`; changes nothing but
    /// members' parking, so that a grant the global limit then refuses costs nothing.
    fn peek(&mut self, flow: Key, max: u64, t: u64) -> Peek;
    /// The grant `peek` proposed was made.
    fn commit(&mut self, member: Key, bytes: u64);
}

/// A flow that is one connection: it takes every turn whole.
#[derive(Debug)]
pub(crate) struct Whole;

impl Inner for Whole {
    fn peek(&mut self, flow: Key, max: u64, _t: u64) -> Peek {
        Peek::Member(flow, max)
    }

    fn commit(&mut self, _member: Key, _bytes: u64) {}
}

/// Deficit round robin over the backlogged connections, with shares in proportion to weight,
/// under a global GCRA limit.
///
/// See the [crate docs](crate) for the algorithm and its guarantees.
#[derive(Debug)]
pub struct Drr<P> {
    epoch: Epoch,
    clock: ManualClock,
    flows: Slab<Flow<P>>,
    /// Connections that just became backlogged: served first, for one turn.
    fresh: Lane,
    /// Connections that stayed backlogged: served in turn.
    old: Lane,
    parking: Parking,
    /// Sum of the weights of the listed connections.
    active_weight: u64,
    /// The weights of the listed connections, as a multiset, for the smallest.
    weights: BTreeMap<u32, u32>,
    /// The active weight and the smallest weight as turns are sized from them: held at their
    /// recent peak, so that connections that come and go do not make turns uneven.
    held: HeldWeights,
    limit: Option<NonZeroU64>,
    /// The smallest grant worth making under the limit.
    floor: u64,
    global: Option<Gcra>,
}

fn listed<P>(flows: &Slab<Flow<P>>, e: Entry) -> bool {
    flows
        .get(e.key)
        .is_some_and(|f| f.ticket == e.ticket && f.state == State::Listed)
}

fn parked<P>(flows: &Slab<Flow<P>>, e: Entry) -> bool {
    flows
        .get(e.key)
        .is_some_and(|f| f.ticket == e.ticket && f.state == State::Parked)
}

/// A global limiter for a limit that was not in force before: it starts empty, not with a
/// burst. Connections take their permits as they ask, in their own tasks, so whatever budget
/// there is at the start would go to whoever asks first; empty, the first grant comes once
/// every connection that asked at the same instant is in the round. Its burst then builds up
/// only while the limit is not used in full.
fn fresh_gcra(rate: NonZeroU64, clock: &ManualClock) -> Gcra {
    let mut g = Gcra::new(rate, gcra_burst(rate), credit_cap(rate), clock);
    g.trim(0);
    g
}

fn mul_div(a: u64, b: u64, c: u64) -> u64 {
    u64::try_from(u128::from(a) * u128::from(b) / u128::from(c.max(1))).unwrap_or(u64::MAX)
}

impl<P: FlowWeight> Drr<P> {
    /// An arbiter with a global `limit` (bytes per second; `None`: unlimited), starting at `now`.
    pub fn new(limit: Option<NonZeroU64>, now: Instant) -> Self {
        let clock = ManualClock::default();
        Self {
            epoch: Epoch::new(now),
            global: limit.map(|r| fresh_gcra(r, &clock)),
            clock,
            flows: Slab::new(),
            fresh: Lane::default(),
            old: Lane::default(),
            parking: Parking::default(),
            active_weight: 0,
            weights: BTreeMap::new(),
            held: HeldWeights::new(0),
            limit,
            floor: limit.map_or(MAX_GRANT, floor),
        }
    }

    /// The clock the arbiter's limiters read.
    pub(crate) fn clock(&self) -> &ManualClock {
        &self.clock
    }

    /// The latest time the arbiter was given.
    pub(crate) fn now(&self) -> Instant {
        self.epoch.instant(self.clock.nanos())
    }

    /// Sets the clock to `now`; the time in nanoseconds since the epoch.
    pub(crate) fn tick(&self, now: Instant) -> u64 {
        let t = self.epoch.nanos(now);
        self.clock.set(t);
        self.clock.nanos()
    }

    /// Shows the active weight to the held weights, at the time of the last decision or call.
    fn observe_weights(&mut self) {
        let min = self.weights.keys().next().copied();
        self.held
            .observe(self.clock.nanos(), self.active_weight, min);
    }

    fn add_weight(&mut self, w: u32) {
        self.observe_weights();
        self.active_weight += u64::from(w);
        *self.weights.entry(w).or_insert(0) += 1;
        self.observe_weights();
    }

    fn remove_weight(&mut self, w: u32) {
        self.observe_weights();
        self.active_weight -= u64::from(w);
        if let Some(n) = self.weights.get_mut(&w) {
            *n -= 1;
            if *n == 0 {
                self.weights.remove(&w);
            }
        }
        self.observe_weights();
    }

    /// Puts a backlogged connection in a lane, with a fresh ticket.
    fn list(&mut self, key: Key, fresh: bool) {
        let Some(f) = self.flows.get_mut(key) else {
            return;
        };
        let was_listed = f.state.is_backlogged();
        f.state = State::Listed;
        f.ticket = f.ticket.wrapping_add(1);
        let (entry, w) = (
            Entry {
                key,
                ticket: f.ticket,
            },
            f.weight,
        );
        if !was_listed {
            self.add_weight(w);
        }
        if fresh {
            self.fresh.push(entry);
        } else {
            self.old.push(entry);
        }
    }

    /// Takes a connection out of the lanes (it stays where its entry is, as a stale entry).
    fn unlist(&mut self, key: Key, state: State) -> Option<u32> {
        let f = self.flows.get_mut(key)?;
        let was_listed = f.state.is_backlogged() && !state.is_backlogged();
        f.state = state;
        f.ticket = f.ticket.wrapping_add(1);
        let (w, ticket) = (f.weight, f.ticket);
        if state == State::Idle {
            f.deficit = 0;
            f.topped = false;
        }
        if was_listed {
            self.remove_weight(w);
        }
        Some(ticket)
    }

    /// Bytes added to a connection's deficit per turn: its share of the grant horizon, and at
    /// least the floor scaled by its weight relative to the lightest, so that every turn ends in
    /// a grant and proportions stay exact at one grant per turn.
    ///
    /// A turn is `w` times one per-weight amount, computed from the held weights (never below
    /// the momentary `active_weight`), so that turns are in exact proportion to weight whenever
    /// they are topped up, rounding included.
    fn quantum(&self, w: u32) -> u64 {
        self.quantum_among(w, self.active_weight)
    }

    fn quantum_among(&self, w: u32, active_weight: u64) -> u64 {
        let w_min = u64::from(self.held.min().unwrap_or(w).min(w));
        let among = self.held.total().max(active_weight).max(1);
        let per_weight = match self.limit {
            None => MAX_GRANT.div_ceil(w_min),
            Some(l) => {
                // Rounded up, so that the lightest connection's turn is at least the floor.
                let floor = self.floor.div_ceil(w_min);
                (mul_div(l.get(), GRANT_HORIZON_NANOS, 1_000_000_000) / among).max(floor)
            }
        };
        per_weight.saturating_mul(u64::from(w))
    }

    /// The largest grant for a connection of weight `w`: one whole turn, within
    /// [the floor, the limit's largest grant]. A turn larger than that (weights far apart)
    /// is taken in several consecutive grants.
    fn grant_cap(&self, w: u32) -> u64 {
        self.grant_cap_among(w, self.active_weight)
    }

    fn grant_cap_among(&self, w: u32, active_weight: u64) -> u64 {
        match self.limit {
            None => MAX_GRANT,
            Some(l) => self
                .quantum_among(w, active_weight)
                .clamp(self.floor, grant_max(l)),
        }
    }

    /// The share in bytes per second of a connection of weight `w` among `active_weight`.
    fn share_among(&self, w: u32, active_weight: u64) -> u64 {
        self.limit
            .map_or(0, |l| mul_div(l.get(), u64::from(w), active_weight))
    }

    fn unpark_due(&mut self, t: u64) {
        while let Some(e) = self.parking.due(t, |e| parked(&self.flows, e)) {
            self.unpark(e.key, t);
        }
    }

    /// Brings a connection back from its cap. One that stayed within its share (as a capped
    /// connection below its share does) takes the fresh lane, so that waiting for its cap does
    /// not also cost it a round; one over its share joins the back of the round.
    fn unpark(&mut self, key: Key, t: u64) {
        let Some(w) = self.flows.get(key).map(|f| f.weight) else {
            return;
        };
        let among = self.active_weight;
        let (share, grant_cap) = (self.share_among(w, among), self.grant_cap_among(w, among));
        let unlimited = self.limit.is_none();
        let Some(f) = self.flows.get_mut(key) else {
            return;
        };
        if f.demand == 0 {
            self.unlist(key, State::Idle);
            return;
        }
        f.refill(t, share, grant_cap);
        let fresh = unlimited || f.credit >= 0;
        if !fresh {
            // The back of the round is a new turn, with a new quantum.
            f.topped = false;
        }
        self.list(key, fresh);
    }

    /// [`Arbiter::next`], with `inner` choosing which member of the flow whose turn it is
    /// takes the grant (a connection of a group), and how much of it.
    pub(crate) fn next_with<I: Inner>(&mut self, now: Instant, inner: &mut I) -> Decision {
        let t = self.tick(now);
        if self.held.due(t) {
            self.observe_weights();
        }
        self.unpark_due(t);
        // Each pass returns, parks a connection, drops an emptied one from the round, or sends one
        // back from parking with nothing left of its turn: this ends within 2 × len + 1 passes.
        for _ in 0..=2 * self.flows.len() {
            let Some((entry, from_fresh)) = self.head() else {
                let flows = &self.flows;
                return match self.parking.next_due(|e| parked(flows, e)) {
                    Some(until) => Decision::Wait {
                        until: self.epoch.instant(until),
                    },
                    None => Decision::Idle,
                };
            };
            let key = entry.key;
            let Some(f) = self.flows.get(key) else {
                self.pop_head(from_fresh);
                continue;
            };
            if f.demand == 0 {
                // Its turn came and it still has nothing to move: it leaves the round, and
                // its deficit with it.
                self.pop_head(from_fresh);
                self.unlist(key, State::Idle);
                continue;
            }
            let (w, topped) = (f.weight, f.topped);
            let quantum = if topped { 0 } else { self.quantum(w) };
            let grant_cap = self.grant_cap(w);
            let share = self.share_among(w, self.active_weight);
            let Some(f) = self.flows.get_mut(key) else {
                continue;
            };
            // The turn as it stood, for a decision that ends in a wait for the global budget.
            let before = (f.deficit, f.topped);
            // A turn's deficit never exceeds two quanta: a connection held back (by its cap, or
            // by turns cut short) catches up by one turn at most.
            if !topped {
                f.deficit = (f.deficit + quantum).min(2 * quantum);
            }
            f.topped = true;
            let cap_max = f.cap.as_ref().map_or(u64::MAX, Cap::grant_now);
            let bytes = f.deficit.min(f.demand).min(grant_cap).min(cap_max);
            if bytes == 0 {
                // Only a connection back from parking with nothing left of its turn: next turn.
                f.topped = false;
                self.pop_head(from_fresh);
                self.list(key, false);
                continue;
            }
            // Which of the flow's members takes the turn, and how much of it.
            let (grantee, bytes) = match inner.peek(key, bytes, t) {
                Peek::Member(member, b) => (member, b.clamp(1, bytes)),
                Peek::Blocked(until) => {
                    // Every member with bytes to move is held by its own cap.
                    self.park(key, from_fresh, until, true);
                    continue;
                }
                Peek::Empty => {
                    self.pop_head(from_fresh);
                    if let Some(f) = self.flows.get_mut(key) {
                        f.demand = 0;
                    }
                    self.unlist(key, State::Idle);
                    continue;
                }
            };
            let Some(f) = self.flows.get_mut(key) else {
                continue;
            };
            if let Some(cap) = f.cap.as_mut() {
                if let Err(until) = cap.admit(bytes) {
                    self.park(key, from_fresh, until, false);
                    continue;
                }
            }
            if let Some(global) = self.global.as_mut() {
                if let Err(until) = global.take(bytes) {
                    // The turn has not started: its quantum is reckoned when it does, among
                    // the connections active then (those asking meanwhile share it), not among
                    // those that happened to ask before the budget came.
                    if let Some(f) = self.flows.get_mut(key) {
                        (f.deficit, f.topped) = before;
                    }
                    // Wake as soon as either the budget or a parked connection's cap allows.
                    let flows = &self.flows;
                    let parked_due = self.parking.next_due(|e| parked(flows, e));
                    let until = parked_due.map_or(until, |p| p.min(until));
                    return Decision::Wait {
                        until: self.epoch.instant(until),
                    };
                }
            }
            inner.commit(grantee, bytes);
            let Some(f) = self.flows.get_mut(key) else {
                continue;
            };
            if let Some(cap) = f.cap.as_mut() {
                cap.spend(bytes);
            }
            f.refill(t, share, grant_cap);
            f.charge(bytes, grant_cap);
            f.deficit -= bytes;
            f.demand -= bytes;
            if f.demand == 0 {
                // Emptied: to the back of the round, where it lingers until its next turn.
                f.topped = false;
                self.pop_head(from_fresh);
                self.list(key, false);
            } else if f.deficit < self.floor.min(f.demand) {
                f.topped = false;
                // A connection whose cap is below its share is paced by its cap, which parks it;
                // sending it round again would cost it a round's worth of cap. Any other
                // connection has used its turn: to the back of the old lane, keeping the rest.
                let cap_bound = f.cap.as_ref().is_some_and(|c| c.rate() <= share);
                if !cap_bound {
                    self.pop_head(from_fresh);
                    self.list(key, false);
                }
            }
            return Decision::Grant {
                key: grantee,
                bytes,
            };
        }
        // Unreachable by the bound above; asking again shortly is the safe answer.
        Decision::Wait {
            until: self.epoch.instant(t + GRANT_HORIZON_NANOS),
        }
    }

    /// Takes the head flow out of the round until `until` (ns): held by its own cap, or by
    /// its members' (`members_held`).
    fn park(&mut self, key: Key, from_fresh: bool, until: u64, members_held: bool) {
        self.pop_head(from_fresh);
        if let Some(f) = self.flows.get_mut(key) {
            f.members_held = members_held;
        }
        if let Some(ticket) = self.unlist(key, State::Parked) {
            self.parking.park(until, Entry { key, ticket });
        }
    }

    /// Lets a flow held by its members' caps try again at once: something changed that may
    /// let it move (a member with new demand, a member's cap changed). A flow held by its own
    /// cap stays parked: nothing of its members' changes that (its own cap's change unparks it
    /// in `set_cap`).
    pub(crate) fn wake(&mut self, key: Key, now: Instant) {
        let t = self.tick(now);
        if self
            .flows
            .get(key)
            .is_some_and(|f| f.state == State::Parked && f.members_held)
        {
            self.unpark(key, t);
        }
    }

    /// The connection at the head of the lanes, fresh first.
    fn head(&mut self) -> Option<(Entry, bool)> {
        let flows = &self.flows;
        if let Some(e) = self.fresh.front(|e| listed(flows, e)) {
            return Some((e, true));
        }
        self.old.front(|e| listed(flows, e)).map(|e| (e, false))
    }

    fn pop_head(&mut self, from_fresh: bool) {
        if from_fresh {
            self.fresh.pop();
        } else {
            self.old.pop();
        }
    }
}

impl<P: FlowWeight> Arbiter for Drr<P> {
    type Params = P;

    fn insert(&mut self, params: P, cap: Option<NonZeroU64>, now: Instant) -> Key {
        self.tick(now);
        let weight = params.weight().max(1);
        self.flows.insert(Flow {
            params,
            weight,
            demand: 0,
            deficit: 0,
            topped: false,
            state: State::Idle,
            ticket: 0,
            cap: cap_for(cap, &self.clock),
            // A newcomer has used none of its share: full credit (capped at one grant at the
            // first refill). Credit is only priority, never bytes.
            credit: i64::MAX / 4,
            credit_at: self.clock.nanos(),
            members_held: false,
        })
    }

    fn remove(&mut self, key: Key) {
        if let Some(f) = self.flows.remove(key) {
            if f.state.is_backlogged() {
                self.remove_weight(f.weight);
            }
        }
    }

    fn set_params(&mut self, key: Key, params: P) {
        let Some(f) = self.flows.get_mut(key) else {
            return;
        };
        let (old, new, listed) = (f.weight, params.weight().max(1), f.state.is_backlogged());
        f.weight = new;
        f.params = params;
        if listed {
            self.remove_weight(old);
            self.add_weight(new);
        }
    }

    fn set_cap(&mut self, key: Key, cap: Option<NonZeroU64>, now: Instant) {
        self.tick(now);
        let clock = self.clock.clone();
        let Some(f) = self.flows.get_mut(key) else {
            return;
        };
        f.cap = cap_for(cap, &clock);
        if f.state == State::Parked {
            // Held by the old cap: let the new one decide at once.
            let t = self.clock.nanos();
            self.unpark(key, t);
        }
    }

    fn set_limit(&mut self, limit: Option<NonZeroU64>, now: Instant) {
        self.tick(now);
        self.global = match (self.global.take(), limit) {
            (_, None) => None,
            (Some(g), Some(r)) => Some(g.with_rate(r, gcra_burst(r), credit_cap(r))),
            (None, Some(r)) => Some(fresh_gcra(r, &self.clock)),
        };
        self.limit = limit;
        self.floor = limit.map_or(MAX_GRANT, floor);
    }

    fn limit(&self) -> Option<NonZeroU64> {
        self.limit
    }

    fn set_demand(&mut self, key: Key, bytes: u64, now: Instant) {
        let t = self.tick(now);
        let Some((w, counted)) = self
            .flows
            .get(key)
            .map(|f| (f.weight, f.state.is_backlogged()))
        else {
            return;
        };
        let among = self.active_weight + if counted { 0 } else { u64::from(w) };
        let (share, grant_cap) = (self.share_among(w, among), self.grant_cap_among(w, among));
        let unlimited = self.limit.is_none();
        let Some(f) = self.flows.get_mut(key) else {
            return;
        };
        let lingering = f.state == State::Listed && f.demand == 0;
        f.demand = bytes;
        match (f.state, bytes > 0) {
            (State::Listed, true) if lingering => {
                // Emptied but still in the round: it keeps its place and its deficit, unless
                // it has share left over for the fresh lane, as a sparse connection does.
                f.refill(t, share, grant_cap);
                if !unlimited && f.has_spare_share(bytes, grant_cap) {
                    self.list(key, true);
                }
            }
            (State::Idle, true) => {
                f.deficit = 0;
                f.topped = false;
                if let Some(cap) = f.cap.as_mut() {
                    cap.forget_idle();
                }
                // The fresh lane is for connections that have share left over: enough credit
                // for the grant they are about to take. A sparse connection builds that up
                // between messages; one that only paused between bursts at or above its share
                // (it emptied its queue for a moment) has not, and waits its turn in the
                // round, where it gets exactly its share.
                f.refill(t, share, grant_cap);
                let fresh = unlimited || f.has_spare_share(bytes, grant_cap);
                self.list(key, fresh);
            }
            // A connection with nothing to move stays in the round until its turn comes, so
            // one that refills its queue at once (a reader between two reads) keeps its place.
            _ => {}
        }
    }

    fn demand(&self, key: Key) -> u64 {
        self.flows.get(key).map_or(0, |f| f.demand)
    }

    fn next(&mut self, now: Instant) -> Decision {
        self.next_with(now, &mut Whole)
    }

    fn unused(&mut self, key: Key, bytes: u64) {
        if let Some(global) = self.global.as_mut() {
            global.refund(bytes);
        }
        let Some(grant_cap) = self.flows.get(key).map(|f| self.grant_cap(f.weight)) else {
            return;
        };
        let Some(f) = self.flows.get_mut(key) else {
            return;
        };
        // The flow's own cap was charged for them too, and its share credit: a reader that
        // found fewer bytes than granted has not used its share, and keeps its place in the
        // fresh lane for its next message.
        if let Some(cap) = f.cap.as_mut() {
            cap.refund(bytes);
        }
        let cap = i64::try_from(grant_cap).unwrap_or(i64::MAX);
        let bytes = i64::try_from(bytes).unwrap_or(i64::MAX);
        f.credit = f.credit.saturating_add(bytes).min(cap.max(f.credit));
    }

    fn len(&self) -> usize {
        self.flows.len()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::Weight;
    use crate::steps::Steps;
    use crate::tuning::{burst, credit_cap};

    /// The most steps of a simulated-time loop in these tests.
    const STEPS: u64 = 2_000_000;

    fn nz(n: u64) -> NonZeroU64 {
        NonZeroU64::new(n).unwrap()
    }

    /// Grants at `now` until the arbiter says wait; their sum.
    fn drain<P: FlowWeight>(arb: &mut Drr<P>, now: Instant) -> u64 {
        let mut sum = 0;
        let mut steps = Steps::new(100_000);
        loop {
            steps.step();
            match arb.next(now) {
                Decision::Grant { bytes, .. } => sum += bytes,
                Decision::Wait { .. } => return sum,
                Decision::Idle => panic!("a backlogged connection is not idle"),
            }
        }
    }

    /// Bytes used over `secs` seconds from `t0` by a backlogged connection that uses half of
    /// every grant and gives the other half back, and the time it ended at.
    fn half_used<P: FlowWeight>(arb: &mut Drr<P>, t0: Instant, secs: u64) -> (u64, Instant) {
        let (mut used, mut now) = (0, t0);
        let mut steps = Steps::new(STEPS);
        while now < t0 + Duration::from_secs(secs) {
            steps.step();
            match arb.next(now) {
                Decision::Grant { key, bytes } => {
                    used += bytes - bytes / 2;
                    arb.unused(key, bytes / 2);
                }
                Decision::Wait { until } => now = until,
                Decision::Idle => panic!("a backlogged connection is not idle"),
            }
        }
        (used, now)
    }

    /// Bytes given back were charged to the flow's share credit too: they go back to it, up
    /// to one grant, so that a reader that found fewer bytes than granted keeps the fresh lane
    /// for its next message.
    #[test]
    fn unused_bytes_go_back_to_the_share_credit() {
        let t0 = Instant::now();
        let mut arb = Drr::<()>::new(Some(nz(1 << 20)), t0);
        let k = arb.insert((), None, t0);
        let t = t0 + Duration::from_millis(100);
        arb.set_demand(k, u64::MAX / 4, t);
        let Decision::Grant { key, bytes } = arb.next(t) else {
            panic!("budget for a grant after 100 ms");
        };
        assert_eq!(key, k);
        let credit = |arb: &Drr<()>| arb.flows.get(k).map(|f| f.credit).unwrap();
        let charged = credit(&arb);
        arb.unused(k, bytes / 2);
        assert_eq!(credit(&arb), charged + i64::try_from(bytes / 2).unwrap());
        // Never above one grant.
        arb.unused(k, u64::MAX / 8);
        let cap = i64::try_from(arb.grant_cap(1)).unwrap();
        assert_eq!(credit(&arb), cap.max(charged));
    }

    /// A capped connection that uses half of every grant (a peer that stalls) is refunded on
    /// its cap too: the bytes it moves still reach its cap.
    #[test]
    fn unused_bytes_go_back_to_the_cap() {
        let t0 = Instant::now();
        let cap = nz(64 * 1024);
        let mut arb = Drr::<()>::new(Some(nz(1 << 30)), t0);
        let k = arb.insert((), Some(cap), t0);
        arb.set_demand(k, u64::MAX / 4, t0);
        let secs = 2;
        let (used, _) = half_used(&mut arb, t0, secs);
        let (allowed, b) = (cap.get() * secs, crate::tuning::cap_burst(cap));
        assert!(
            used + b >= allowed * 99 / 100 && used <= allowed + b,
            "used {used} of {allowed}"
        );
    }

    #[test]
    fn unused_bytes_are_granted_again_within_the_burst_bound() {
        let t0 = Instant::now();
        let limit = nz(64 * 1024);
        let mut arb = Drr::<()>::new(Some(limit), t0);
        let k = arb.insert((), None, t0);
        arb.set_demand(k, u64::MAX / 4, t0);
        // A reader that uses half of every grant: the other half is granted again, so the bytes
        // used still reach the limit, and do not exceed it.
        let secs = 2;
        let (used, now) = half_used(&mut arb, t0, secs);
        let (allowed, b) = (limit.get() * secs, burst(limit));
        assert!(
            used + b >= allowed * 99 / 100 && used <= allowed + b,
            "used {used} of {allowed}"
        );
        // A refund gives back what was charged, but never lifts the budget above `B`: the
        // burst bound holds.
        drain(&mut arb, now);
        arb.unused(k, u64::MAX / 2);
        let again = drain(&mut arb, now);
        assert!(again > credit_cap(limit) && again <= b, "{again}");
    }

    /// Two backlogged connections of weights 1 and 2 beside one of weight 2 that leaves the
    /// round and comes back every 20 ms: the backlogged ones still move in exact proportion.
    #[test]
    fn turns_stay_in_proportion_while_another_connection_comes_and_goes() {
        let t0 = Instant::now();
        let mut arb = Drr::<Weight>::new(Some(nz(64 * 1024)), t0);
        let w = |n| Weight::new(n).unwrap();
        let (light, heavy, sparse) = (
            arb.insert(w(1), None, t0),
            arb.insert(w(2), None, t0),
            arb.insert(w(2), None, t0),
        );
        arb.set_demand(light, u64::MAX / 4, t0);
        arb.set_demand(heavy, u64::MAX / 4, t0);
        let (mut moved, mut now, mut next_message) = ([0u64; 2], t0, t0);
        let (from, to) = (t0 + Duration::from_secs(1), t0 + Duration::from_secs(5));
        let mut steps = Steps::new(STEPS);
        while now < to {
            steps.step();
            if now >= next_message {
                arb.set_demand(sparse, 150, now);
                next_message += Duration::from_millis(20);
            }
            match arb.next(now) {
                Decision::Grant { key, bytes } if now >= from && key != sparse => {
                    moved[usize::from(key == heavy)] += bytes;
                }
                Decision::Grant { .. } => {}
                Decision::Wait { until } => now = until.min(next_message),
                Decision::Idle => panic!("two connections are backlogged"),
            }
        }
        let ratio = moved[1] as f64 / moved[0] as f64;
        assert!((ratio - 2.0).abs() < 0.01, "heavy / light = {ratio:.4}");
    }

    /// The next `n` grants, each marked whether it went to `a`. (In the tests below, unlimited,
    /// with weights 2 for `a` and 1 for `b`: `a`'s turn is two quanta of `b`'s, two grants of
    /// 64 KiB, and `b` is backlogged throughout.)
    fn turns(arb: &mut Drr<Weight>, a: Key, now: Instant, n: usize) -> Vec<(bool, u64)> {
        let mut grants = Vec::new();
        for _ in 0..n {
            match arb.next(now) {
                Decision::Grant { key, bytes } => grants.push((key == a, bytes)),
                d => panic!("{d:?} with a backlogged connection"),
            }
        }
        grants
    }

    /// The bytes of `a`'s first turn in `grants` (its first run of grants).
    fn first_turn(grants: &[(bool, u64)]) -> u64 {
        grants
            .iter()
            .skip_while(|g| !g.0)
            .take_while(|g| g.0)
            .map(|g| g.1)
            .sum()
    }

    /// Unlimited: `a` of weight 2 with 1,000 bytes to move, `b` of weight 1 backlogged.
    fn a_short_turn_beside_a_backlogged_one() -> (Drr<Weight>, Key, Instant) {
        let t0 = Instant::now();
        let mut arb = Drr::<Weight>::new(None, t0);
        let a = arb.insert(Weight::new(2).unwrap(), None, t0);
        let b = arb.insert(Weight::new(1).unwrap(), None, t0);
        arb.set_demand(b, u64::MAX / 4, t0);
        arb.set_demand(a, 1000, t0);
        (arb, a, t0)
    }

    /// A connection that goes idle leaves its deficit behind: back with new bytes, its first
    /// turn is one quantum, however little of its last turn it used.
    #[test]
    fn a_connection_back_from_idle_starts_a_new_turn() {
        let (mut arb, a, t0) = a_short_turn_beside_a_backlogged_one();
        // a moves its 1,000 bytes, and leaves the round when its next turn finds it empty.
        let before = turns(&mut arb, a, t0, 6);
        assert_eq!(first_turn(&before), 1000);
        arb.set_demand(a, u64::MAX / 4, t0);
        let after = turns(&mut arb, a, t0, 8);
        assert_eq!(first_turn(&after), 2 * MAX_GRANT, "{after:?}");
    }

    /// A turn cut short (the connection had less to move than its turn) is made up at its
    /// next turn, by one quantum at most: a connection's share does not depend on when its
    /// bytes arrive within a round.
    #[test]
    fn a_turn_cut_short_is_made_up_at_the_next() {
        let (mut arb, a, t0) = a_short_turn_beside_a_backlogged_one();
        let first = turns(&mut arb, a, t0, 2);
        assert_eq!(first_turn(&first), 1000, "{first:?}");
        // New bytes before its next turn: that turn is its own quantum and what it left
        // (4 × 64 KiB - 1,000), in whole grants: three (the rest stays for the turn after).
        arb.set_demand(a, u64::MAX / 4, t0);
        let next = turns(&mut arb, a, t0, 8);
        assert_eq!(first_turn(&next), 3 * MAX_GRANT, "{next:?}");
    }
}
