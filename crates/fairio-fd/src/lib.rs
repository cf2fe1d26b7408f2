//! The stream abstraction of fairio: the equivalent of Tezos's `P2p_fd`.
//!
//! An [`Fd`] wraps any `AsyncRead + AsyncWrite + Send + Unpin + 'static` stream (TCP, Unix
//! sockets, `tokio::io::DuplexStream`, TLS) behind one type, so that different transports can
//! share one scheduler. Each `Fd` carries a unique id, counts the bytes it moved, and records why
//! it closed.
//!
//! [`Fd::with_unsent_limit`] also bounds what the stream's kernel takes ahead of the peer
//! (`TCP_NOTSENT_LOWAT` for TCP, the send buffer for Unix sockets; see [`UnsentBound`]), and
//! [`FdInfo::unacked`] tells how many written bytes a TCP peer has not acknowledged yet.
//!
//! ```
//! use fairio_fd::{CloseReason, Fd};
//! use tokio::io::{AsyncReadExt, AsyncWriteExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> std::io::Result<()> {
//! let (a, b) = tokio::io::duplex(64);
//! let mut left = Fd::new(a);
//! let mut right = Fd::new(b);
//! assert_ne!(left.id(), right.id());
//!
//! left.write_all(b"hello").await?;
//! let left_info = left.info().clone();
//! left.close(CloseReason::LocalClose).await?; // sends FIN, then drops the stream
//!
//! let mut got = Vec::new();
//! right.read_to_end(&mut got).await?;
//! assert_eq!(got, b"hello");
//! assert_eq!(left_info.bytes_written(), 5);
//! assert_eq!(right.info().bytes_read(), 5);
//! assert_eq!(left_info.close_reason(), Some(CloseReason::LocalClose));
//! # Ok(())
//! # }
//! ```
// One `ioctl` (`sys.rs`) reads what the peer has not acknowledged, and `splice.rs` makes
// pipes and splices (Linux); nothing else is unsafe.
#![deny(unsafe_code)]
#![warn(missing_docs, missing_debug_implementations)]

#[cfg(feature = "test-util")]
mod faulty;
mod fd;
mod held;
mod info;
mod reason;
#[cfg(all(target_os = "linux", not(loom)))]
pub mod splice;
#[cfg(all(target_os = "linux", not(loom)))]
mod sys;
mod unsent;

#[cfg(feature = "test-util")]
pub use faulty::{FaultPlan, FaultyStream};
pub use fd::{Fd, FdReadHalf, FdWriteHalf, Stream};
pub use info::FdInfo;
pub use reason::CloseReason;
#[cfg(not(loom))]
pub use unsent::limit_unsent;
pub use unsent::{DEFAULT_UNSENT_LIMIT, UnsentBound};
