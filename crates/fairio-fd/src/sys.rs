//! The system calls behind [`UnsentBound`](crate::UnsentBound) and the unacknowledged-bytes
//! probe (Linux).
#![allow(unsafe_code)]

use std::io;
use std::os::fd::{AsFd, RawFd};

/// Sets `TCP_NOTSENT_LOWAT` on `tcp`.
pub(crate) fn set_notsent_lowat(tcp: &tokio::net::TcpStream, bytes: u32) -> io::Result<()> {
    socket2::SockRef::from(tcp).set_tcp_notsent_lowat(bytes)
}

/// Sets `SO_SNDBUF` on a socket.
pub(crate) fn set_send_buffer(sock: &impl AsFd, bytes: u32) -> io::Result<()> {
    socket2::SockRef::from(sock).set_send_buffer_size(bytes as usize)
}

/// The bytes in `fd`'s send queue that the peer has not acknowledged, sent or not
/// (`SIOCOUTQ`, which is `TIOCOUTQ`). For TCP: `write_seq - snd_una`, which counts a FIN once
/// it is queued.
///
/// The caller keeps the socket open for the call: see `Probe` in `info.rs`.
pub(crate) fn unacked(fd: RawFd) -> io::Result<u64> {
    let mut n: libc::c_int = 0;
    // SAFETY: `fd` is an open socket for the whole call (the caller holds the stream that owns
    // it, see `Probe`), and TIOCOUTQ writes one `c_int` through the pointer, which points to
    // `n`, live and aligned for that type.
    let r = unsafe { libc::ioctl(fd, libc::TIOCOUTQ, &mut n as *mut libc::c_int) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(u64::try_from(n).unwrap_or(0))
}
