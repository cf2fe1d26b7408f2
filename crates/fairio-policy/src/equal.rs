//! [`EqualShare`]: every backlogged connection gets an equal share.

use std::num::NonZeroU64;
use std::time::Instant;

use crate::Htb;
use crate::policy::Policy;

/// Work-conserving max-min fairness: every backlogged connection gets an equal share of the
/// global limit; a connection that wants less gets what it wants, and one held by its own cap
/// gets its cap; the rest is shared among the others (water-filling).
///
/// ```
/// use std::num::NonZeroU64;
/// use std::time::{Duration, Instant};
/// use fairio_policy::{Arbiter, Decision, EqualShare, Policy};
///
/// let t0 = Instant::now();
/// let mut arb = EqualShare.arbiter(NonZeroU64::new(1 << 20), t0);
/// let a = arb.insert((), None, t0);
/// let b = arb.insert((), None, t0);
/// arb.set_demand(a, 1 << 20, t0);
/// arb.set_demand(b, 1 << 20, t0);
/// // Turns alternate, each grant sized to half the limit over 5 ms; follow the waits.
/// let (mut order, mut now) = (Vec::new(), t0);
/// while order.len() < 4 {
///     match arb.next(now) {
///         Decision::Grant { key, bytes } => order.push((key == a, bytes)),
///         Decision::Wait { until } => now = until,
///         Decision::Idle => unreachable!("both are backlogged"),
///     }
/// }
/// assert_eq!(order, [(true, 2621), (false, 2621), (true, 2621), (false, 2621)]);
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct EqualShare;

impl Policy for EqualShare {
    type Params = ();
    type Arbiter = Htb<()>;

    fn arbiter(&self, limit: Option<NonZeroU64>, now: Instant) -> Htb<()> {
        Htb::new(limit, now)
    }
}
