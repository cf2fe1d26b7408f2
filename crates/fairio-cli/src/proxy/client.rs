//! One client: connect the upstream, pump both ways, and log one summary line when it leaves.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use fairio::{Error, GroupsBy, Policy, Scheduler};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio::time::Instant;

use super::guard::{Admission, Ticket};
use crate::rate::human;

/// How one direction of a client's session ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum End {
    /// The sending side closed: the normal end.
    Closed,
    /// The peer reset or the pipe broke: ordinary on the internet.
    Reset,
    /// Anything else: worth a warning.
    Failed,
    /// Closed by the proxy: the pair stayed half-closed for the half-close timeout.
    TimedOut,
    /// Closed by the proxy: nothing moved for the idle timeout.
    Idle,
}

impl End {
    fn of_io(e: &io::Error) -> Self {
        match e.kind() {
            io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::UnexpectedEof => Self::Reset,
            _ => Self::Failed,
        }
    }

    fn of(e: &Error) -> Self {
        match e {
            Error::ConnectionClosed | Error::SchedulerClosed => Self::Closed,
            Error::Io(e) => Self::of_io(e),
            _ => Self::Failed,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::Reset => "reset",
            Self::Failed => "failed",
            Self::TimedOut => "half-close timeout",
            Self::Idle => "idle timeout",
        }
    }
}

/// How every client's session is run.
#[derive(Clone, Debug)]
pub(super) struct Session {
    pub(super) upstream: SocketAddr,
    pub(super) cap: Option<u64>,
    pub(super) connect_timeout: Duration,
    pub(super) half_close_timeout: Duration,
    pub(super) idle_timeout: Duration,
    pub(super) admission: Arc<Admission>,
}

/// When the pair last moved a byte, in milliseconds since it started.
#[derive(Debug)]
struct Activity {
    started: Instant,
    last_ms: AtomicU64,
}

impl Activity {
    fn touch(&self) {
        let ms = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.fetch_max(ms, Ordering::Relaxed);
    }

    /// Completes once nothing has moved for `idle`: no byte read from either socket, and no
    /// byte written to the client (`moved`, the connection's totals, counts the bytes the
    /// scheduler lets out of a full write queue, slowly, under a small share or cap).
    async fn idle_for(&self, idle: Duration, moved: impl Fn() -> u64) {
        let mut seen = moved();
        loop {
            let now_moved = moved();
            if now_moved != seen {
                seen = now_moved;
                self.touch();
            }
            let last = self.started + Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
            let deadline = last.checked_add(idle).unwrap_or_else(far_future);
            if Instant::now() >= deadline {
                return;
            }
            // Wake at the deadline, or within a second to look at the totals again.
            tokio::time::sleep_until(deadline.min(Instant::now() + Duration::from_secs(1))).await;
        }
    }
}

/// A time no timeout reaches.
fn far_future() -> Instant {
    Instant::now() + Duration::from_secs(86_400 * 365 * 30)
}

/// Serves one accepted client until both directions have ended, the pair has stayed
/// half-closed for the half-close timeout, or nothing has moved for the idle timeout. `ticket`
/// holds the client's place under the connection limits until then.
pub(super) async fn serve<P: Policy>(
    sched: Scheduler<P>,
    hosts: Option<GroupsBy<IpAddr, P>>,
    client: TcpStream,
    peer: SocketAddr,
    session: Session,
    mut ticket: Ticket,
) {
    let started = Instant::now();
    let upstream = session.upstream;
    let cap = session.cap;
    let up = match tokio::time::timeout(session.connect_timeout, TcpStream::connect(upstream)).await
    {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            tracing::warn!(%peer, %upstream, error = %e, "upstream unreachable; closing the client");
            return;
        }
        Err(_) => {
            tracing::warn!(%peer, %upstream, "upstream connect timed out; closing the client");
            return;
        }
    };
    let registered = match &hosts {
        Some(hosts) => hosts.register(peer.ip(), client),
        None => sched.register(client),
    };
    let conn = match registered {
        Ok(c) => c,
        Err(e) => {
            tracing::info!(%peer, error = %e, "client refused");
            return;
        }
    };
    if cap.is_some() {
        if let Err(e) = conn.set_caps(cap, cap) {
            tracing::warn!(%peer, error = %e, "bad per-client cap");
        }
    }
    ticket.attach(conn.id(), peer);
    tracing::debug!(%peer, conn = conn.id(), "client connected");
    let (mut ur, mut uw) = up.into_split();
    let activity = Activity {
        started,
        last_ms: AtomicU64::new(0),
    };
    // Signalled by the first direction to end: the half-close timeout starts then.
    let one_side_done = Notify::new();
    let from_client = {
        let (conn, activity, done) = (conn.clone(), &activity, &one_side_done);
        async move {
            let mut buf = vec![0u8; 64 * 1024];
            let end = loop {
                match conn.read(&mut buf).await {
                    Ok(n) => {
                        activity.touch();
                        if let Err(e) = uw.write_all(&buf[..n]).await {
                            break End::of_io(&e);
                        }
                    }
                    Err(e) => break End::of(&e),
                }
            };
            let _ = uw.shutdown().await;
            done.notify_one();
            end
        }
    };
    let to_client = {
        let (conn, activity, done) = (conn.clone(), &activity, &one_side_done);
        let half_close = session.half_close_timeout;
        async move {
            let mut buf = vec![0u8; 64 * 1024];
            let mut end = loop {
                match ur.read(&mut buf).await {
                    Ok(0) => break End::Closed,
                    Err(e) => break End::of_io(&e),
                    Ok(n) => {
                        activity.touch();
                        if let Err(e) = conn.write(Bytes::copy_from_slice(&buf[..n])).await {
                            break End::of(&e);
                        }
                    }
                }
            };
            let mut unsent = 0;
            match conn.shutdown_write(Some(half_close)).await {
                Ok(()) => {}
                Err(Error::Timeout { unsent: n }) => unsent = n,
                Err(e) => end = end.max_with(End::of(&e)),
            }
            // Ended once what it queued has gone out (or been dropped).
            done.notify_one();
            (end, unsent)
        }
    };
    let totals = || {
        let s = conn.stat();
        s.total_sent + s.total_recv
    };
    // Once one side has ended, the other may go on moving bytes (a client that half-closes
    // after its request, then downloads): the pair is closed only when it has moved nothing
    // for the half-close timeout, as HAProxy's client-fin and server-fin are.
    let half_closed_too_long = async {
        one_side_done.notified().await;
        activity.idle_for(session.half_close_timeout, totals).await;
    };
    // Whichever comes first: both sides done, a half-close held too long, or silence. The
    // directions that have not ended are dropped, and with them the upstream's halves.
    let (from, to, mut unsent) = tokio::select! {
        (from, (to, unsent)) = async { tokio::join!(from_client, to_client) } => (from, to, unsent),
        () = half_closed_too_long => {
            session.admission.half_close_closed.fetch_add(1, Ordering::Relaxed);
            (End::TimedOut, End::TimedOut, 0)
        }
        () = activity.idle_for(session.idle_timeout, totals) => {
            session.admission.idle_closed.fetch_add(1, Ordering::Relaxed);
            (End::Idle, End::Idle, 0)
        }
    };
    let flush = if from == End::Idle || from == End::TimedOut {
        Duration::from_millis(100)
    } else {
        Duration::from_secs(5)
    };
    if let Err(Error::Timeout { unsent: n }) = conn.close(Some(flush)).await {
        unsent += n;
    }
    let s = conn.stat();
    let secs = started.elapsed().as_secs_f64();
    macro_rules! left {
        ($level:ident) => {
            tracing::$level!(
                %peer,
                conn = conn.id(),
                secs = format!("{secs:.1}"),
                to_client = %human(s.total_sent as f64),
                from_client = %human(s.total_recv as f64),
                unsent,
                client = from.as_str(),
                upstream = to.as_str(),
                "client left"
            )
        };
    }
    if from == End::Failed || to == End::Failed || unsent > 0 {
        left!(warn);
    } else {
        left!(info);
    }
}

impl End {
    /// The worse of two ends.
    fn max_with(self, other: Self) -> Self {
        let rank = |e: Self| match e {
            Self::Closed => 0,
            Self::Reset | Self::TimedOut | Self::Idle => 1,
            Self::Failed => 2,
        };
        if rank(other) > rank(self) {
            other
        } else {
            self
        }
    }
}
