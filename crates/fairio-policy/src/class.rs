//! [`Class`]: a node's guarantee and ceiling, and [`ClassError`], why one was refused.

use std::fmt;
use std::num::NonZeroU64;

/// The guarantee and the ceiling of a node, in bytes per second; either may be absent.
///
/// ```
/// use std::num::NonZeroU64;
/// use fairio_policy::Class;
///
/// // Guaranteed 1 MiB/s, may borrow up to 4 MiB/s.
/// let class = Class::new(NonZeroU64::new(1 << 20), NonZeroU64::new(4 << 20));
/// assert_eq!(class.guarantee.map(NonZeroU64::get), Some(1 << 20));
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Class {
    /// The rate the node is guaranteed while it has bytes to move (HTB's `rate`).
    pub guarantee: Option<NonZeroU64>,
    /// The rate the node never exceeds, borrowing included (HTB's `ceil`).
    pub ceiling: Option<NonZeroU64>,
}

impl Class {
    /// A class with an optional guarantee and an optional ceiling.
    pub fn new(guarantee: Option<NonZeroU64>, ceiling: Option<NonZeroU64>) -> Self {
        Self { guarantee, ceiling }
    }
}

/// Why a class was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClassError {
    /// The key names no group (or a removed one) where a group was needed, or no node at all.
    NoSuchNode,
    /// A guarantee above the node's own ceiling.
    GuaranteeAboveCeiling {
        /// The guarantee asked for, in bytes per second.
        guarantee: u64,
        /// The node's ceiling.
        ceiling: u64,
    },
    /// The guarantees of a group's children would sum to more than the group's ceiling.
    GuaranteesAboveParentCeiling {
        /// What the children's guarantees would sum to, in bytes per second.
        guarantees: u64,
        /// The parent's ceiling.
        ceiling: u64,
    },
    /// The arbiter keeps no guarantees, or cannot move a connection between groups (the
    /// two-level [`Tree`](crate::Tree), the window quota): use a fair policy
    /// ([`EqualShare`](crate::EqualShare), [`Weighted`](crate::Weighted)).
    Unsupported,
}

impl fmt::Display for ClassError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoSuchNode => write!(f, "no such group or connection"),
            Self::Unsupported => write!(
                f,
                "this policy keeps no guarantees and moves no connection between groups (the fair policies do)"
            ),
            Self::GuaranteeAboveCeiling { guarantee, ceiling } => write!(
                f,
                "a guarantee of {guarantee} B/s is above the class's ceiling of {ceiling} B/s"
            ),
            Self::GuaranteesAboveParentCeiling {
                guarantees,
                ceiling,
            } => write!(
                f,
                "the guarantees inside a group would sum to {guarantees} B/s, above its \
                 ceiling of {ceiling} B/s"
            ),
        }
    }
}

impl std::error::Error for ClassError {}
