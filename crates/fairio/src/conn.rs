//! [`ConnInner`]: the state one connection's handles and its task share.

use std::io;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

use fairio_fd::{CloseReason, FdInfo};
use fairio_policy::{Key, Policy};
use fairio_queue::ByteQueue;
use fairio_stats::Meter;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::Error;
use crate::group::GroupInner;
use crate::lifecycle::{Event, Status, WritePhase};
use crate::read_side::{ReadEnd, ReadSide};

/// Everything about one connection that outlives a single call.
pub(crate) struct ConnInner<P: Policy> {
    pub(crate) info: Arc<FdInfo>,
    pub(crate) read_q: Arc<ByteQueue>,
    /// The stream's read half, shared by the read pump and the readers.
    pub(crate) read_side: ReadSide,
    pub(crate) write_q: Arc<ByteQueue>,
    pub(crate) meter: Arc<Meter>,
    /// Its keys in the upload and download directions.
    pub(crate) up: Key,
    pub(crate) down: Key,
    pub(crate) params: Mutex<P::Params>,
    /// How long a released connection (no handle left), or one closed by
    /// `ConnectionIo::poll_shutdown`, may go on flushing ([`Config::linger`](crate::Config)).
    pub(crate) linger: Duration,
    /// Bytes taken from the write queue by the writer and not yet written to the stream. Only
    /// the writer changes it while it runs; once it has stopped, the task counts it as dropped.
    pub(crate) in_flight: AtomicUsize,
    /// The largest flush target waited for (bytes accepted by the write queue in all, see
    /// [`ConnInner::flushed_to`]): the writer wakes the flushes once it has written past it.
    pub(crate) flush_want: AtomicU64,
    /// Bytes written to the stream and flushed by it (a TLS stream holds what it has not
    /// flushed): what a flush waits for. Only the writer changes it.
    pub(crate) flushed: AtomicU64,
    /// How many splices may be asking under the connection's upload key now (writing into
    /// its socket): while any is, the writer, idle, leaves that demand alone.
    pub(crate) splicing_in: AtomicUsize,
    /// Bytes of the write queue written to the stream (bytes a splice wrote are not): what
    /// [`flushed`](Self::flushed) is set to, in the units of the flush targets.
    pub(crate) written: AtomicU64,
    /// The I/O error that ended the connection, until a read reports it.
    pub(crate) io_error: Mutex<Option<io::Error>>,
    /// The lifecycle: changed only through [`event`](Self::event).
    pub(crate) status: watch::Sender<Status>,
    /// The scheduler's hard stop (a child of its token).
    pub(crate) cancel: CancellationToken,
    /// Notified whenever the write queue has been emptied onto the stream.
    pub(crate) drained: tokio::sync::Notify,
    /// The handles' shared guard, while any handle exists.
    pub(crate) handles: OnceLock<Weak<HandleGuard<P>>>,
    /// The group it is in (registered in, or moved to): kept alive while the connection is.
    pub(crate) group: Mutex<Option<Arc<GroupInner<P>>>>,
}

impl<P: Policy> ConnInner<P> {
    pub(crate) fn id(&self) -> u64 {
        self.info.id()
    }

    /// The group it is in, locked: a move and the connection's end take it in turn.
    pub(crate) fn group(&self) -> std::sync::MutexGuard<'_, Option<Arc<GroupInner<P>>>> {
        self.group.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Applies a lifecycle event. The write queue closes as soon as the write side leaves
    /// `Open`, so no write is accepted after a close or half-close has begun.
    pub(crate) fn event(&self, event: Event) {
        self.status.send_if_modified(|s| s.apply(event));
        let s = self.status();
        if s.write != WritePhase::Open {
            self.write_q.close();
        }
        if s.stop {
            // `stop` is final: the task waits on this token alone, which costs less at every
            // wake-up of the task than a second watch beside the scheduler's.
            self.cancel.cancel();
        }
    }

    /// The lifecycle now.
    pub(crate) fn status(&self) -> Status {
        *self.status.borrow()
    }

    /// Waits until `pred` holds for the lifecycle.
    pub(crate) async fn until(&self, pred: impl FnMut(&Status) -> bool) {
        let mut rx = self.status.subscribe();
        // The sender lives as long as `self`: the wait cannot fail.
        let _ = rx.wait_for(pred).await;
    }

    /// Closes the write queue and drops what it holds and what the writer held: the bytes left
    /// unsent, counted once the writer has stopped (so exactly). Closed first, so that no write
    /// is accepted after the count.
    pub(crate) fn take_unsent(&self) -> usize {
        self.write_q.close();
        self.write_q.clear() + self.in_flight.swap(0, Ordering::AcqRel)
    }

    /// Bytes accepted for writing and not yet written: queued, or with the writer.
    pub(crate) fn pending_bytes(&self) -> usize {
        self.write_q.len_bytes() + self.in_flight.load(Ordering::Acquire)
    }

    /// The target of a flush that starts now: the bytes the write queue has accepted in all.
    pub(crate) fn flush_target(&self) -> u64 {
        self.write_q.pushed_bytes()
    }

    /// Whether the flush of `target` is over: `Ok` once the writer has written and flushed
    /// `target` bytes in all (every byte accepted before the flush began, whatever was queued
    /// after), an error once it stopped short of them, `None` meanwhile.
    pub(crate) fn try_flushed_to(&self, target: u64) -> Option<Result<(), Error>> {
        // Bytes flushed stay flushed, whatever the writer did afterwards.
        if self.flushed.load(Ordering::SeqCst) >= target {
            return Some(Ok(()));
        }
        let s = self.status();
        (s.ended || s.write.is_done()).then_some(Err(Error::ConnectionClosed))
    }

    /// Waits until the writer has written and flushed `target` bytes in all (see
    /// [`try_flushed_to`](Self::try_flushed_to)), or has stopped short of them.
    pub(crate) async fn flushed_to(&self, target: u64) -> Result<(), Error> {
        self.flush_want.fetch_max(target, Ordering::SeqCst);
        loop {
            let notified = self.drained.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            // Pairs with the fence in the writer's count: either it sees this target (and
            // flushes at its next write, or when it runs out of bytes), or this check sees
            // them flushed.
            std::sync::atomic::fence(Ordering::SeqCst);
            if let Some(r) = self.try_flushed_to(target) {
                return r;
            }
            notified.await;
        }
    }

    /// Counts `n` bytes written to the stream; returns whether a flush waits for more than the
    /// stream has flushed (the writer then flushes it and calls [`flushed_now`]).
    ///
    /// [`flushed_now`]: Self::flushed_now
    pub(crate) fn count_written(&self, n: usize) -> bool {
        self.written.fetch_add(n as u64, Ordering::SeqCst);
        self.meter.add_sent(n as u64);
        std::sync::atomic::fence(Ordering::SeqCst);
        self.flush_want.load(Ordering::SeqCst) > self.flushed.load(Ordering::SeqCst)
    }

    /// The stream has flushed everything written so far: wakes the flushes waiting for it.
    /// Called by the writer only.
    pub(crate) fn flushed_now(&self) {
        self.flushed
            .store(self.written.load(Ordering::SeqCst), Ordering::SeqCst);
        self.drained.notify_waiters();
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
        // A peer that hangs up or resets is ordinary traffic, not something to warn about.
        if matches!(
            e.kind(),
            io::ErrorKind::ConnectionReset
                | io::ErrorKind::BrokenPipe
                | io::ErrorKind::ConnectionAborted
                | io::ErrorKind::UnexpectedEof
        ) {
            tracing::debug!(conn = self.id(), error = %e, "connection ended by the peer");
        } else {
            tracing::warn!(conn = self.id(), error = %e, "connection failed");
        }
        self.info.set_close_reason(CloseReason::Io(e.kind()));
        {
            let mut slot = self.io_error.lock().unwrap_or_else(|e| e.into_inner());
            if slot.is_none() {
                *slot = Some(e);
            }
        }
        self.event(Event::Fail);
        self.read_q.close();
    }

    /// Waits for the writer to be done, for at most `timeout`; on timeout, stops it and waits
    /// until it has counted what it dropped.
    async fn settle_writer(&self, timeout: Option<Duration>) {
        let done = |s: &Status| s.write.is_done() || s.ended;
        let timed_out = match timeout {
            None => {
                self.until(done).await;
                false
            }
            Some(t) => tokio::time::timeout(t, self.until(done)).await.is_err(),
        };
        if timed_out {
            self.event(Event::Abort);
            // The task drops the writer at once and counts what it held.
            self.until(done).await;
        }
    }

    /// Takes the dropped bytes not reported yet, for an error returned to the user.
    fn take_unreported(&self) -> usize {
        let mut unsent = 0;
        self.status.send_if_modified(|s| {
            unsent = s.unreported();
            s.reported = s.dropped;
            false
        });
        unsent
    }

    /// The result of a close or half-close, once the writer is done: every dropped byte is
    /// reported in exactly one error, to the first caller that reports (`report`).
    fn outcome(&self, report: bool) -> Result<(), Error> {
        let s = self.status();
        let unsent = if report {
            self.take_unreported()
        } else {
            s.unreported()
        };
        if unsent > 0 {
            tracing::info!(conn = self.id(), unsent, "unsent bytes dropped");
            Err(Error::Timeout { unsent })
        } else if s.failed {
            // Bytes lost to the failure itself are reported through the I/O error.
            Err(Error::ConnectionClosed)
        } else {
            Ok(())
        }
    }

    /// Half-closes: no new writes; flushes within `timeout` and sends FIN, while reading goes
    /// on. On timeout the writer stops and the rest is dropped and counted.
    pub(crate) async fn shutdown_write(&self, timeout: Option<Duration>) -> Result<(), Error> {
        self.event(Event::Flush);
        self.settle_writer(timeout).await;
        self.outcome(true)
    }

    /// Closes: flushes within `timeout`, then stops the task and waits until the connection has
    /// left the scheduler and its stream is closed. `report`: whether the dropped bytes are
    /// reported to this caller (the scheduler's own closes at shutdown leave them to the user).
    pub(crate) async fn close(
        &self,
        timeout: Option<Duration>,
        reason: CloseReason,
        report: bool,
    ) -> Result<(), Error> {
        if !self.status().ended {
            self.info.set_close_reason(reason);
            self.event(Event::Close);
            self.settle_writer(timeout).await;
            self.until(|s| s.ended).await;
            tracing::debug!(conn = self.id(), ?reason, "connection closed");
        }
        self.outcome(report)
    }
}

/// Shared by all handles of one connection; the last one dropped starts a graceful close.
pub(crate) struct HandleGuard<P: Policy> {
    pub(crate) conn: Arc<ConnInner<P>>,
}

impl<P: Policy> Drop for HandleGuard<P> {
    fn drop(&mut self) {
        self.conn.info.set_close_reason(CloseReason::LocalClose);
        self.conn.event(Event::Release);
    }
}

impl<P: Policy> ReadEnd for ConnInner<P> {
    fn reads_closed(&self) {
        self.read_q.close();
    }

    fn peer_closed(&self) {
        self.info.set_close_reason(CloseReason::PeerClosed);
        self.read_q.close();
    }

    fn reads_failed(&self, e: io::Error) {
        self.fail(e);
    }
}
