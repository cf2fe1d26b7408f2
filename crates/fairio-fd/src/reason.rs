//! Why a stream closed.

use std::fmt;
use std::io;

/// Why an [`Fd`](crate::Fd) closed: the equivalent of Tezos's `P2p_disconnection_reason`.
///
/// The first reason recorded wins: a connection that failed with a reset and is then closed
/// locally keeps [`CloseReason::Io`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CloseReason {
    /// The peer closed its write half: reading returned end-of-file.
    PeerClosed,
    /// The local side closed the connection.
    LocalClose,
    /// The scheduler that managed the connection shut down.
    SchedulerShutdown,
    /// An I/O error ended the connection.
    Io(io::ErrorKind),
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::PeerClosed => f.write_str("closed by peer"),
            Self::LocalClose => f.write_str("closed locally"),
            Self::SchedulerShutdown => f.write_str("scheduler shut down"),
            Self::Io(kind) => write!(f, "I/O error: {kind}"),
        }
    }
}
