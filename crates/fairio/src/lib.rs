//! fairio schedules I/O over many connections and shares bandwidth fairly between them: a Rust
//! re-creation, and an improvement, of Tezos's `P2p_io_scheduler`.
//!
//! A [`Scheduler`] wraps each connection (any `AsyncRead + AsyncWrite` stream) and gives it a
//! bounded read queue and a bounded write queue. It enforces a global maximum upload and
//! download speed, and shares that bandwidth between the connections through a [`Policy`]
//! chosen at build time: [`EqualShare`] (the default), [`Weighted`], or Tezos's
//! [`WindowQuota`] for comparison. It keeps per-connection and global statistics.
//!
//! ```
//! use bytes::Bytes;
//! use fairio::{Config, Scheduler, Weight, Weighted};
//! use tokio::io::AsyncReadExt;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), fairio::Error> {
//! // 1 MiB/s down, shared in proportion to weight.
//! let config = Config::new(16 * 1024).max_download_speed(Some(1 << 20));
//! let sched = Scheduler::with_policy(config, Weighted)?;
//!
//! let (ours, mut theirs) = tokio::io::duplex(64 * 1024);
//! let conn = sched.register_with(ours, Weight::new(2)?)?;
//! conn.write(Bytes::from_static(b"ping")).await?;
//! let mut buf = [0u8; 4];
//! theirs.read_exact(&mut buf).await?;
//! assert_eq!(&buf, b"ping");
//!
//! sched.shutdown(None).await; // closes every connection, never hangs
//! # Ok(())
//! # }
//! ```
//!
//! What fairio does better than the original:
//! - it splits large messages itself, so fairness holds whatever size the caller writes;
//! - `close` waits for the whole write queue, not one push, and reports the bytes it had to
//!   drop on timeout;
//! - shutdown always returns;
//! - the share of a peer that reads slowly, or not at all, goes to the others within 5 ms,
//!   so the limit is used in full whatever the mix of peers;
//! - a limit changed, lifted or imposed again applies to the next byte; no grant made under
//!   the old one is spent;
//! - every byte accepted for writing is delivered, or counted in exactly one error;
//! - the policy reacts within one grant, not within seconds (see [`fairio_policy`]'s measured
//!   comparison);
//! - queued messages leave in vectored writes (up to 64 messages, 256 KiB, per system call),
//!   and [`Connection::read_bytes`] hands received buffers over without a copy.
//!
//! # How a byte and a grant travel
//!
//! ```text
//!  user ── write ──▶ write queue ──▶ write pump ──(grant)──▶ stream ──▶ peer
//!  user ◀── read ─── read queue ◀── read pump ◀──(grant)─── stream ◀── peer
//!                                       ▲
//!   dispatcher (one task per direction): arbiter.next(now) ──▶ the connection's grant slot
//! ```
//!
//! Each connection has one task, which owns its stream and runs its two pumps; the handles
//! own nothing but the far ends of the queues, and send lifecycle events (close, half-close,
//! abort on timeout) to a single state value that only one transition function changes. Under
//! a limit, a pump tells its direction's arbiter how many bytes it could move *now* (its
//! demand); the dispatcher grants them in turn into the connection's slot; the pump takes the
//! slot's content as a grant value, spends it as bytes move, and whatever is left when the value
//! is dropped goes back to the arbiter, on every path. A write pump whose stream does not take a
//! byte withdraws its demand at once and gives its grant back within one grant horizon (5 ms),
//! so a slow peer's share goes to the others; a read pump reads ahead of its grants and asks for
//! exactly what it has read and has room to deliver. Every change of a limit starts a new
//! generation: grants of older ones are void wherever they are, and a write started under one
//! is abandoned (a pending write has written nothing). A byte counts as sent when the stream
//! takes it, and as received when it enters the read queue; the limits apply there.
//!
//! All time-dependent code runs on tokio's clock, so tests can use a paused clock.
#![forbid(unsafe_code)]
#![warn(missing_docs, missing_debug_implementations)]

mod batch;
mod config;
mod conn;
mod connection;
mod direction;
mod error;
mod grant;
mod io;
mod lifecycle;
mod read_pump;
mod report;
mod scheduler;
mod sync;
mod task;
mod write_pump;

pub use config::Config;
pub use connection::Connection;
pub use error::Error;
#[doc(inline)]
pub use fairio_fd::CloseReason;
#[doc(inline)]
pub use fairio_policy::{EqualShare, Policy, Weight, Weighted, WindowQuota, ZeroWeight};
#[doc(inline)]
pub use fairio_stats::{Stat, StatsConfig};
pub use io::ConnectionIo;
pub use report::ShutdownReport;
pub use scheduler::Scheduler;

/// The README's examples, compiled and run as doctests so that they stay true.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
pub struct ReadmeDoctests;
