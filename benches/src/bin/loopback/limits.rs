//! The limiter under test, as the `slow` and `relimit` timelines see it: a limit to set, and a
//! count of what it let through.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use fairio::{Policy, Scheduler};

use crate::dir::Dir;

/// The limiter under test, seen from the `slow` and `relimit` timelines.
pub(crate) trait Limits {
    /// Sets the global limit in `dir`; `None` lifts it.
    fn set(&self, dir: Dir, limit: Option<u64>);
    /// Bytes let through so far in `dir`, counted where the limit applies.
    fn passed(&self, dir: Dir) -> u64;
    /// Closes every connection.
    fn close(&self) -> Pin<Box<dyn Future<Output = ()> + '_>>;
}

impl<P: Policy> Limits for Scheduler<P> {
    fn set(&self, dir: Dir, limit: Option<u64>) {
        match dir {
            Dir::Up => self.set_max_upload_speed(limit),
            Dir::Down => self.set_max_download_speed(limit),
        }
    }

    /// Uploads: bytes written to the sockets; downloads: bytes read into the read queues.
    fn passed(&self, dir: Dir) -> u64 {
        let stat = self.global_stat();
        match dir {
            Dir::Up => stat.total_sent,
            Dir::Down => stat.total_recv,
        }
    }

    fn close(&self) -> Pin<Box<dyn Future<Output = ()> + '_>> {
        Box::pin(async {
            self.shutdown(Some(Duration::from_millis(10))).await;
        })
    }
}

/// One shared async-speed-limit limiter per direction, wrapped around each stream of that
/// direction.
pub(crate) struct AslPair {
    up: async_speed_limit::Limiter,
    down: async_speed_limit::Limiter,
}

impl AslPair {
    /// Both directions limited to `limit` bytes per second.
    pub(crate) fn new(limit: u64) -> Self {
        Self {
            up: async_speed_limit::Limiter::new(limit as f64),
            down: async_speed_limit::Limiter::new(limit as f64),
        }
    }

    /// The limiter of `dir`.
    pub(crate) fn of(&self, dir: Dir) -> &async_speed_limit::Limiter {
        match dir {
            Dir::Up => &self.up,
            Dir::Down => &self.down,
        }
    }
}

impl Limits for AslPair {
    fn set(&self, dir: Dir, limit: Option<u64>) {
        self.of(dir)
            .set_speed_limit(limit.map_or(f64::INFINITY, |l| l as f64));
    }

    /// Bytes its wrappers read or wrote, each counted once the read or write returned.
    fn passed(&self, dir: Dir) -> u64 {
        self.of(dir).total_bytes_consumed() as u64
    }

    fn close(&self) -> Pin<Box<dyn Future<Output = ()> + '_>> {
        Box::pin(std::future::ready(()))
    }
}

/// `passed` in both directions, uploads first.
pub(crate) fn passed_both(limits: &dyn Limits) -> [u64; 2] {
    [limits.passed(Dir::Up), limits.passed(Dir::Down)]
}
