//! A byte-bounded async FIFO of [`Bytes`](bytes::Bytes) chunks: the equivalent of Tezos's
//! `Lwt_pipe.Maybe_bounded`, and the read and write queues of every fairio connection.
//!
//! - **Bounded in bytes** or unbounded. The size of the queue is the sum of the lengths of the
//!   queued chunks: payload bytes only. The fixed bookkeeping per chunk (a `Bytes` handle, about
//!   32 bytes) is not counted. Empty chunks carry no bytes and are never queued.
//! - **No deadlock on big messages**: a chunk larger than the bound is accepted when the queue is
//!   empty.
//! - **First come, first served**: waiting pushers, and waiting poppers, are each served in the
//!   order they started waiting, and a non-waiting call never jumps the line.
//! - **Cancel-safe**: dropping a pending [`push`](ByteQueue::push) enqueues nothing; dropping a
//!   pending [`pop`](ByteQueue::pop) or [`read`](ByteQueue::read) loses nothing.
//! - **Close drains**: after [`close`](ByteQueue::close), pushes fail (handing the message back)
//!   and pops return what is left, then report the end.
//! - **Reads without a second copy**: [`read`](ByteQueue::read) copies from the front chunk into
//!   the caller's buffer; the rest of a partly read chunk stays at the front for the next read.
//!
//! ```
//! use std::num::NonZeroUsize;
//! use bytes::Bytes;
//! use fairio_queue::ByteQueue;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let q = ByteQueue::bounded(NonZeroUsize::new(8).unwrap());
//! q.push(Bytes::from_static(b"hello")).await.unwrap();
//! assert!(!q.push_now(Bytes::from_static(b"world"))); // 5 + 5 > 8: does not fit
//!
//! let mut buf = [0u8; 3];
//! assert_eq!(q.read(&mut buf).await, 3); // "hel"; "lo" stays queued
//! assert_eq!(q.len_bytes(), 2);
//! q.close();
//! assert_eq!(q.pop().await.as_deref(), Some(&b"lo"[..]));
//! assert_eq!(q.pop().await, None); // closed and drained
//! # }
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs, missing_debug_implementations)]

mod error;
mod poller;
mod queue;
mod sync;
mod waiters;

pub use error::{Closed, TryPopError, TryPushError};
pub use poller::Poller;
pub use queue::ByteQueue;
