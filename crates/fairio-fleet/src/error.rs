//! [`Error`]: what can go wrong when joining a fleet.

/// Why a member could not join.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A setting is out of range; the message says what to fix.
    #[error("invalid fleet configuration: {0}")]
    InvalidConfig(String),
    /// The Redis URL could not be parsed.
    #[error("bad Redis URL: {0}")]
    Url(#[from] redis::RedisError),
}
