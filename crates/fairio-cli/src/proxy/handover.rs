//! The old process's side of an upgrade (see `upgrade`): start the new process with the
//! listening sockets, then drain, keeping a shrinking part of the limits.

use std::ffi::OsString;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use fairio::{Policy, ShutdownReport};
use tokio::time::Instant;

use super::notify::Notifier;
use super::upgrade::{self, Handover, Hold, Report};
use super::{FLUSH_AT_SHUTDOWN, FromWeight, Proxy};

/// How long the new process has to say it is ready.
const READY_WITHIN: Duration = Duration::from_secs(30);
/// How often the old part is revised.
const TICK: Duration = Duration::from_millis(100);

/// The old process's part now, or none with `--fleet` (the fleet shares); and its clients.
/// Its part of each limit (the lower of its own and the new process's, once reported) is in
/// proportion to its clients, `more` added, against the new process's.
fn part_now<P: Policy>(proxy: &Proxy<P>, more: usize, theirs: Report, before: Hold) -> Hold
where
    P::Params: FromWeight,
{
    let mine = proxy.admission.in_hand();
    if proxy.fleet {
        return Hold {
            open: mine,
            ..Hold::default()
        };
    }
    let s = proxy.settings();
    let (up, down) = theirs
        .limits
        .unwrap_or((s.max_to_clients, s.max_from_clients));
    let n = theirs.clients;
    Hold {
        up: upgrade::part(
            upgrade::common(s.max_to_clients, up),
            mine + more,
            n,
            before.up,
        ),
        down: upgrade::part(
            upgrade::common(s.max_from_clients, down),
            mine + more,
            n,
            before.down,
        ),
        open: mine,
    }
}

/// Keeps `held` of the limits in this process (its whole limit is then `held`).
fn keep<P: Policy>(proxy: &Proxy<P>, held: Hold) {
    if !proxy.fleet {
        proxy.sched.set_max_upload_speed(held.up);
        proxy.sched.set_max_download_speed(held.down);
    }
}

/// Starts the new process (this binary at `exe`, with this process's arguments), handing it
/// `sockets`; this process's limits shrink to its part first. On failure they are restored.
///
/// # Errors
/// Why the new process is not serving.
pub(super) async fn start<P: Policy>(
    proxy: &Arc<Proxy<P>>,
    exe: &Path,
    sockets: &[(&socket2::Socket, bool)],
) -> Result<(Handover, Hold), String>
where
    P::Params: FromWeight,
{
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    // Against one client of the new process, and one more of this one: while the new process
    // starts, this one still accepts, and an idle proxy's clients of that time must not be
    // left a part of nothing (the part only shrinks from here).
    let first = Report {
        clients: 1,
        limits: None,
    };
    let held = part_now(proxy, 1, first, Hold::default());
    // Lowered before the new process starts with the rest: the sum never exceeds the limit.
    keep(proxy, held);
    tracing::info!(
        binary = %exe.display(),
        "upgrade: starting a new process with {} listening sockets",
        sockets.len()
    );
    match upgrade::start(exe, &args, sockets, held, READY_WITHIN).await {
        Ok(h) => {
            // The new process's own limits are known now: the part is taken of the lower.
            let now = part_now(proxy, 0, h.theirs, held);
            if now != held {
                keep(proxy, now);
                h.tell(now);
            }
            Ok((h, now))
        }
        Err(e) => {
            proxy.set_limits();
            Err(e)
        }
    }
}

/// Serves this process's clients until they have all left, the drain timeout passes, or a
/// stop signal comes; then closes what is left (flushing for a few seconds) and reports it.
/// The part of the limits kept shrinks with the clients, and the new process is told.
pub(super) async fn drain<P: Policy>(
    proxy: &Arc<Proxy<P>>,
    (mut h, mut held): (Handover, Hold),
    notifier: &Notifier,
    stop: &mut Pin<&mut impl Future<Output = ()>>,
) -> ShutdownReport
where
    P::Params: FromWeight,
{
    let pid = h.pid().unwrap_or(0);
    let timeout = proxy.settings().drain_timeout;
    let clients_then = proxy.admission.in_hand();
    // systemd follows the new process from now on (the unit has NotifyAccess=all).
    notifier.send(&format!(
        "MAINPID={pid}\nSTATUS=handed over to process {pid}; draining {clients_then} clients"
    ));
    tracing::info!(
        "handed over to process {pid}: no longer accepting; serving {clients_then} clients \
         until they leave, for up to {} s",
        timeout.as_secs()
    );
    let started = Instant::now();
    let deadline = started + timeout;
    let mut tick = tokio::time::interval(TICK);
    let mut stopped = false;
    // Clients still connecting to the upstream count: the scheduler has not met them yet.
    while proxy.admission.in_hand() > 0 && Instant::now() < deadline {
        tokio::select! {
            _ = tick.tick() => {}
            () = stop.as_mut() => {
                stopped = true;
                break;
            }
        }
        h.refresh();
        let now = part_now(proxy, 0, h.theirs, held);
        if now != held {
            keep(proxy, now);
            h.tell(now);
            held = now;
        }
    }
    let left = proxy.admission.in_hand();
    let report = proxy.sched.shutdown(Some(FLUSH_AT_SHUTDOWN)).await;
    tracing::info!(
        "handover done in {:.1} s: {} of {clients_then} clients left by themselves, {left} \
         closed ({}), {} bytes unsent",
        started.elapsed().as_secs_f64(),
        clients_then.saturating_sub(left),
        if stopped {
            "stop signal"
        } else if left > 0 {
            "drain timeout"
        } else {
            "none"
        },
        report.unsent_bytes
    );
    // Gone from here on: the new process takes the whole limits.
    h.tell(Hold::default());
    report
}
