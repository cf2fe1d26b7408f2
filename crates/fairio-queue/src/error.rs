//! The errors of queue operations. Failed pushes hand the message back, so nothing is lost.

use std::error::Error;
use std::fmt;

/// The queue is closed; the message that could not be pushed is handed back.
#[derive(Clone, PartialEq, Eq)]
pub struct Closed<T>(pub T);

impl<T> fmt::Debug for Closed<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Closed(..)")
    }
}

impl<T> fmt::Display for Closed<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("queue closed")
    }
}

impl<T> Error for Closed<T> {}

/// Why [`try_push`](crate::ByteQueue::try_push) failed; the message is handed back.
#[derive(Clone, PartialEq, Eq)]
pub enum TryPushError<T> {
    /// There is no room, or earlier pushers are waiting for room.
    Full(T),
    /// The queue is closed.
    Closed(T),
}

impl<T> TryPushError<T> {
    /// The message that was not pushed.
    pub fn into_inner(self) -> T {
        match self {
            Self::Full(t) | Self::Closed(t) => t,
        }
    }
}

impl<T> fmt::Debug for TryPushError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Full(_) => f.write_str("Full(..)"),
            Self::Closed(_) => f.write_str("Closed(..)"),
        }
    }
}

impl<T> fmt::Display for TryPushError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Full(_) => f.write_str("queue full"),
            Self::Closed(_) => f.write_str("queue closed"),
        }
    }
}

impl<T> Error for TryPushError<T> {}

/// Why [`try_pop`](crate::ByteQueue::try_pop) returned nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TryPopError {
    /// Nothing is queued (or earlier poppers are waiting), and the queue is open.
    Empty,
    /// The queue is closed and drained.
    Closed,
}

impl fmt::Display for TryPopError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => f.write_str("queue empty"),
            Self::Closed => f.write_str("queue closed"),
        }
    }
}

impl Error for TryPopError {}

#[cfg(test)]
mod tests {
    use super::*;

    /// The messages name what went wrong, and `Debug` shows the kind without the message.
    #[test]
    fn errors_say_what_went_wrong() {
        assert_eq!(Closed(1).to_string(), "queue closed");
        assert_eq!(format!("{:?}", Closed(1)), "Closed(..)");
        assert_eq!(TryPushError::Full(1).to_string(), "queue full");
        assert_eq!(TryPushError::Closed(1).to_string(), "queue closed");
        assert_eq!(format!("{:?}", TryPushError::Full(1)), "Full(..)");
        assert_eq!(format!("{:?}", TryPushError::Closed(1)), "Closed(..)");
        assert_eq!(TryPushError::Full(7).into_inner(), 7);
        assert_eq!(TryPushError::Closed(8).into_inner(), 8);
        assert_eq!(TryPopError::Empty.to_string(), "queue empty");
        assert_eq!(TryPopError::Closed.to_string(), "queue closed");
    }
}
