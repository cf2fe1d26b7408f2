//! [`Config`]: the scheduler's settings, checked when the scheduler is made.

use std::num::{NonZeroU32, NonZeroU64, NonZeroUsize};
use std::time::Duration;

use fairio_stats::StatsConfig;

use crate::Error;

/// The largest [`Config::unsent_limit`]: 2 GiB - 1 (the socket option is a C `int`).
pub const MAX_UNSENT_LIMIT: u32 = i32::MAX as u32;

/// The largest [`Config::read_buffer_size`]: 16 MiB. A socket read rarely returns more than a
/// few hundred KiB, and each connection may hold one buffer.
pub const MAX_READ_BUFFER_SIZE: usize = 16 << 20;

/// The scheduler's settings. Defaults follow Tezos: no speed limit, unbounded queues.
///
/// ```
/// use std::time::Duration;
/// use fairio::Config;
///
/// let config = Config::new(64 * 1024)
///     .max_download_speed(Some(1 << 20))
///     .max_upload_speed(Some(512 * 1024))
///     .read_queue_size(Some(256 * 1024))
///     .write_queue_size(Some(256 * 1024))
///     .shutdown_timeout(Duration::from_secs(2));
/// assert_eq!(config.max_download_speed, Some(1 << 20));
/// ```
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Config {
    /// Global upload limit in bytes per second; `None`: unlimited.
    pub max_upload_speed: Option<u64>,
    /// Global download limit in bytes per second; `None`: unlimited.
    pub max_download_speed: Option<u64>,
    /// Each connection's read queue bound in bytes; `None`: unbounded.
    pub read_queue_size: Option<usize>,
    /// Each connection's write queue bound in bytes; `None`: unbounded. Beside the queue, up to
    /// 256 KiB taken from it for the write under way are in flight (counted by
    /// [`Connection::pending_bytes`](crate::Connection::pending_bytes)).
    pub write_queue_size: Option<usize>,
    /// The most bytes read from a stream at a time: 1 byte to
    /// [`MAX_READ_BUFFER_SIZE`] (16 MiB).
    pub read_buffer_size: usize,
    /// The moving averages of the statistics (alpha 0.2, refreshed every second by default).
    pub moving_average: StatsConfig,
    /// How long [`Scheduler::shutdown(None)`](crate::Scheduler::shutdown) lets connections flush
    /// before it drops what is left (5 s by default), so that shutdown never hangs.
    pub shutdown_timeout: Duration,
    /// The most bytes a connection's kernel may hold unsent ahead of its peer, so that a slow
    /// peer's socket stops taking bytes (and its share goes to the others) when the peer stops
    /// taking them: `TCP_NOTSENT_LOWAT` on TCP streams, the send buffer on Unix streams (Linux;
    /// see [`UnsentBound`](crate::UnsentBound) for what each stream gets). 16 KiB by default
    /// ([`DEFAULT_UNSENT_LIMIT`](crate::DEFAULT_UNSENT_LIMIT)); `None` leaves the kernel's
    /// buffers as they are.
    pub unsent_limit: Option<u32>,
    /// How long a connection whose last handle was dropped, or that
    /// [`ConnectionIo`](crate::ConnectionIo)'s `poll_shutdown` closes (what hyper does at the
    /// end of every connection), may go on flushing (30 s by default). Then what is still
    /// queued is dropped and counted, FIN goes out behind what the kernel holds, and the
    /// connection is released, as a socket's close does: a peer that never reads cannot keep
    /// a connection for ever.
    pub linger: Duration,
}

/// Settings once checked: zeros ruled out.
#[derive(Clone, Debug)]
pub(crate) struct Checked {
    pub(crate) max_upload_speed: Option<NonZeroU64>,
    pub(crate) max_download_speed: Option<NonZeroU64>,
    pub(crate) read_queue_size: Option<NonZeroUsize>,
    pub(crate) write_queue_size: Option<NonZeroUsize>,
    pub(crate) read_buffer_size: NonZeroUsize,
    pub(crate) moving_average: StatsConfig,
    pub(crate) shutdown_timeout: Duration,
    pub(crate) unsent_limit: Option<NonZeroU32>,
    pub(crate) linger: Duration,
}

impl Config {
    /// Settings with the given read buffer size, no speed limit and unbounded queues.
    pub fn new(read_buffer_size: usize) -> Self {
        Self {
            max_upload_speed: None,
            max_download_speed: None,
            read_queue_size: None,
            write_queue_size: None,
            read_buffer_size,
            moving_average: StatsConfig::default(),
            shutdown_timeout: Duration::from_secs(5),
            unsent_limit: Some(fairio_fd::DEFAULT_UNSENT_LIMIT.get()),
            linger: Duration::from_secs(30),
        }
    }

    /// Sets the global upload limit, bytes per second.
    pub fn max_upload_speed(mut self, bytes_per_sec: Option<u64>) -> Self {
        self.max_upload_speed = bytes_per_sec;
        self
    }

    /// Sets the global download limit, bytes per second.
    pub fn max_download_speed(mut self, bytes_per_sec: Option<u64>) -> Self {
        self.max_download_speed = bytes_per_sec;
        self
    }

    /// Sets each connection's read queue bound, in bytes.
    pub fn read_queue_size(mut self, bytes: Option<usize>) -> Self {
        self.read_queue_size = bytes;
        self
    }

    /// Sets each connection's write queue bound, in bytes.
    pub fn write_queue_size(mut self, bytes: Option<usize>) -> Self {
        self.write_queue_size = bytes;
        self
    }

    /// Sets the moving-average settings of the statistics.
    pub fn moving_average(mut self, stats: StatsConfig) -> Self {
        self.moving_average = stats;
        self
    }

    /// Sets how long `shutdown(None)` lets connections flush.
    pub fn shutdown_timeout(mut self, timeout: Duration) -> Self {
        self.shutdown_timeout = timeout;
        self
    }

    /// Sets the most bytes a connection's kernel may hold unsent ahead of its peer; `None`
    /// leaves the kernel's buffers as they are (see [`Config::unsent_limit`]).
    ///
    /// ```
    /// let config = fairio::Config::new(64 * 1024).unsent_limit(Some(16 * 1024));
    /// assert_eq!(config.unsent_limit, Some(16 * 1024));
    /// ```
    pub fn unsent_limit(mut self, bytes: Option<u32>) -> Self {
        self.unsent_limit = bytes;
        self
    }

    /// Sets how long a released connection may go on flushing (see [`Config::linger`]).
    pub fn linger(mut self, linger: Duration) -> Self {
        self.linger = linger;
        self
    }

    pub(crate) fn check(&self) -> Result<Checked, Error> {
        Ok(Checked {
            max_upload_speed: speed("max_upload_speed", self.max_upload_speed)?,
            max_download_speed: speed("max_download_speed", self.max_download_speed)?,
            read_queue_size: queue("read_queue_size", self.read_queue_size)?,
            write_queue_size: queue("write_queue_size", self.write_queue_size)?,
            read_buffer_size: NonZeroUsize::new(self.read_buffer_size)
                .filter(|n| n.get() <= MAX_READ_BUFFER_SIZE)
                .ok_or_else(|| {
                    Error::InvalidConfig(format!(
                        "read_buffer_size must be between 1 byte and 16 MiB (64 KiB is a good \
                         start); got {}",
                        self.read_buffer_size
                    ))
                })?,
            moving_average: self.moving_average,
            shutdown_timeout: self.shutdown_timeout,
            linger: self.linger,
            unsent_limit: match self.unsent_limit {
                None => None,
                Some(n) => Some(
                    NonZeroU32::new(n)
                        .filter(|n| n.get() <= MAX_UNSENT_LIMIT)
                        .ok_or_else(|| {
                            Error::InvalidConfig(format!(
                                "unsent_limit must be between 1 byte and 2 GiB - 1 (16 KiB is \
                                 the default), or None to leave the kernel's buffers as they \
                                 are; got {n}"
                            ))
                        })?,
                ),
            },
        })
    }
}

/// Checks a speed: `Some(0)` is refused rather than read as "stopped" or "unlimited".
pub(crate) fn speed(name: &str, v: Option<u64>) -> Result<Option<NonZeroU64>, Error> {
    match v {
        None => Ok(None),
        Some(n) => NonZeroU64::new(n).map(Some).ok_or_else(|| {
            Error::InvalidConfig(format!(
                "{name} must be at least 1 byte per second, or None for no limit; got 0"
            ))
        }),
    }
}

fn queue(name: &str, v: Option<usize>) -> Result<Option<NonZeroUsize>, Error> {
    match v {
        None => Ok(None),
        Some(n) => NonZeroUsize::new(n).map(Some).ok_or_else(|| {
            Error::InvalidConfig(format!(
                "{name} must be at least 1 byte, or None for an unbounded queue; got 0"
            ))
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zeros_are_refused_with_a_message_naming_the_field() {
        let msg = |c: Config| match c.check() {
            Err(Error::InvalidConfig(m)) => m,
            other => panic!("{other:?}"),
        };
        assert!(msg(Config::new(0)).contains("read_buffer_size"));
        assert!(msg(Config::new(1).max_upload_speed(Some(0))).contains("max_upload_speed"));
        assert!(msg(Config::new(1).max_download_speed(Some(0))).contains("max_download_speed"));
        assert!(msg(Config::new(1).read_queue_size(Some(0))).contains("read_queue_size"));
        assert!(msg(Config::new(1).write_queue_size(Some(0))).contains("write_queue_size"));
        assert!(Config::new(1).check().is_ok());
    }

    #[test]
    fn a_read_buffer_above_the_maximum_is_refused() {
        // usize::MAX passed once, and the first limited read panicked with "capacity overflow".
        for n in [usize::MAX, MAX_READ_BUFFER_SIZE + 1] {
            match Config::new(n).check() {
                Err(Error::InvalidConfig(m)) => assert!(m.contains("read_buffer_size"), "{m}"),
                other => panic!("{other:?}"),
            }
        }
        assert!(Config::new(MAX_READ_BUFFER_SIZE).check().is_ok());
    }

    #[test]
    fn unsent_limits_out_of_range_are_refused() {
        for n in [0, MAX_UNSENT_LIMIT + 1, u32::MAX] {
            match Config::new(1024).unsent_limit(Some(n)).check() {
                Err(Error::InvalidConfig(m)) => assert!(m.contains("unsent_limit"), "{m}"),
                other => panic!("{n}: {other:?}"),
            }
        }
        assert!(
            Config::new(1)
                .unsent_limit(Some(MAX_UNSENT_LIMIT))
                .check()
                .is_ok()
        );
        assert!(Config::new(1).unsent_limit(None).check().is_ok());
    }
}
