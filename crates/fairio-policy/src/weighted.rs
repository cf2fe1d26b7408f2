//! [`Weighted`]: shares in proportion to a weight per connection.

use std::num::NonZeroU64;
use std::time::Instant;

use crate::policy::Policy;
use crate::{Htb, Weight};

/// Max-min fairness with shares in proportion to each connection's [`Weight`], set at
/// registration and changeable at run time.
///
/// ```
/// use std::num::NonZeroU64;
/// use std::time::{Duration, Instant};
/// use fairio_policy::{Arbiter, Decision, Policy, Weight, Weighted};
///
/// let t0 = Instant::now();
/// let mut arb = Weighted.arbiter(NonZeroU64::new(1 << 20), t0);
/// let light = arb.insert(Weight::new(1).unwrap(), None, t0);
/// let heavy = arb.insert(Weight::new(3).unwrap(), None, t0);
/// arb.set_demand(light, u64::MAX / 2, t0);
/// arb.set_demand(heavy, u64::MAX / 2, t0);
/// let (mut l, mut h, mut now) = (0, 0, t0);
/// // Two seconds on a virtual clock: follow the arbiter's waits.
/// while now < t0 + Duration::from_secs(2) {
///     match arb.next(now) {
///         Decision::Grant { key, bytes } if key == light => l += bytes,
///         Decision::Grant { bytes, .. } => h += bytes,
///         Decision::Wait { until } => now = until,
///         Decision::Idle => break,
///     }
/// }
/// assert!((h as f64 / l as f64 - 3.0).abs() < 0.02);
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct Weighted;

impl Policy for Weighted {
    type Params = Weight;
    type Arbiter = Htb<Weight>;

    fn arbiter(&self, limit: Option<NonZeroU64>, now: Instant) -> Htb<Weight> {
        Htb::new(limit, now)
    }
}
