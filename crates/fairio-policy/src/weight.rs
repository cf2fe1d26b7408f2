//! [`Weight`]: a connection's share factor under [`Weighted`](crate::Weighted).

use std::fmt;
use std::num::NonZeroU32;

/// A connection's weight: its share of bandwidth in proportion to the others'. At least 1.
///
/// ```
/// use fairio_policy::Weight;
///
/// assert_eq!(Weight::new(3).unwrap().get(), 3);
/// assert!(Weight::new(0).is_err());
/// assert_eq!(Weight::default().get(), 1);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Weight(NonZeroU32);

/// A weight of zero was given; weights are at least 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ZeroWeight;

impl fmt::Display for ZeroWeight {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("weight must be at least 1, got 0")
    }
}

impl std::error::Error for ZeroWeight {}

impl Weight {
    /// The weight `w`.
    ///
    /// # Errors
    /// [`ZeroWeight`] when `w` is 0.
    pub fn new(w: u32) -> Result<Self, ZeroWeight> {
        NonZeroU32::new(w).map(Self).ok_or(ZeroWeight)
    }

    /// The weight as a number.
    pub fn get(self) -> u32 {
        self.0.get()
    }
}

impl Default for Weight {
    fn default() -> Self {
        Self(NonZeroU32::MIN)
    }
}

impl From<NonZeroU32> for Weight {
    fn from(w: NonZeroU32) -> Self {
        Self(w)
    }
}

impl fmt::Display for Weight {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}
