//! One client: connect the upstream, pump both ways, and log one summary line when it leaves.

use std::io;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::BytesMut;
use fairio::{End as Side, Error, GroupsBy, Policy, Scheduler, Splice};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio::time::Instant;

use super::FromWeight;
use super::class::Class;
use super::guard::{Admission, Ticket};
use super::settings::Settings;
use crate::rate::human;

/// Most bytes moved at a time in each direction.
const CHUNK: usize = 64 * 1024;
/// Reads smaller than this are copied out of the read buffer rather than handed over with it.
const SMALL: usize = 8 * 1024;

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

/// How one client's session is run: the settings in force when it arrived.
#[derive(Clone, Debug)]
pub(super) struct Session<P: Policy> {
    pub(super) sched: Scheduler<P>,
    /// The groups by (class, host), when fair by host.
    pub(super) hosts: Option<GroupsBy<(Arc<str>, IpAddr), P>>,
    /// The groups by class, above the hosts', under `policy = "hierarchical"`.
    pub(super) classes: Option<GroupsBy<Arc<str>, P>>,
    /// The settings in force now (a reload replaces them), for a class's group made after
    /// this client was admitted.
    pub(super) live: Arc<std::sync::RwLock<Arc<Settings>>>,
    pub(super) upstream: String,
    /// The pipes to splice through, if splicing is on.
    pub(super) pipes: Option<fairio::Pipes>,
    /// The PROXY protocol header to send the upstream first, if any.
    pub(super) send_proxy: Option<super::pp::Version>,
    pub(super) settings: Arc<Settings>,
    pub(super) admission: Arc<Admission>,
}

/// Who a client is: its address, if it has one (a Unix client has none), for its class and
/// group; and a name for the logs.
#[derive(Clone, Debug)]
pub(super) struct Peer {
    pub(super) ip: Option<IpAddr>,
    pub(super) name: String,
    /// (client, destination), for a PROXY protocol header to the upstream: the accepted
    /// socket's, or those a trusted header carried.
    pub(super) addrs: Option<(std::net::SocketAddr, std::net::SocketAddr)>,
}

/// Connects the upstream, a name resolved now and each address tried in turn, each within
/// `timeout`.
async fn connect(upstream: &str, timeout: Duration) -> io::Result<TcpStream> {
    let addrs = tokio::time::timeout(timeout, tokio::net::lookup_host(upstream))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "resolving timed out"))??;
    let mut last = io::Error::new(io::ErrorKind::NotFound, "the name has no address");
    for addr in addrs {
        match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
            Ok(Ok(s)) => {
                let _ = s.set_nodelay(true);
                return Ok(s);
            }
            Ok(Err(e)) => last = e,
            Err(_) => last = io::Error::new(io::ErrorKind::TimedOut, format!("{addr}: timed out")),
        }
    }
    Err(last)
}

/// Registers a client: in its (class, host) group when fair by host, else alone; with its
/// class's weight and caps, and the per-client cap.
fn register<P: Policy, S: fairio::Stream>(
    s: &Session<P>,
    client: S,
    peer: &Peer,
    class: &Class,
) -> Result<fairio::Connection<P>, Error>
where
    P::Params: FromWeight,
{
    if let Some(classes) = &s.classes {
        return register_in_class(s, classes, client, peer, class);
    }
    let weight = P::Params::from_weight(class.weight);
    let conn = match (&s.hosts, peer.ip) {
        (Some(hosts), Some(ip)) => {
            let key = (Arc::from(class.name.as_str()), ip);
            let group = hosts.group_init(key, |g| {
                g.set_params(weight.clone());
                let _ = g.set_caps(class.caps.0, class.caps.1);
            })?;
            s.sched.register_in(&group, client, P::Params::default())?
        }
        _ => {
            let conn = s.sched.register_with(client, weight)?;
            conn.set_caps(class.caps.0, class.caps.1)?;
            conn
        }
    };
    if let Some(cap) = s.settings.per_client_cap {
        let min = |c: Option<u64>| Some(c.map_or(cap, |c| c.min(cap)));
        let (up, down) = if s.hosts.is_some() && peer.ip.is_some() {
            (Some(cap), Some(cap))
        } else {
            (min(class.caps.0), min(class.caps.1))
        };
        conn.set_caps(up, down)?;
    }
    Ok(conn)
}

/// Registers a client three levels deep: its class's group (the class's weight, caps and
/// guarantees, for the class as a whole), then its address's group inside it when fair by host
/// (the class's per-address caps), then the connection (the per-client cap).
fn register_in_class<P: Policy, S: fairio::Stream>(
    s: &Session<P>,
    classes: &GroupsBy<Arc<str>, P>,
    client: S,
    peer: &Peer,
    class: &Class,
) -> Result<fairio::Connection<P>, Error>
where
    P::Params: FromWeight,
{
    let name: Arc<str> = Arc::from(class.name.as_str());
    // Set up from the settings in force when it is made: a reload may have come since this
    // client was admitted (it waits for its upstream first), and the reload could not reach a
    // group that did not exist yet. A class gone from the file takes the default's settings,
    // as on a reload.
    let live = Arc::clone(&s.live.read().unwrap_or_else(|e| e.into_inner()));
    let now = live.classes.named(&class.name);
    let group = class_target(classes, s.hosts.as_ref(), name, now, peer.ip)?;
    let conn = s.sched.register_in(&group, client, P::Params::default())?;
    if let Some(cap) = s.settings.per_client_cap {
        conn.set_caps(Some(cap), Some(cap))?;
    }
    Ok(conn)
}

/// The group a client from `ip` joins in the class named `name` (set up from `class`, the
/// settings in force for it), under `policy = "hierarchical"`: its address's group inside the
/// class's when fair by host, else the class's.
pub(super) fn class_target<P: Policy>(
    classes: &GroupsBy<Arc<str>, P>,
    hosts: Option<&GroupsBy<(Arc<str>, IpAddr), P>>,
    name: Arc<str>,
    class: &Class,
    ip: Option<IpAddr>,
) -> Result<fairio::Group<P>, Error>
where
    P::Params: FromWeight,
{
    let class_group = classes.group_init(Arc::clone(&name), |g| set_up_class(g, class))?;
    match (hosts, ip) {
        (Some(hosts), Some(ip)) => hosts.group_in(&class_group, (name, ip), |g| {
            if let Err(e) = g.set_caps(class.each.0, class.each.1) {
                tracing::warn!("class `{}`: per-address caps: {e}", class.name);
            }
        }),
        _ => Ok(class_group),
    }
}

/// Moves a connected client into the class `settings` give its address, if that is not
/// `class` (the one it is counted in): after a reload, or when a reload came while it was
/// registering. `who` is (its name for the logs, its address, its class now).
pub(super) fn follow_class<P: Policy>(
    classes: &GroupsBy<Arc<str>, P>,
    hosts: Option<&GroupsBy<(Arc<str>, IpAddr), P>>,
    admission: &Admission,
    conn: &fairio::Connection<P>,
    (peer, ip, class): (&str, IpAddr, &str),
    settings: &Settings,
) where
    P::Params: FromWeight,
{
    let now = settings.classes.get(settings.classes.of(Some(ip)));
    if now.name == class {
        return;
    }
    let name: Arc<str> = Arc::from(now.name.as_str());
    let moved = class_target(classes, hosts, Arc::clone(&name), now, Some(ip))
        .and_then(|g| conn.move_to(&g));
    match moved {
        Ok(()) => {
            let s = conn.stat();
            admission.reclassify(conn.id(), &name, (s.total_sent, s.total_recv));
            tracing::info!("client {peer} moved from class `{class}` to `{name}`");
        }
        Err(e) => tracing::warn!("client {peer}: not moved to class `{name}`: {e}"),
    }
}

/// Gives a class's group the class's weight, caps and guarantees. The guarantees are cleared
/// first, so that caps lowered below the old ones apply; a guarantee the caps cannot hold is
/// refused by the file's check, and logged here if it comes anyway.
pub(super) fn set_up_class<P: Policy>(g: &fairio::Group<P>, class: &Class)
where
    P::Params: FromWeight,
{
    g.set_params(P::Params::from_weight(class.weight));
    let _ = g.set_guarantees(None, None);
    if let Err(e) = g.set_caps(class.caps.0, class.caps.1) {
        tracing::warn!("class `{}`: caps: {e}", class.name);
    }
    if let Err(e) = g.set_guarantees(class.mins.0, class.mins.1) {
        tracing::warn!("class `{}`: guarantees: {e}", class.name);
    }
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
pub(super) async fn serve<P: Policy, S: fairio::Stream>(
    session: Session<P>,
    client: S,
    peer: Peer,
    class: Class,
    mut ticket: Ticket,
) where
    P::Params: FromWeight,
{
    let started = Instant::now();
    let upstream = &session.upstream;
    let settings = Arc::clone(&session.settings);
    let name = &peer.name;
    let mut up = match connect(upstream, settings.connect_timeout).await {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(peer = %name, %upstream, error = %e, "upstream unreachable; closing the client");
            return;
        }
    };
    if let Some(v) = session.send_proxy {
        let header = super::pp::build(v, peer.addrs);
        if let Err(e) = up.write_all(&header).await {
            tracing::warn!(peer = %name, %upstream, error = %e, "upstream failed taking the PROXY header; closing the client");
            return;
        }
    }
    let conn = match register(&session, client, &peer, &class) {
        Ok(c) => c,
        Err(e) => {
            tracing::info!(peer = %name, error = %e, "client refused");
            return;
        }
    };
    ticket.attach(conn.id(), name.clone());
    // A reload that came while this client waited for its upstream could not move it: it had
    // no connection yet. It follows the settings in force now.
    if let (Some(classes), Some(ip)) = (&session.classes, peer.ip) {
        let live = Arc::clone(&session.live.read().unwrap_or_else(|e| e.into_inner()));
        follow_class(
            classes,
            session.hosts.as_ref(),
            &session.admission,
            &conn,
            (name, ip, &class.name),
            &live,
        );
    }
    tracing::debug!(peer = %name, class = %class.name, conn = conn.id(), "client connected");
    let (mut ur, mut uw) = up.into_split();
    let activity = Activity {
        started,
        last_ms: AtomicU64::new(0),
    };
    // Signalled by the first direction to end: the half-close timeout starts then.
    let one_side_done = Notify::new();
    // With splicing on, each direction moves through a pipe (or copies, for a Unix client or
    // once the pool is used up); what a splice took and did not deliver stays in it, counted
    // below when the pair is closed before a direction ended.
    let mut from_splice = session.pipes.as_ref().map(Splice::new);
    let mut to_splice = session.pipes.as_ref().map(Splice::new);
    let from_client = {
        let (conn, activity, done) = (conn.clone(), &activity, &one_side_done);
        let splice = &mut from_splice;
        async move {
            let end = match splice {
                Some(s) => match s.run((&conn).into(), Side::Tcp(uw.as_ref())).await {
                    Ok(_) => End::Closed,
                    Err(e) => End::of(&e),
                },
                // The received buffers themselves, with no copy in between.
                None => loop {
                    match conn.read_bytes(CHUNK).await {
                        Ok(chunk) => {
                            activity.touch();
                            if let Err(e) = uw.write_all(&chunk).await {
                                break End::of_io(&e);
                            }
                        }
                        Err(e) => break End::of(&e),
                    }
                },
            };
            let _ = uw.shutdown().await;
            // A direction's end counts as activity: the half-close timeout runs from here,
            // not from the last time the totals were looked at.
            activity.touch();
            done.notify_one();
            end
        }
    };
    let to_client = {
        let (conn, activity, done) = (conn.clone(), &activity, &one_side_done);
        let half_close = settings.half_close_timeout;
        let splice = &mut to_splice;
        async move {
            let mut end = match splice {
                Some(s) => match s.run(Side::Tcp(ur.as_ref()), (&conn).into()).await {
                    Ok(_) => End::Closed,
                    Err(e) => End::of(&e),
                },
                None => copy_to_client(&mut ur, &conn, activity).await,
            };
            let mut unsent = 0;
            match conn.shutdown_write(Some(half_close)).await {
                Ok(()) => {}
                Err(Error::Timeout { unsent: n }) => unsent = n,
                Err(e) => end = end.max_with(End::of(&e)),
            }
            // Ended once what it queued has gone out (or been dropped).
            // A direction's end counts as activity: the half-close timeout runs from here,
            // not from the last time the totals were looked at.
            activity.touch();
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
        activity.idle_for(settings.half_close_timeout, totals).await;
    };
    // Whichever comes first: both sides done, a half-close held too long, or silence. The
    // directions that have not ended are dropped, and with them the upstream's halves.
    let (from, to, mut unsent) = tokio::select! {
        (from, (to, unsent)) = async { tokio::join!(from_client, to_client) } => (from, to, unsent),
        () = half_closed_too_long => {
            session.admission.half_close_closed.fetch_add(1, Ordering::Relaxed);
            (End::TimedOut, End::TimedOut, 0)
        }
        () = activity.idle_for(settings.idle_timeout, totals) => {
            session.admission.idle_closed.fetch_add(1, Ordering::Relaxed);
            (End::Idle, End::Idle, 0)
        }
    };
    // Bytes the upstream sent that a splice held when the proxy closed the pair (a timeout)
    // never reach the client: unsent, as a queue's would be. Held when the client reset or
    // closed, they are lost to that, as a failed write's bytes are (counted in the error,
    // not as unsent); those the client sent, never the upstream.
    let held = to_splice.as_ref().map_or(0, Splice::held);
    if matches!(to, End::TimedOut | End::Idle) {
        unsent += held;
    } else if held > 0 {
        tracing::debug!(peer = %name, lost = held, "upstream bytes lost with the client");
    }
    let spliced: u64 = [&from_splice, &to_splice]
        .into_iter()
        .flatten()
        .map(Splice::spliced_bytes)
        .sum();
    session
        .admission
        .spliced
        .fetch_add(spliced, Ordering::Relaxed);
    if let Some(n) = from_splice.as_ref().map(Splice::held).filter(|&n| n > 0) {
        tracing::debug!(peer = %name, undelivered = n, "client bytes dropped on the way upstream");
    }
    let flush = if from == End::Idle || from == End::TimedOut {
        Duration::from_millis(100)
    } else {
        Duration::from_secs(5)
    };
    if let Err(Error::Timeout { unsent: n }) = conn.close(Some(flush)).await {
        unsent += n;
    }
    let s = conn.stat();
    ticket.left(s.total_sent, s.total_recv);
    let secs = started.elapsed().as_secs_f64();
    macro_rules! left {
        ($level:ident) => {
            tracing::$level!(
                peer = %name,
                class = %class.name,
                conn = conn.id(),
                secs = format!("{secs:.1}"),
                to_client = %human(s.total_sent as f64),
                // What the client's TCP had acknowledged of it at the close ("?" where the
                // platform cannot tell).
                to_client_acked = %s.acked().map_or("?".to_owned(), |b| human(b as f64)),
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

/// Copies the upstream's bytes to the client until the upstream ends: read straight into a
/// buffer that is then handed over whole, so the one copy is the kernel's.
async fn copy_to_client<P: Policy>(
    ur: &mut tokio::net::tcp::OwnedReadHalf,
    conn: &fairio::Connection<P>,
    activity: &Activity,
) -> End {
    let mut buf = BytesMut::with_capacity(CHUNK);
    loop {
        buf.reserve(CHUNK);
        match ur.read_buf(&mut buf).await {
            Ok(0) => return End::Closed,
            Err(e) => return End::of_io(&e),
            Ok(n) => {
                activity.touch();
                // A small read is copied, so that the buffer is reused: a queued chunk would
                // keep its whole allocation alive, and the write queue's bound counts bytes,
                // not allocations.
                let chunk = if n < SMALL {
                    let c = bytes::Bytes::copy_from_slice(&buf);
                    buf.clear();
                    c
                } else {
                    buf.split().freeze()
                };
                if let Err(e) = conn.write(chunk).await {
                    return End::of(&e);
                }
            }
        }
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
