//! The sharing rule of `Htb`, computed independently of it: hierarchical water-filling with
//! guarantees and ceilings, in bytes per second.

/// One node of a tree as the oracle sees it.
#[derive(Clone, Debug)]
pub(crate) struct Node {
    /// Index of the parent node; `None`: the root.
    pub(crate) parent: Option<usize>,
    pub(crate) weight: u32,
    pub(crate) guarantee: Option<u64>,
    pub(crate) ceiling: Option<u64>,
    /// For a leaf, what it wants (`None`: all it can get). Groups have `leaf: false`.
    pub(crate) leaf: bool,
    pub(crate) rate: Option<u64>,
    /// Present (a leaf that joined and has not left; a group is present if any leaf below it
    /// is).
    pub(crate) present: bool,
}

/// Max-min fair water-filling: `left` shared by weight, each up to its cap.
pub(crate) fn water_fill(left: f64, wants: &[(f64, f64)]) -> Vec<f64> {
    let mut alloc = vec![0.0; wants.len()];
    let mut open: Vec<usize> = (0..wants.len()).filter(|&i| wants[i].1 > 0.0).collect();
    let mut left = left;
    for _ in 0..=wants.len() {
        if open.is_empty() || left <= 0.0 {
            break;
        }
        let wsum: f64 = open.iter().map(|&i| wants[i].0).sum();
        let level = left / wsum;
        let (sat, rest): (Vec<usize>, Vec<usize>) = open
            .iter()
            .partition(|&&i| wants[i].1 - alloc[i] <= level * wants[i].0);
        if sat.is_empty() {
            for &i in &open {
                alloc[i] += level * wants[i].0;
            }
            break;
        }
        for &i in &sat {
            left -= wants[i].1 - alloc[i];
            alloc[i] = wants[i].1;
        }
        open = rest;
    }
    alloc
}

fn children(nodes: &[Node], parent: Option<usize>) -> Vec<usize> {
    (0..nodes.len())
        .filter(|&i| nodes[i].parent == parent && nodes[i].present)
        .collect()
}

/// What a node can use: a leaf its rate, a group what its children can use; both up to the
/// ceiling.
pub(crate) fn demand(nodes: &[Node], i: usize) -> f64 {
    let n = &nodes[i];
    let want = if n.leaf {
        n.rate.map_or(f64::INFINITY, |r| r as f64)
    } else {
        children(nodes, Some(i))
            .iter()
            .map(|&c| demand(nodes, c))
            .sum()
    };
    want.min(n.ceiling.map_or(f64::INFINITY, |c| c as f64))
}

/// Each node's rate under the rule, from the root's `limit`.
pub(crate) fn shares(nodes: &[Node], limit: f64) -> Vec<f64> {
    let mut out = vec![0.0; nodes.len()];
    split(nodes, None, limit, &mut out);
    out
}

fn split(nodes: &[Node], parent: Option<usize>, allowance: f64, out: &mut [f64]) {
    let kids = children(nodes, parent);
    let wants: Vec<f64> = kids.iter().map(|&k| demand(nodes, k)).collect();
    let base_want: Vec<f64> = kids
        .iter()
        .zip(&wants)
        .map(|(&k, &w)| nodes[k].guarantee.map_or(0.0, |g| g as f64).min(w))
        .collect();
    let guaranteed: f64 = base_want.iter().sum();
    let (base, left) = if guaranteed > allowance {
        // Guarantees that do not fit are met in the same proportion.
        let by_guarantee: Vec<(f64, f64)> = kids
            .iter()
            .zip(&base_want)
            .map(|(&k, &b)| (nodes[k].guarantee.map_or(0.0, |g| g as f64), b))
            .collect();
        (water_fill(allowance, &by_guarantee), 0.0)
    } else {
        (base_want, allowance - guaranteed)
    };
    let extra_wants: Vec<(f64, f64)> = kids
        .iter()
        .zip(wants.iter().zip(&base))
        .map(|(&k, (&w, &b))| (f64::from(nodes[k].weight), (w - b).max(0.0)))
        .collect();
    let extra = water_fill(left, &extra_wants);
    for (j, &k) in kids.iter().enumerate() {
        out[k] = base[j] + extra[j];
        if !nodes[k].leaf {
            split(nodes, Some(k), out[k], out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(parent: Option<usize>, weight: u32, g: Option<u64>, c: Option<u64>) -> Node {
        Node {
            parent,
            weight,
            guarantee: g,
            ceiling: c,
            leaf: false,
            rate: None,
            present: true,
        }
    }

    fn leaf(parent: Option<usize>, rate: Option<u64>) -> Node {
        Node {
            leaf: true,
            rate,
            ..group(parent, 1, None, None)
        }
    }

    #[test]
    fn the_rule_by_hand() {
        // 100 at the root: A guaranteed 60 (weight 1), B (weight 3) with a ceiling of 25.
        // A: 60 + its share of the other 40: B wants at most 25, so A gets 60 + 15.
        let nodes = vec![
            group(None, 1, Some(60), None),
            group(None, 3, None, Some(25)),
            leaf(Some(0), None),
            leaf(Some(1), None),
            leaf(Some(1), Some(5)),
        ];
        let s = shares(&nodes, 100.0);
        assert!((s[0] - 75.0).abs() < 1e-9, "{s:?}");
        assert!((s[1] - 25.0).abs() < 1e-9);
        assert!((s[3] - 20.0).abs() < 1e-9);
        assert!((s[4] - 5.0).abs() < 1e-9);
    }

    #[test]
    fn guarantees_that_do_not_fit_are_met_in_proportion() {
        let nodes = vec![
            group(None, 1, Some(100), None),
            group(None, 1, Some(50), None),
            leaf(Some(0), None),
            leaf(Some(1), None),
        ];
        let s = shares(&nodes, 90.0);
        assert!((s[0] - 60.0).abs() < 1e-9, "{s:?}");
        assert!((s[1] - 30.0).abs() < 1e-9);
    }
}
