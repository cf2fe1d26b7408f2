//! [`Splice`]: bytes from one end to another (registered connections or plain TCP streams)
//! with `splice(2)` through a pipe, each call within the permit of the direction it spends.
//!
//! ```text
//!  from ──(from's download permit)──▶ pipe ──(to's upload permit)──▶ to
//!        received by `from`, counted        sent by `to`, counted
//! ```
//!
//! A registered source lends its stream to the splice: its read pump lets go once what it
//! read before is handed on, and readers wait; the bytes it had queued go first, by copy.
//! The splice asks for exactly what the socket holds (`FIONREAD`), so it is never granted
//! bytes it cannot move. A pipe is taken from the pool once the bytes are there, kept while
//! the direction stays busy, and given back when it must wait (for bytes, or a permit). Where a pipe cannot be used (not Linux, an
//! end that is not TCP, no pipe free at that moment), the same steps copy through a buffer.
//! Either way, what was taken from `from` and has not reached `to` stays in the `Splice`
//! ([`Splice::held`]): the next run sends it first, and a caller that gives up knows exactly
//! how much it drops.

// Under `--cfg loom` (no `net` in tokio) only the copying steps are built.
#![cfg_attr(loom, allow(dead_code))]

mod copy;
mod pipes;
#[cfg(all(target_os = "linux", not(loom)))]
mod wire;

use bytes::Bytes;
use fairio_policy::Policy;
#[cfg(not(loom))]
use tokio::net::TcpStream;

use crate::{Connection, Error};

pub use pipes::Pipes;

/// One end of a [`Splice`].
#[derive(Debug)]
#[non_exhaustive]
pub enum End<'a, P: Policy> {
    /// A connection of a scheduler: its limits, group, caps and statistics apply.
    Connection(&'a Connection<P>),
    /// A TCP stream of the caller's, outside any scheduler.
    #[cfg(not(loom))]
    Tcp(&'a TcpStream),
}

impl<'a, P: Policy> From<&'a Connection<P>> for End<'a, P> {
    fn from(c: &'a Connection<P>) -> Self {
        Self::Connection(c)
    }
}

#[cfg(not(loom))]
impl<'a, P: Policy> From<&'a TcpStream> for End<'a, P> {
    fn from(t: &'a TcpStream) -> Self {
        Self::Tcp(t)
    }
}

/// Moves bytes from one [`End`] to another until the first one ends: with `splice(2)` where
/// both ends are TCP on Linux, by copy elsewhere.
///
/// Each splice call moves at most what the permit of its direction allows: bytes taken from a
/// registered connection spend its download budget (and count as received by it), bytes put
/// into one spend its upload budget (and count as sent by it). So limits, groups, caps,
/// weights and statistics hold exactly as for bytes read and written through the
/// [`Connection`]. A `Splice` is one direction; a proxy uses two.
///
/// ```
/// use fairio::{Config, Pipes, Scheduler, Splice};
/// use tokio::io::{AsyncReadExt, AsyncWriteExt};
/// use tokio::net::{TcpListener, TcpStream};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let sched = Scheduler::new(Config::new(64 * 1024).max_download_speed(Some(4 << 20)))?;
/// let pipes = Pipes::new(64);
/// // A client, registered, and an upstream of our own.
/// let listener = TcpListener::bind("127.0.0.1:0").await?;
/// let mut client = TcpStream::connect(listener.local_addr()?).await?;
/// let conn = sched.register(listener.accept().await?.0)?;
/// let upstream_listener = TcpListener::bind("127.0.0.1:0").await?;
/// let upstream = TcpStream::connect(upstream_listener.local_addr()?).await?;
/// let mut server = upstream_listener.accept().await?.0;
///
/// client.write_all(b"request").await?;
/// client.shutdown().await?;
/// let mut splice = Splice::new(&pipes);
/// let moved = splice.run((&conn).into(), (&upstream).into()).await?;
/// assert_eq!((moved, splice.held()), (7, 0));
/// assert_eq!(conn.stat().total_recv, 7);
/// drop(upstream);
/// let mut got = String::new();
/// server.read_to_string(&mut got).await?;
/// assert_eq!(got, "request");
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct Splice {
    pipes: Pipes,
    held: Held,
    spliced: u64,
}

/// What was taken from the source and has not reached the destination.
#[derive(Debug, Default)]
enum Held {
    #[default]
    Nothing,
    Bytes(Bytes),
    #[cfg(all(target_os = "linux", not(loom)))]
    Pipe(fairio_fd::splice::Pipe),
}

impl Splice {
    /// A splice that takes its pipes from `pipes`.
    pub fn new(pipes: &Pipes) -> Self {
        Self {
            pipes: pipes.clone(),
            held: Held::Nothing,
            spliced: 0,
        }
    }

    /// Moves bytes from `from` to `to` until `from` ends (its peer closed its side, and every
    /// byte before was delivered to `to`): the bytes delivered by this call. It does not shut
    /// `to` down: a proxy half-closes it then, or keeps it open.
    ///
    /// Bytes held from an earlier call go first. While it runs, the bytes of a registered
    /// `from` go to the splice alone: the connection's reads wait, and go on after it (those
    /// it had queued before go first, through the splice). Do not write to a registered `to`
    /// through its handles meanwhile: each splice into it waits until what it had queued is
    /// written, but bytes written while a splice is under way may land between spliced bytes.
    ///
    /// # Errors
    /// - [`Error::ConnectionClosed`] when a registered `to` has closed or half-closed its write
    ///   side, or has ended;
    /// - [`Error::Io`] for a stream that failed (a reset): `from`'s, or `to`'s.
    ///
    /// Either way, [`held`](Self::held) says how many bytes were taken from `from` and never
    /// reached `to`. A registered destination closed meanwhile (or the scheduler shut down)
    /// is [`Error::ConnectionClosed`]; a registered source closed locally ends the call as
    /// the peer's end would (`Ok`), or with `ConnectionClosed` when it found the splice
    /// waiting for a permit.
    ///
    /// `splice(2)` into a socket whose peer has gone raises `SIGPIPE`, which Rust programs
    /// ignore unless they set a handler (the error then comes back as `BrokenPipe`).
    ///
    /// # Cancel safety
    /// Cancel-safe: a dropped call loses nothing; what it had taken from `from` is
    /// [`held`](Self::held), and a later call delivers it first.
    pub async fn run<P: Policy>(&mut self, from: End<'_, P>, to: End<'_, P>) -> Result<u64, Error> {
        let moved = self.deliver(&to).await?;
        // An empty pipe left from a call that was dropped goes back to the pool.
        #[cfg(all(target_os = "linux", not(loom)))]
        self.release();
        #[cfg(all(target_os = "linux", not(loom)))]
        if self.pipes.enabled() && wire::can_splice(&from) && wire::can_splice(&to) {
            let r = wire::run(self, &from, &to, moved).await;
            // However the call ends, an empty pipe goes back: none is held between calls.
            self.release();
            return r;
        }
        self.copy_rest(&from, &to, moved).await
    }

    /// Copies from `from` to `to` until `from` ends, on top of `moved` bytes delivered.
    async fn copy_rest<P: Policy>(
        &mut self,
        from: &End<'_, P>,
        to: &End<'_, P>,
        mut moved: u64,
    ) -> Result<u64, Error> {
        loop {
            let chunk = copy::read(from).await?;
            if chunk.is_empty() {
                return Ok(moved);
            }
            self.held = Held::Bytes(chunk);
            moved += self.deliver(to).await?;
        }
    }

    /// Bytes taken from the source and not yet delivered: in a pipe, or in a buffer. They were
    /// counted as received by a registered source, and not as sent by a registered
    /// destination. Dropping the `Splice` drops them.
    pub fn held(&self) -> usize {
        match &self.held {
            Held::Nothing => 0,
            Held::Bytes(b) => b.len(),
            #[cfg(all(target_os = "linux", not(loom)))]
            Held::Pipe(p) => p.held(),
        }
    }

    /// Bytes this splice has moved through pipes (the rest it copied).
    pub fn spliced_bytes(&self) -> u64 {
        self.spliced
    }

    /// Delivers what is held to `to`: the bytes delivered.
    async fn deliver<P: Policy>(&mut self, to: &End<'_, P>) -> Result<u64, Error> {
        match &mut self.held {
            Held::Nothing => Ok(0),
            Held::Bytes(b) => {
                let n = b.len() as u64;
                copy::write(to, b).await?;
                self.held = Held::Nothing;
                Ok(n)
            }
            #[cfg(all(target_os = "linux", not(loom)))]
            // The pipe, empty, stays held: the splice that filled it takes it back.
            Held::Pipe(p) => wire::drain(p, to, &mut self.spliced, &wire::Ahead::none()).await,
        }
    }
}

impl Drop for Splice {
    fn drop(&mut self) {
        let n = self.held();
        if n > 0 {
            tracing::debug!(unsent = n, "splice dropped with bytes held");
        }
        #[cfg(all(target_os = "linux", not(loom)))]
        if let Held::Pipe(p) = std::mem::take(&mut self.held) {
            self.pipes.put(p);
        }
    }
}
