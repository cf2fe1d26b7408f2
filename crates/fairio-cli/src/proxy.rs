//! `fairio proxy`: one upstream link shared fairly among many TCP clients.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use clap::Args;
use fairio::{Config, EqualShare, Policy, Scheduler, Weighted, WindowQuota};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::PolicyName;
use crate::metrics;
use crate::rate::{human, parse_rate};

/// Flags of `fairio proxy`.
#[derive(Debug, Args)]
pub(crate) struct ProxyArgs {
    /// Address to accept clients on, e.g. 127.0.0.1:8080.
    #[arg(long, value_parser = parse_addr)]
    listen: SocketAddr,
    /// The service to forward to, as IP:port, e.g. 127.0.0.1:80.
    #[arg(long, value_parser = parse_addr)]
    upstream: SocketAddr,
    /// Limit on bytes sent to the clients (the upstream's replies, i.e. the clients' download),
    /// shared fairly among them, e.g. 8MiB.
    #[arg(long, value_parser = parse_rate, allow_hyphen_values = true)]
    max_to_clients: Option<u64>,
    /// Limit on bytes received from the clients (their uploads to the upstream), shared fairly
    /// among them, e.g. 1MiB.
    #[arg(long, value_parser = parse_rate, allow_hyphen_values = true)]
    max_from_clients: Option<u64>,
    /// Sharing policy.
    #[arg(long, value_enum, default_value_t = PolicyName::Equal)]
    policy: PolicyName,
    /// Each client's own cap in both directions, beneath the global limits, e.g. 256KiB.
    #[arg(long, value_parser = parse_rate, allow_hyphen_values = true)]
    per_client_cap: Option<u64>,
    /// Most bytes read from a client at a time.
    #[arg(long, default_value_t = 64 * 1024, value_parser = clap::value_parser!(u32).range(1..))]
    read_buffer_size: u32,
    /// Print per-client and global figures every this many seconds.
    #[arg(long, value_parser = positive_secs)]
    stats_interval: Option<f64>,
    /// Serve Prometheus metrics at http://ADDR/metrics, e.g. 127.0.0.1:9100.
    #[arg(long, value_parser = parse_addr)]
    metrics: Option<SocketAddr>,
}

fn parse_addr(s: &str) -> Result<SocketAddr, String> {
    s.parse().map_err(|_| {
        format!("'{s}' is not an IP:port address; for example 127.0.0.1:8080 or [::1]:8080")
    })
}

fn positive_secs(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v > 0.0 && v.is_finite() => Ok(v),
        _ => Err(format!("'{s}' is not a positive number of seconds, e.g. 5")),
    }
}

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
        .shutdown_timeout(Duration::from_secs(5));
    let sched = Scheduler::with_policy(config, policy).map_err(|e| e.to_string())?;
    let listener = TcpListener::bind(args.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", args.listen))?;
    tracing::info!(listen = %args.listen, upstream = %args.upstream, "proxy ready");
    if let Some(addr) = args.metrics {
        let l = TcpListener::bind(addr)
            .await
            .map_err(|e| format!("cannot serve metrics on {addr}: {e}"))?;
        tokio::spawn(metrics::serve(l, sched.clone()));
    }
    if let Some(secs) = args.stats_interval {
        tokio::spawn(print_stats(sched.clone(), Duration::from_secs_f64(secs)));
    }
    let accept = async {
        loop {
            match listener.accept().await {
                Ok((client, peer)) => {
                    tokio::spawn(serve_client(
                        sched.clone(),
                        client,
                        peer,
                        args.upstream,
                        args.per_client_cap,
                    ));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    };
    tokio::select! {
        () = accept => {}
        () = stop_signal() => {}
    }
    tracing::info!("stopping: flushing clients for up to 5 s");
    sched.shutdown(Some(Duration::from_secs(5))).await;
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

async fn serve_client<P: Policy>(
    sched: Scheduler<P>,
    client: TcpStream,
    peer: SocketAddr,
    upstream: SocketAddr,
    cap: Option<u64>,
) {
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
    let conn = match sched.register(client) {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(%peer, error = %e, "client refused");
            return;
        }
    };
    if cap.is_some() {
        if let Err(e) = conn.set_caps(cap, cap) {
            tracing::warn!(%peer, error = %e, "bad per-client cap");
        }
    }
    tracing::info!(%peer, conn = conn.id(), "client connected");
    let (mut ur, mut uw) = up.into_split();
    let from_client = {
        let conn = conn.clone();
        async move {
            let mut buf = vec![0u8; 64 * 1024];
            while let Ok(n) = conn.read(&mut buf).await {
                if uw.write_all(&buf[..n]).await.is_err() {
                    break;
                }
            }
            let _ = uw.shutdown().await;
        }
    };
    let to_client = {
        let conn = conn.clone();
        async move {
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                match ur.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if conn.write(Bytes::copy_from_slice(&buf[..n])).await.is_err() {
                            break;
                        }
                    }
                }
            }
            if let Err(e) = conn.shutdown_write(Some(Duration::from_secs(60))).await {
                tracing::warn!(conn = conn.id(), error = %e, "could not deliver everything to the client");
            }
        }
    };
    tokio::join!(from_client, to_client);
    let _ = conn.close(Some(Duration::from_secs(5))).await;
    tracing::info!(%peer, conn = conn.id(), stat = ?conn.stat(), "client done");
}

async fn print_stats<P: Policy>(sched: Scheduler<P>, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.tick().await;
    loop {
        tick.tick().await;
        sched.iter_connection(|c| {
            let s = c.stat();
            println!(
                "client {:>5}: to client {}/s ({} total), from client {}/s ({} total)",
                c.id(),
                human(s.current_outflow as f64),
                human(s.total_sent as f64),
                human(s.current_inflow as f64),
                human(s.total_recv as f64)
            );
        });
        let g = sched.global_stat();
        println!(
            "global: {} clients, to clients {}/s ({} total), from clients {}/s ({} total)",
            sched.connection_count(),
            human(g.current_outflow as f64),
            human(g.total_sent as f64),
            human(g.current_inflow as f64),
            human(g.total_recv as f64)
        );
    }
}
