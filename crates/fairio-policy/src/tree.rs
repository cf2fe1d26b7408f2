//! [`Tree`]: two-level sharing. Groups take turns in a deficit round robin under the global
//! limit, each up to its own cap; a group's turn goes to one of its connections
//! ([`Members`]). A connection registered without a group is a group of its own, so the flat
//! behaviour is the round robin's, unchanged.

use std::num::NonZeroU64;
use std::time::Instant;

use crate::cap::cap_for;
use crate::drr::{Drr, FlowWeight, Inner, Peek};
use crate::members::{Member, Members};
use crate::policy::{Arbiter, Decision};
use crate::slab::{Key, SideTable, Slab};

/// What a flow of the round is.
#[derive(Debug)]
enum Node {
    /// One connection registered without a group.
    Alone(Key),
    /// A group made with [`Arbiter::insert_group`].
    Group(Box<Members>),
}

/// The arbiter of [`EqualShare`](crate::EqualShare) and [`Weighted`](crate::Weighted):
/// max-min fair at two levels, groups and the connections in them, and work-conserving at both.
///
/// ```
/// use std::num::NonZeroU64;
/// use std::time::{Duration, Instant};
/// use fairio_policy::{Arbiter, Decision, EqualShare, Policy};
///
/// let t0 = Instant::now();
/// let mut arb = EqualShare.arbiter(NonZeroU64::new(1 << 20), t0);
/// // Host A opens eight connections, host B one: each host gets half.
/// let a = arb.insert_group((), None, t0);
/// let b = arb.insert_group((), None, t0);
/// let mut keys = Vec::new();
/// for _ in 0..8 {
///     keys.push(arb.insert_into(a, (), None, t0));
/// }
/// let lone = arb.insert_into(b, (), None, t0);
/// for &k in keys.iter().chain([&lone]) {
///     arb.set_demand(k, u64::MAX / 4, t0);
/// }
/// let (mut to_b, mut total, mut now) = (0, 0, t0);
/// while now < t0 + Duration::from_secs(2) {
///     match arb.next(now) {
///         Decision::Grant { key, bytes } => {
///             total += bytes;
///             if key == lone {
///                 to_b += bytes;
///             }
///         }
///         Decision::Wait { until } => now = until,
///         Decision::Idle => break,
///     }
/// }
/// assert!((to_b as f64 / total as f64 - 0.5).abs() < 0.01);
/// ```
#[derive(Debug)]
pub struct Tree<P> {
    round: Drr<P>,
    members: Slab<Member<P>>,
    nodes: SideTable<Node>,
}

/// Chooses the member of the flow whose turn it is.
struct Pick<'a, P> {
    nodes: &'a mut SideTable<Node>,
    members: &'a mut Slab<Member<P>>,
}

impl<P> Inner for Pick<'_, P> {
    fn peek(&mut self, flow: Key, max: u64, t: u64) -> Peek {
        match self.nodes.get_mut(flow) {
            Some(Node::Alone(member)) => Peek::Member(*member, max),
            Some(Node::Group(g)) => g.peek(self.members, max, t),
            None => Peek::Empty,
        }
    }

    fn commit(&mut self, member: Key, bytes: u64) {
        let Some(m) = self.members.get_mut(member) else {
            return;
        };
        match self.nodes.get_mut(m.group) {
            Some(Node::Group(g)) => g.commit(member, m, bytes),
            _ => m.demand -= bytes.min(m.demand),
        }
    }
}

impl<P: FlowWeight> Tree<P> {
    /// An arbiter with a global `limit` (bytes per second; `None`: unlimited), starting at `now`.
    pub fn new(limit: Option<NonZeroU64>, now: Instant) -> Self {
        Self {
            round: Drr::new(limit, now),
            members: Slab::new(),
            nodes: SideTable::new(),
        }
    }

    fn group_mut(&mut self, group: Key) -> Option<&mut Members> {
        match self.nodes.get_mut(group) {
            Some(Node::Group(g)) => Some(g),
            _ => None,
        }
    }

    /// Takes an empty group out of the round.
    fn drop_group(&mut self, group: Key) {
        self.nodes.remove(group);
        self.round.remove(group);
    }
}

impl<P: FlowWeight> Arbiter for Tree<P> {
    type Params = P;

    fn insert(&mut self, params: P, cap: Option<NonZeroU64>, now: Instant) -> Key {
        let group = self.round.insert(params.clone(), cap, now);
        let weight = params.weight();
        let key = self
            .members
            .insert(Member::new(group, params, weight, None));
        self.nodes.insert(group, Node::Alone(key));
        key
    }

    fn remove(&mut self, key: Key) {
        let Some(mut m) = self.members.remove(key) else {
            return;
        };
        let group = m.group;
        match self.nodes.get_mut(group) {
            Some(Node::Alone(_)) => self.drop_group(group),
            Some(Node::Group(g)) => {
                g.forget(key, &mut m);
                let (demand, gone) = (g.demand(), g.orphaned && g.count == 0);
                if gone {
                    self.drop_group(group);
                } else {
                    let now = self.round.now();
                    self.round.set_demand(group, demand, now);
                }
            }
            None => {}
        }
    }

    fn set_params(&mut self, key: Key, params: P) {
        let Some(m) = self.members.get_mut(key) else {
            return;
        };
        m.weight = params.weight().max(1);
        m.params = params.clone();
        let group = m.group;
        if let Some(Node::Alone(_)) = self.nodes.get(group) {
            self.round.set_params(group, params);
        }
    }

    fn set_cap(&mut self, key: Key, cap: Option<NonZeroU64>, now: Instant) {
        self.round.tick(now);
        let Some(m) = self.members.get_mut(key) else {
            return;
        };
        let group = m.group;
        match self.nodes.get_mut(group) {
            Some(Node::Alone(_)) => self.round.set_cap(group, cap, now),
            Some(Node::Group(g)) => {
                m.cap = cap_for(cap, self.round.clock());
                g.recap(key, m);
                // The group may have been held only by this member's old cap.
                self.round.wake(group, now);
            }
            None => {}
        }
    }

    fn set_limit(&mut self, limit: Option<NonZeroU64>, now: Instant) {
        self.round.set_limit(limit, now);
    }

    fn limit(&self) -> Option<NonZeroU64> {
        self.round.limit()
    }

    fn set_demand(&mut self, key: Key, bytes: u64, now: Instant) {
        let Some(m) = self.members.get_mut(key) else {
            return;
        };
        let group = m.group;
        let demand = match self.nodes.get_mut(group) {
            Some(Node::Alone(_)) => {
                m.demand = bytes;
                bytes
            }
            Some(Node::Group(g)) => {
                let was = m.demand;
                g.set_demand(key, m, bytes);
                let demand = g.demand();
                self.round.set_demand(group, demand, now);
                if was == 0 && bytes > 0 {
                    // A group held because every member with bytes to move was held by its
                    // own cap: this one may move now.
                    self.round.wake(group, now);
                }
                return;
            }
            None => return,
        };
        self.round.set_demand(group, demand, now);
    }

    fn demand(&self, key: Key) -> u64 {
        self.members.get(key).map_or(0, |m| m.demand)
    }

    fn next(&mut self, now: Instant) -> Decision {
        let mut pick = Pick {
            nodes: &mut self.nodes,
            members: &mut self.members,
        };
        self.round.next_with(now, &mut pick)
    }

    fn unused(&mut self, key: Key, bytes: u64) {
        if let Some(m) = self.members.get_mut(key) {
            // The member's own cap was charged for them, and its group's (in the round).
            if let Some(cap) = m.cap.as_mut() {
                cap.refund(bytes);
            }
            self.round.unused(m.group, bytes);
        }
    }

    fn len(&self) -> usize {
        self.members.len()
    }

    fn insert_group(&mut self, params: P, cap: Option<NonZeroU64>, now: Instant) -> Key {
        let group = self.round.insert(params, cap, now);
        self.nodes.insert(group, Node::Group(Box::default()));
        group
    }

    fn insert_into(&mut self, group: Key, params: P, cap: Option<NonZeroU64>, now: Instant) -> Key {
        if !matches!(self.nodes.get(group), Some(Node::Group(g)) if !g.orphaned) {
            return self.insert(params, cap, now);
        }
        self.round.tick(now);
        let cap = cap_for(cap, self.round.clock());
        let weight = params.weight();
        let key = self.members.insert(Member::new(group, params, weight, cap));
        if let Some(g) = self.group_mut(group) {
            g.count += 1;
        }
        key
    }

    fn remove_group(&mut self, group: Key) {
        let Some(g) = self.group_mut(group) else {
            return;
        };
        if g.count == 0 {
            self.drop_group(group);
        } else {
            g.orphaned = true;
        }
    }

    fn set_group_params(&mut self, group: Key, params: P) {
        if self.group_mut(group).is_some() {
            self.round.set_params(group, params);
        }
    }

    fn set_group_cap(&mut self, group: Key, cap: Option<NonZeroU64>, now: Instant) {
        if self.group_mut(group).is_some() {
            self.round.set_cap(group, cap, now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nz(n: u64) -> Option<NonZeroU64> {
        NonZeroU64::new(n)
    }

    #[test]
    fn a_group_removed_with_members_goes_with_the_last_of_them() {
        let t0 = Instant::now();
        let mut arb = Tree::<()>::new(nz(1 << 20), t0);
        let g = arb.insert_group((), None, t0);
        let (a, b) = (
            arb.insert_into(g, (), None, t0),
            arb.insert_into(g, (), None, t0),
        );
        assert_eq!((arb.len(), arb.round.len()), (2, 1));
        arb.remove_group(g);
        // Orphaned: it keeps its members, and takes no new one.
        let c = arb.insert_into(g, (), None, t0);
        assert_eq!((arb.len(), arb.round.len()), (3, 2));
        arb.remove(a);
        assert_eq!(arb.round.len(), 2);
        arb.remove(b);
        assert_eq!(arb.round.len(), 1, "the group left with its last member");
        arb.remove(c);
        assert_eq!((arb.len(), arb.round.len()), (0, 0));
        // A group with no members goes at once; a second removal is ignored.
        let g = arb.insert_group((), None, t0);
        arb.remove_group(g);
        arb.remove_group(g);
        assert_eq!(arb.round.len(), 0);
    }

    /// A group held by its only busy member's cap: a sibling with new bytes moves at once, and
    /// does not wait for the cap.
    #[test]
    fn a_sibling_with_new_bytes_is_not_held_by_a_members_cap() {
        let t0 = Instant::now();
        let mut arb = Tree::<()>::new(nz(1 << 20), t0);
        let g = arb.insert_group((), None, t0);
        let capped = arb.insert_into(g, (), nz(1024), t0);
        let reader = arb.insert_into(g, (), None, t0);
        // The global budget starts empty: 10 ms of it is there at `t`.
        let t = t0 + std::time::Duration::from_millis(10);
        arb.set_demand(capped, u64::MAX / 4, t);
        // Drain the capped member's burst: the group ends up waiting for its cap.
        let mut until = None;
        for _ in 0..100 {
            match arb.next(t) {
                Decision::Grant { key, .. } => assert_eq!(key, capped),
                Decision::Wait { until: u } => {
                    until = Some(u);
                    break;
                }
                Decision::Idle => panic!("the capped member is backlogged"),
            }
        }
        let until = until.expect("the cap holds the group");
        assert!(
            until > t + std::time::Duration::from_millis(100),
            "{until:?}"
        );
        arb.set_demand(reader, 1000, t);
        assert_eq!(
            arb.next(t),
            Decision::Grant {
                key: reader,
                bytes: 1000
            }
        );
        // A cap lifted lets the capped member move at once too.
        arb.set_cap(capped, None, t);
        assert!(matches!(arb.next(t), Decision::Grant { key, .. } if key == capped));
    }

    #[test]
    fn a_members_cap_holds_inside_its_group_and_its_part_goes_to_the_others() {
        let t0 = Instant::now();
        let limit = 1 << 20;
        let mut arb = Tree::<()>::new(nz(limit), t0);
        let g = arb.insert_group((), None, t0);
        let capped = arb.insert_into(g, (), nz(64 * 1024), t0);
        let free = arb.insert_into(g, (), None, t0);
        let other = arb.insert((), None, t0);
        for k in [capped, free, other] {
            arb.set_demand(k, u64::MAX / 4, t0);
        }
        let mut got = [0u64; 3];
        let mut now = t0;
        let from = t0 + std::time::Duration::from_secs(1);
        let to = t0 + std::time::Duration::from_secs(5);
        let mut steps = crate::steps::Steps::new(2_000_000);
        while now < to {
            steps.step();
            match arb.next(now) {
                Decision::Grant { key, bytes } if now >= from => {
                    let i = [capped, free, other]
                        .iter()
                        .position(|&k| k == key)
                        .unwrap();
                    got[i] += bytes;
                }
                Decision::Grant { .. } => {}
                Decision::Wait { until } => now = until,
                Decision::Idle => panic!("three connections are backlogged"),
            }
        }
        let rate = |b: u64| b as f64 / 4.0;
        assert!((rate(got[0]) / 65536.0 - 1.0).abs() < 0.02, "{got:?}");
        // The group keeps its half: the free member takes what its capped sibling leaves.
        let half = limit as f64 / 2.0;
        assert!(
            ((rate(got[0]) + rate(got[1])) / half - 1.0).abs() < 0.02,
            "{got:?}"
        );
        assert!((rate(got[2]) / half - 1.0).abs() < 0.02, "{got:?}");
    }
}
