//! Keeping what a stream's kernel holds ahead of its peer small: [`UnsentBound`].
//!
//! A TCP socket takes every byte its send buffer holds (autotuned up to 4 MiB on Linux) as fast
//! as it is written, and sends them at the peer's pace. A scheduler that shares a limit where
//! bytes enter the socket then sees a slow peer take its full share for seconds, while the
//! bytes wait in the kernel and the other peers get less. `TCP_NOTSENT_LOWAT` bounds the bytes
//! written but not yet sent: the socket takes more (and reports itself writable) only while
//! fewer wait. What is sent and not yet acknowledged is bounded by the peer's receive window,
//! which only the peer sets.

use std::any::Any;
use std::num::NonZeroU32;

/// The default bound on a TCP socket's unsent bytes: 16 KiB, the figure Cloudflare runs behind
/// nginx for HTTP/2 prioritisation.
///
/// The kernel's own measurements when `TCP_NOTSENT_LOWAT` was added found 128 KB or less cost
/// no throughput. fairio's loopback benchmark (BENCHMARKS.md, "Fair at the wire") found no
/// throughput cost at 16 KiB either, unlimited uploads of 8 and 64 connections against no
/// bound, 64 KiB and 128 KiB; a smaller bound leaves less in the kernel for a slow peer.
pub const DEFAULT_UNSENT_LIMIT: NonZeroU32 = match NonZeroU32::new(16 * 1024) {
    Some(n) => n,
    None => unreachable!(),
};

/// What bounds the bytes a stream's kernel takes ahead of its peer, as set when the stream was
/// wrapped ([`Fd::with_unsent_limit`](crate::Fd::with_unsent_limit)).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum UnsentBound {
    /// A TCP socket on Linux with `TCP_NOTSENT_LOWAT` set to this many bytes. A write is taken
    /// while fewer bytes than this wait unsent, so at most this many plus one write's segment
    /// (up to 64 KiB) wait unsent; beyond them, the peer's receive window holds what is sent
    /// and not yet read.
    NotSentLowat(u32),
    /// A Unix stream socket on Linux with its send buffer (`SO_SNDBUF`) set to this many bytes
    /// (the kernel doubles the figure, part of it for its bookkeeping): written bytes wait in
    /// the peer's receive queue and count against the sender's buffer until the peer reads
    /// them.
    SendBuffer(u32),
    /// Nothing fairio could set: another kind of stream (TLS, an in-memory pipe), another
    /// platform, no limit asked for, or the socket refused the option. The stream's own
    /// buffering applies. For TLS over TCP, set the bound on the TCP stream before wrapping it
    /// ([`limit_unsent`]).
    Unbounded,
}

/// Bounds the unsent bytes of `tcp` to `limit` with `TCP_NOTSENT_LOWAT`, for streams fairio
/// cannot reach inside (TLS over TCP, say): call it before wrapping the TCP stream.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> std::io::Result<()> {
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
/// let tcp = tokio::net::TcpStream::connect(listener.local_addr()?).await?;
/// let bound = fairio_fd::limit_unsent(&tcp, fairio_fd::DEFAULT_UNSENT_LIMIT);
/// # #[cfg(target_os = "linux")]
/// assert_eq!(bound, fairio_fd::UnsentBound::NotSentLowat(16 * 1024));
/// // ... wrap `tcp` in TLS, then register the TLS stream.
/// # Ok(())
/// # }
/// ```
#[cfg(not(loom))]
pub fn limit_unsent(tcp: &tokio::net::TcpStream, limit: NonZeroU32) -> UnsentBound {
    apply(tcp, limit)
}

/// Sets `limit` on `stream` if it is a socket fairio knows how to bound, and says what it set.
pub(crate) fn apply(stream: &dyn Any, limit: NonZeroU32) -> UnsentBound {
    #[cfg(all(target_os = "linux", not(loom)))]
    {
        if let Some(tcp) = stream.downcast_ref::<tokio::net::TcpStream>() {
            return match crate::sys::set_notsent_lowat(tcp, limit.get()) {
                Ok(()) => UnsentBound::NotSentLowat(limit.get()),
                Err(_) => UnsentBound::Unbounded,
            };
        }
        if let Some(unix) = stream.downcast_ref::<tokio::net::UnixStream>() {
            return match crate::sys::set_send_buffer(unix, limit.get()) {
                Ok(()) => UnsentBound::SendBuffer(limit.get()),
                Err(_) => UnsentBound::Unbounded,
            };
        }
    }
    let _ = (stream, limit);
    UnsentBound::Unbounded
}
