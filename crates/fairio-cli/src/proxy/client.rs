//! One client: connect the upstream, pump both ways, and log one summary line when it leaves.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use bytes::Bytes;
use fairio::{Error, GroupsBy, Policy, Scheduler};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

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
        }
    }
}

/// Serves one accepted client until both directions have ended.
pub(super) async fn serve<P: Policy>(
    sched: Scheduler<P>,
    hosts: Option<GroupsBy<IpAddr, P>>,
    client: TcpStream,
    peer: SocketAddr,
    upstream: SocketAddr,
    cap: Option<u64>,
) {
    let started = Instant::now();
    let up = match tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(upstream)).await
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
    tracing::debug!(%peer, conn = conn.id(), "client connected");
    let (mut ur, mut uw) = up.into_split();
    let from_client = {
        let conn = conn.clone();
        async move {
            let mut buf = vec![0u8; 64 * 1024];
            let end = loop {
                match conn.read(&mut buf).await {
                    Ok(n) => {
                        if let Err(e) = uw.write_all(&buf[..n]).await {
                            break End::of_io(&e);
                        }
                    }
                    Err(e) => break End::of(&e),
                }
            };
            let _ = uw.shutdown().await;
            end
        }
    };
    let to_client = {
        let conn = conn.clone();
        async move {
            let mut buf = vec![0u8; 64 * 1024];
            let mut end = loop {
                match ur.read(&mut buf).await {
                    Ok(0) => break End::Closed,
                    Err(e) => break End::of_io(&e),
                    Ok(n) => {
                        if let Err(e) = conn.write(Bytes::copy_from_slice(&buf[..n])).await {
                            break End::of(&e);
                        }
                    }
                }
            };
            let mut unsent = 0;
            match conn.shutdown_write(Some(Duration::from_secs(60))).await {
                Ok(()) => {}
                Err(Error::Timeout { unsent: n }) => unsent = n,
                Err(e) => end = end.max_with(End::of(&e)),
            }
            (end, unsent)
        }
    };
    let (from, (to, mut unsent)) = tokio::join!(from_client, to_client);
    if let Err(Error::Timeout { unsent: n }) = conn.close(Some(Duration::from_secs(5))).await {
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
            Self::Reset => 1,
            Self::Failed => 2,
        };
        if rank(other) > rank(self) {
            other
        } else {
            self
        }
    }
}
