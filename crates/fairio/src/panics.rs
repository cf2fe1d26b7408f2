//! Panics of a connection's stream, or of its task, become that connection's I/O error.
//!
//! A stream is user code (a TLS library, a test double), and a panic in it must not take a
//! whole connection task down silently: the task's end is what releases the connection from
//! the scheduler and tells its handles, and without it `close` would wait for ever. So the
//! task catches a panic of its pumps, and a reader catches a panic of the stream's read, and
//! each turns it into an error that ends only that connection.

use std::future::Future;
use std::io;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::task::{Context, Poll};

/// The error a connection ends with when `what` (its stream's read, or its task) panicked.
pub(crate) fn panicked(what: &str) -> io::Error {
    io::Error::other(format!("the connection's {what} panicked"))
}

/// Polls `fut` until it completes (`Ok`) or panics (`Err` with the panic's message). The
/// future is never polled again after a panic: it is dropped with the `Caught`.
pub(crate) struct Caught<F>(Option<Pin<Box<F>>>);

impl<F: Future> Caught<F> {
    pub(crate) fn new(fut: F) -> Self {
        Self(Some(Box::pin(fut)))
    }
}

impl<F: Future> Future for Caught<F> {
    type Output = Result<F::Output, String>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let Some(fut) = self.0.as_mut() else {
            // Polled again after it answered: it answers the same way, at once.
            return Poll::Ready(Err("polled after a panic".to_owned()));
        };
        match catch_unwind(AssertUnwindSafe(|| fut.as_mut().poll(cx))) {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(out)) => Poll::Ready(Ok(out)),
            Err(payload) => {
                self.0 = None;
                let what = payload
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_owned())
                    .or_else(|| payload.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "a panic".to_owned());
                Poll::Ready(Err(what))
            }
        }
    }
}

impl<F> std::fmt::Debug for Caught<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Caught")
            .field("done", &self.0.is_none())
            .finish()
    }
}
