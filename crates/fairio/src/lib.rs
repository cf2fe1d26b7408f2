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
//! - the policy reacts within one grant, not within seconds: in the same simulation, a small
//!   message among 64 busy connections waits 0.01 ms at p99 under [`EqualShare`] and 980 ms
//!   under Tezos's [`WindowQuota`], and the smallest Jain index over 250 ms windows is 0.999
//!   against 0.25 (the `fairio-policy` crate's docs carry the whole table);
//! - queued messages leave in vectored writes (up to 64 messages, 256 KiB, per system call),
//!   and [`Connection::read_bytes`] hands received buffers over without a copy.
//!
//! # How a byte and a permit travel
//!
//! ```text
//!  user ── write ──▶ write queue ──▶ write pump ──(permit)──▶ stream ──▶ peer
//!  user ◀── read ─── read queue ◀── read pump ◀──(permit)─── stream ◀── peer
//!  user ◀── read ──────────────────────────────────────────── stream ◀── peer   (no limit)
//!                                     │ ▲
//!        poll_acquire(key, want) ─────┘ └── the direction's budget, one lock: arbiter + ledger
//!                                           (a timer wakes the chosen waiter when it refills)
//! ```
//!
//! With no download limit, a read takes bytes from the stream itself, in the reader's task, as
//! it would without fairio: no second task, no buffer of fairio's between, and with
//! [`Connection::read`] (or [`ConnectionIo`]) the only copy is the kernel's, into the caller's
//! buffer. Bytes nobody reads wait in the stream (the kernel's socket buffer), not in memory
//! here. Once a connection has nothing more to write (after [`Connection::shutdown_write`], or
//! while a close flushes), its task reads ahead by one read buffer, as a reader would: the
//! peer's end closes the connection even if nobody reads, unless more than a buffer's worth
//! is waiting unread before it, and a close does not leave a small unread request in the
//! socket (closing over unread bytes makes the kernel send a reset). When a limit
//! comes, the read pump takes over at the next read, and the bytes stay in order whatever the
//! changes.
//!
//! Each connection has one task, which owns its stream and runs its two pumps; the handles
//! own nothing but the far ends of the queues, and send lifecycle events (close, half-close,
//! abort on timeout) to a single state value that only one transition function changes. Under
//! a limit, a pump takes a *permit* from its direction's budget, in its own task: it tells the
//! arbiter how many bytes it could move *now* (its demand), and the arbiter decides at once,
//! under the direction's one lock. Chosen, the pump leaves with its permit and nobody is woken;
//! otherwise it is parked, and the decision that chooses it later (the timer's when the budget
//! refills, or one made inline by a refund, a join or a leave) wakes it. The pump spends the
//! permit as bytes move, and whatever is left when the value is dropped goes back to the
//! arbiter, on every path. A write pump whose stream does not take a
//! byte withdraws its demand at once and gives its permit back within one grant horizon (5 ms),
//! so a slow peer's share goes to the others; a read pump reads ahead of its grants and asks for
//! exactly what it has read and has room to deliver. Every change of a limit starts a new
//! generation: permits of older ones are void wherever they are, and a write started under one
//! is abandoned (a pending write has written nothing). A byte counts as sent when the stream
//! takes it, and as received when it enters the read queue (or, with no limit, reaches a reader);
//! the limits apply there.
//!
//! [`Splice`] moves bytes between two connections, or between a connection and a plain
//! `TcpStream`, with `splice(2)` on Linux (socket to pipe to socket, no copy to user space):
//! each call takes the permit of its direction first, so the limits, groups and counts hold
//! as they do for reads and writes. A registered source lends its stream to the splice while
//! it runs (its read pump waits), and where no pipe can be used the same call copies.
//!
//! All time-dependent code runs on tokio's clock, so tests can use a paused clock.
//!
//! # Choosing a policy
//!
//! - [`EqualShare`] (the default): every connection that has bytes to move gets the same
//!   share, and what one cannot use goes to the others. Pick it unless you have a reason not to.
//! - [`Weighted`]: shares in proportion to a [`Weight`] given at registration
//!   ([`Scheduler::register_with`]) and changeable later; a connection of weight 2 moves twice
//!   as much as one of weight 1 when both are busy. For priorities: paying peers, control
//!   traffic, a torrent you care about.
//! - [`WindowQuota`]: Tezos's algorithm, kept to compare against. It bursts a second's budget
//!   at the start of each window and lags by seconds; do not use it for new work.
//!
//! Under any policy, [`Connection::set_caps`] caps one connection beneath the global limits.
//!
//! To be fair between hosts, peers or tenants rather than between connections, register
//! connections into a [`Group`] ([`Scheduler::group`], [`Scheduler::register_in`]): under
//! [`EqualShare`] and [`Weighted`] the limit is shared among the groups first (by group weight,
//! each up to the group's caps), then within each group, and what one cannot use goes to the
//! others at its level, then upward. [`WindowQuota`] ignores groups.
//!
//! # Slow peers and socket buffers
//!
//! fairio shares bytes where they enter the socket, and a peer sees them where it reads them.
//! In between sit the kernel's buffers: left as they are (a send buffer autotuned up to 4 MiB
//! on Linux), a socket whose peer reads at 20 KiB/s takes in megabytes at its full share of
//! the limit before it pushes back, and for seconds the peers that could use that share see
//! it vanish into a kernel buffer. So fairio bounds what a connection's kernel holds unsent
//! ([`Config::unsent_limit`], 16 KiB by default):
//!
//! | stream | what fairio sets | what may sit between fairio and the peer's reads |
//! |---|---|---|
//! | TCP (Linux) | `TCP_NOTSENT_LOWAT` | the bound + one segment (64 KiB) unsent, + the peer's receive window |
//! | Unix stream (Linux) | `SO_SNDBUF` | about twice the bound, less the kernel's bookkeeping |
//! | TLS, in-memory pipes, other platforms | nothing | the stream's own buffering |
//!
//! For TLS over TCP, call [`limit_unsent`] on the TCP stream before wrapping it.
//! [`Connection::unsent_bound`] says what a connection got. A TCP stream that cannot take a
//! byte holds no grant and asks for none until the kernel reports it writable again, so its
//! share goes to the others at once and a peer that reads nothing costs nothing while it
//! waits. On the loopback benchmark with the kernel's default buffers, 2 backlogged
//! connections beside 14 read at 24 KiB/s used 0.21 of a 4 MiB/s limit without the bound and
//! 1.00 with it (BENCHMARKS.md).
//!
//! A connection's [`Stat`] tells what was handed to the socket (`total_sent`) from what the
//! peer's TCP has acknowledged ([`Stat::acked`], from `SIOCOUTQ` on Linux). A peer that reads
//! nothing at all holds only its write queue: [`Connection::close`] with a timeout drops and
//! counts what it could not deliver, and a connection whose last handle is dropped (or that
//! [`ConnectionIo`]'s `poll_shutdown` closes) flushes for at most [`Config::linger`] (30 s),
//! then is released, as a socket's close would.
//!
//! # Serving a TCP listener
//!
//! Register every accepted stream, give each its own task, and keep accepting when `accept`
//! fails (out of descriptors, or a connection reset before it was accepted): back off and go
//! on. Stop on a signal, then shut the scheduler down, which flushes every connection within a
//! timeout and reports what it dropped.
//!
//! ```
//! use std::time::Duration;
//!
//! use bytes::Bytes;
//! use fairio::{Config, Scheduler};
//! use tokio::io::AsyncReadExt;
//! use tokio::net::{TcpListener, TcpStream};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let sched = Scheduler::new(Config::new(64 * 1024).max_upload_speed(Some(4 << 20)))?;
//! let listener = TcpListener::bind("127.0.0.1:0").await?;
//! let addr = listener.local_addr()?;
//! // A client; a real server would stop on `tokio::signal::ctrl_c()` instead.
//! let stop = tokio::spawn(async move {
//!     let mut greeting = String::new();
//!     let mut stream = TcpStream::connect(addr).await?;
//!     stream.read_to_string(&mut greeting).await?;
//!     Ok::<_, std::io::Error>(greeting)
//! });
//!
//! let accept_loop = async {
//!     loop {
//!         let (stream, _peer) = match listener.accept().await {
//!             Ok(accepted) => accepted,
//!             Err(e) => {
//!                 eprintln!("accept failed: {e}");
//!                 tokio::time::sleep(Duration::from_millis(50)).await;
//!                 continue;
//!             }
//!         };
//!         let Ok(conn) = sched.register(stream) else {
//!             break; // the scheduler is shutting down
//!         };
//!         tokio::spawn(async move {
//!             conn.write(Bytes::from_static(b"hello\n")).await?;
//!             conn.close(Some(Duration::from_secs(5))).await // flush, then close
//!         });
//!     }
//! };
//! tokio::select! {
//!     () = accept_loop => {}
//!     greeting = stop => assert_eq!(greeting??, "hello\n"),
//! }
//! let report = sched.shutdown(Some(Duration::from_secs(5))).await;
//! println!("closed {} connections, {} bytes unsent", report.connections, report.unsent_bytes);
//! # Ok(())
//! # }
//! ```
//!
//! # Moving from async-speed-limit or governor
//!
//! From async-speed-limit's shared limiter, where every stream is wrapped with
//! `limiter.limit(stream)`: make one scheduler with the limit, and register each stream
//! instead. What you read and write is the same `AsyncRead + AsyncWrite`:
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), fairio::Error> {
//! # let (stream, _peer) = tokio::io::duplex(1024);
//! // Before: let limiter = Limiter::new(1_048_576.0); let io = limiter.limit(stream);
//! let sched = fairio::Scheduler::new(fairio::Config::new(64 * 1024).max_download_speed(Some(1 << 20)))?;
//! let io = sched.register(stream)?.into_io();
//! # drop(io);
//! # Ok(())
//! # }
//! ```
//!
//! From a governor bucket per connection (a per-connection cap, and no global limit): keep the
//! cap with [`Connection::set_caps`], and add the global limit the buckets could not give:
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), fairio::Error> {
//! # let (stream, _peer) = tokio::io::duplex(1024);
//! // Before: a RateLimiter::direct(Quota::per_second(256 KiB)) checked before every write.
//! let sched = fairio::Scheduler::new(fairio::Config::new(64 * 1024).max_upload_speed(Some(8 << 20)))?;
//! let conn = sched.register(stream)?;
//! conn.set_caps(Some(256 * 1024), None)?;
//! # Ok(())
//! # }
//! ```
//!
//! For servers and clients, the integration crates do the registering: `fairio-axum` (a
//! listener for `axum::serve` and hyper's server loop), `fairio-hyper` (a connector for
//! hyper-util's client) and `fairio-libp2p` (a transport wrapper, by peer IP).
//!
//! # Beside async-speed-limit and governor
//!
//! [async-speed-limit](https://docs.rs/async-speed-limit) wraps streams in a shared token
//! bucket: it caps the total, but whichever connection polls first gets the bytes, so shares
//! are not fair, and it has no weights, per-connection caps or queues.
//! [governor](https://docs.rs/governor) is a GCRA rate limiter for cells (requests, or bytes
//! you count yourself); fairio's weighted policy is built on it and adds the sharing. fairio
//! gives each connection its share whatever order they poll in, moves a slow peer's unused
//! share to the others, and applies a changed limit to the next byte. `BENCHMARKS.md` in the
//! repository measures all three side by side over loopback TCP: throughput and CPU without a
//! limit, accuracy, and Jain's index per 250 ms window.
#![forbid(unsafe_code)]
#![warn(missing_docs, missing_debug_implementations)]

mod batch;
mod config;
mod conn;
mod connection;
mod direction;
mod error;
mod group;
mod groups_by;
mod io;
mod ledger;
mod lifecycle;
mod panics;
mod read_pump;
mod read_side;
mod reading;
mod report;
mod scheduler;
mod splice;
mod sync;
mod task;
#[cfg(test)]
mod testing;
mod write_pump;

pub use config::{Config, MAX_READ_BUFFER_SIZE, MAX_UNSENT_LIMIT};
pub use connection::Connection;
pub use error::Error;
#[doc(inline)]
pub use fairio_fd::{CloseReason, DEFAULT_UNSENT_LIMIT, Stream, UnsentBound};
// tokio has no `net` under `--cfg loom` (the model-checking builds).
#[cfg(not(loom))]
pub use fairio_fd::limit_unsent;
#[doc(inline)]
pub use fairio_policy::{
    EqualShare, Hierarchical, Policy, Weight, Weighted, WindowQuota, ZeroWeight,
};
#[doc(inline)]
pub use fairio_stats::{Stat, StatsConfig};
pub use group::Group;
pub use groups_by::GroupsBy;
pub use io::ConnectionIo;
pub use report::ShutdownReport;
pub use scheduler::Scheduler;
pub use splice::{End, Pipes, Splice};

/// The README's examples, compiled and run as doctests so that they stay true.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
pub struct ReadmeDoctests;
