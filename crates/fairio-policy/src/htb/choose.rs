//! Choosing the connection that moves next: a walk from the root, one child per level, that
//! charges nothing, so that the global budget can be asked before anything is charged. The
//! walk does tidy the queues it passes (stale entries dropped, children moved between queues
//! as time passes or as a ceiling holds them), which changes no decision to come.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::collections::binary_heap::PeekMut;

use super::node::{Clocks, Kind, Node};
use super::pace::mul_div;
use super::queues::{Entry, Queues};
use crate::slab::{Key, Slab};
use crate::tuning::MAX_GRANT;

/// Where the walk ended: the leaf, its grant, and at each level the child taken and whether
/// on its guarantee (leaf first).
#[derive(Debug, Default)]
pub(crate) struct Walk {
    pub(crate) steps: Vec<(Key, bool)>,
    pub(crate) bytes: u64,
    /// The smallest grant (the limit's floor), whatever the leaf's share.
    pub(crate) least: u64,
}

/// Why nothing below a node can move now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Held {
    /// Nothing below it has bytes to move.
    Idle,
    /// Every child with bytes to move is held by a ceiling until then (nanoseconds).
    Until(u64),
}

/// Whether an entry pushed for `key` with `ticket` under `group` still stands.
fn live<P>(nodes: &Slab<Node<P>>, group: Key, key: Key, ticket: u64) -> bool {
    nodes
        .get(key)
        .is_some_and(|n| n.ticket == ticket && n.parent == Some(group) && n.active())
}

/// The first live entry of a queue; stale ones above it are dropped.
fn top<P, K: Ord + Copy>(
    nodes: &Slab<Node<P>>,
    group: Key,
    heap: &mut BinaryHeap<Entry<K>>,
) -> Option<(K, Key)> {
    while let Some(&Reverse((order, _, key, ticket))) = heap.peek() {
        if live(nodes, group, key, ticket) {
            return Some((order, key));
        }
        heap.pop();
    }
    None
}

/// The group `child` is in, and that group's virtual clocks.
fn parent_clocks<P>(nodes: &Slab<Node<P>>, child: Key) -> Option<(Key, Clocks)> {
    let parent = nodes.get(child)?.parent?;
    match nodes.get(parent) {
        Some(Node {
            kind: Kind::Group { clocks, .. },
            ..
        }) => Some((parent, *clocks)),
        _ => None,
    }
}

/// Puts `child` in its group's queues afresh: its older entries go stale. The group's queues
/// are `q` (taken out of the group while it is walked), or the group's own.
pub(crate) fn enlist<P>(
    nodes: &mut Slab<Node<P>>,
    child: Key,
    q: Option<&mut Queues>,
    seq: &mut u64,
    now: u64,
) {
    enlist_as(nodes, child, q, seq, now, false);
}

/// The bit every ordinary sequence number has: an entry of a node back from idle is numbered
/// without it, and so goes before every ordinary entry of the same virtual time (first come,
/// first served among such entries, as among the others).
pub(crate) const FIRST: u64 = 1 << 63;

/// [`enlist`], for a child back from idle when `woken`: its entries go first among those of
/// the same virtual time (see [`FIRST`]), and it takes its turn beyond its guarantee at its
/// group's clock if it is ahead of that clock by no more than its last grant (see
/// [`Node::ahead_by_its_last`]): the round's new-flow lane. A sparse connection, whose one
/// small grant put it just ahead of the clock while the round had not moved on, was otherwise
/// served only at the round's end, after every connection of its group still to be served at
/// that clock (63 grants, 5.9 ms at 1 MiB/s). It is still charged from its own virtual time,
/// and that turn leaves the clock where it was, so going idle and back gains it at most one
/// grant. A node enlisted again before that turn (a refund, a change of class, a sibling
/// below it back from idle too) keeps its place.
pub(crate) fn enlist_as<P>(
    nodes: &mut Slab<Node<P>>,
    child: Key,
    q: Option<&mut Queues>,
    seq: &mut u64,
    now: u64,
    woken: bool,
) {
    let Some((parent, clocks)) = parent_clocks(nodes, child) else {
        return;
    };
    let Some(n) = nodes.get_mut(child) else {
        return;
    };
    n.ticket += 1;
    if !n.active() {
        return;
    }
    let (ticket, mut start) = (n.ticket, n.starts(clocks));
    let first = woken || n.jumped;
    // Ahead of the clock, and let through at it: its charge leaves the clock where it is.
    n.jumped = first && n.vtime > clocks.shared && n.ahead_by_its_last(clocks);
    if n.jumped {
        start.shared = clocks.shared;
    }
    let guarantee = n.guarantee;
    let q = match q {
        Some(q) => q,
        None => match nodes.get_mut(parent) {
            Some(Node {
                kind: Kind::Group { queues, .. },
                ..
            }) => queues,
            _ => return,
        },
    };
    *seq += 1;
    let order = if first { *seq & !FIRST } else { *seq };
    q.shared.push(Reverse((start.shared, order, child, ticket)));
    match guarantee {
        Some(g) if g.owed(now) => q
            .owed
            .push(Reverse((start.guaranteed, order, child, ticket))),
        Some(g) => q.due.push(Reverse((g.arrival(), order, child, ticket))),
        None => {}
    }
}

/// Puts `child` back in its group's queues after a grant through it: it was taken from the
/// top of `owed` (if `guaranteed`) or of `shared`, so its entry there is moved in place (one
/// sift instead of a push and, later, the pop of a stale entry), and its other entries stand.
pub(crate) fn requeue<P>(
    nodes: &mut Slab<Node<P>>,
    child: Key,
    guaranteed: bool,
    seq: &mut u64,
    now: u64,
) {
    let Some((parent, clocks)) = parent_clocks(nodes, child) else {
        return;
    };
    let Some(n) = nodes.get(child) else {
        return;
    };
    if !n.active() {
        // Nothing left to move: every entry goes stale.
        enlist(nodes, child, None, seq, now);
        return;
    }
    let (ticket, start, guarantee) = (n.ticket, n.starts(clocks), n.guarantee);
    let Some(Node {
        kind: Kind::Group { queues: q, .. },
        ..
    }) = nodes.get_mut(parent)
    else {
        return;
    };
    *seq += 1;
    let mine = |e: &Entry<u128>| e.0.2 == child && e.0.3 == ticket;
    if guaranteed {
        if let Some(top) = q.owed.peek_mut().filter(|t| mine(t)) {
            match guarantee {
                Some(g) if g.owed(now) => {
                    let mut top = top;
                    *top = Reverse((start.guaranteed, *seq, child, ticket));
                }
                Some(g) => {
                    PeekMut::pop(top);
                    q.due.push(Reverse((g.arrival(), *seq, child, ticket)));
                }
                None => drop(PeekMut::pop(top)),
            }
            return;
        }
    } else if let Some(mut top) = q.shared.peek_mut().filter(|t| mine(t)) {
        *top = Reverse((start.shared, *seq, child, ticket));
        return;
    }
    enlist(nodes, child, None, seq, now);
}

/// Holds `child` until `at`: its other entries go stale.
fn hold<P>(nodes: &mut Slab<Node<P>>, q: &mut Queues, child: Key, at: u64, seq: &mut u64) {
    if let Some(n) = nodes.get_mut(child) {
        n.ticket += 1;
        *seq += 1;
        q.held.push(Reverse((at, *seq, child, n.ticket)));
    }
}

/// Walks down from `group`, taking at each level the best child whose ceiling lets bytes
/// through: first the children owed guaranteed bytes, by the start of their next guaranteed
/// turn (bytes over guarantee); then the rest by the start of their next turn beyond it (bytes
/// over weight). `max` is the group's part of the grant horizon's bytes, split among its
/// children by weight on the way down (a leaf's grant is its part, at least the walk's
/// `least` and at most `MAX_GRANT`); `above` is the least room of the ceilings above. The walk
/// is filled leaf first.
pub(crate) fn choose<P>(
    nodes: &mut Slab<Node<P>>,
    group: Key,
    max: u64,
    above: u64,
    now: u64,
    walk: &mut Walk,
    seq: &mut u64,
) -> Result<(), Held> {
    let (mut q, clocks, weights) = match nodes.get_mut(group) {
        Some(Node {
            kind:
                Kind::Group {
                    queues,
                    clocks,
                    weights,
                    ..
                },
            ..
        }) => (std::mem::take(queues), *clocks, *weights),
        _ => return Err(Held::Idle),
    };
    let outcome = loop {
        // Guarantees that came due, and ceilings that let bytes through again.
        while let Some(&Reverse((at, _, key, ticket))) = q.due.peek() {
            if at > now {
                break;
            }
            q.due.pop();
            if let Some(n) = nodes.get(key).filter(|_| live(nodes, group, key, ticket)) {
                *seq += 1;
                let start = n.starts(clocks).guaranteed;
                q.owed.push(Reverse((start, *seq, key, ticket)));
            }
        }
        while let Some(&Reverse((at, _, key, ticket))) = q.held.peek() {
            if at > now {
                break;
            }
            q.held.pop();
            if live(nodes, group, key, ticket) {
                enlist(nodes, key, Some(&mut q), seq, now);
            }
        }
        let owed = top(nodes, group, &mut q.owed).map(|(_, k)| (k, true));
        let Some((key, guaranteed)) =
            owed.or_else(|| top(nodes, group, &mut q.shared).map(|(_, k)| (k, false)))
        else {
            break Err(top(nodes, group, &mut q.held).map_or(Held::Idle, |(at, _)| Held::Until(at)));
        };
        let Some(child) = nodes.get(key) else {
            break Err(Held::Idle);
        };
        // The child's part of the horizon's worth: its weight over its active siblings'.
        let weight = u64::from(child.weight);
        let share = mul_div(max, weight, weights.max(weight), false);
        let room = child.ceiling.map_or(u64::MAX, |c| c.room(now)).min(above);
        // A ceiling with a little room waits until it has a grant's worth (or its whole
        // tolerance, if smaller): it would otherwise be served in slivers, a decision each.
        // (No more than the ceilings above let through: those passed their own check.)
        let grant = share.max(walk.least).min(MAX_GRANT);
        let need = child
            .ceiling
            .map_or(1, |c| grant.min(c.full()).min(above).max(1));
        if room < need {
            let at = child.ceiling.map_or(now, |c| c.ready_for(need));
            hold(nodes, &mut q, key, at, seq);
            continue;
        }
        let below = match child.kind {
            Kind::Leaf { demand, .. } => {
                walk.bytes = demand.min(grant).min(room);
                Ok(())
            }
            Kind::Group { .. } => choose(nodes, key, share, room, now, walk, seq),
        };
        match below {
            Ok(()) => {
                walk.steps.push((key, guaranteed));
                break Ok(());
            }
            Err(Held::Until(at)) => hold(nodes, &mut q, key, at, seq),
            Err(Held::Idle) => {
                // Counted active with nothing below: never expected; drop its entries.
                if let Some(n) = nodes.get_mut(key) {
                    n.ticket += 1;
                }
            }
        }
    };
    if let Some(Node {
        kind: Kind::Group { queues, .. },
        ..
    }) = nodes.get_mut(group)
    {
        *queues = q;
    }
    // The walk may have held children, and `requeue` may fall back to pushing anew.
    compact(nodes, group);
    outcome
}

/// Drops stale entries from `group`'s queues once they outnumber its children: lazy deletion
/// keeps memory in proportion to the children, whatever the churn.
pub(crate) fn compact<P>(nodes: &mut Slab<Node<P>>, group: Key) {
    let (len, children) = match nodes.get(group) {
        Some(Node {
            kind: Kind::Group {
                queues, children, ..
            },
            ..
        }) => (queues.len(), children.len()),
        _ => return,
    };
    if len <= 4 * children + 64 {
        return;
    }
    let mut q = match nodes.get_mut(group) {
        Some(Node {
            kind: Kind::Group { queues, .. },
            ..
        }) => std::mem::take(queues),
        _ => return,
    };
    q.retain(|k, t| live(nodes, group, k, t));
    if let Some(Node {
        kind: Kind::Group { queues, .. },
        ..
    }) = nodes.get_mut(group)
    {
        *queues = q;
    }
}
