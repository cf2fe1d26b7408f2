//! How an [`Fd`](crate::Fd) holds its stream: a TCP stream as itself, any other boxed.
//!
//! A TCP stream splits into tokio's owned halves, which read and write at the same time
//! through a shared reference. Any other stream splits with `tokio::io::split`, whose halves
//! share one lock: a write in one task holds up a read in another for the whole system call.

use std::any::Any;

use tokio::io::{AsyncRead, AsyncWrite, ReadHalf, WriteHalf};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

use crate::Stream;

/// A whole stream.
pub(crate) enum Whole {
    Tcp(TcpStream),
    Any(Box<dyn Stream>),
}

impl Whole {
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

    pub(crate) fn get(&mut self) -> &mut dyn Stream {
        match self {
            Self::Tcp(t) => t,
            Self::Any(b) => &mut **b,
        }
    }

    pub(crate) fn get_ref(&self) -> &dyn Stream {
        match self {
            Self::Tcp(t) => t,
            Self::Any(b) => &**b,
        }
    }

    pub(crate) fn split(self) -> (Reading, Writing) {
        match self {
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
    Tcp(OwnedReadHalf),
    Any(ReadHalf<Box<dyn Stream>>),
}

impl Reading {
    pub(crate) fn get(&mut self) -> &mut (dyn AsyncRead + Send + Unpin) {
        match self {
            Self::Tcp(r) => r,
            Self::Any(r) => r,
        }
    }
}

/// A write half.
pub(crate) enum Writing {
    Tcp(OwnedWriteHalf),
    Any(WriteHalf<Box<dyn Stream>>),
}

impl Writing {
    pub(crate) fn get(&mut self) -> &mut (dyn AsyncWrite + Send + Unpin) {
        match self {
            Self::Tcp(w) => w,
            Self::Any(w) => w,
        }
    }

    pub(crate) fn get_ref(&self) -> &(dyn AsyncWrite + Send + Unpin) {
        match self {
            Self::Tcp(w) => w,
            Self::Any(w) => w,
        }
    }
}
