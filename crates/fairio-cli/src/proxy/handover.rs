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
use super::upgrade::{self, Handover, Hold};
use super::{FLUSH_AT_SHUTDOWN, FromWeight, Proxy};

/// How long the new process has to say it is ready.
const READY_WITHIN: Duration = Duration::from_secs(30);
/// How often the old part is revised.
const TICK: Duration = Duration::from_millis(100);

/// The old process's part now: in proportion to its clients, against one new client (none
/// has come yet), or everything with `--fleet` (the fleet shares).
fn part_now<P: Policy>(proxy: &Proxy<P>, theirs: usize, before: Hold) -> Hold
where
    P::Params: FromWeight,
{
    if proxy.fleet {
        return (None, None);
    }
    let s = proxy.settings();
    let mine = proxy.sched.connection_count();
    (
        upgrade::part(s.max_to_clients, mine, theirs, before.0),
        upgrade::part(s.max_from_clients, mine, theirs, before.1),
    )
}

/// Keeps `held` of the limits in this process (its whole limit is then `held`).
fn keep<P: Policy>(proxy: &Proxy<P>, held: Hold) {
    if !proxy.fleet {
        proxy.sched.set_max_upload_speed(held.0);
        proxy.sched.set_max_download_speed(held.1);
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
    sockets: &[&socket2::Socket],
) -> Result<(Handover, Hold), String>
where
    P::Params: FromWeight,
{
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    let held = part_now(proxy, 1, (None, None));
    // Lowered before the new process starts with the rest: the sum never exceeds the limit.
    keep(proxy, held);
    tracing::info!(
        binary = %exe.display(),
        "upgrade: starting a new process with {} listening sockets",
        sockets.len()
    );
    match upgrade::start(exe, &args, sockets, held, READY_WITHIN).await {
        Ok(h) => Ok((h, held)),
        Err(e) => {
            proxy.set_limits(&proxy.settings());
            Err(e)
        }
    }
}

/// Serves this process's clients until they have all left, the drain timeout passes, or a
/// stop signal comes; then closes what is left (flushing for a few seconds) and reports it.
/// The part of the limits kept shrinks with the clients, and the new process is told.
pub(super) async fn drain<P: Policy>(
    proxy: &Arc<Proxy<P>>,
    (h, mut held): (Handover, Hold),
    notifier: &Notifier,
    stop: &mut Pin<&mut impl Future<Output = ()>>,
) -> ShutdownReport
where
    P::Params: FromWeight,
{
    let pid = h.pid().unwrap_or(0);
    let timeout = proxy.settings().drain_timeout;
    let clients = proxy.sched.connection_count();
    // systemd follows the new process from now on (the unit has NotifyAccess=all).
    notifier.send(&format!(
        "MAINPID={pid}\nSTATUS=handed over to process {pid}; draining {clients} clients"
    ));
    tracing::info!(
        "handed over to process {pid}: no longer accepting; serving {clients} clients until \
         they leave, for up to {} s",
        timeout.as_secs()
    );
    let started = Instant::now();
    let deadline = started + timeout;
    let mut theirs = 0;
    let mut tick = tokio::time::interval(TICK);
    let mut stopped = false;
    while proxy.sched.connection_count() > 0 && Instant::now() < deadline {
        tokio::select! {
            _ = tick.tick() => {}
            () = stop.as_mut() => {
                stopped = true;
                break;
            }
        }
        if let Some(n) = h.their_clients() {
            theirs = n;
        }
        let now = part_now(proxy, theirs, held);
        if now != held {
            keep(proxy, now);
            h.tell(now);
            held = now;
        }
    }
    let left = proxy.sched.connection_count();
    let report = proxy.sched.shutdown(Some(FLUSH_AT_SHUTDOWN)).await;
    tracing::info!(
        "handover done in {:.1} s: {} of {clients} clients left by themselves, {left} closed \
         ({}), {} bytes unsent",
        started.elapsed().as_secs_f64(),
        clients.saturating_sub(left),
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
    h.tell((None, None));
    report
}
