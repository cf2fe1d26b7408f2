//! [`Ewma`]: the moving-average arithmetic, with time passed in.

use std::time::Duration;

/// An exponentially weighted moving average of a rate, fed with a running total.
///
/// Each [`update`](Self::update) takes the total now and the time since the previous update;
/// the sample is the rate over that interval, and the average becomes
/// `alpha × sample + (1 − alpha) × average`. It starts at 0, as Tezos's does.
///
/// ```
/// use std::time::Duration;
/// use fairio_stats::Ewma;
///
/// let mut avg = Ewma::new(0.5);
/// assert_eq!(avg.update(1000, Duration::from_secs(1)), 500);
/// assert_eq!(avg.update(2000, Duration::from_secs(1)), 750);
/// assert_eq!(avg.update(2000, Duration::from_millis(500)), 375); // idle half second
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Ewma {
    alpha: f64,
    average: f64,
    last_total: u64,
}

impl Ewma {
    /// A zero average with smoothing factor `alpha`, expected in (0, 1] (see
    /// [`StatsConfig`](crate::StatsConfig), which validates it).
    pub fn new(alpha: f64) -> Self {
        Self {
            alpha,
            average: 0.0,
            last_total: 0,
        }
    }

    /// Folds in the rate since the last update, given the running `total` now and the time
    /// `elapsed` since the last update. Returns the new average, rounded to bytes per second.
    /// A zero `elapsed` changes nothing.
    pub fn update(&mut self, total: u64, elapsed: Duration) -> u64 {
        let secs = elapsed.as_secs_f64();
        if secs > 0.0 {
            let delta = total.saturating_sub(self.last_total) as f64;
            self.average = self.alpha * (delta / secs) + (1.0 - self.alpha) * self.average;
            self.last_total = total;
        }
        self.rate()
    }

    /// The current average, rounded to bytes per second.
    pub fn rate(&self) -> u64 {
        // Averages are finite and non-negative; `as` saturates, so this cannot wrap.
        self.average.round() as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converges_to_a_constant_rate() {
        let mut e = Ewma::new(0.2);
        let mut total = 0;
        let mut last = 0;
        for _ in 0..60 {
            total += 10_000;
            last = e.update(total, Duration::from_secs(1));
        }
        assert_eq!(last, 10_000);
    }

    #[test]
    fn alpha_one_is_the_last_sample() {
        let mut e = Ewma::new(1.0);
        assert_eq!(e.update(300, Duration::from_millis(100)), 3000);
        assert_eq!(e.update(300, Duration::from_millis(100)), 0);
    }

    #[test]
    fn zero_elapsed_is_ignored() {
        let mut e = Ewma::new(0.2);
        assert_eq!(e.update(1000, Duration::ZERO), 0);
        assert_eq!(e.update(1000, Duration::from_secs(1)), 200);
    }
}
