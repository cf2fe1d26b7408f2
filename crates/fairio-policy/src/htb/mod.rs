//! [`Htb`]: classes that share like Linux HTB, in a tree of any depth. Each node has a weight,
//! an optional guarantee and an optional ceiling, all changeable at run time.

mod choose;
mod node;
mod pace;
mod queues;
#[cfg(test)]
mod tests;

use std::fmt;
use std::num::NonZeroU64;
use std::time::Instant;

use choose::{Held, Walk, choose, compact, enlist_as, requeue};
use node::{Clocks, Kind, Node, ceiling_pace, guarantee_pace, tolerance};
use pace::Pace;

use crate::class::{Class, ClassError};
use crate::clock::Epoch;
use crate::drr::FlowWeight;
use crate::policy::{Arbiter, Decision};
use crate::slab::{Key, Slab};
use crate::tuning::{GRANT_HORIZON_NANOS, MAX_GRANT, bytes_in, floor, gcra_burst};

/// An arbiter that shares like Linux HTB, in a tree of any depth.
///
/// Connections are leaves; [`Arbiter::insert`] puts one under the root, and
/// [`Arbiter::insert_into`] into a group. [`add_group`](Self::add_group) nests
/// groups. A connection's own cap is its ceiling.
///
///
/// # The sharing rule
///
/// At every group, with the allowance `A` the group gets from its parent (the global limit at
/// the root):
///
/// 1. each child with bytes to move gets its guarantee, or its demand if that is smaller, and
///    never more than its ceiling;
/// 2. what is left of `A` is shared among the children that want more, by weight, each up to
///    its ceiling (or its demand), max-min fair: what one cannot use goes to its siblings;
/// 3. a group's demand is what its children want, up to its ceiling; what a whole group cannot
///    use goes to its siblings, then upward. The rule is work-conserving at every level.
///
/// When the guarantees of a group's children do not fit in its allowance (more guaranteed than
/// the global limit, or than the parent's own guarantee, when the parent gets no more), they
/// are met in proportion: each child gets the same fraction of its guarantee (up to its
/// demand), and nothing is left to share by weight. A guarantee that could never fit is
/// refused: one above the node's own ceiling, or one that makes its siblings' guarantees sum to
/// more than their parent's ceiling ([`ClassError`]).
///
/// # How
///
/// Each decision walks from the root to a leaf, taking at each level the child that is most
/// behind: first the children still owed guaranteed bytes (their guarantee's arrival time is
/// not ahead of now), the most behind first; then the others by the start of their next turn in
/// virtual time (bytes moved beyond the guarantee over the weight: start-time fair queueing,
/// where a child back from idle starts at its group's virtual time, so it neither catches up
/// nor falls behind, and goes first among the children at that time: a sparse connection is
/// served at its group's next decision, as in a round's new-flow lane). A child whose ceiling
/// has no room is passed over until it has. Nothing is charged until the global budget allows
/// the grant; then every node on the path is charged its ceiling, and either its guarantee or
/// its virtual time.
///
/// A grant is the connection's share of 5 ms of the limit (the limit's bytes over that
/// horizon, split by weight among the children with bytes to move at every level of the
/// walk), within [the floor](crate::tuning::floor) and [`MAX_GRANT`](crate::tuning::MAX_GRANT),
/// and within the room of each ceiling on the path: small shares move in small grants, and so
/// stay fair in short windows.
///
/// ```
/// use std::num::NonZeroU64;
/// use std::time::{Duration, Instant};
/// use fairio_policy::{Arbiter, Class, Decision, Htb};
///
/// let t0 = Instant::now();
/// let mib = |n: u64| NonZeroU64::new(n << 20);
/// let mut htb = Htb::<()>::new(mib(8), t0);
/// // A class guaranteed 6 MiB/s beside one guaranteed nothing, one connection in each.
/// let gold = htb.add_group(None, (), Class::new(mib(6), None), t0).unwrap();
/// let rest = htb.add_group(None, (), Class::default(), t0).unwrap();
/// let (g, r) = (htb.insert_into(gold, (), None, t0), htb.insert_into(rest, (), None, t0));
/// htb.set_demand(g, u64::MAX / 4, t0);
/// htb.set_demand(r, u64::MAX / 4, t0);
/// let (mut to_gold, mut total, mut now) = (0, 0, t0);
/// while now < t0 + Duration::from_secs(2) {
///     match htb.next(now) {
///         Decision::Grant { key, bytes } => {
///             total += bytes;
///             to_gold += if key == g { bytes } else { 0 };
///         }
///         Decision::Wait { until } => now = until,
///         Decision::Idle => break,
///     }
/// }
/// // 6 MiB/s guaranteed, and half of the other 2: 7 of 8.
/// assert!((to_gold as f64 / total as f64 - 7.0 / 8.0).abs() < 0.01);
/// ```
pub struct Htb<P> {
    nodes: Slab<Node<P>>,
    root: Key,
    leaves: usize,
    active_leaves: usize,
    global: Option<Pace>,
    epoch: Epoch,
    now: u64,
    walk: Walk,
    /// Orders queue entries pushed with equal keys: first come, first served. It starts at
    /// [`choose::FIRST`]; an entry of a node back from idle takes it without that bit, so that
    /// it goes before every other entry of the same virtual time (see [`enlist_as`]).
    seq: u64,
}

impl<P> fmt::Debug for Htb<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Htb")
            .field("leaves", &self.leaves)
            .field("active_leaves", &self.active_leaves)
            .field("limit", &self.global.map(|g| g.rate()))
            .finish_non_exhaustive()
    }
}

fn global_pace(limit: NonZeroU64, old: Option<Pace>, now: u64) -> Pace {
    let burst = gcra_burst(limit);
    let tolerance = u64::try_from(u128::from(burst) * 1_000_000_000 / u128::from(limit.get()))
        .unwrap_or(u64::MAX);
    match old {
        Some(p) => p.with_rate(limit, tolerance, now),
        // A limit newly in force starts empty, as `Drr`'s does: its burst builds up only
        // while the limit is not used in full, and none is there for whoever asks first.
        None => Pace::empty(limit, tolerance, now),
    }
}

impl<P: FlowWeight> Htb<P> {
    /// A tree with only its root, under a global `limit` (bytes per second; `None`:
    /// unlimited), starting at `now`.
    pub fn new(limit: Option<NonZeroU64>, now: Instant) -> Self {
        let mut nodes = Slab::new();
        let root = nodes.insert(Node::new(None, P::default(), 1, group_kind()));
        Self {
            nodes,
            root,
            leaves: 0,
            active_leaves: 0,
            global: limit.map(|l| global_pace(l, None, 0)),
            epoch: Epoch::new(now),
            now: 0,
            walk: Walk::default(),
            seq: choose::FIRST,
        }
    }

    fn tick(&mut self, now: Instant) -> u64 {
        self.now = self.now.max(self.epoch.nanos(now));
        self.now
    }

    fn is_group(&self, key: Key) -> bool {
        matches!(
            self.nodes.get(key),
            Some(Node {
                kind: Kind::Group {
                    orphaned: false,
                    ..
                },
                ..
            })
        )
    }

    /// Adds a group inside `parent` (`None`: the root), with its parameters (its weight) and
    /// its class.
    ///
    /// # Errors
    ///
    /// [`ClassError::NoSuchNode`] if `parent` is not a live group; the class errors of
    /// [`set_guarantee`](Self::set_guarantee) if its guarantee cannot fit.
    pub fn add_group(
        &mut self,
        parent: Option<Key>,
        params: P,
        class: Class,
        now: Instant,
    ) -> Result<Key, ClassError> {
        self.add(parent, params, class, group_kind(), now)
    }

    /// Adds a connection into `group` with its class: its ceiling is its cap.
    ///
    /// # Errors
    ///
    /// As [`add_group`](Self::add_group).
    pub fn add_leaf(
        &mut self,
        group: Option<Key>,
        params: P,
        class: Class,
        now: Instant,
    ) -> Result<Key, ClassError> {
        let key = self.add(
            group,
            params,
            class,
            Kind::Leaf {
                demand: 0,
                path: 0,
                depth: 0,
            },
            now,
        )?;
        self.leaves += 1;
        Ok(key)
    }

    /// Adds a node of `kind` into `parent` (`None`: the root), once its class fits.
    fn add(
        &mut self,
        parent: Option<Key>,
        params: P,
        class: Class,
        kind: Kind,
        now: Instant,
    ) -> Result<Key, ClassError> {
        let parent = parent.unwrap_or(self.root);
        if !self.is_group(parent) {
            return Err(ClassError::NoSuchNode);
        }
        self.check_guarantee(parent, None, class.guarantee, class.ceiling)?;
        let t = self.tick(now);
        let weight = params.weight();
        let mut node = Node::new(Some(parent), params, weight, kind);
        node.guarantee = class.guarantee.map(|g| guarantee_pace(g, t));
        node.ceiling = class.ceiling.map(|c| ceiling_pace(c, t));
        Ok(self.attach(parent, node))
    }

    fn attach(&mut self, parent: Key, mut node: Node<P>) -> Key {
        let slot = match self.nodes.get(parent) {
            Some(Node {
                kind: Kind::Group { children, .. },
                ..
            }) => children.len(),
            _ => 0,
        };
        node.slot = slot;
        let key = self.nodes.insert(node);
        if let Some(Node {
            kind: Kind::Group { children, .. },
            ..
        }) = self.nodes.get_mut(parent)
        {
            children.push(key);
        }
        key
    }

    /// Refuses a guarantee for a child of `parent` (`node`, or a new one) that cannot fit.
    fn check_guarantee(
        &self,
        parent: Key,
        node: Option<Key>,
        guarantee: Option<NonZeroU64>,
        ceiling: Option<NonZeroU64>,
    ) -> Result<(), ClassError> {
        let Some(g) = guarantee else {
            return Ok(());
        };
        if let Some(c) = ceiling.filter(|c| c.get() < g.get()) {
            return Err(ClassError::GuaranteeAboveCeiling {
                guarantee: g.get(),
                ceiling: c.get(),
            });
        }
        let Some(p) = self.nodes.get(parent) else {
            return Err(ClassError::NoSuchNode);
        };
        let Some(ceiling) = p.ceiling_rate() else {
            return Ok(());
        };
        let siblings: u64 = self
            .children(parent)
            .iter()
            .filter(|&&k| Some(k) != node)
            .filter_map(|&k| self.nodes.get(k).and_then(Node::guarantee_rate))
            .map(NonZeroU64::get)
            .fold(0, u64::saturating_add);
        let guarantees = siblings.saturating_add(g.get());
        if guarantees > ceiling.get() {
            return Err(ClassError::GuaranteesAboveParentCeiling {
                guarantees,
                ceiling: ceiling.get(),
            });
        }
        Ok(())
    }

    fn children(&self, group: Key) -> &[Key] {
        match self.nodes.get(group) {
            Some(Node {
                kind: Kind::Group { children, .. },
                ..
            }) => children,
            _ => &[],
        }
    }

    /// Changes a node's guarantee (a group's or a connection's); effective from the next
    /// decision. A new guarantee starts owed from now, with nothing stored up.
    ///
    /// # Errors
    ///
    /// [`ClassError::GuaranteeAboveCeiling`] above the node's own ceiling,
    /// [`ClassError::GuaranteesAboveParentCeiling`] if its siblings' guarantees and this one
    /// would sum to more than their parent's ceiling, [`ClassError::NoSuchNode`] for an unknown
    /// key. A refused change changes nothing.
    pub fn set_guarantee(
        &mut self,
        node: Key,
        rate: Option<NonZeroU64>,
        now: Instant,
    ) -> Result<(), ClassError> {
        let t = self.tick(now);
        let Some(n) = self.nodes.get(node).filter(|_| node != self.root) else {
            return Err(ClassError::NoSuchNode);
        };
        let parent = n.parent.unwrap_or(self.root);
        self.check_guarantee(parent, Some(node), rate, n.ceiling_rate())?;
        if let Some(n) = self.nodes.get_mut(node) {
            // Fresh, whatever the old one was: a grant on a small guarantee runs its arrival
            // time far ahead, and that would delay the new one by as much.
            n.guarantee = rate.map(|r| guarantee_pace(r, t));
        }
        self.refresh(node);
        Ok(())
    }

    /// Changes a node's ceiling (a group's, or a connection's cap); effective from the next
    /// decision, with no fresh burst.
    ///
    /// # Errors
    ///
    /// [`ClassError::GuaranteeAboveCeiling`] below the node's own guarantee,
    /// [`ClassError::GuaranteesAboveParentCeiling`] below what its children are guaranteed,
    /// [`ClassError::NoSuchNode`] for an unknown key. A refused change changes nothing.
    pub fn set_ceiling(
        &mut self,
        node: Key,
        rate: Option<NonZeroU64>,
        now: Instant,
    ) -> Result<(), ClassError> {
        let t = self.tick(now);
        let Some(n) = self.nodes.get(node).filter(|_| node != self.root) else {
            return Err(ClassError::NoSuchNode);
        };
        if let Some(r) = rate {
            if let Some(g) = n.guarantee_rate().filter(|g| g.get() > r.get()) {
                return Err(ClassError::GuaranteeAboveCeiling {
                    guarantee: g.get(),
                    ceiling: r.get(),
                });
            }
            let guarantees: u64 = self
                .children(node)
                .iter()
                .filter_map(|&k| self.nodes.get(k).and_then(Node::guarantee_rate))
                .map(NonZeroU64::get)
                .fold(0, u64::saturating_add);
            if guarantees > r.get() {
                return Err(ClassError::GuaranteesAboveParentCeiling {
                    guarantees,
                    ceiling: r.get(),
                });
            }
        }
        if let Some(n) = self.nodes.get_mut(node) {
            n.ceiling = match (n.ceiling, rate) {
                // The same rate again (a reload that changed another setting): unchanged.
                (Some(p), Some(r)) if p.rate() == r => Some(p),
                (Some(p), Some(r)) => Some(p.with_rate(r, tolerance(r), t)),
                (None, Some(r)) => Some(ceiling_pace(r, t)),
                (_, None) => None,
            };
        }
        self.refresh(node);
        Ok(())
    }

    /// The group a node is in (`None` for the root's children and unknown keys).
    pub fn parent(&self, node: Key) -> Option<Key> {
        self.nodes
            .get(node)
            .and_then(|n| n.parent)
            .filter(|&p| p != self.root)
    }

    /// The grant horizon's worth of the limit, shared by weight down the walk (see
    /// [`choose`]), and the smallest grant.
    fn quantum(&self) -> (u64, u64) {
        match self.global {
            Some(g) => {
                let l = g.rate();
                (bytes_in(l, GRANT_HORIZON_NANOS), floor(l))
            }
            None => (MAX_GRANT, MAX_GRANT),
        }
    }

    /// A node gained or lost its bytes to move: it wakes ([`Node::wake`]) or goes idle, and its
    /// ancestors' counts follow ([`count`](Self::count)).
    fn propagate(&mut self, from: Key, gained: bool) -> usize {
        let now = self.now;
        let Some(n) = self.nodes.get_mut(from) else {
            return 0;
        };
        if gained {
            n.wake(now);
        } else {
            n.idle_since = now;
        }
        let (parent, weight) = (n.parent, n.weight);
        self.count(parent, gained, weight)
    }

    /// One more (or one fewer) child of `group`, of weight `weight`, has bytes to move: up from
    /// `group`, each group whose count goes from 0 to 1 wakes, and each that goes to 0 goes
    /// idle. Returns how many changed.
    fn count(&mut self, group: Option<Key>, gained: bool, mut weight: u32) -> usize {
        let now = self.now;
        let mut at = group;
        let mut changed = 0;
        while let Some(key) = at {
            let Some(n) = self.nodes.get_mut(key) else {
                break;
            };
            let Kind::Group {
                active, weights, ..
            } = &mut n.kind
            else {
                break;
            };
            let child = u64::from(weight);
            weight = n.weight;
            if gained {
                *weights += child;
                *active += 1;
                if *active != 1 {
                    break;
                }
                n.wake(now);
            } else {
                *weights = weights.saturating_sub(child);
                *active -= 1;
                if *active != 0 {
                    break;
                }
                n.idle_since = now;
            }
            changed += 1;
            at = n.parent;
        }
        changed
    }

    /// Sets a leaf's demand at the time last given (see [`Arbiter::set_demand`]).
    fn demand_now(&mut self, key: Key, bytes: u64) {
        let Some(Node {
            kind: Kind::Leaf { demand, .. },
            ..
        }) = self.nodes.get_mut(key)
        else {
            return;
        };
        let was = *demand;
        *demand = bytes;
        match (was > 0, bytes > 0) {
            (false, true) => {
                self.active_leaves += 1;
                // The leaf woke, and so did each group above it that had nothing to move.
                let woken = 1 + self.propagate(key, true);
                self.refresh_woken(key, woken);
            }
            (true, false) => {
                self.active_leaves -= 1;
                self.propagate(key, false);
            }
            _ => {}
        }
    }

    /// Puts a node and its ancestors in their parents' queues afresh: a connection with
    /// bytes to move again, or a class changed, may let a group held so far move.
    fn refresh(&mut self, from: Key) {
        self.refresh_woken(from, 0);
    }

    /// [`refresh`](Self::refresh), where the first `woken` nodes from `from` up are back from
    /// idle: they go first among the entries of their virtual time (see [`enlist_as`]).
    fn refresh_woken(&mut self, from: Key, woken: usize) {
        let mut at = Some(from);
        let mut level = 0;
        while let Some(key) = at.filter(|&k| k != self.root) {
            enlist_as(
                &mut self.nodes,
                key,
                None,
                &mut self.seq,
                self.now,
                level < woken,
            );
            level += 1;
            at = self.nodes.get(key).and_then(|n| n.parent);
            if let Some(parent) = at {
                compact(&mut self.nodes, parent);
            }
        }
    }

    /// Takes a node out of the tree, and its parent with it if that was removed and is now
    /// empty.
    fn detach(&mut self, key: Key) {
        let parent = self.unlink(key);
        self.nodes.remove(key);
        if let Some(parent) = parent {
            self.drop_if_orphaned(parent);
        }
    }

    /// Takes a node out of its parent's children (it stays in the slab); returns the parent.
    fn unlink(&mut self, key: Key) -> Option<Key> {
        let (parent, slot) = self.nodes.get(key).map(|n| (n.parent, n.slot))?;
        let parent = parent?;
        let mut moved = None;
        if let Some(Node {
            kind: Kind::Group { children, .. },
            ..
        }) = self.nodes.get_mut(parent)
        {
            if children.get(slot) == Some(&key) {
                children.swap_remove(slot);
                moved = children.get(slot).copied();
            }
        }
        if let Some(m) = moved.and_then(|m| self.nodes.get_mut(m)) {
            m.slot = slot;
        }
        Some(parent)
    }

    /// Removes a group that was removed by its owner once its last child has gone.
    fn drop_if_orphaned(&mut self, group: Key) {
        let gone = matches!(
            self.nodes.get(group),
            Some(Node {
                kind: Kind::Group {
                    children,
                    orphaned: true,
                    ..
                },
                ..
            }) if children.is_empty()
        );
        if gone {
            self.detach(group);
        }
    }

    fn set_weight(&mut self, key: Key, params: P) {
        let Some(n) = self.nodes.get_mut(key).filter(|_| key != self.root) else {
            return;
        };
        let (was, active, parent) = (n.weight, n.active(), n.parent);
        n.weight = params.weight().max(1);
        n.params = params;
        let now = n.weight;
        // Its parent's sum of active weights follows.
        if let Some(Node {
            kind: Kind::Group { weights, .. },
            ..
        }) = parent
            .filter(|_| active)
            .and_then(|p| self.nodes.get_mut(p))
        {
            *weights = (*weights + u64::from(now)).saturating_sub(u64::from(was));
        }
    }
}

fn group_kind() -> Kind {
    Kind::Group {
        children: Vec::new(),
        queues: queues::Queues::default(),
        active: 0,
        weights: 0,
        clocks: Clocks::default(),
        orphaned: false,
    }
}

impl<P: FlowWeight> Arbiter for Htb<P> {
    type Params = P;

    fn insert(&mut self, params: P, cap: Option<NonZeroU64>, now: Instant) -> Key {
        self.insert_into(self.root, params, cap, now)
    }

    fn remove(&mut self, key: Key) {
        if key == self.root
            || !matches!(self.nodes.get(key), Some(n) if matches!(n.kind, Kind::Leaf { .. }))
        {
            return;
        }
        self.set_demand(key, 0, self.epoch.instant(self.now));
        self.leaves -= 1;
        self.detach(key);
    }

    fn set_params(&mut self, key: Key, params: P) {
        self.set_weight(key, params);
    }

    fn set_cap(&mut self, key: Key, cap: Option<NonZeroU64>, now: Instant) {
        // The trait cannot report a refusal (a cap below the connection's guarantee): the old
        // cap then stays, as documented on `set_ceiling`.
        let _ = self.set_ceiling(key, cap, now);
    }

    fn set_limit(&mut self, limit: Option<NonZeroU64>, now: Instant) {
        let t = self.tick(now);
        self.global = limit.map(|l| global_pace(l, self.global, t));
    }

    fn limit(&self) -> Option<NonZeroU64> {
        self.global.map(|g| g.rate())
    }

    fn set_demand(&mut self, key: Key, bytes: u64, now: Instant) {
        self.tick(now);
        self.demand_now(key, bytes);
    }

    fn demand(&self, key: Key) -> u64 {
        match self.nodes.get(key) {
            Some(Node {
                kind: Kind::Leaf { demand, .. },
                ..
            }) => *demand,
            _ => 0,
        }
    }

    fn next(&mut self, now: Instant) -> Decision {
        let t = self.tick(now);
        if self.active_leaves == 0 {
            return Decision::Idle;
        }
        let mut walk = std::mem::take(&mut self.walk);
        walk.steps.clear();
        let (quantum, least) = self.quantum();
        walk.least = least;
        let decision = match choose(
            &mut self.nodes,
            self.root,
            quantum,
            u64::MAX,
            t,
            &mut walk,
            &mut self.seq,
        ) {
            Err(Held::Idle) => Decision::Idle,
            Err(Held::Until(u)) => Decision::Wait {
                until: self.epoch.instant(u),
            },
            Ok(()) => self.grant(&walk, t),
        };
        self.walk = walk;
        decision
    }

    fn unused(&mut self, key: Key, bytes: u64) {
        if !matches!(self.nodes.get(key), Some(n) if matches!(n.kind, Kind::Leaf { .. })) {
            return;
        }
        let t = self.now;
        if let Some(g) = self.global.as_mut() {
            g.refund(bytes, t);
        }
        let (path, depth) = match self.nodes.get(key) {
            Some(Node {
                kind: Kind::Leaf { path, depth, .. },
                ..
            }) => (*path, *depth),
            _ => (0, 0),
        };
        let mut at = Some(key);
        let mut level = 0u32;
        while let Some(k) = at.filter(|&k| k != self.root && level < depth) {
            let Some(n) = self.nodes.get_mut(k) else {
                return;
            };
            let guaranteed = path.checked_shr(level).is_some_and(|p| p & 1 == 1);
            n.refund(bytes, guaranteed, t);
            at = n.parent;
            level += 1;
        }
        // A node held by its ceiling, or waiting for its guarantee, may move sooner now.
        self.refresh(key);
    }

    fn len(&self) -> usize {
        self.leaves
    }

    fn insert_group(&mut self, params: P, cap: Option<NonZeroU64>, now: Instant) -> Key {
        // No guarantee, so nothing can be refused.
        self.add_group(None, params, Class::new(None, cap), now)
            .unwrap_or(Key::FLAT_GROUP)
    }

    fn insert_into(&mut self, group: Key, params: P, cap: Option<NonZeroU64>, now: Instant) -> Key {
        let group = Some(group).filter(|&g| self.is_group(g));
        let class = Class::new(None, cap);
        match self.add_leaf(group, params.clone(), class, now) {
            Ok(k) => k,
            // Only a guarantee can be refused, and there is none: unreachable, but a leaf
            // under the root is the documented fallback.
            Err(_) => self
                .add_leaf(None, params, class, now)
                .unwrap_or(Key::FLAT_GROUP),
        }
    }

    fn remove_group(&mut self, group: Key) {
        if group == self.root {
            return;
        }
        let empty = match self.nodes.get_mut(group) {
            Some(Node {
                kind: Kind::Group {
                    children, orphaned, ..
                },
                ..
            }) => {
                *orphaned = true;
                children.is_empty()
            }
            _ => return,
        };
        if empty {
            self.detach(group);
        }
    }

    fn set_group_params(&mut self, group: Key, params: P) {
        if self.is_group(group) {
            self.set_weight(group, params);
        }
    }

    fn set_group_cap(&mut self, group: Key, cap: Option<NonZeroU64>, now: Instant) {
        // Refused caps keep the old one, as `set_ceiling` documents.
        let _ = self.try_set_group_cap(group, cap, now);
    }

    fn insert_group_in(
        &mut self,
        parent: Key,
        params: P,
        cap: Option<NonZeroU64>,
        now: Instant,
    ) -> Key {
        let parent = Some(parent).filter(|&p| self.is_group(p));
        // No guarantee, so nothing can be refused.
        self.add_group(parent, params, Class::new(None, cap), now)
            .unwrap_or(Key::FLAT_GROUP)
    }

    fn try_set_group_cap(
        &mut self,
        group: Key,
        cap: Option<NonZeroU64>,
        now: Instant,
    ) -> Result<(), ClassError> {
        if !self.is_group(group) {
            return Err(ClassError::NoSuchNode);
        }
        self.set_ceiling(group, cap, now)
    }

    fn set_group_guarantee(
        &mut self,
        group: Key,
        rate: Option<NonZeroU64>,
        now: Instant,
    ) -> Result<(), ClassError> {
        if !self.is_group(group) {
            return Err(ClassError::NoSuchNode);
        }
        self.set_guarantee(group, rate, now)
    }

    fn move_into(&mut self, key: Key, group: Key, now: Instant) -> Result<(), ClassError> {
        self.tick(now);
        let Some(n) = self.nodes.get(key) else {
            return Err(ClassError::NoSuchNode);
        };
        if !matches!(n.kind, Kind::Leaf { .. }) || !self.is_group(group) {
            return Err(ClassError::NoSuchNode);
        }
        if n.parent == Some(group) {
            return Ok(());
        }
        self.check_guarantee(group, Some(key), n.guarantee_rate(), n.ceiling_rate())?;
        let active = n.active();
        // Out of the old group (which goes if it was removed and this was its last child),
        // into the new one; the old group's queue entries for it go stale with its parent.
        let old = self.unlink(key);
        if let Some(n) = self.nodes.get_mut(key) {
            n.parent = Some(group);
            // Its virtual times were the old group's: in the new one it starts at the group's
            // clocks, or it would wait for its new siblings to move as much as it had. Bytes
            // granted before the move and given back after it go to the global budget and the
            // leaf's own accounts only, not to ancestors they were never charged to.
            (n.vtime, n.gtime) = (0, 0);
            if let Kind::Leaf { path, depth, .. } = &mut n.kind {
                (*path, *depth) = (0, 1);
            }
        }
        let slot = self.children(group).len();
        if let Some(n) = self.nodes.get_mut(key) {
            n.slot = slot;
        }
        if let Some(Node {
            kind: Kind::Group { children, .. },
            ..
        }) = self.nodes.get_mut(group)
        {
            children.push(key);
        }
        if active {
            // Counted on the new path before the old one lets go: a group on both stays busy
            // (neither idle nor woken, which would trim the lateness its ceiling keeps), and
            // groups new to the path wake. The connection itself was busy all along.
            let weight = self.nodes.get(key).map_or(1, |n| n.weight);
            self.count(Some(group), true, weight);
            self.count(old, false, weight);
        }
        if let Some(old) = old {
            self.drop_if_orphaned(old);
        }
        if active {
            self.refresh(key);
        }
        Ok(())
    }
}

impl<P: FlowWeight> Htb<P> {
    /// Charges a chosen walk if the global budget allows it.
    fn grant(&mut self, walk: &Walk, t: u64) -> Decision {
        let bytes = walk.bytes;
        let Some(&(leaf, _)) = walk.steps.first() else {
            return Decision::Idle;
        };
        if let Some(g) = self.global.as_mut() {
            if g.room(t) < bytes {
                return Decision::Wait {
                    until: self.epoch.instant(g.ready_for(bytes)),
                };
            }
            g.charge(bytes, t);
        }
        for &(key, guaranteed) in &walk.steps {
            let parent = self.nodes.get(key).and_then(|n| n.parent);
            let mut clocks = match parent.and_then(|p| self.nodes.get(p)) {
                Some(Node {
                    kind: Kind::Group { clocks, .. },
                    ..
                }) => *clocks,
                _ => Clocks::default(),
            };
            if let Some(n) = self.nodes.get_mut(key) {
                n.charge(bytes, guaranteed, &mut clocks, t);
            }
            if let Some(Node {
                kind: Kind::Group { clocks: c, .. },
                ..
            }) = parent.and_then(|p| self.nodes.get_mut(p))
            {
                *c = clocks;
            }
        }
        // Which levels were charged to a guarantee, for bytes the leaf gives back. Past 64
        // levels, a refund goes to the virtual time.
        let path = walk
            .steps
            .iter()
            .take(64)
            .enumerate()
            .fold(0u64, |p, (i, &(_, g))| p | (u64::from(g) << i));
        if let Some(Node {
            kind: Kind::Leaf { path: p, depth, .. },
            ..
        }) = self.nodes.get_mut(leaf)
        {
            *p = path;
            *depth = u32::try_from(walk.steps.len()).unwrap_or(u32::MAX);
        }
        let left = self.demand(leaf).saturating_sub(bytes);
        self.demand_now(leaf, left);
        // Every node on the path moved on: its entry moves in place (a leaf with nothing left
        // leaves its queues).
        for &(key, guaranteed) in &walk.steps {
            requeue(&mut self.nodes, key, guaranteed, &mut self.seq, t);
        }
        Decision::Grant { key: leaf, bytes }
    }
}
