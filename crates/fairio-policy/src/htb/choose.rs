//! Choosing the connection that moves next: a walk from the root, one child per level, that
//! changes nothing, so that the global budget can be asked before anything is charged.

use super::node::{Clocks, Kind, Node};
use crate::slab::{Key, Slab};

/// Where the walk ended: the leaf, its grant, and at each level the child taken and whether
/// on its guarantee (leaf first).
#[derive(Debug, Default)]
pub(crate) struct Walk {
    pub(crate) steps: Vec<(Key, bool)>,
    pub(crate) bytes: u64,
}

/// Why nothing below a node can move now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Held {
    /// Nothing below it has bytes to move.
    Idle,
    /// Every child with bytes to move is held by a ceiling until then (nanoseconds).
    Until(u64),
}

/// How a child ranks among its siblings: first the children still owed guaranteed bytes, by
/// the start of their next guaranteed turn (bytes over guarantee); then the rest by the start
/// of their next turn beyond it (bytes over weight).
fn rank<P>(child: &Node<P>, clocks: Clocks, now: u64) -> (bool, u128) {
    let start = child.starts(clocks);
    match child.guarantee {
        Some(g) if g.owed(now) => (false, start.guaranteed),
        _ => (true, start.shared),
    }
}

/// Walks down from `group`, taking at each level the best child whose ceiling lets bytes
/// through, up to `max` bytes. The walk is filled leaf first.
pub(crate) fn choose<P>(
    nodes: &Slab<Node<P>>,
    group: Key,
    max: u64,
    now: u64,
    walk: &mut Walk,
) -> Result<(), Held> {
    let Some(Node {
        kind: Kind::Group {
            children, clocks, ..
        },
        ..
    }) = nodes.get(group)
    else {
        return Err(Held::Idle);
    };
    let mut held: Vec<Key> = Vec::new();
    let mut until = None::<u64>;
    loop {
        let best = children
            .iter()
            .filter_map(|&k| nodes.get(k).map(|n| (k, n)))
            .filter(|(k, n)| n.active() && !held.contains(k))
            .min_by_key(|(_, n)| rank(n, *clocks, now));
        let Some((key, child)) = best else {
            return Err(until.map_or(Held::Idle, Held::Until));
        };
        let guaranteed = !rank(child, *clocks, now).0;
        let room = child.ceiling.map_or(u64::MAX, |c| c.room(now));
        // A ceiling with a little room waits until it has a grant's worth (or its whole
        // tolerance, if smaller): it would otherwise be served in slivers, a decision each.
        let need = child.ceiling.map_or(1, |c| max.min(c.full()).max(1));
        let outcome = if room < need {
            let ready = child.ceiling.map_or(now, |c| c.ready_for(need));
            Err(Held::Until(ready))
        } else {
            match child.kind {
                Kind::Leaf { demand } => {
                    walk.bytes = demand.min(max).min(room);
                    Ok(())
                }
                Kind::Group { .. } => choose(nodes, key, max.min(room), now, walk),
            }
        };
        match outcome {
            Ok(()) => {
                walk.steps.push((key, guaranteed));
                return Ok(());
            }
            Err(h) => {
                if let Held::Until(t) = h {
                    until = Some(until.map_or(t, |u| u.min(t)));
                }
                held.push(key);
            }
        }
    }
}
