//! [`ConnInner`]: the state one connection's handles and its task share.

use std::io;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

use fairio_fd::{CloseReason, FdInfo};
use fairio_policy::{Key, Policy};
use fairio_queue::ByteQueue;
use fairio_stats::Meter;
use tokio_util::sync::CancellationToken;

use crate::Error;
use crate::grant::GrantSlot;

/// Everything about one connection that outlives a single call.
pub(crate) struct ConnInner<P: Policy> {
    pub(crate) info: Arc<FdInfo>,
    pub(crate) read_q: Arc<ByteQueue>,
    pub(crate) write_q: Arc<ByteQueue>,
    pub(crate) meter: Arc<Meter>,
    pub(crate) up: (Key, Arc<GrantSlot>),
    pub(crate) down: (Key, Arc<GrantSlot>),
    pub(crate) params: Mutex<P::Params>,
    /// Bytes taken from the write queue and not yet written to the stream.
    pub(crate) in_flight: AtomicUsize,
    /// Bytes accepted for writing but dropped unsent when the task stopped (a close timeout,
    /// shutdown, or a failure). Counted once the writer has stopped, so the count is exact.
    pub(crate) dropped: AtomicUsize,
    /// The I/O error that ended the connection, until a read reports it.
    pub(crate) io_error: Mutex<Option<io::Error>>,
    pub(crate) failed: AtomicBool,
    /// Set by `close`, or when every handle is dropped: flush, then end.
    pub(crate) closing: AtomicBool,
    /// Stops the connection's task.
    pub(crate) cancel: CancellationToken,
    /// Fires when the write pump has ended (flushed and sent FIN, or failed).
    pub(crate) writer_done: CancellationToken,
    /// Fires when the task has ended and the connection left the scheduler.
    pub(crate) finished: CancellationToken,
    /// Notified whenever the write queue has been emptied onto the stream.
    pub(crate) drained: tokio::sync::Notify,
    /// Notified whenever the user has taken bytes from the read queue.
    pub(crate) read_taken: tokio::sync::Notify,
    /// The handles' shared guard, while any handle exists.
    pub(crate) handles: OnceLock<Weak<HandleGuard<P>>>,
}

impl<P: Policy> ConnInner<P> {
    pub(crate) fn id(&self) -> u64 {
        self.info.id()
    }

    /// Whether every queued byte has been written to the stream.
    pub(crate) fn is_drained(&self) -> bool {
        self.write_q.is_empty() && self.in_flight.load(Ordering::Acquire) == 0
    }

    /// Waits until every byte queued so far has been written to the stream, or the connection
    /// has ended.
    pub(crate) async fn flushed(&self) -> Result<(), Error> {
        loop {
            let notified = self.drained.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.is_drained() {
                return Ok(());
            }
            if self.finished.is_cancelled() || self.writer_done.is_cancelled() {
                return Err(Error::ConnectionClosed);
            }
            notified.await;
        }
    }

    /// The error a read reports once the read queue is drained: the I/O error once, then
    /// `ConnectionClosed`.
    pub(crate) fn end_error(&self) -> Error {
        let taken = self
            .io_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        taken.map_or(Error::ConnectionClosed, Error::Io)
    }

    /// Records a fatal I/O error: the connection stops, queued writes are dropped (the error is
    /// reported to the reader), and queued reads stay readable.
    pub(crate) fn fail(&self, e: io::Error) {
        tracing::warn!(conn = self.id(), error = %e, "connection failed");
        self.info.set_close_reason(CloseReason::Io(e.kind()));
        {
            let mut slot = self.io_error.lock().unwrap_or_else(|e| e.into_inner());
            if slot.is_none() {
                *slot = Some(e);
            }
        }
        self.failed.store(true, Ordering::Release);
        self.write_q.close();
        self.read_q.close();
        self.cancel.cancel();
    }

    /// Starts a graceful close: no new writes; the writer flushes what is queued, then ends.
    pub(crate) fn begin_close(&self) {
        self.closing.store(true, Ordering::Release);
        self.write_q.close();
        if self.writer_done.is_cancelled() {
            self.cancel.cancel();
        }
    }

    /// Waits for the writer to flush and end, for at most `timeout`; returns whether it timed
    /// out.
    async fn wait_writer(&self, timeout: Option<Duration>) -> bool {
        let flushed = self.writer_done.cancelled();
        match timeout {
            None => {
                flushed.await;
                false
            }
            Some(t) => tokio::time::timeout(t, flushed).await.is_err(),
        }
    }

    /// Half-closes: no new writes; flushes within `timeout` and sends FIN, while reading goes
    /// on. On timeout the rest is dropped and counted.
    pub(crate) async fn shutdown_write(&self, timeout: Option<Duration>) -> Result<(), Error> {
        self.write_q.close();
        let timed_out = self.wait_writer(timeout).await;
        if timed_out {
            let unsent = self.write_q.clear() + self.in_flight.load(Ordering::Acquire);
            return Err(Error::Timeout { unsent });
        }
        if self.failed.load(Ordering::Acquire) {
            return Err(Error::ConnectionClosed);
        }
        Ok(())
    }

    /// Closes: flushes within `timeout`, then stops the task and waits until the connection has
    /// left the scheduler and its stream is closed.
    pub(crate) async fn close(
        &self,
        timeout: Option<Duration>,
        reason: CloseReason,
    ) -> Result<(), Error> {
        if self.finished.is_cancelled() {
            let unsent = self.dropped.load(Ordering::Acquire);
            return if self.failed.load(Ordering::Acquire) {
                Err(Error::ConnectionClosed)
            } else if unsent > 0 {
                Err(Error::Timeout { unsent })
            } else {
                Ok(())
            };
        }
        self.begin_close();
        // Flushed or timed out, the task is stopped next; what it dropped is counted below.
        self.wait_writer(timeout).await;
        self.info.set_close_reason(reason);
        self.cancel.cancel();
        self.finished.cancelled().await;
        // The task has stopped: what it could not send is counted exactly. It may have been cut
        // short by this timeout, or by a shutdown while this close waited.
        let unsent = self.dropped.load(Ordering::Acquire);
        let result = if self.failed.load(Ordering::Acquire) {
            Err(Error::ConnectionClosed)
        } else if unsent > 0 {
            tracing::info!(
                conn = self.id(),
                unsent,
                "close gave up flushing; unsent bytes dropped"
            );
            Err(Error::Timeout { unsent })
        } else {
            Ok(())
        };
        tracing::debug!(conn = self.id(), ?reason, "connection closed");
        result
    }
}

/// Shared by all handles of one connection; the last one dropped starts a graceful close.
pub(crate) struct HandleGuard<P: Policy> {
    pub(crate) conn: Arc<ConnInner<P>>,
}

impl<P: Policy> Drop for HandleGuard<P> {
    fn drop(&mut self) {
        self.conn.info.set_close_reason(CloseReason::LocalClose);
        self.conn.begin_close();
    }
}
