//! `Htb` against the sharing rule, computed by an independent oracle (hierarchical
//! water-filling with guarantees and ceilings, `oracle.rs`), in 250 ms windows on a simulated
//! clock: random trees of up to three levels with weights, guarantees and ceilings, backlogged
//! and slow (demand-limited) connections, joins, leaves and live changes of weights,
//! guarantees and ceilings.

mod oracle;

use std::num::NonZeroU64;
use std::time::{Duration, Instant};

use fairio_policy::tuning::floor;
use fairio_policy::{Arbiter, Class, Decision, Htb, Key, Weight};
use oracle::{Node, shares};
use proptest::prelude::*;

const MS: u64 = 1_000_000;
const WINDOW: u64 = 250 * MS;
const DURATION: u64 = 2_000 * MS;
/// Changes happen here, between the two halves that are checked.
const CHANGE_AT: u64 = 1_000 * MS;

/// A change at `CHANGE_AT`.
#[derive(Clone, Debug)]
enum Change {
    Weight(usize, u32),
    Guarantee(usize, Option<u64>),
    Ceiling(usize, Option<u64>),
    Leave(usize),
    Join(usize),
}

#[derive(Clone, Debug)]
struct Case {
    limit: u64,
    nodes: Vec<Node>,
    /// Leaves that join at `CHANGE_AT` (absent before it).
    late: Vec<usize>,
    changes: Vec<Change>,
}

fn nz(n: u64) -> Option<NonZeroU64> {
    NonZeroU64::new(n)
}

/// The tree after the changes.
fn after(case: &Case) -> Vec<Node> {
    let mut nodes = case.nodes.clone();
    for c in &case.changes {
        match *c {
            Change::Weight(i, w) => nodes[i].weight = w,
            Change::Guarantee(i, g) => nodes[i].guarantee = g,
            Change::Ceiling(i, c) => nodes[i].ceiling = c,
            Change::Leave(i) => nodes[i].present = false,
            Change::Join(i) => nodes[i].present = true,
        }
    }
    mark_groups(&mut nodes);
    nodes
}

/// A group is present when a leaf below it is.
fn mark_groups(nodes: &mut [Node]) {
    for n in nodes.iter_mut().filter(|n| !n.leaf) {
        n.present = false;
    }
    for i in 0..nodes.len() {
        if nodes[i].leaf && nodes[i].present {
            let mut p = nodes[i].parent;
            while let Some(j) = p {
                nodes[j].present = true;
                p = nodes[j].parent;
            }
        }
    }
}

fn before(case: &Case) -> Vec<Node> {
    let mut nodes = case.nodes.clone();
    for &i in &case.late {
        nodes[i].present = false;
    }
    mark_groups(&mut nodes);
    nodes
}

/// Bytes per leaf per window, each leaf's largest grant, and the largest of all.
struct Trace {
    bytes: Vec<Vec<u64>>,
    largest: Vec<u64>,
    quantum: u64,
}

fn simulate(case: &Case) -> Trace {
    let t0 = Instant::now();
    let at = |ns: u64| t0 + Duration::from_nanos(ns);
    let mut htb = Htb::<Weight>::new(nz(case.limit), t0);
    let n = case.nodes.len();
    let windows = usize::try_from(DURATION / WINDOW).unwrap();
    let mut keys: Vec<Option<Key>> = vec![None; n];
    let w = |x: u32| Weight::new(x).unwrap();
    let class = |node: &Node| Class::new(node.guarantee.and_then(nz), node.ceiling.and_then(nz));
    let add = |htb: &mut Htb<Weight>, keys: &mut Vec<Option<Key>>, i: usize, t: Instant| {
        let node = &case.nodes[i];
        let parent = node.parent.and_then(|p| keys[p]);
        let key = if node.leaf {
            htb.add_leaf(parent, w(node.weight), class(node), t)
        } else {
            htb.add_group(parent, w(node.weight), class(node), t)
        };
        keys[i] = Some(key.expect("the generator makes valid classes"));
    };
    for i in 0..n {
        if !case.late.contains(&i) {
            add(&mut htb, &mut keys, i, t0);
        }
    }
    let mut pending = vec![0f64; n];
    let mut trace = Trace {
        bytes: vec![vec![0; windows]; n],
        largest: vec![0; n],
        quantum: 0,
    };
    let mut present: Vec<bool> = (0..n).map(|i| !case.late.contains(&i)).collect();
    let (mut now, mut tick, mut changed) = (0u64, 0u64, false);
    for _ in 0..20_000_000u64 {
        if now >= DURATION {
            break;
        }
        if !changed && now >= CHANGE_AT {
            changed = true;
            apply(case, &mut htb, &mut keys, &mut present, at(now), &add);
        }
        if now >= tick {
            for i in (0..n).filter(|&i| case.nodes[i].leaf && present[i]) {
                let Some(k) = keys[i] else { continue };
                let demand = match case.nodes[i].rate {
                    Some(r) => {
                        pending[i] += r as f64 / 1000.0;
                        pending[i].floor() as u64
                    }
                    None => u64::MAX / 4,
                };
                htb.set_demand(k, demand, at(now));
            }
            tick += MS;
        }
        match htb.next(at(now)) {
            Decision::Grant { key, bytes } => {
                let i = keys.iter().position(|&k| k == Some(key)).unwrap();
                pending[i] -= bytes as f64;
                assert!(
                    pending[i] > -1.0 || case.nodes[i].rate.is_none(),
                    "over demand"
                );
                let win = usize::try_from(now / WINDOW).unwrap();
                trace.bytes[i][win] += bytes;
                trace.largest[i] = trace.largest[i].max(bytes);
                trace.quantum = trace.quantum.max(bytes);
            }
            Decision::Wait { until } => {
                let u = u64::try_from(until.duration_since(t0).as_nanos()).unwrap();
                now = u.min(tick).max(now + 1);
            }
            Decision::Idle => now = tick,
        }
    }
    trace
}

/// Adds node `i` to the arbiter, recording its key.
type Add<'a> = dyn Fn(&mut Htb<Weight>, &mut Vec<Option<Key>>, usize, Instant) + 'a;

fn apply(
    case: &Case,
    htb: &mut Htb<Weight>,
    keys: &mut Vec<Option<Key>>,
    present: &mut [bool],
    t: Instant,
    add: &Add<'_>,
) {
    // Joins first: the other changes may name a leaf that joins.
    let joins = case.changes.iter().filter(|c| matches!(c, Change::Join(_)));
    let rest = case
        .changes
        .iter()
        .filter(|c| !matches!(c, Change::Join(_)));
    for c in joins.chain(rest) {
        match *c {
            Change::Weight(i, x) => {
                let k = keys[i].unwrap();
                if case.nodes[i].leaf {
                    htb.set_params(k, Weight::new(x).unwrap());
                } else {
                    htb.set_group_params(k, Weight::new(x).unwrap());
                }
            }
            Change::Guarantee(i, g) => {
                htb.set_guarantee(keys[i].unwrap(), g.and_then(nz), t)
                    .expect("the generator makes valid guarantees");
            }
            Change::Ceiling(i, c) => {
                htb.set_ceiling(keys[i].unwrap(), c.and_then(nz), t)
                    .expect("the generator makes valid ceilings");
            }
            Change::Leave(i) => {
                htb.remove(keys[i].take().unwrap());
                present[i] = false;
            }
            Change::Join(i) => {
                add(htb, keys, i, t);
                present[i] = true;
            }
        }
    }
}

/// Every leaf present throughout a window, in the windows of each half but its first, within
/// max(2% of its oracle share, 3 × the largest grant) of that share.
fn check(case: &Case, trace: &Trace) -> Result<(), TestCaseError> {
    let halves = [
        (before(case), WINDOW, CHANGE_AT),
        (after(case), CHANGE_AT + WINDOW, DURATION),
    ];
    for (nodes, from, to) in halves {
        let s = shares(&nodes, case.limit as f64);
        let mut a = from;
        while a + WINDOW <= to {
            let win = usize::try_from(a / WINDOW).unwrap();
            for i in (0..nodes.len()).filter(|&i| nodes[i].leaf && nodes[i].present) {
                let expected = s[i] * WINDOW as f64 / 1e9;
                let got = trace.bytes[i][win] as f64;
                // Grants are the same size for every leaf (5 ms of the limit over the leaves
                // with bytes to move), and never smaller than the floor: a leaf whose share is
                // less than a grant a window gets one now and then, or none.
                let grain = trace.largest[i]
                    .max(trace.quantum)
                    .max(floor(NonZeroU64::new(case.limit).unwrap()));
                let tol = (0.02 * expected).max(3.0 * grain as f64);
                if std::env::var_os("HTB_DEBUG").is_some() && (got - expected).abs() > tol {
                    eprintln!(
                        "limit {} leaf {i} window {a} changes {:?} late {:?}",
                        case.limit, case.changes, case.late
                    );
                    for j in 0..nodes.len() {
                        let n = &nodes[j];
                        eprintln!(
                            "{j}: {:?} leaf {} present {} w {} g {:?} c {:?} r {:?} share {:.0} got {:?}",
                            n.parent,
                            n.leaf,
                            n.present,
                            n.weight,
                            n.guarantee,
                            n.ceiling,
                            n.rate,
                            s[j] / 4.0,
                            trace.bytes[j]
                        );
                    }
                }
                prop_assert!(
                    (got - expected).abs() <= tol,
                    "leaf {i} in [{a}, {}): got {got}, oracle {expected:.0}, tolerance {tol:.0}",
                    a + WINDOW
                );
            }
            a += WINDOW;
        }
    }
    Ok(())
}

/// Whether every guarantee fits: at most the node's own ceiling, and the guarantees of all
/// the children a group ever has at most its ceiling (what `Htb` refuses otherwise).
fn valid(nodes: &[Node]) -> bool {
    (0..nodes.len()).all(|i| {
        let n = &nodes[i];
        let own = match (n.guarantee, n.ceiling) {
            (Some(g), Some(c)) => g <= c,
            _ => true,
        };
        let kids: u64 = (0..nodes.len())
            .filter(|&k| nodes[k].parent == Some(i))
            .filter_map(|k| nodes[k].guarantee)
            .sum();
        own && n.ceiling.is_none_or(|c| kids <= c)
    })
}

/// Moves demands and ceilings away from the oracle's thresholds, so that every leaf is clearly
/// demand-limited or clearly not, and every ceiling clearly binds or clearly does not, in both
/// halves; a change that would put one back near a threshold is dropped. A slow leaf held
/// below its rate before the changes and not after has a backlog to catch up on: it is made
/// backlogged throughout.
fn separate(case: &mut Case) {
    for _ in 0..4 * case.nodes.len() {
        let mut changed = false;
        let mut limited = vec![[false; 2]; case.nodes.len()];
        for half in [0, 1] {
            let nodes = if half == 0 { before(case) } else { after(case) };
            for i in (0..nodes.len()).filter(|&i| nodes[i].present) {
                if let Some(r) = nodes[i].rate {
                    let mut free = nodes.clone();
                    free[i].rate = None;
                    let ratio = r as f64 / shares(&free, case.limit as f64)[i];
                    limited[i][half] = ratio <= 0.7;
                    if ratio > 0.7 && ratio < 1.5 {
                        case.nodes[i].rate = None;
                        changed = true;
                    }
                }
                if let Some(c) = nodes[i].ceiling {
                    let mut free = nodes.clone();
                    free[i].ceiling = None;
                    let ratio = shares(&free, case.limit as f64)[i] / c as f64;
                    if ratio > 0.7 && ratio < 1.0 / 0.7 {
                        let by_change = case
                            .changes
                            .iter()
                            .position(|c| matches!(c, Change::Ceiling(j, _) if *j == i));
                        match (half, by_change) {
                            (1, Some(p)) => drop(case.changes.remove(p)),
                            _ => {
                                case.nodes[i].ceiling = None;
                                case.changes
                                    .retain(|c| !matches!(c, Change::Ceiling(j, _) if *j == i));
                            }
                        }
                        changed = true;
                    }
                }
            }
        }
        for (i, l) in limited.iter().enumerate() {
            let was_present = !case.late.contains(&i);
            if was_present && l[1] && !l[0] && case.nodes[i].rate.is_some() {
                case.nodes[i].rate = None;
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
}

fn opt(p: f64, range: std::ops::RangeInclusive<u64>) -> impl Strategy<Value = Option<u64>> + Clone {
    prop::option::weighted(p, range)
}

/// A node's class: (weight, guarantee, ceiling), as fractions of the limit.
fn class(
    l: u64,
    pg: f64,
    pc: f64,
) -> impl Strategy<Value = (u32, Option<u64>, Option<u64>)> + Clone {
    (
        1u32..=8,
        opt(pg, (l / 20).max(1)..=l / 3),
        opt(pc, (l / 10).max(1)..=l),
    )
}

fn tree() -> impl Strategy<Value = Case> {
    let limit = prop_oneof![Just(1u64 << 20), (256u64 << 10)..(16u64 << 20)];
    limit
        .prop_flat_map(|l| {
            let leaf = (class(l, 0.1, 0.15), opt(0.3, 1..=100));
            let host = (
                class(l, 0.25, 0.25),
                prop::collection::vec(leaf.clone(), 1..=3),
            );
            let top = (
                class(l, 0.4, 0.3),
                prop::collection::vec(host, 0..=3),
                prop::collection::vec(leaf.clone(), 0..=2),
            );
            (
                Just(l),
                prop::collection::vec(top, 1..=4),
                prop::collection::vec(leaf, 0..=2),
                prop::collection::vec((0usize..64, 0u8..5, 1u32..=8, any::<bool>()), 0..=3),
            )
        })
        .prop_map(|(l, tops, loose, raw_changes)| build(l, tops, loose, raw_changes))
}

/// (weight, guarantee, ceiling).
type Spec = (u32, Option<u64>, Option<u64>);
type Leaf = (Spec, Option<u64>);
type Host = (Spec, Vec<Leaf>);
type Top = (Spec, Vec<Host>, Vec<Leaf>);

fn build(
    l: u64,
    tops: Vec<Top>,
    loose: Vec<Leaf>,
    raw_changes: Vec<(usize, u8, u32, bool)>,
) -> Case {
    let mut nodes = Vec::new();
    let node = |parent, (weight, guarantee, ceiling): (u32, Option<u64>, Option<u64>)| Node {
        parent,
        weight,
        guarantee,
        ceiling,
        leaf: false,
        rate: None,
        present: true,
    };
    let leaf_node = |parent, (c, pct): Leaf| Node {
        leaf: true,
        rate: pct.map(|p| (l * p / 100 / 8).max(1)),
        ..node(parent, c)
    };
    for (c, hosts, leaves) in tops {
        let top = nodes.len();
        nodes.push(node(None, c));
        for (hc, hleaves) in hosts {
            let h = nodes.len();
            nodes.push(node(Some(top), hc));
            for lf in hleaves {
                nodes.push(leaf_node(Some(h), lf));
            }
        }
        for lf in leaves {
            nodes.push(leaf_node(Some(top), lf));
        }
    }
    for lf in loose {
        nodes.push(leaf_node(None, lf));
    }
    if !nodes.iter().any(|n| n.leaf) {
        nodes.push(leaf_node(None, ((1, None, None), None)));
    }
    // Guarantees that cannot fit are dropped, deepest first.
    for i in (0..nodes.len()).rev() {
        if !valid(&nodes) {
            nodes[i].guarantee = None;
        }
    }
    let leaves: Vec<usize> = (0..nodes.len()).filter(|&i| nodes[i].leaf).collect();
    let mut case = Case {
        limit: l,
        nodes,
        late: Vec::new(),
        changes: Vec::new(),
    };
    for (pick, kind, x, flag) in raw_changes {
        let i = pick % case.nodes.len();
        let change = match kind {
            0 => Change::Weight(i, x),
            1 => Change::Guarantee(i, flag.then(|| (l * u64::from(x) / 40).max(1))),
            2 => Change::Ceiling(i, flag.then(|| (l * u64::from(x) / 10).max(1))),
            3 => Change::Leave(leaves[pick % leaves.len()]),
            _ => {
                let j = leaves[pick % leaves.len()];
                if case.late.contains(&j) {
                    continue;
                }
                Change::Join(j)
            }
        };
        let involved = |c: &Change| match *c {
            Change::Weight(j, _)
            | Change::Guarantee(j, _)
            | Change::Ceiling(j, _)
            | Change::Leave(j)
            | Change::Join(j) => j,
        };
        if case
            .changes
            .iter()
            .any(|c| involved(c) == involved(&change))
        {
            continue;
        }
        if let Change::Join(j) = change {
            case.late.push(j);
        }
        case.changes.push(change);
        let mut all = after(&case);
        for n in &mut all {
            n.present = true;
        }
        if !valid(&all) {
            if let Some(Change::Join(j)) = case.changes.pop() {
                case.late.retain(|&k| k != j);
            }
        }
    }
    // A leaf that joins late and also leaves is dropped from the plan.
    case.changes
        .retain(|c| !matches!(c, Change::Leave(j) if case.late.contains(j)));
    separate(&mut case);
    case
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn the_tree_follows_the_rule(case in tree()) {
        check(&case, &simulate(&case))?;
    }
}
