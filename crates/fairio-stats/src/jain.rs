//! Jain's fairness index.

/// Jain's fairness index of some amounts: 1 when all are equal, 1/n when one takes everything.
/// An empty or all-zero set counts as perfectly fair (1).
///
/// ```
/// use fairio_stats::jain;
///
/// assert_eq!(jain(&[5.0, 5.0, 5.0]), 1.0);
/// assert_eq!(jain(&[1.0, 0.0, 0.0, 0.0]), 0.25);
/// ```
pub fn jain(xs: &[f64]) -> f64 {
    let sum: f64 = xs.iter().sum();
    let squares: f64 = xs.iter().map(|x| x * x).sum();
    if squares == 0.0 {
        1.0
    } else {
        sum * sum / (xs.len() as f64 * squares)
    }
}
