//! How an [`Fd`](crate::Fd) holds its stream: a TCP stream as itself, any other boxed.
//!
//! A TCP stream splits into tokio's owned halves, which read and write at the same time
//! through a shared reference. Any other stream splits with `tokio::io::split`, whose halves
//! share one lock: a write in one task holds up a read in another for the whole system call.
//! (tokio has no `net` under `--cfg loom`, for the model-checking builds: every stream is boxed
//! there.)

#[cfg(not(loom))]
use std::any::Any;

use std::io;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadHalf, WriteHalf};
#[cfg(not(loom))]
use tokio::net::TcpStream;
#[cfg(not(loom))]
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

use crate::Stream;

/// A whole stream.
pub(crate) enum Whole {
    #[cfg(not(loom))]
    Tcp(TcpStream),
    Any(Box<dyn Stream>),
}

impl Whole {
    #[cfg(not(loom))]
    pub(crate) fn new<S: Stream>(stream: S) -> Self {
        let mut slot = Some(stream);
        if let Some(tcp) = (&mut slot as &mut dyn Any)
            .downcast_mut::<Option<TcpStream>>()
            .and_then(Option::take)
        {
            return Self::Tcp(tcp);
        }
        match slot {
            Some(s) => Self::Any(Box::new(s)),
            None => unreachable!("only a TcpStream is taken out of the slot"),
        }
    }

    #[cfg(loom)]
    pub(crate) fn new<S: Stream>(stream: S) -> Self {
        Self::Any(Box::new(stream))
    }

    pub(crate) fn get(&mut self) -> &mut dyn Stream {
        match self {
            #[cfg(not(loom))]
            Self::Tcp(t) => t,
            Self::Any(b) => &mut **b,
        }
    }

    pub(crate) fn get_ref(&self) -> &dyn Stream {
        match self {
            #[cfg(not(loom))]
            Self::Tcp(t) => t,
            Self::Any(b) => &**b,
        }
    }

    /// Where the unacknowledged bytes can be read from: a TCP socket's descriptor on Linux.
    pub(crate) fn probe(&self) -> Option<crate::info::Probe> {
        match self {
            #[cfg(all(target_os = "linux", not(loom)))]
            Self::Tcp(t) => Some(crate::info::Probe::Live(std::os::fd::AsRawFd::as_raw_fd(t))),
            _ => None,
        }
    }

    pub(crate) fn split(self) -> (Reading, Writing) {
        match self {
            #[cfg(not(loom))]
            Self::Tcp(t) => {
                let (r, w) = t.into_split();
                (Reading::Tcp(r), Writing::Tcp(w))
            }
            Self::Any(b) => {
                let (r, w) = tokio::io::split(b);
                (Reading::Any(r), Writing::Any(w))
            }
        }
    }
}

/// A read half.
pub(crate) enum Reading {
    #[cfg(not(loom))]
    Tcp(OwnedReadHalf),
    Any(ReadHalf<Box<dyn Stream>>),
}

impl Reading {
    pub(crate) fn get(&mut self) -> &mut (dyn AsyncRead + Send + Unpin) {
        match self {
            #[cfg(not(loom))]
            Self::Tcp(r) => r,
            Self::Any(r) => r,
        }
    }

    /// The TCP stream, whole (both halves share it), if it is one.
    #[cfg(not(loom))]
    pub(crate) fn tcp(&self) -> Option<&TcpStream> {
        match self {
            Self::Tcp(r) => Some(r.as_ref()),
            Self::Any(_) => None,
        }
    }
}

/// A write half.
pub(crate) enum Writing {
    #[cfg(not(loom))]
    Tcp(OwnedWriteHalf),
    Any(WriteHalf<Box<dyn Stream>>),
}

impl Writing {
    pub(crate) fn get(&mut self) -> &mut (dyn AsyncWrite + Send + Unpin) {
        match self {
            #[cfg(not(loom))]
            Self::Tcp(w) => w,
            Self::Any(w) => w,
        }
    }

    pub(crate) fn get_ref(&self) -> &(dyn AsyncWrite + Send + Unpin) {
        match self {
            #[cfg(not(loom))]
            Self::Tcp(w) => w,
            Self::Any(w) => w,
        }
    }

    pub(crate) fn is_tcp(&self) -> bool {
        match self {
            #[cfg(not(loom))]
            Self::Tcp(_) => true,
            Self::Any(_) => false,
        }
    }

    pub(crate) fn poll_write_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self {
            #[cfg(not(loom))]
            Self::Tcp(w) => w.as_ref().poll_write_ready(cx),
            Self::Any(_) => {
                let _ = cx;
                Poll::Ready(Ok(()))
            }
        }
    }
}
