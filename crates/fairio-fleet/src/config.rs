//! [`Fleet`]: the settings of a member of a fleet budget.

use std::time::Duration;

use crate::Error;

/// A fleet budget to join: where it lives, its limits, and this member's part in it.
///
/// ```
/// use std::time::Duration;
///
/// let fleet = fairio_fleet::Fleet::new("redis://127.0.0.1:6379/0", "uplink")
///     .download(Some(100 << 20)) // 100 MiB/s across every member
///     .weight(2)
///     .refresh(Duration::from_millis(500))
///     .expected_members(4); // safe share without Redis: 25 MiB/s
/// assert_eq!(fleet.safe_share(100 << 20), 25 << 20);
/// ```
#[derive(Clone, Debug)]
pub struct Fleet {
    pub(crate) url: String,
    pub(crate) budget: String,
    pub(crate) upload: Option<u64>,
    pub(crate) download: Option<u64>,
    pub(crate) weight: u32,
    pub(crate) refresh: Duration,
    pub(crate) ttl: Option<Duration>,
    pub(crate) expected: Option<u32>,
    pub(crate) name: Option<String>,
}

impl Fleet {
    /// A budget named `budget` in the Redis at `url` (`redis://host:port/db`), with no limit
    /// yet: set [`upload`](Self::upload) or [`download`](Self::download).
    pub fn new(url: impl Into<String>, budget: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            budget: budget.into(),
            upload: None,
            download: None,
            weight: 1,
            refresh: Duration::from_millis(500),
            ttl: None,
            expected: None,
            name: None,
        }
    }

    /// The fleet-wide upload limit, bytes per second (`None`: this direction is not shared).
    #[must_use]
    pub fn upload(mut self, bytes_per_sec: Option<u64>) -> Self {
        self.upload = bytes_per_sec;
        self
    }

    /// The fleet-wide download limit, bytes per second (`None`: this direction is not shared).
    #[must_use]
    pub fn download(mut self, bytes_per_sec: Option<u64>) -> Self {
        self.download = bytes_per_sec;
        self
    }

    /// This member's weight (default 1): shares are in proportion to weight.
    #[must_use]
    pub fn weight(mut self, weight: u32) -> Self {
        self.weight = weight;
        self
    }

    /// How often the member reports and renews its lease (default 500 ms).
    #[must_use]
    pub fn refresh(mut self, every: Duration) -> Self {
        self.refresh = every;
        self
    }

    /// How long a lease lives without renewal (default: three refresh intervals; at least two
    /// intervals and a half, see the crate docs).
    #[must_use]
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self
    }

    /// How many members the fleet is expected to have: without Redis, each falls back to the
    /// limit divided by this (default: the live members it last saw).
    #[must_use]
    pub fn expected_members(mut self, n: u32) -> Self {
        self.expected = Some(n);
        self
    }

    /// This member's name in the budget (default: process id, a counter and the clock's
    /// nanoseconds). Two members must never share one.
    #[must_use]
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// What this member may use without Redis, for a fleet limit of `limit`.
    pub fn safe_share(&self, limit: u64) -> u64 {
        self.safe_share_among(limit, 1)
    }

    pub(crate) fn safe_share_among(&self, limit: u64, last_seen: u32) -> u64 {
        let n = self.expected.unwrap_or(last_seen).max(1);
        (limit / u64::from(n)).max(1)
    }

    /// How long a report may take before it counts as failed.
    pub(crate) fn timeout(&self) -> Duration {
        self.refresh / 2
    }

    pub(crate) fn lease_ttl(&self) -> Duration {
        self.ttl.unwrap_or(3 * self.refresh)
    }

    /// Checks the settings.
    pub(crate) fn check(&self) -> Result<(), Error> {
        let bad = |m: String| Err(Error::InvalidConfig(m));
        if self.upload.is_none() && self.download.is_none() {
            return bad("set an upload or a download limit for the fleet".into());
        }
        if self.upload == Some(0) || self.download == Some(0) {
            return bad("a fleet limit must be at least 1 byte per second".into());
        }
        if self.weight == 0 {
            return bad("the weight must be at least 1".into());
        }
        if self.expected == Some(0) {
            return bad("expected_members must be at least 1".into());
        }
        if self.budget.is_empty() || self.budget.contains(char::is_whitespace) {
            return bad(format!(
                "'{}' is not a budget name: use letters, digits, '-' or '_'",
                self.budget
            ));
        }
        if self.refresh < Duration::from_millis(10) {
            return bad(format!("refresh {:?} is below 10 ms", self.refresh));
        }
        // A lease must outlive the time every member takes to notice that Redis is gone (one
        // interval and a timeout), after the last lease given (up to an interval before): see
        // the crate docs.
        let min_ttl = 2 * self.refresh + self.timeout();
        if self.lease_ttl() < min_ttl {
            return bad(format!(
                "ttl {:?} is below two refresh intervals and a half ({min_ttl:?})",
                self.lease_ttl()
            ));
        }
        Ok(())
    }
}
