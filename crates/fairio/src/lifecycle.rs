//! [`Status`]: one connection's lifecycle, as one value changed by one transition function.
//!
//! The handles and the connection's task share it through a `watch` channel: they send
//! [`Event`]s, and wait for the phases they need. Nothing else decides when the write side is
//! done, when the task stops, or how many bytes were lost.
//!
//! ```text
//!            Flush / Close                writer flushed, sent FIN
//!   Open ──────────────────▶ Flushing ─────────────────────────▶ Flushed
//!     │                         │ Abort (a timeout), Fail, Ended
//!     └─────────────────────────┴──────────────────────────────▶ Aborted / Failed
//! ```
//!
//! Independently, `stop` (the task must end) follows from `Close` once the write side is
//! done, from `Abort` after a close, or from `Fail`; `ended` is set once, by the task, when the
//! connection has left the scheduler and its stream is closed.

/// The write side's phase.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum WritePhase {
    /// Writes are accepted.
    Open,
    /// No new writes; the queued bytes are being written, then FIN.
    Flushing,
    /// Everything queued was written and FIN sent.
    Flushed,
    /// Writing stopped before everything was written; the rest was dropped and counted.
    Aborted,
    /// The stream failed.
    Failed,
}

impl WritePhase {
    /// Whether the writer has stopped, for good.
    pub(crate) fn is_done(self) -> bool {
        matches!(self, Self::Flushed | Self::Aborted | Self::Failed)
    }
}

/// What happens to a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Event {
    /// `shutdown_write`: no new writes; flush, send FIN, keep reading.
    Flush,
    /// `close`: flush, then end the connection.
    Close,
    /// The last handle was dropped: as `Close`, and the flush has the configured linger to
    /// finish (the task stops the writer once it has passed).
    Release,
    /// A flush timed out: stop writing now and drop the rest.
    Abort,
    /// The writer has flushed everything and sent FIN.
    Flushed,
    /// The writer was stopped with `dropped` bytes unsent.
    WriterStopped {
        /// Bytes accepted and not written.
        dropped: usize,
    },
    /// The stream failed (the error itself is kept for the reader).
    Fail,
    /// The task has ended, dropping `dropped` more bytes; the connection left the scheduler.
    Ended {
        /// Bytes accepted and not written, counted once the writer had stopped.
        dropped: usize,
    },
}

/// One connection's lifecycle.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Status {
    pub(crate) write: WritePhase,
    /// The connection ends once the write side is done.
    pub(crate) closing: bool,
    /// The writer must stop now.
    pub(crate) abort: bool,
    /// The task must end now.
    pub(crate) stop: bool,
    /// The task has ended and the connection has left the scheduler.
    pub(crate) ended: bool,
    /// No handle is left: the flush has the linger to finish.
    pub(crate) released: bool,
    pub(crate) failed: bool,
    /// Bytes accepted for writing and dropped unsent.
    pub(crate) dropped: usize,
    /// Of `dropped`, the bytes already reported to the user in an error.
    pub(crate) reported: usize,
}

impl Default for Status {
    fn default() -> Self {
        Self {
            write: WritePhase::Open,
            closing: false,
            abort: false,
            stop: false,
            ended: false,
            released: false,
            failed: false,
            dropped: 0,
            reported: 0,
        }
    }
}

impl Status {
    /// The transition function: applies `event`; returns whether anything changed.
    pub(crate) fn apply(&mut self, event: Event) -> bool {
        let before = *self;
        match event {
            Event::Flush => self.begin_flush(),
            Event::Close => {
                self.begin_flush();
                self.closing = true;
            }
            Event::Release => {
                self.begin_flush();
                self.closing = true;
                self.released = true;
            }
            Event::Abort => {
                if !self.write.is_done() {
                    self.abort = true;
                }
            }
            Event::Flushed => {
                if !self.write.is_done() {
                    self.write = WritePhase::Flushed;
                }
            }
            Event::WriterStopped { dropped } => {
                self.dropped += dropped;
                if !self.write.is_done() {
                    self.write = WritePhase::Aborted;
                }
            }
            Event::Fail => {
                self.failed = true;
                if !self.write.is_done() {
                    self.write = WritePhase::Failed;
                }
                self.stop = true;
            }
            Event::Ended { dropped } => {
                // Bytes lost to a failure are reported through the I/O error, to the reader;
                // only those a timeout or a shutdown cut short are counted for `Timeout`. (A
                // failure that comes after a timeout but before the writer has stopped wins:
                // the loss is then reported as the failure.)
                if !self.failed {
                    self.dropped += dropped;
                }
                if !self.write.is_done() {
                    self.write = WritePhase::Aborted;
                }
                self.stop = true;
                self.ended = true;
            }
        }
        if self.write.is_done() {
            self.abort = false;
            if self.closing {
                self.stop = true;
            }
        }
        *self != before
    }

    fn begin_flush(&mut self) {
        if self.write == WritePhase::Open {
            self.write = WritePhase::Flushing;
        }
    }

    /// Dropped bytes not yet reported in an error.
    pub(crate) fn unreported(&self) -> usize {
        self.dropped - self.reported
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_ends_once_flushed_and_counts_nothing() {
        let mut s = Status::default();
        assert!(s.apply(Event::Close));
        assert_eq!(s.write, WritePhase::Flushing);
        assert!(!s.stop);
        s.apply(Event::Flushed);
        assert!(s.stop);
        s.apply(Event::Ended { dropped: 0 });
        assert_eq!((s.write, s.dropped), (WritePhase::Flushed, 0));
    }

    #[test]
    fn a_timed_out_half_close_is_counted_once_and_keeps_reading() {
        let mut s = Status::default();
        s.apply(Event::Flush);
        s.apply(Event::Abort);
        assert!(s.abort && !s.stop);
        s.apply(Event::WriterStopped { dropped: 7 });
        assert_eq!(
            (s.write, s.dropped, s.abort, s.stop),
            (WritePhase::Aborted, 7, false, false)
        );
        // A later close ends the connection; a second abort changes nothing.
        assert!(!s.apply(Event::Abort));
        s.apply(Event::Close);
        assert!(s.stop);
        s.apply(Event::Ended { dropped: 0 });
        assert_eq!(s.dropped, 7);
    }

    #[test]
    fn every_event_twice_is_harmless() {
        let events = [
            Event::Flush,
            Event::Close,
            Event::Release,
            Event::Abort,
            Event::Flushed,
            Event::WriterStopped { dropped: 0 },
            Event::Fail,
            Event::Ended { dropped: 0 },
        ];
        for a in events {
            for b in events {
                let mut s = Status::default();
                s.apply(a);
                s.apply(b);
                let once = s;
                assert!(!s.apply(b), "{a:?} then {b:?} twice");
                assert!(s.write == once.write && s.dropped == once.dropped);
            }
        }
    }
}
