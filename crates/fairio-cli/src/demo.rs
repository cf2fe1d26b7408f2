//! `fairio demo`: N loopback clients flooded through one scheduler, shown live.

use std::collections::VecDeque;
use std::io::{IsTerminal, Write};
use std::time::Duration;

use clap::Args;
use fairio::{Config, Connection, EqualShare, Policy, Scheduler, Weight, Weighted, WindowQuota};
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

use crate::PolicyName;
use crate::rate::{human, parse_rate};

/// Flags of `fairio demo`.
#[derive(Debug, Args)]
pub(crate) struct DemoArgs {
    /// Number of client connections.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    conns: u32,
    /// Total download limit shared by the clients, e.g. 8MiB, 10MB, 80Mbit.
    #[arg(long, value_parser = parse_rate, default_value = "8MiB", allow_hyphen_values = true)]
    max_download: u64,
    /// Total upload limit; when set, the clients also send as fast as they can.
    #[arg(long, value_parser = parse_rate, allow_hyphen_values = true)]
    max_upload: Option<u64>,
    /// Sharing policy.
    #[arg(long, value_enum, default_value_t = PolicyName::Equal)]
    policy: PolicyName,
    /// Weights for `--policy weighted`, cycled over the connections, e.g. 1,2,3,4.
    #[arg(long, value_delimiter = ',', value_parser = clap::value_parser!(u32).range(1..))]
    weights: Vec<u32>,
    /// How long to run, in seconds.
    #[arg(long, default_value_t = 10.0, value_parser = positive_secs)]
    secs: f64,
    /// Add one more connection after this many seconds, to show how fast it gets its share.
    #[arg(long, value_parser = positive_secs)]
    join_at: Option<f64>,
    /// Print only a JSON summary at the end.
    #[arg(long)]
    pub(crate) json: bool,
}

fn positive_secs(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v > 0.0 && v.is_finite() => Ok(v),
        _ => Err(format!(
            "'{s}' is not a positive number of seconds, e.g. 2 or 0.5"
        )),
    }
}

/// One client's figures in the summary.
#[derive(Debug, Serialize)]
struct ConnSummary {
    id: u64,
    weight: u32,
    joined_at_secs: f64,
    bytes: u64,
    rate: f64,
}

/// The `--json` summary.
#[derive(Debug, Serialize)]
struct Summary {
    policy: &'static str,
    secs: f64,
    limit: u64,
    connections: Vec<ConnSummary>,
    aggregate_bytes: u64,
    aggregate_rate: f64,
    /// (aggregate rate − limit) / limit.
    error_vs_limit: f64,
    /// Jain's index of the weight-normalised rates (1 is perfectly fair).
    jain: f64,
}

struct Client<P: Policy> {
    conn: Connection<P>,
    weight: u32,
    joined: Instant,
    last_bytes: u64,
    /// Recent (time, total bytes) samples: rates are shown over the last second, so that the
    /// display does not jump by one read chunk per tick.
    history: VecDeque<(Instant, u64)>,
    rate: f64,
}

pub(crate) async fn run(args: DemoArgs) -> Result<(), String> {
    match args.policy {
        PolicyName::Equal => demo(args, EqualShare, |_| ()).await,
        PolicyName::Weighted => demo(args, Weighted, |w| Weight::new(w).unwrap_or_default()).await,
        PolicyName::Window => demo(args, WindowQuota, |_| ()).await,
    }
}

/// The embedded server: floods each client and discards what it sends.
async fn server() -> Result<(TcpListener, std::net::SocketAddr), String> {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| format!("cannot listen on 127.0.0.1: {e}"))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    Ok((listener, addr))
}

fn serve(listener: TcpListener) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        while let Ok((sock, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = sock.into_split();
                tokio::spawn(async move {
                    let mut sink = vec![0u8; 64 * 1024];
                    while matches!(r.read(&mut sink).await, Ok(n) if n > 0) {}
                });
                let chunk = vec![0x5au8; 64 * 1024];
                while w.write_all(&chunk).await.is_ok() {}
            });
        }
    })
}

async fn demo<P: Policy>(
    args: DemoArgs,
    policy: P,
    params: impl Fn(u32) -> P::Params,
) -> Result<(), String> {
    let (listener, addr) = server().await?;
    let server_task = serve(listener);
    let config = Config::new(16 * 1024)
        .max_download_speed(Some(args.max_download))
        .max_upload_speed(args.max_upload)
        .read_queue_size(Some(256 * 1024))
        .write_queue_size(Some(256 * 1024));
    let sched = Scheduler::with_policy(config, policy).map_err(|e| e.to_string())?;
    let weight_of = |i: u32| {
        if args.policy == PolicyName::Weighted && !args.weights.is_empty() {
            args.weights[i as usize % args.weights.len()]
        } else {
            1
        }
    };
    let start = Instant::now();
    let mut clients = Vec::new();
    for i in 0..args.conns {
        clients.push(
            connect(
                &sched,
                addr,
                weight_of(i),
                &params,
                args.max_upload.is_some(),
            )
            .await?,
        );
    }
    let tty = std::io::stdout().is_terminal() && !args.json;
    let end = start + Duration::from_secs_f64(args.secs);
    let mut joined = args.join_at.is_none();
    let tick = Duration::from_millis(250);
    let mut next = start + tick;
    let mut last_line = start;
    while Instant::now() < end {
        tokio::time::sleep_until(next.min(end)).await;
        let now = Instant::now();
        let dt = (now - (next - tick)).as_secs_f64().max(1e-3);
        next += tick;
        if !joined
            && args
                .join_at
                .is_some_and(|j| now >= start + Duration::from_secs_f64(j))
        {
            let i = u32::try_from(clients.len()).unwrap_or(u32::MAX);
            clients.push(
                connect(
                    &sched,
                    addr,
                    weight_of(i),
                    &params,
                    args.max_upload.is_some(),
                )
                .await?,
            );
            joined = true;
        }
        for c in &mut clients {
            let b = c.conn.stat().total_recv;
            c.history.push_back((now, b));
            while c.history.len() > 5 {
                c.history.pop_front();
            }
            let (t0, b0) = c.history.front().copied().unwrap_or((now, b));
            let span = (now - t0).as_secs_f64();
            c.rate = if span > 0.0 {
                (b - b0) as f64 / span
            } else {
                (b - c.last_bytes) as f64 / dt
            };
            c.last_bytes = b;
        }
        if tty {
            draw(&clients, args.max_download, now - start);
        } else if !args.json && now - last_line >= Duration::from_secs(1) {
            last_line = now;
            let agg: f64 = clients.iter().map(|c| c.rate).sum();
            let rates: Vec<String> = clients
                .iter()
                .map(|c| format!("{}", (c.rate / 1024.0).round()))
                .collect();
            println!(
                "t={:>5.1}s aggregate {}/s of {}/s, jain {:.3}, per-conn KiB/s: {}",
                (now - start).as_secs_f64(),
                human(agg),
                human(args.max_download as f64),
                jain_of(&clients, |c| c.rate),
                rates.join(" ")
            );
        }
    }
    let elapsed = (Instant::now() - start).as_secs_f64();
    let summary = summarize(&clients, &args, start, elapsed);
    sched.shutdown(Some(Duration::from_millis(500))).await;
    server_task.abort();
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&summary).map_err(|e| e.to_string())?
        );
    } else {
        print_summary(&summary);
    }
    Ok(())
}

async fn connect<P: Policy>(
    sched: &Scheduler<P>,
    addr: std::net::SocketAddr,
    weight: u32,
    params: &impl Fn(u32) -> P::Params,
    upload: bool,
) -> Result<Client<P>, String> {
    let sock = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("cannot connect to the demo server: {e}"))?;
    let conn = sched
        .register_with(sock, params(weight))
        .map_err(|e| e.to_string())?;
    let reader = conn.clone();
    tokio::spawn(async move {
        let mut buf = vec![0u8; 64 * 1024];
        while reader.read(&mut buf).await.is_ok() {}
    });
    if upload {
        let writer = conn.clone();
        tokio::spawn(async move {
            let chunk = bytes::Bytes::from(vec![0xa5u8; 64 * 1024]);
            while writer.write(chunk.clone()).await.is_ok() {}
        });
    }
    let joined = Instant::now();
    Ok(Client {
        conn,
        weight,
        joined,
        last_bytes: 0,
        history: VecDeque::from([(joined, 0)]),
        rate: 0.0,
    })
}

fn jain_of<P: Policy>(clients: &[Client<P>], value: impl Fn(&Client<P>) -> f64) -> f64 {
    let xs: Vec<f64> = clients
        .iter()
        .map(|c| value(c) / f64::from(c.weight))
        .collect();
    fairio_stats::jain(&xs)
}

fn draw<P: Policy>(clients: &[Client<P>], limit: u64, elapsed: Duration) {
    let mut out = String::new();
    out.push_str("\x1b[H\x1b[2J");
    out.push_str(&format!(
        "fairio demo: {} connections, {:.1} s\n\n",
        clients.len(),
        elapsed.as_secs_f64()
    ));
    out.push_str(&format!(
        "{:>6}  {:>6}  {:>13}  {:<32}  {:>12}\n",
        "id", "weight", "rate", "share", "total"
    ));
    let max = clients.iter().map(|c| c.rate).fold(1.0, f64::max);
    let agg: f64 = clients.iter().map(|c| c.rate).sum();
    for c in clients {
        let width = ((c.rate / max) * 30.0).round() as usize;
        let share = if agg > 0.0 { c.rate / agg * 100.0 } else { 0.0 };
        out.push_str(&format!(
            "{:>6}  {:>6}  {:>11}/s  {:<30}{:>2}  {:>12}  {:>5.1}%\n",
            c.conn.id(),
            c.weight,
            human(c.rate),
            "#".repeat(width.min(30)),
            "",
            human(c.last_bytes as f64),
            share
        ));
    }
    out.push_str(&format!(
        "\naggregate {}/s of {}/s limit ({:+.1}%), Jain's index {:.4}\n",
        human(agg),
        human(limit as f64),
        (agg / limit as f64 - 1.0) * 100.0,
        jain_of(clients, |c| c.rate)
    ));
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(out.as_bytes());
    let _ = stdout.flush();
}

fn summarize<P: Policy>(
    clients: &[Client<P>],
    args: &DemoArgs,
    start: Instant,
    elapsed: f64,
) -> Summary {
    let end = Instant::now();
    let connections: Vec<ConnSummary> = clients
        .iter()
        .map(|c| {
            let bytes = c.conn.stat().total_recv;
            let lived = (end - c.joined).as_secs_f64().max(1e-3);
            ConnSummary {
                id: c.conn.id(),
                weight: c.weight,
                joined_at_secs: (c.joined - start).as_secs_f64(),
                bytes,
                rate: bytes as f64 / lived,
            }
        })
        .collect();
    let aggregate_bytes: u64 = connections.iter().map(|c| c.bytes).sum();
    let aggregate_rate = aggregate_bytes as f64 / elapsed;
    let xs: Vec<f64> = connections
        .iter()
        .map(|c| c.rate / f64::from(c.weight))
        .collect();
    Summary {
        policy: match args.policy {
            PolicyName::Equal => "equal",
            PolicyName::Weighted => "weighted",
            PolicyName::Window => "window",
        },
        secs: elapsed,
        limit: args.max_download,
        connections,
        aggregate_bytes,
        aggregate_rate,
        error_vs_limit: aggregate_rate / args.max_download as f64 - 1.0,
        jain: fairio_stats::jain(&xs),
    }
}

fn print_summary(s: &Summary) {
    println!("\nsummary ({} policy, {:.1} s):", s.policy, s.secs);
    for c in &s.connections {
        println!(
            "  conn {:>4} weight {:>2}: {:>12} at {}/s",
            c.id,
            c.weight,
            human(c.bytes as f64),
            human(c.rate)
        );
    }
    println!(
        "  aggregate {}/s of {}/s ({:+.2}%), Jain's index {:.4}",
        human(s.aggregate_rate),
        human(s.limit as f64),
        s.error_vs_limit * 100.0,
        s.jain
    );
}
