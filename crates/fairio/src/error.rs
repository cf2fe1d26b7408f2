//! [`Error`]: every failure the scheduler reports.

use std::io;

use fairio_policy::ZeroWeight;

/// Errors of the scheduler and its connections.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The connection has ended cleanly: the peer closed it, or it was closed locally. Also
    /// returned after an I/O error has been reported once.
    #[error("connection closed")]
    ConnectionClosed,
    /// The scheduler has shut down; it accepts no new connection.
    #[error("scheduler closed")]
    SchedulerClosed,
    /// `close` gave up flushing: `unsent` queued bytes were dropped.
    #[error("close timed out with {unsent} bytes unsent")]
    Timeout {
        /// Bytes that were queued but not written to the stream.
        unsent: usize,
    },
    /// A configuration value is out of range; the message says what to fix.
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),
    /// The scheduler was used outside a tokio runtime.
    #[error("no tokio runtime: call this from within a tokio runtime")]
    NoRuntime,
    /// The stream failed; reported once, on the first read after the data queued before the
    /// failure.
    #[error("I/O error: {0}")]
    Io(#[from] io::Error),
}

impl From<ZeroWeight> for Error {
    fn from(e: ZeroWeight) -> Self {
        Self::InvalidConfig(e.to_string())
    }
}

impl From<Error> for io::Error {
    fn from(e: Error) -> Self {
        let kind = match &e {
            Error::ConnectionClosed => io::ErrorKind::NotConnected,
            Error::SchedulerClosed => io::ErrorKind::ConnectionAborted,
            Error::Timeout { .. } => io::ErrorKind::TimedOut,
            Error::InvalidConfig(_) => io::ErrorKind::InvalidInput,
            Error::NoRuntime => io::ErrorKind::Other,
            Error::Io(_) => match e {
                Error::Io(inner) => return inner,
                _ => io::ErrorKind::Other,
            },
        };
        Self::new(kind, e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_to_io_error_kinds() {
        let k = |e: Error| io::Error::from(e).kind();
        assert_eq!(k(Error::ConnectionClosed), io::ErrorKind::NotConnected);
        assert_eq!(k(Error::Timeout { unsent: 3 }), io::ErrorKind::TimedOut);
        assert_eq!(
            k(Error::InvalidConfig("x".into())),
            io::ErrorKind::InvalidInput
        );
        let reset = io::Error::from(io::ErrorKind::ConnectionReset);
        assert_eq!(k(Error::Io(reset)), io::ErrorKind::ConnectionReset);
        assert!(matches!(Error::from(ZeroWeight), Error::InvalidConfig(_)));
    }
}
