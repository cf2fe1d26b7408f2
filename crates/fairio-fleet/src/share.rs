//! Max-min fair, weighted targets: the part of a budget each live member should hold.

/// What one member asks for.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Want {
    /// Its weight, at least 1.
    pub weight: f64,
    /// The rate it could use now, bytes per second (at least the floor).
    pub demand: f64,
}

/// Splits `capacity` among `members` by water-filling: each gets at most its demand, the rest
/// is shared in proportion to weight among those that want more; what is left once every
/// demand is met is shared by weight among all, as headroom to grow into. The targets add up
/// to `capacity` whenever there is a member.
///
/// The Lua script computes the same, in the same order (`lease.lua`); a test runs both on the
/// same inputs.
pub fn targets(capacity: f64, members: &[Want]) -> Vec<f64> {
    let n = members.len();
    let mut out = vec![0.0; n];
    let mut open: Vec<usize> = (0..n).collect();
    let mut left = capacity;
    while !open.is_empty() && left > 0.0 {
        let wsum: f64 = open.iter().map(|&i| members[i].weight).sum();
        let level = left / wsum;
        let (met, rest): (Vec<usize>, Vec<usize>) = open
            .iter()
            .partition(|&&i| members[i].demand <= level * members[i].weight);
        if met.is_empty() {
            for &i in &open {
                out[i] = level * members[i].weight;
            }
            left = 0.0;
            break;
        }
        for &i in &met {
            out[i] = members[i].demand;
            left -= members[i].demand;
        }
        open = rest;
    }
    if left > 0.0 && n > 0 {
        let wall: f64 = members.iter().map(|m| m.weight).sum();
        for (o, m) in out.iter_mut().zip(members) {
            *o += left * m.weight / wall;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn want(weight: f64, demand: f64) -> Want {
        Want { weight, demand }
    }

    #[test]
    fn a_light_member_gets_its_demand_and_the_rest_is_split_by_weight() {
        let t = targets(100.0, &[want(1.0, 10.0), want(1.0, 1e18), want(3.0, 1e18)]);
        assert_eq!(t, vec![10.0, 22.5, 67.5]);
    }

    #[test]
    fn spare_capacity_is_headroom_by_weight() {
        let t = targets(100.0, &[want(1.0, 10.0), want(3.0, 10.0)]);
        assert_eq!(t, vec![30.0, 70.0]);
        assert!(targets(100.0, &[]).is_empty());
    }
}
