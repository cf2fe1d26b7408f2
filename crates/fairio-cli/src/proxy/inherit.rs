//! Listening sockets handed to the process at start: by systemd's socket activation
//! (`LISTEN_PID`, `LISTEN_FDS`: descriptors 3, 4, …) or by an older fairio handing over
//! (`FAIRIO_LISTEN_FDS`: a list of descriptors). Each is matched to a listener of the settings
//! by the address it is bound to; a listener with no inherited socket binds its own.

use std::net::SocketAddr;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::path::Path;

use socket2::Socket;

/// The variable an older fairio names its listening descriptors in.
pub(crate) const FAIRIO_LISTEN_FDS: &str = "FAIRIO_LISTEN_FDS";

/// Who handed a socket over.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Giver {
    /// systemd's socket activation: the socket (and its file) stays systemd's.
    Systemd,
    /// An older fairio, upgrading: the socket is this process's now.
    Fairio,
}

/// The inherited listening sockets not yet taken.
#[derive(Debug, Default)]
pub(crate) struct Inherited {
    sockets: Vec<(Socket, Giver)>,
}

/// The descriptors the environment hands this process: systemd's (for this process only)
/// and an older fairio's.
fn handed_fds(
    listen_pid: Option<&str>,
    listen_fds: Option<&str>,
    fairio_fds: Option<&str>,
    pid: u32,
) -> Vec<(RawFd, Giver)> {
    let mut fds = Vec::new();
    if listen_pid.and_then(|p| p.trim().parse::<u32>().ok()) == Some(pid) {
        let n = listen_fds
            .and_then(|n| n.trim().parse::<RawFd>().ok())
            .unwrap_or(0);
        // SD_LISTEN_FDS_START is 3; a count beyond a descriptor table is no count.
        fds.extend((0..n.clamp(0, 65_536)).map(|i| (3 + i, Giver::Systemd)));
    }
    if let Some(list) = fairio_fds {
        // `FD` or `FD:systemd`: a socket systemd first gave stays systemd's across upgrades.
        fds.extend(list.split(',').filter_map(|f| {
            let (fd, giver) = match f.trim().split_once(':') {
                Some((fd, "systemd")) => (fd, Giver::Systemd),
                Some(_) => return None,
                None => (f.trim(), Giver::Fairio),
            };
            fd.parse::<RawFd>()
                .ok()
                .filter(|&f| f >= 3)
                .map(|f| (f, giver))
        }));
    }
    // A descriptor named twice is taken once, as systemd's.
    fds.sort_unstable_by_key(|&(f, g)| (f, g != Giver::Systemd));
    fds.dedup_by_key(|&mut (f, _)| f);
    fds
}

impl Inherited {
    /// Takes the sockets the environment names. Each is taken once per process: the caller
    /// calls this once, at start (the variables stay set, but a child this process starts
    /// is given its own).
    pub(crate) fn from_env() -> Self {
        let var = |k: &str| std::env::var(k).ok();
        let fds = handed_fds(
            var("LISTEN_PID").as_deref(),
            var("LISTEN_FDS").as_deref(),
            var(FAIRIO_LISTEN_FDS).as_deref(),
            std::process::id(),
        );
        let mut sockets = Vec::new();
        for (fd, giver) in fds {
            if let Some(s) = adopt(fd) {
                sockets.push((s, giver));
            }
        }
        Self { sockets }
    }

    /// How many sockets remain.
    pub(crate) fn len(&self) -> usize {
        self.sockets.len()
    }

    /// The inherited TCP listener bound to `addr`, if any, and who gave it.
    pub(crate) fn take_tcp(&mut self, addr: SocketAddr) -> Option<(std::net::TcpListener, Giver)> {
        let i = self
            .sockets
            .iter()
            .position(|(s, _)| s.local_addr().ok().and_then(|a| a.as_socket()) == Some(addr))?;
        let (s, giver) = self.sockets.swap_remove(i);
        s.set_nonblocking(true).ok()?;
        Some((s.into(), giver))
    }

    /// The inherited Unix listener bound to `path`, if any, and who gave it.
    pub(crate) fn take_unix(
        &mut self,
        path: &Path,
    ) -> Option<(std::os::unix::net::UnixListener, Giver)> {
        let i = self.sockets.iter().position(|(s, _)| {
            s.local_addr()
                .ok()
                .and_then(|a| a.as_pathname().map(Path::to_path_buf))
                .is_some_and(|p| p == path)
        })?;
        let (s, giver) = self.sockets.swap_remove(i);
        s.set_nonblocking(true).ok()?;
        Some((s.into(), giver))
    }

    /// Closes what no listener took, naming it in the log.
    pub(crate) fn close_rest(&mut self) {
        for (s, _) in self.sockets.drain(..) {
            tracing::warn!(address = ?s.local_addr().ok(), "an inherited socket matches no listener; closed");
        }
    }
}

/// Takes ownership of `fd` if it is an open listening stream socket of this process.
fn adopt(fd: RawFd) -> Option<Socket> {
    let listening = |s: &socket2::SockRef<'_>| {
        matches!(
            (s.r#type(), s.is_listener()),
            (Ok(socket2::Type::STREAM), Ok(true))
        )
    };
    match adopt_if(fd, listening) {
        Ok(s) => Some(s),
        Err(why) => {
            tracing::warn!(
                fd,
                "an inherited descriptor {why}: no listening stream socket; left alone"
            );
            None
        }
    }
}

/// Takes ownership of the socket `fd`, handed to this process by its environment (systemd, or
/// an older fairio), if it is open and `wanted` says it is the kind expected. Any other
/// descriptor is left as it is: the environment may name a number that something else in this
/// process has opened since, and closing it would pull it from under its owner. The socket
/// taken is close-on-exec: it passes to no process this one starts unless handed on on purpose.
///
/// # Errors
/// Why `fd` was left alone, for the log.
#[allow(unsafe_code)]
pub(crate) fn adopt_if(
    fd: RawFd,
    wanted: impl FnOnce(&socket2::SockRef<'_>) -> bool,
) -> Result<Socket, &'static str> {
    if fd < 3 {
        return Err("is a standard stream");
    }
    // SAFETY: `fcntl(F_GETFD)` only reads the descriptor's flags; it fails (EBADF) for a number
    // that is no open descriptor, and then nothing is looked at further.
    if unsafe { libc::fcntl(fd, libc::F_GETFD) } == -1 {
        return Err("is not open");
    }
    // SAFETY: the descriptor is open (above) and stays open while it is borrowed here: only
    // its socket options are read, and nothing in this function closes it.
    let borrowed = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
    if !wanted(&socket2::SockRef::from(&borrowed)) {
        return Err("is not of the kind expected");
    }
    // SAFETY: a socket of the kind expected (above) that the environment hands to this process:
    // systemd and an older fairio pass each one once, and the callers read the environment
    // once per process, so nothing else in this process owns it. The two callers want kinds
    // that exclude each other (a listening stream socket, a datagram socket), so one
    // descriptor named by both variables is still taken once.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    let s = Socket::from(owned);
    let _ = s.set_cloexec(true);
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn systemd_fds_count_for_this_process_only() {
        use Giver::{Fairio, Systemd};
        assert_eq!(
            handed_fds(Some("42"), Some("2"), None, 42),
            vec![(3, Systemd), (4, Systemd)]
        );
        assert!(
            handed_fds(Some("41"), Some("2"), None, 42).is_empty(),
            "another process's"
        );
        assert!(handed_fds(None, Some("2"), None, 42).is_empty());
        assert!(handed_fds(Some("42"), Some("-5"), None, 42).is_empty());
        assert_eq!(
            handed_fds(None, None, Some("7, 9,x,1"), 42),
            vec![(7, Fairio), (9, Fairio)],
            "0-2 are stdio"
        );
        assert_eq!(
            handed_fds(Some("42"), Some("1"), Some("3,8"), 42),
            vec![(3, Systemd), (8, Fairio)]
        );
        assert_eq!(
            handed_fds(None, None, Some("7:systemd,8,9:other"), 42),
            vec![(7, Systemd), (8, Fairio)],
            "an upgrade hands systemd's sockets on as systemd's"
        );
    }

    #[test]
    fn listeners_are_matched_by_address_and_the_rest_closed() {
        let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = tcp.local_addr().unwrap();
        let dir = std::env::temp_dir().join(format!("fairio-inherit-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let path = dir.join("l.sock");
        let _ = std::fs::remove_file(&path);
        let unix = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let other = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut inh = Inherited {
            sockets: vec![
                (Socket::from(OwnedFd::from(tcp)), Giver::Systemd),
                (Socket::from(OwnedFd::from(unix)), Giver::Fairio),
                (Socket::from(OwnedFd::from(other)), Giver::Systemd),
            ],
        };
        assert!(inh.take_tcp("127.0.0.1:1".parse().unwrap()).is_none());
        let (got, giver) = inh.take_tcp(addr).unwrap();
        assert_eq!((got.local_addr().unwrap(), giver), (addr, Giver::Systemd));
        assert!(inh.take_tcp(addr).is_none(), "taken once");
        assert_eq!(inh.take_unix(&path).map(|(_, g)| g), Some(Giver::Fairio));
        assert_eq!(inh.len(), 1);
        inh.close_rest();
        assert_eq!(inh.len(), 0);
        // A client reaches the taken listener.
        std::net::TcpStream::connect(addr).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_closed_descriptor_or_a_connected_socket_is_not_adopted() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let c = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        assert!(
            adopt(std::os::fd::AsRawFd::as_raw_fd(&c)).is_none(),
            "not a listener"
        );
        // Left open: the stream still works.
        assert!(c.peer_addr().is_ok());
        // A number no descriptor has (adopting `fd` again could take another test's socket).
        assert!(adopt(RawFd::MAX - 1).is_none(), "not open");
    }
}
