//! Service-manager notifications (`sd_notify`): state lines such as `READY=1` sent as one
//! datagram to the Unix socket named by `NOTIFY_SOCKET` (a path, or `@name` in the abstract
//! namespace). Without the variable, nothing is sent.

use std::io;
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;

/// Where notifications go, if anywhere.
#[derive(Debug)]
pub(crate) struct Notifier {
    to: Option<(UnixDatagram, Target)>,
}

#[derive(Debug)]
enum Target {
    Path(PathBuf),
    #[cfg(target_os = "linux")]
    Abstract(Vec<u8>),
}

impl Notifier {
    /// The socket `NOTIFY_SOCKET` names, as systemd passes it.
    pub(crate) fn from_env() -> Self {
        Self::to(std::env::var_os("NOTIFY_SOCKET"))
    }

    /// Notifications to `socket` (`None`: nowhere).
    pub(crate) fn to(socket: Option<std::ffi::OsString>) -> Self {
        let target = socket.and_then(|s| {
            let bytes = std::os::unix::ffi::OsStrExt::as_bytes(s.as_os_str()).to_vec();
            match bytes.first() {
                #[cfg(target_os = "linux")]
                Some(b'@') => Some(Target::Abstract(bytes[1..].to_vec())),
                Some(b'/') => Some(Target::Path(PathBuf::from(s))),
                _ => {
                    tracing::warn!(socket = ?s, "NOTIFY_SOCKET is neither a path nor @name: no notifications");
                    None
                }
            }
        });
        let to = target.and_then(|t| match UnixDatagram::unbound() {
            Ok(sock) => Some((sock, t)),
            Err(e) => {
                tracing::warn!(error = %e, "cannot open a socket for notifications");
                None
            }
        });
        Self { to }
    }

    /// Whether notifications go anywhere.
    pub(crate) fn is_active(&self) -> bool {
        self.to.is_some()
    }

    /// Sends `state` (lines such as `READY=1\nSTATUS=…`); a failure is logged, not returned:
    /// a service manager that went away does not stop the proxy.
    pub(crate) fn send(&self, state: &str) {
        if let Some((sock, target)) = &self.to {
            if let Err(e) = send_to(sock, target, state.as_bytes()) {
                tracing::warn!(error = %e, "could not notify the service manager");
            }
        }
    }

    /// `READY=1` with a status line.
    pub(crate) fn ready(&self, status: &str) {
        self.send(&format!("READY=1\nSTATUS={status}"));
    }

    /// `RELOADING=1`, with the monotonic time systemd's `Type=notify-reload` asks for.
    pub(crate) fn reloading(&self) {
        self.send(&format!(
            "RELOADING=1\nMONOTONIC_USEC={}\nSTATUS=reloading",
            monotonic_usec()
        ));
    }
}

fn send_to(sock: &UnixDatagram, target: &Target, msg: &[u8]) -> io::Result<()> {
    match target {
        Target::Path(p) => sock.send_to(msg, p).map(drop),
        #[cfg(target_os = "linux")]
        Target::Abstract(name) => {
            use std::os::linux::net::SocketAddrExt;
            let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
            sock.send_to_addr(msg, &addr).map(drop)
        }
    }
}

/// `CLOCK_MONOTONIC` in microseconds, which systemd compares with its own (std's `Instant`
/// reads the same clock but hides its origin).
#[allow(unsafe_code)]
fn monotonic_usec() -> u128 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec for the duration of the call.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    if rc != 0 {
        return 0;
    }
    u128::try_from(ts.tv_sec).unwrap_or(0) * 1_000_000
        + u128::try_from(ts.tv_nsec).unwrap_or(0) / 1000
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_arrive_as_datagrams_at_a_path_and_an_abstract_name() {
        let dir = std::env::temp_dir().join(format!("fairio-notify-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let path = dir.join("notify.sock");
        let _ = std::fs::remove_file(&path);
        let server = UnixDatagram::bind(&path).unwrap();
        // A notification that never comes fails the test rather than hanging it.
        server
            .set_read_timeout(Some(std::time::Duration::from_secs(10)))
            .unwrap();
        let n = Notifier::to(Some(path.clone().into_os_string()));
        n.ready("serving 0 clients");
        n.reloading();
        let mut buf = [0u8; 256];
        let len = server.recv(&mut buf).unwrap();
        assert_eq!(&buf[..len], b"READY=1\nSTATUS=serving 0 clients");
        let len = server.recv(&mut buf).unwrap();
        let text = std::str::from_utf8(&buf[..len]).unwrap();
        assert!(text.starts_with("RELOADING=1\nMONOTONIC_USEC="), "{text}");
        let usec: u128 = text.lines().nth(1).unwrap()[15..].parse().unwrap();
        assert!(usec > 0);
        let _ = std::fs::remove_dir_all(&dir);

        #[cfg(target_os = "linux")]
        {
            use std::os::linux::net::SocketAddrExt;
            let name = format!("fairio-notify-test-{}", std::process::id());
            let addr = std::os::unix::net::SocketAddr::from_abstract_name(&name).unwrap();
            let server = UnixDatagram::bind_addr(&addr).unwrap();
            server
                .set_read_timeout(Some(std::time::Duration::from_secs(10)))
                .unwrap();
            Notifier::to(Some(format!("@{name}").into())).send("STOPPING=1");
            let len = server.recv(&mut buf).unwrap();
            assert_eq!(&buf[..len], b"STOPPING=1");
        }
        // Nowhere to send: nothing happens.
        Notifier::to(None).send("READY=1");
    }
}
