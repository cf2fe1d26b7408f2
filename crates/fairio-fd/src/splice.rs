//! `splice(2)` between TCP sockets through a pipe (Linux): bytes move socket -> pipe -> socket
//! inside the kernel, with no copy to user space.
//!
//! The pipe keeps count of what it holds, so that a caller can account for every byte: what
//! went in came off one socket, and what is still in the pipe when it is dropped never reached
//! the other. A splice into the pipe is made only while it is empty: a pipe has a fixed number
//! of slots (16 by default), and a socket's small segments can fill them all with far fewer
//! bytes than its capacity, so an `EAGAIN` into a pipe with bytes in it would not say whether
//! the socket or the pipe was the one that could not go on.
#![allow(unsafe_code)]

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::task::{Context, Poll, ready};

use tokio::io::Interest;
use tokio::net::TcpStream;

/// What a pipe holds at most: Linux's default capacity, 16 pages.
pub const PIPE_CAPACITY: usize = 64 * 1024;

/// A non-blocking pipe, and how many bytes are in it.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> std::io::Result<()> {
/// use fairio_fd::splice::{Pipe, poll_splice_from, poll_splice_to};
/// use tokio::io::{AsyncReadExt, AsyncWriteExt};
/// use tokio::net::{TcpListener, TcpStream};
///
/// let listener = TcpListener::bind("127.0.0.1:0").await?;
/// let mut client = TcpStream::connect(listener.local_addr()?).await?;
/// let (server, _) = listener.accept().await?;
/// client.write_all(b"hello").await?;
///
/// // Around the loop: the bytes go out to the same socket they came from.
/// let mut pipe = Pipe::new()?;
/// let n = std::future::poll_fn(|cx| poll_splice_from(&server, cx, &mut pipe, 5)).await?;
/// assert_eq!((n, pipe.held()), (5, 5));
/// std::future::poll_fn(|cx| poll_splice_to(&mut pipe, &server, cx, 5)).await?;
/// let mut back = [0; 5];
/// client.read_exact(&mut back).await?;
/// assert_eq!(&back, b"hello");
/// assert_eq!(pipe.held(), 0);
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct Pipe {
    r: OwnedFd,
    w: OwnedFd,
    held: usize,
}

impl Pipe {
    /// A new, empty pipe.
    ///
    /// # Errors
    /// The system's, when no descriptor is left (`EMFILE`, `ENFILE`).
    pub fn new() -> io::Result<Self> {
        let mut fds = [0 as libc::c_int; 2];
        // SAFETY: `fds` is an array of two ints for pipe2 to fill.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) } < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: pipe2 succeeded, so both are open descriptors that nothing else owns.
        let (r, w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        Ok(Self { r, w, held: 0 })
    }

    /// Bytes in the pipe: spliced in and not yet out.
    pub fn held(&self) -> usize {
        self.held
    }

    /// Whether a splice into the pipe may be made: it is empty (see the module's docs).
    pub fn is_empty(&self) -> bool {
        self.held == 0
    }
}

/// Ready with how many bytes `tcp` has to read (more than 0), or 0 once its peer has closed
/// its end and everything before it was read. Reads nothing.
///
/// # Errors
/// The socket's error (a reset).
pub fn poll_readable(tcp: &TcpStream, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
    // A bounded loop: each turn either returns or clears a readiness the kernel no longer has.
    for _ in 0..4 {
        ready!(tcp.poll_read_ready(cx))?;
        match tcp.try_io(Interest::READABLE, || readable(tcp.as_raw_fd())) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            r => return Poll::Ready(r),
        }
    }
    cx.waker().wake_by_ref();
    Poll::Pending
}

/// How many bytes `tcp` has to read now (`FIONREAD`), without waiting: 0 when none, or when
/// the kernel cannot say.
pub fn unread(tcp: &TcpStream) -> usize {
    fionread(tcp.as_raw_fd()).unwrap_or(0)
}

/// How many bytes socket `fd` has to read (`FIONREAD`).
fn fionread(fd: RawFd) -> io::Result<usize> {
    let mut n: libc::c_int = 0;
    // SAFETY: `fd` is an open socket for the whole call (the caller borrows its stream), and
    // FIONREAD writes one `c_int` through the pointer, which points to `n`.
    if unsafe { libc::ioctl(fd, libc::FIONREAD, &mut n as *mut libc::c_int) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(usize::try_from(n).unwrap_or(0))
}

/// Moves at most `max` bytes (`max` > 0) from `tcp` into `pipe`, which must be empty: the
/// number moved, or 0 once the peer has closed its end.
///
/// # Errors
/// The socket's error, or `InvalidInput` if the pipe is not empty.
pub fn poll_splice_from(
    tcp: &TcpStream,
    cx: &mut Context<'_>,
    pipe: &mut Pipe,
    max: usize,
) -> Poll<io::Result<usize>> {
    if !pipe.is_empty() {
        return Poll::Ready(Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "splice into a pipe that holds bytes",
        )));
    }
    let max = max.min(PIPE_CAPACITY);
    for _ in 0..4 {
        ready!(tcp.poll_read_ready(cx))?;
        match tcp.try_io(Interest::READABLE, || {
            splice(tcp.as_raw_fd(), pipe.w.as_raw_fd(), max)
        }) {
            Ok(n) => {
                pipe.held += n;
                return Poll::Ready(Ok(n));
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Poll::Ready(Err(e)),
        }
    }
    cx.waker().wake_by_ref();
    Poll::Pending
}

/// Moves at most `max` bytes (`max` > 0) from `pipe` into `tcp`: the number moved, at least 1.
///
/// # Errors
/// The socket's error (a reset, a broken pipe), or `InvalidInput` if the pipe is empty.
pub fn poll_splice_to(
    pipe: &mut Pipe,
    tcp: &TcpStream,
    cx: &mut Context<'_>,
    max: usize,
) -> Poll<io::Result<usize>> {
    let max = max.min(pipe.held);
    if max == 0 {
        return Poll::Ready(Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "splice out of an empty pipe",
        )));
    }
    for _ in 0..4 {
        ready!(tcp.poll_write_ready(cx))?;
        match tcp.try_io(Interest::WRITABLE, || {
            splice(pipe.r.as_raw_fd(), tcp.as_raw_fd(), max)
        }) {
            // The pipe holds bytes, so 0 would mean the socket took none without saying why.
            Ok(0) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
            Ok(n) => {
                pipe.held -= n;
                return Poll::Ready(Ok(n));
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Poll::Ready(Err(e)),
        }
    }
    cx.waker().wake_by_ref();
    Poll::Pending
}

/// `splice(2)` of at most `len` bytes from `from` to `to`, non-blocking.
fn splice(from: RawFd, to: RawFd, len: usize) -> io::Result<usize> {
    // SAFETY: null offsets are what sockets and pipes take; the descriptors are open for the
    // whole call, owned by the `TcpStream` and `Pipe` the callers borrow.
    let n = unsafe {
        libc::splice(
            from,
            std::ptr::null_mut(),
            to,
            std::ptr::null_mut(),
            len,
            libc::SPLICE_F_MOVE | libc::SPLICE_F_NONBLOCK,
        )
    };
    usize::try_from(n).map_err(|_| io::Error::last_os_error())
}

/// How many bytes socket `fd` has to read (`FIONREAD`); if none, whether its peer has closed
/// (0) or nothing has come yet (`WouldBlock`), from a one-byte peek.
fn readable(fd: RawFd) -> io::Result<usize> {
    let n = fionread(fd)?;
    if n > 0 {
        return Ok(n);
    }
    let mut byte = 0u8;
    // SAFETY: `fd` is an open socket for the whole call (the caller borrows its stream); the
    // buffer is one live byte, and MSG_PEEK leaves it in the socket.
    let r = unsafe {
        libc::recv(
            fd,
            (&mut byte as *mut u8).cast(),
            1,
            libc::MSG_PEEK | libc::MSG_DONTWAIT,
        )
    };
    match r {
        0 => Ok(0),
        // It came between the two calls: it is there now.
        1.. => Ok(usize::try_from(r).unwrap_or(1)),
        _ => Err(io::Error::last_os_error()),
    }
}

#[cfg(test)]
mod tests {
    use std::future::poll_fn;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;

    async fn pair() -> (TcpStream, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let c = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
        (c, l.accept().await.unwrap().0)
    }

    /// `poll_readable` counts what waits, reads none of it, and tells the end from silence.
    #[tokio::test]
    async fn readable_counts_without_reading() {
        let (mut a, b) = pair().await;
        let mut cx = Context::from_waker(std::task::Waker::noop());
        assert!(poll_readable(&b, &mut cx).is_pending(), "nothing sent yet");
        a.write_all(&[7; 1000]).await.unwrap();
        let n = poll_fn(|cx| poll_readable(&b, cx)).await.unwrap();
        assert!(n > 0 && n <= 1000, "{n}");
        a.shutdown().await.unwrap();
        let mut b = b;
        let mut all = Vec::new();
        b.read_to_end(&mut all).await.unwrap();
        assert_eq!(all.len(), 1000);
        assert_eq!(poll_fn(|cx| poll_readable(&b, cx)).await.unwrap(), 0);
    }

    /// A splice stops at `max` and at the end, and the pipe counts what it holds.
    #[tokio::test]
    async fn splices_count_and_stop_at_the_end() {
        let (mut a, b) = pair().await;
        let (c, mut d) = pair().await;
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let send = tokio::spawn({
            let data = data.clone();
            async move {
                a.write_all(&data).await.unwrap();
                a.shutdown().await.unwrap();
            }
        });
        let recv = tokio::spawn(async move {
            let mut got = Vec::new();
            d.read_to_end(&mut got).await.unwrap();
            got
        });
        let mut pipe = Pipe::new().unwrap();
        let mut moved = 0;
        for _ in 0..100_000 {
            let n = poll_fn(|cx| poll_splice_from(&b, cx, &mut pipe, 3000))
                .await
                .unwrap();
            if n == 0 {
                break;
            }
            assert!(n <= 3000);
            assert_eq!(pipe.held(), n);
            while !pipe.is_empty() {
                moved += poll_fn(|cx| poll_splice_to(&mut pipe, &c, cx, 1000))
                    .await
                    .unwrap();
            }
        }
        drop(c);
        send.await.unwrap();
        assert_eq!(moved, data.len());
        assert_eq!(recv.await.unwrap(), data);
    }

    /// A pipe that holds bytes takes no more, and an empty one gives none.
    #[tokio::test]
    async fn a_full_pipe_refuses_and_an_empty_one_too() {
        let (mut a, b) = pair().await;
        a.write_all(b"abc").await.unwrap();
        let mut pipe = Pipe::new().unwrap();
        let e = poll_fn(|cx| poll_splice_to(&mut pipe, &b, cx, 1)).await;
        assert_eq!(e.unwrap_err().kind(), io::ErrorKind::InvalidInput);
        poll_fn(|cx| poll_splice_from(&b, cx, &mut pipe, 1))
            .await
            .unwrap();
        let e = poll_fn(|cx| poll_splice_from(&b, cx, &mut pipe, 1)).await;
        assert_eq!(e.unwrap_err().kind(), io::ErrorKind::InvalidInput);
    }
}
