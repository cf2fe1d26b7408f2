//! [`StatsConfig`]: the smoothing factor and refresh period, validated.

use std::fmt;
use std::time::Duration;

/// How the moving averages are computed: smoothing factor `alpha` and refresh period.
///
/// Defaults follow Tezos: alpha 0.2, refreshed every second.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StatsConfig {
    alpha: f64,
    refresh: Duration,
}

/// A [`StatsConfig`] value out of range.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum StatsConfigError {
    /// `alpha` must be in (0, 1].
    Alpha(f64),
    /// The refresh period must be positive.
    Refresh,
}

impl fmt::Display for StatsConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Alpha(a) => write!(f, "moving-average alpha must be in (0, 1], got {a}"),
            Self::Refresh => f.write_str("moving-average refresh period must be positive"),
        }
    }
}

impl std::error::Error for StatsConfigError {}

impl StatsConfig {
    /// A configuration with smoothing factor `alpha` and refresh period `refresh`.
    ///
    /// # Errors
    /// [`StatsConfigError`] when `alpha` is not in (0, 1] or `refresh` is zero.
    pub fn new(alpha: f64, refresh: Duration) -> Result<Self, StatsConfigError> {
        if !(alpha > 0.0 && alpha <= 1.0) {
            return Err(StatsConfigError::Alpha(alpha));
        }
        if refresh.is_zero() {
            return Err(StatsConfigError::Refresh);
        }
        Ok(Self { alpha, refresh })
    }

    /// The smoothing factor: the weight of the newest sample.
    pub fn alpha(&self) -> f64 {
        self.alpha
    }

    /// How often the averages are refreshed.
    pub fn refresh(&self) -> Duration {
        self.refresh
    }
}

impl Default for StatsConfig {
    fn default() -> Self {
        Self {
            alpha: 0.2,
            refresh: Duration::from_secs(1),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_out_of_range_values() {
        let s = Duration::from_secs(1);
        assert!(StatsConfig::new(0.0, s).is_err());
        assert!(StatsConfig::new(1.5, s).is_err());
        assert!(StatsConfig::new(f64::NAN, s).is_err());
        assert!(StatsConfig::new(0.5, Duration::ZERO).is_err());
        assert_eq!(StatsConfig::new(1.0, s).unwrap().alpha(), 1.0);
        assert_eq!(StatsConfig::new(1.0, s).unwrap().refresh(), s);
    }

    #[test]
    fn errors_say_what_is_wrong() {
        let alpha = StatsConfig::new(1.5, Duration::from_secs(1)).unwrap_err();
        assert_eq!(alpha, StatsConfigError::Alpha(1.5));
        assert_eq!(
            alpha.to_string(),
            "moving-average alpha must be in (0, 1], got 1.5"
        );
        let refresh = StatsConfig::new(0.5, Duration::ZERO).unwrap_err();
        assert_eq!(
            refresh.to_string(),
            "moving-average refresh period must be positive"
        );
    }
}
