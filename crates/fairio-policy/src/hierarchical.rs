//! [`Hierarchical`]: classes that share like Linux HTB, nested as deep as needed.

use std::num::NonZeroU64;
use std::time::Instant;

use crate::policy::Policy;
use crate::{Htb, Weight};

/// Max-min fairness in a tree of groups of any depth ([`Htb`]): each group and each connection
/// has a [`Weight`], an optional guarantee and an optional ceiling (its cap), all changeable at
/// run time. Groups nest with [`Arbiter::insert_group_in`](crate::Arbiter::insert_group_in), and
/// guarantees are set with [`Arbiter::set_group_guarantee`](crate::Arbiter::set_group_guarantee).
/// It is [`Weighted`](crate::Weighted) under the name of its tree: both make an [`Htb`].
///
/// ```
/// use std::num::NonZeroU64;
/// use std::time::{Duration, Instant};
/// use fairio_policy::{Arbiter, Decision, Hierarchical, Policy, Weight};
///
/// let t0 = Instant::now();
/// let w = Weight::default();
/// let mut arb = Hierarchical.arbiter(NonZeroU64::new(4 << 20), t0);
/// // class -> address -> connection: the class may use at most 1 MiB/s, whatever its size.
/// let class = arb.insert_group(w, NonZeroU64::new(1 << 20), t0);
/// let address = arb.insert_group_in(class, w, None, t0);
/// let conns: Vec<_> = (0..4).map(|_| arb.insert_into(address, w, None, t0)).collect();
/// let other = arb.insert(w, None, t0);
/// for &k in conns.iter().chain([&other]) {
///     arb.set_demand(k, u64::MAX / 4, t0);
/// }
/// let (mut to_other, mut now) = (0, t0);
/// while now < t0 + Duration::from_secs(1) {
///     match arb.next(now) {
///         Decision::Grant { key, bytes } if key == other => to_other += bytes,
///         Decision::Grant { .. } => {}
///         Decision::Wait { until } => now = until,
///         Decision::Idle => break,
///     }
/// }
/// // The lone connection gets the 3 MiB/s the class leaves.
/// assert!((to_other as f64 / f64::from(3u32 << 20) - 1.0).abs() < 0.02);
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct Hierarchical;

impl Policy for Hierarchical {
    type Params = Weight;
    type Arbiter = Htb<Weight>;

    fn arbiter(&self, limit: Option<NonZeroU64>, now: Instant) -> Htb<Weight> {
        Htb::new(limit, now)
    }
}
