//! `fairio proxy`: one upstream link shared fairly among many TCP clients.

mod args;
mod client;
mod guard;
mod stats;

use std::time::Duration;

use args::FairBy;
pub(crate) use args::ProxyArgs;
use fairio::{Config, EqualShare, Policy, Scheduler, Weighted, WindowQuota};
pub(crate) use guard::Admission;
use tokio::net::TcpListener;

use crate::PolicyName;
use crate::rate::human;

/// How long clients may flush at shutdown.
const FLUSH_AT_SHUTDOWN: Duration = Duration::from_secs(5);

pub(crate) async fn run(args: ProxyArgs) -> Result<(), String> {
    match args.policy {
        PolicyName::Equal => proxy(args, EqualShare).await,
        PolicyName::Weighted => proxy(args, Weighted).await,
        PolicyName::Window => proxy(args, WindowQuota).await,
    }
}

async fn proxy<P: Policy>(args: ProxyArgs, policy: P) -> Result<(), String> {
    let config = Config::new(args.read_buffer_size as usize)
        .max_upload_speed(args.max_to_clients)
        .max_download_speed(args.max_from_clients)
        .read_queue_size(Some(256 * 1024))
        .write_queue_size(Some(256 * 1024))
        .shutdown_timeout(FLUSH_AT_SHUTDOWN);
    let sched = Scheduler::with_policy(config, policy).map_err(|e| e.to_string())?;
    let listener = TcpListener::bind(args.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", args.listen))?;
    let member = match args.fleet() {
        Some(fleet) => Some(fleet.join(&sched).map_err(|e| e.to_string())?),
        None => None,
    };
    let hosts = (args.fair_by == FairBy::Host).then(|| fairio::GroupsBy::new(&sched));
    // Two descriptors per client (client and upstream), and a margin for the rest (the
    // listeners, the runtime, the standard streams): a quarter of the limit, at most 64.
    let fds = crate::fdlimit::raise_to_hard();
    let by_descriptors = fds.saturating_sub((fds / 4).min(64)) / 2;
    let max_total = args
        .max_connections
        .map_or(by_descriptors, |m| m as usize)
        .min(by_descriptors)
        .max(1);
    let admission = Admission::new(max_total, args.max_connections_per_host.map(|m| m as usize));
    let session = client::Session {
        upstream: args.upstream,
        cap: args.per_client_cap,
        connect_timeout: Duration::from_secs_f64(args.connect_timeout),
        half_close_timeout: Duration::from_secs_f64(args.half_close_timeout),
        idle_timeout: Duration::from_secs_f64(args.idle_timeout),
        admission: std::sync::Arc::clone(&admission),
    };
    if let Some(addr) = args.admin {
        let l = TcpListener::bind(addr)
            .await
            .map_err(|e| format!("cannot serve the admin API on {addr}: {e}"))?;
        let admin = crate::admin::Admin {
            sched: sched.clone(),
            admission: std::sync::Arc::clone(&admission),
            lease: member.as_ref().map(fairio_fleet::Member::subscribe),
            token: args.admin_token.clone(),
        };
        tokio::spawn(crate::admin::serve(l, std::sync::Arc::new(admin)));
    }
    if let Some(secs) = args.stats_interval {
        let every = Duration::from_secs_f64(secs);
        tokio::spawn(stats::print(sched.clone(), hosts.clone(), every));
    }
    tracing::info!(
        "listening on {}, upstream {}, {}, at most {} clients{}",
        args.listen,
        args.upstream,
        args.limits(),
        admission.max_total(),
        args.admin
            .map(|m| format!(", admin API at http://{m}/ (metrics, clients, limits)"))
            .unwrap_or_default()
    );
    let accept = async {
        let mut failures = guard::Throttled::new("accept failed");
        let mut refusals = guard::Throttled::new("client refused: connection limit reached");
        let mut pause = Duration::from_millis(10);
        loop {
            match listener.accept().await {
                Ok((client, peer)) => {
                    pause = Duration::from_millis(10);
                    let Some(ticket) = admission.admit(peer.ip()) else {
                        refusals.hit(&peer);
                        drop(client);
                        continue;
                    };
                    tokio::spawn(client::serve(
                        sched.clone(),
                        hosts.clone(),
                        client,
                        peer,
                        session.clone(),
                        ticket,
                    ));
                }
                Err(e) => {
                    // Out of descriptors, say: back off (up to 1 s), and log once a second.
                    admission
                        .accept_errors
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    failures.hit(&e);
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(1));
                }
            }
        }
    };
    tokio::select! {
        () = accept => {}
        () = stop_signal() => {}
    }
    tracing::info!(
        "stopping: {} clients connected, flushing them for up to {} s",
        sched.connection_count(),
        FLUSH_AT_SHUTDOWN.as_secs()
    );
    let report = sched.shutdown(Some(FLUSH_AT_SHUTDOWN)).await;
    if let Some(m) = member {
        // After the flush, which still needs its lease: its share goes to the other proxies
        // now rather than one TTL later.
        if let Err(e) = m.leave().await {
            tracing::info!(error = %e, "could not leave the fleet; its entry lapses by itself");
        }
    }
    let g = sched.global_stat();
    tracing::info!(
        "stopped in {:.2} s: {} clients closed, {} bytes unsent; {} to clients and {} from \
         clients in all",
        report.elapsed.as_secs_f64(),
        report.connections,
        report.unsent_bytes,
        human(g.total_sent as f64),
        human(g.total_recv as f64)
    );
    Ok(())
}

async fn stop_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
