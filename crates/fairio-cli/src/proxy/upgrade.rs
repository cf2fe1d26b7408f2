//! Upgrades without dropping a client. On SIGUSR2 the proxy starts its binary again (the path
//! it was started from, which a package upgrade has replaced by then) with the same
//! arguments, and hands it its listening sockets. Once the new process is ready, the old one
//! stops accepting (connections waiting in the sockets' queues are the new one's to accept),
//! serves its clients until they leave or the drain timeout passes, and exits.
//!
//! The limits hold across both processes: the old one keeps a part of each limit in
//! proportion to its share of the clients, the new one runs with the rest, and the old part
//! only shrinks (the old process lowers its own limit before it tells the new one it may
//! raise its), so the sum never exceeds the limit. With `--fleet`, both are fleet members and
//! the fleet shares the limits instead.
//!
//! The two processes talk over a datagram socket pair, one `KEY=VALUE` a datagram; a key a
//! process does not know is ignored, so that binaries of different versions can hand over.
//! The new process sends `LIMITS=UP,DOWN` (the limits its settings give: a new configuration
//! may lower them, and the old part is then taken of the lower) and `CLIENTS=N`, then
//! `READY=1` once it serves, then the first two every 100 ms. The old one sends
//! `HOLD=UP,DOWN,OPEN`: the part of the limits to clients and from clients it keeps (`-` for
//! no limit), and its clients.

use std::ffi::OsString;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixDatagram as StdDatagram;
use std::path::Path;
use std::time::Duration;

use tokio::net::UnixDatagram;

use super::inherit::FAIRIO_LISTEN_FDS;

/// The variable naming the new process's end of the socket pair.
const UPGRADE_FD: &str = "FAIRIO_UPGRADE_FD";
/// The variable giving the part of the limits the old process keeps at the start.
const UPGRADE_HOLD: &str = "FAIRIO_UPGRADE_HOLD";
/// How often the new process reports its clients, and the old one revises its part.
const TICK: Duration = Duration::from_millis(100);

/// What the old process keeps while it drains: its part of the limits to clients and from
/// clients (`None`: none held), and its clients, which count against the new process's
/// connection limit. The default is nothing: the old process is gone.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Hold {
    pub(crate) up: Option<u64>,
    pub(crate) down: Option<u64>,
    pub(crate) open: usize,
}

/// What the new process reports: its clients, and the limits its settings give (`None`
/// until it has said).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Report {
    pub(crate) clients: usize,
    pub(crate) limits: Option<(Option<u64>, Option<u64>)>,
}

impl Report {
    /// Takes one datagram of the new process into the report; whether it was `READY=1`.
    fn take(&mut self, msg: &str) -> bool {
        if let Some(n) = msg
            .strip_prefix("CLIENTS=")
            .and_then(|n| n.trim().parse().ok())
        {
            self.clients = n;
        } else if let Some(l) = msg.strip_prefix("LIMITS=").and_then(decode_limits) {
            self.limits = Some(l);
        }
        msg == "READY=1"
    }
}

fn rate(v: Option<u64>) -> String {
    v.map_or("-".to_owned(), |v| v.to_string())
}

fn parse_rate(v: Option<&str>) -> Option<Option<u64>> {
    match v? {
        "-" => Some(None),
        n => n.parse().ok().map(Some),
    }
}

fn decode_limits(s: &str) -> Option<(Option<u64>, Option<u64>)> {
    let mut it = s.trim().split(',');
    let l = (parse_rate(it.next())?, parse_rate(it.next())?);
    it.next().is_none().then_some(l)
}

fn encode(h: Hold) -> String {
    format!("{},{},{}", rate(h.up), rate(h.down), h.open)
}

fn decode(s: &str) -> Option<Hold> {
    let mut it = s.trim().split(',');
    let h = Hold {
        up: parse_rate(it.next())?,
        down: parse_rate(it.next())?,
        open: it.next()?.parse().ok()?,
    };
    it.next().is_none().then_some(h)
}

/// The limit both processes' parts are taken of: the lower of the two settings (either may be
/// unlimited).
pub(crate) fn common(mine: Option<u64>, theirs: Option<u64>) -> Option<u64> {
    match (mine, theirs) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// The old process's part of `limit`, with `mine` of `mine + theirs` clients: at least 1
/// byte/s while it has a client (a limit cannot be 0), and never more than `before`.
pub(crate) fn part(
    limit: Option<u64>,
    mine: usize,
    theirs: usize,
    before: Option<u64>,
) -> Option<u64> {
    let l = limit?;
    let all = (mine + theirs).max(1) as u128;
    let p = u64::try_from(u128::from(l) * mine as u128 / all)
        .unwrap_or(l)
        .max(1);
    Some(before.map_or(p, |b| p.min(b)))
}

/// What a limit leaves to the new process once the old one's part is taken (at least 1).
pub(crate) fn rest(limit: Option<u64>, held: Option<u64>) -> Option<u64> {
    limit.map(|l| l.saturating_sub(held.unwrap_or(0)).max(1))
}

/// Sends one datagram now, without waiting (tokio's `try_send` refuses until the runtime has
/// seen the socket writable once).
fn send_now(chan: &UnixDatagram, msg: &[u8]) -> std::io::Result<usize> {
    socket2::SockRef::from(chan).send(msg)
}

/// The old process's side of a handover: the new process started and ready.
#[derive(Debug)]
pub(crate) struct Handover {
    pub(crate) child: tokio::process::Child,
    chan: UnixDatagram,
    /// What the new process last reported.
    pub(crate) theirs: Report,
}

/// Starts `exe` with `args`, handing it `sockets` and the socket pair's end, and waits until
/// it is ready.
///
/// # Errors
/// The new process could not start, exited, or was not ready within `within` (it is then
/// killed); the old one goes on serving.
pub(crate) async fn start(
    exe: &Path,
    args: &[OsString],
    sockets: &[(&socket2::Socket, bool)],
    held: Hold,
    within: Duration,
) -> Result<Handover, String> {
    let (mine, theirs) = StdDatagram::pair().map_err(|e| format!("socket pair: {e}"))?;
    // Descriptors the new process inherits: copies without close-on-exec, closed here as soon
    // as it has started.
    let mut handed = Vec::new();
    let mut fds = Vec::new();
    for (s, systemd) in sockets {
        let d = s
            .try_clone()
            .map_err(|e| format!("cannot copy a listening socket: {e}"))?;
        d.set_cloexec(false)
            .map_err(|e| format!("cannot hand a socket on: {e}"))?;
        // Who first gave a socket goes with it: systemd's stays systemd's across upgrades.
        let fd = d.as_raw_fd();
        fds.push(if *systemd {
            format!("{fd}:systemd")
        } else {
            fd.to_string()
        });
        handed.push(d);
    }
    let theirs = socket2::Socket::from(OwnedFd::from(theirs));
    theirs
        .set_cloexec(false)
        .map_err(|e| format!("cannot hand a socket on: {e}"))?;
    let child = tokio::process::Command::new(exe)
        .args(args)
        .env(FAIRIO_LISTEN_FDS, fds.join(","))
        .env(UPGRADE_FD, theirs.as_raw_fd().to_string())
        .env(UPGRADE_HOLD, encode(held))
        .env_remove("LISTEN_PID")
        .env_remove("LISTEN_FDS")
        .env_remove("LISTEN_FDNAMES")
        .stdin(std::process::Stdio::null())
        .spawn();
    drop(handed);
    drop(theirs);
    let child = child.map_err(|e| format!("cannot start {}: {e}", exe.display()))?;
    // Killed if this future is dropped, or fails, before the new process is ready.
    let mut guard = Unready(Some(child));
    mine.set_nonblocking(true).map_err(|e| e.to_string())?;
    let chan = UnixDatagram::from_std(mine).map_err(|e| e.to_string())?;
    let mut theirs = Report::default();
    let ready = async {
        let mut buf = [0u8; 128];
        loop {
            match chan.recv(&mut buf).await {
                Ok(n) => {
                    if theirs.take(&String::from_utf8_lossy(&buf[..n])) {
                        return Ok(());
                    }
                }
                Err(e) => return Err(e.to_string()),
            }
        }
    };
    let failed = tokio::select! {
        r = tokio::time::timeout(within, ready) => match r {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(e),
            Err(_) => Some(format!("not ready within {} s", within.as_secs())),
        },
        status = guard.child().wait() => Some(match status {
            Ok(s) => format!("it exited ({s}) before it was ready"),
            Err(e) => e.to_string(),
        }),
    };
    if let Some(why) = failed {
        let _ = guard.child().start_kill();
        let _ = guard.child().wait().await;
        return Err(format!("the new process failed: {why}"));
    }
    let child = guard.0.take().ok_or("the new process vanished")?;
    Ok(Handover {
        child,
        chan,
        theirs,
    })
}

/// A new process not ready yet: killed when dropped (the upgrade failed or was abandoned).
struct Unready(Option<tokio::process::Child>);

impl Unready {
    fn child(&mut self) -> &mut tokio::process::Child {
        self.0.as_mut().expect("taken only once ready")
    }
}

impl Drop for Unready {
    fn drop(&mut self) {
        if let Some(c) = self.0.as_mut() {
            let _ = c.start_kill();
        }
    }
}

impl Handover {
    /// Takes in what the new process reported since the last call.
    pub(crate) fn refresh(&mut self) {
        let mut buf = [0u8; 128];
        while let Ok(n) = self.chan.try_recv(&mut buf) {
            self.theirs.take(&String::from_utf8_lossy(&buf[..n]));
        }
    }

    /// Tells the new process the part the old one now keeps (after the old one applied it).
    pub(crate) fn tell(&self, held: Hold) {
        let _ = send_now(&self.chan, format!("HOLD={}", encode(held)).as_bytes());
    }

    /// The new process's id.
    pub(crate) fn pid(&self) -> Option<u32> {
        self.child.id()
    }
}

/// The new process's side: the channel to the old process, and what it keeps.
#[derive(Debug)]
pub(crate) struct Successor {
    chan: UnixDatagram,
    /// The old process's part at the start.
    pub(crate) held: Hold,
}

impl Successor {
    /// The old process's channel and part, if this process was started by a handover.
    pub(crate) fn from_env() -> Option<Self> {
        let fd: RawFd = std::env::var(UPGRADE_FD).ok()?.parse().ok()?;
        let held = std::env::var(UPGRADE_HOLD)
            .ok()
            .and_then(|h| decode(&h))
            .unwrap_or_default();
        let sock = adopt_datagram(fd)?;
        sock.set_nonblocking(true).ok()?;
        let chan = UnixDatagram::from_std(sock).ok()?;
        Some(Self { chan, held })
    }

    /// Sends one report: the limits, then the clients.
    fn report(
        &self,
        (clients, up, down): (usize, Option<u64>, Option<u64>),
    ) -> std::io::Result<()> {
        send_now(
            &self.chan,
            format!("LIMITS={},{}", rate(up), rate(down)).as_bytes(),
        )?;
        send_now(&self.chan, format!("CLIENTS={clients}").as_bytes()).map(drop)
    }

    /// Tells the old process this one serves, after a first report (its part is then taken of
    /// the lower limit from the start).
    pub(crate) fn ready(&self, report: (usize, Option<u64>, Option<u64>)) {
        let _ = self.report(report);
        let _ = send_now(&self.chan, b"READY=1");
    }

    /// Sends `report()` (clients, and the limits its settings give) every 100 ms and applies
    /// each new part the old process keeps with `apply`, until the old process is gone; then
    /// applies nothing held.
    pub(crate) async fn follow(
        self,
        report: impl Fn() -> (usize, Option<u64>, Option<u64>),
        apply: impl Fn(Hold),
    ) {
        let mut buf = [0u8; 128];
        let mut tick = tokio::time::interval(TICK);
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    let sent = self.report(report());
                    // A full queue is no end; a peer gone (refused, reset) is.
                    if sent.is_err_and(|e| e.kind() != std::io::ErrorKind::WouldBlock) {
                        break;
                    }
                }
                r = self.chan.recv(&mut buf) => match r {
                    Ok(n) => {
                        let text = String::from_utf8_lossy(&buf[..n]);
                        if let Some(h) = text.strip_prefix("HOLD=").and_then(decode) {
                            apply(h);
                        }
                    }
                    Err(_) => break,
                },
            }
        }
        apply(Hold::default());
    }
}

/// Takes the datagram socket `fd` an older fairio handed on; anything else is left alone.
fn adopt_datagram(fd: RawFd) -> Option<StdDatagram> {
    let datagram = |s: &socket2::SockRef<'_>| s.r#type().ok() == Some(socket2::Type::DGRAM);
    let s = super::inherit::adopt_if(fd, datagram).ok()?;
    Some(StdDatagram::from(OwnedFd::from(s)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_round_trip() {
        let h = |up, down, open| Hold { up, down, open };
        for x in [
            h(None, None, 0),
            h(Some(1), None, 3),
            h(Some(5), Some(1 << 40), 9),
        ] {
            assert_eq!(decode(&encode(x)), Some(x));
        }
        for bad in ["x,1,0", "1", "1,2", "1,2,3,4", "-,-,-"] {
            assert_eq!(decode(bad), None, "{bad}");
        }
        let mut r = Report::default();
        assert!(!r.take("LIMITS=500,-"));
        assert!(!r.take("CLIENTS=3"));
        assert!(!r.take("SOMETHING=NEW"));
        assert!(!r.take("LIMITS=x,1"));
        assert!(r.take("READY=1"));
        assert_eq!(
            r,
            Report {
                clients: 3,
                limits: Some((Some(500), None))
            }
        );
        assert_eq!(common(Some(5), Some(3)), Some(3));
        assert_eq!(common(None, Some(3)), Some(3));
        assert_eq!(common(Some(5), None), Some(5));
        assert_eq!(common(None, None), None);
    }

    #[test]
    fn the_old_part_follows_the_clients_and_only_shrinks() {
        let l = Some(1000);
        assert_eq!(part(l, 3, 1, None), Some(750));
        assert_eq!(part(l, 3, 2, Some(750)), Some(600));
        assert_eq!(part(l, 3, 0, Some(600)), Some(600), "never grows back");
        assert_eq!(part(l, 0, 2, Some(600)), Some(1), "a limit is never 0");
        assert_eq!(part(None, 3, 1, None), None);
        for (mine, theirs) in [(1, 0), (3, 1), (7, 9), (0, 5)] {
            let p = part(l, mine, theirs, None);
            let r = rest(l, p);
            assert!(p.unwrap() + r.unwrap() <= 1000 || p == Some(1) || r == Some(1));
        }
        assert_eq!(rest(l, Some(600)), Some(400));
        assert_eq!(rest(l, None), l);
        assert_eq!(rest(None, Some(5)), None);
    }

    #[tokio::test]
    async fn the_successor_reports_and_applies_until_the_old_process_goes() {
        let (old, new) = StdDatagram::pair().unwrap();
        old.set_nonblocking(true).unwrap();
        new.set_nonblocking(true).unwrap();
        let old = UnixDatagram::from_std(old).unwrap();
        let s = Successor {
            chan: UnixDatagram::from_std(new).unwrap(),
            held: Hold::default(),
        };
        let applied = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let a = std::sync::Arc::clone(&applied);
        s.ready((7, Some(500), None));
        let task =
            tokio::spawn(s.follow(|| (7, Some(500), None), move |h| a.lock().unwrap().push(h)));
        let mut buf = [0u8; 64];
        let mut theirs = Report::default();
        let mut ready = false;
        for _ in 0..3 {
            let n = old.recv(&mut buf).await.unwrap();
            ready = theirs.take(std::str::from_utf8(&buf[..n]).unwrap());
        }
        assert!(ready, "LIMITS and CLIENTS, then READY");
        assert_eq!(
            theirs,
            Report {
                clients: 7,
                limits: Some((Some(500), None))
            }
        );
        old.send(b"HOLD=600,-,2").await.unwrap();
        // Applied before the old process goes (a wait on the event, not on the clock).
        for _ in 0..1000 {
            if !applied.lock().unwrap().is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // The old process goes: the successor takes everything and stops.
        drop(old);
        tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .unwrap()
            .unwrap();
        let kept = Hold {
            up: Some(600),
            down: None,
            open: 2,
        };
        assert_eq!(*applied.lock().unwrap(), [kept, Hold::default()]);
    }
}
