//! [`Link`]: a member's connection to Redis, and when to give it up.
//!
//! A report that fails with an error drops the connection, and the next round connects again.
//! One that only took too long keeps it: a busy process or a slow Redis is not a dead
//! connection, and a new one costs more round trips than the report that was late (measured: a
//! proxy serving 10,000 clients never got its lease back after Redis restarted, when each
//! round's new connection and script load took longer than a report's timeout). But a
//! connection whose reports have all been late for a whole TTL is given up too: a Redis behind
//! a dropped route never answers and never errs, and only a new connection finds the way back.

use std::time::Duration;

use redis::aio::MultiplexedConnection;
use tokio::time::Instant;

use crate::script::{self, Keys};
use crate::table::{Report, Terms, Verdict};

/// The connection, if any, and since when its reports have all been late.
pub(crate) struct Link {
    conn: Option<MultiplexedConnection>,
    late_since: Option<Instant>,
    /// How long a report may take.
    timeout: Duration,
    /// How long reports may all be late before the connection is given up.
    give_up: Duration,
}

impl Link {
    /// No connection yet; reports get `timeout`, and a connection whose reports have all been
    /// late for `give_up` is given up.
    pub(crate) fn new(timeout: Duration, give_up: Duration) -> Self {
        Self {
            conn: None,
            late_since: None,
            timeout,
            give_up,
        }
    }

    /// Whether a connection is up.
    pub(crate) fn is_up(&self) -> bool {
        self.conn.is_some()
    }

    /// Sets up a new connection with the lease script loaded, so that every report is one
    /// round trip; it gives up at `deadline` (the caller's choice: see the driver).
    pub(crate) async fn connect(&mut self, client: &redis::Client, deadline: Instant) {
        let setup = async {
            let mut conn = client.get_multiplexed_async_connection().await?;
            script::load(&mut conn).await?;
            Ok::<_, redis::RedisError>(conn)
        };
        self.conn = tokio::time::timeout_at(deadline, setup)
            .await
            .ok()
            .and_then(Result::ok);
        self.late_since = None;
    }

    /// One report, within the timeout; `None` on any failure, with the connection dropped on
    /// an error, or when this report and every one before it for the give-up span were late.
    pub(crate) async fn ask(
        &mut self,
        keys: &Keys,
        report: &Report<'_>,
        terms: &Terms,
    ) -> Option<Verdict> {
        let c = self.conn.as_mut()?;
        let sent = Instant::now();
        match tokio::time::timeout(self.timeout, script::report(c, keys, report, terms)).await {
            Ok(Ok(v)) => {
                self.late_since = None;
                Some(v)
            }
            Ok(Err(_)) => {
                self.conn = None;
                None
            }
            Err(_late) => {
                let since = *self.late_since.get_or_insert(sent);
                if Instant::now() - since >= self.give_up {
                    self.conn = None;
                    self.late_since = None;
                }
                None
            }
        }
    }
}
