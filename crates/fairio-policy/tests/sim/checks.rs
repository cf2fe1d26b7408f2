//! Checks shared by the property tests: the rate bound and work conservation.

use std::num::NonZeroU64;

use fairio_policy::tuning::burst;
use proptest::prelude::*;

use super::{MS, SEC, Scenario, Trace};

/// The limit in force at `t` (changes sorted by time).
pub fn limit_at(s: &Scenario, t: u64) -> u64 {
    s.limit_changes
        .iter()
        .rfind(|c| c.0 <= t)
        .map_or(s.limit, |c| c.1)
}

/// ∫ limit over [a, b), in bytes.
pub fn allowance(s: &Scenario, a: u64, b: u64) -> f64 {
    if s.limit_changes.is_empty() {
        return s.limit as f64 * (b - a) as f64 / SEC as f64;
    }
    let mut points: Vec<u64> = s
        .limit_changes
        .iter()
        .map(|c| c.0)
        .filter(|&t| t > a && t < b)
        .collect();
    points.push(a);
    points.push(b);
    points.sort();
    points
        .windows(2)
        .map(|w| limit_at(s, w[0]) as f64 * (w[1] - w[0]) as f64 / SEC as f64)
        .sum()
}

pub fn max_burst(s: &Scenario) -> f64 {
    std::iter::once(s.limit)
        .chain(s.limit_changes.iter().map(|c| c.1))
        .map(|l| burst(NonZeroU64::new(l).unwrap()) as f64)
        .fold(0.0, f64::max)
}

/// Rate: over every window of T ≥ 1 s, granted ≤ ∫limit + B; and granted ≥ 0.99·∫limit − B
/// wherever an uncapped, always-backlogged connection was present throughout.
pub fn check_rate(s: &Scenario, tr: &Trace) -> Result<(), TestCaseError> {
    let b = max_burst(s);
    let mut prefix = vec![0u64];
    for g in &tr.grants {
        prefix.push(prefix.last().unwrap() + g.2);
    }
    for t_len in [SEC, 2 * SEC, 3 * SEC] {
        for (i, g) in tr.grants.iter().enumerate() {
            let end = g.0 + t_len;
            if end > s.duration {
                break;
            }
            let j = tr.grants.partition_point(|h| h.0 < end);
            let bytes = (prefix[j] - prefix[i]) as f64;
            let max = allowance(s, g.0, end) + b;
            prop_assert!(bytes <= max, "window [{}, {end}): {bytes} > {max}", g.0);
        }
        let mut a = 0;
        while a + t_len <= s.duration {
            let end = a + t_len;
            let saturated = s.conns.iter().any(|c| {
                c.rate.is_none()
                    && c.cap.is_none()
                    && c.join <= a
                    && c.leave.is_none_or(|e| e >= end)
            });
            if saturated {
                let bytes = tr.total(a, end) as f64;
                let min = 0.99 * allowance(s, a, end) - b;
                prop_assert!(bytes >= min, "window [{a}, {end}): {bytes} < {min}");
            }
            a += 50 * MS;
        }
    }
    Ok(())
}
