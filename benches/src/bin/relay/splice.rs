//! One direction of the relay by `splice(2)`: socket -> pipe -> socket, no user-space copy,
//! on `fairio-fd`'s pipe and splice calls (with nothing of fairio's scheduling).

use std::future::poll_fn;
use std::io;
use std::sync::Arc;

use fairio_fd::splice::{PIPE_CAPACITY, Pipe, poll_splice_from, poll_splice_to};
use tokio::net::TcpStream;

/// Moves `from`'s bytes to `to` until `from` ends, then shuts `to`'s write side (FIN).
pub(crate) async fn pump(from: Arc<TcpStream>, to: Arc<TcpStream>) -> io::Result<()> {
    let mut pipe = Pipe::new()?;
    loop {
        let n = poll_fn(|cx| poll_splice_from(&from, cx, &mut pipe, PIPE_CAPACITY)).await?;
        if n == 0 {
            break;
        }
        while !pipe.is_empty() {
            let left = pipe.held();
            poll_fn(|cx| poll_splice_to(&mut pipe, &to, cx, left)).await?;
        }
    }
    socket2::SockRef::from(&*to).shutdown(std::net::Shutdown::Write)
}
