//! `fairio demo`: N loopback clients flooded through one scheduler, shown live.

mod args;
mod summary;
mod view;
mod window;

use std::io::{IsTerminal, Write};
use std::time::Duration;

pub(crate) use args::DemoArgs;
use fairio::{
    Config, Connection, EqualShare, Hierarchical, Policy, Scheduler, Weight, Weighted, WindowQuota,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

use crate::PolicyName;
use crate::rate::Unit;
use summary::{ConnSummary, Summary};
use view::{Frame, Row};
use window::Window;

/// How often the table is redrawn.
const TICK: Duration = Duration::from_millis(250);
/// The span every rate on a frame is measured over.
const WINDOW: Duration = Duration::from_secs(1);

struct Client<P: Policy> {
    conn: Connection<P>,
    weight: u32,
    joined: Instant,
}

pub(crate) async fn run(args: DemoArgs) -> Result<(), String> {
    match args.policy {
        PolicyName::Equal => demo(args, EqualShare, |_| ()).await,
        PolicyName::Weighted => demo(args, Weighted, |w| Weight::new(w).unwrap_or_default()).await,
        PolicyName::Window => demo(args, WindowQuota, |_| ()).await,
        PolicyName::Hierarchical => {
            demo(args, Hierarchical, |w| Weight::new(w).unwrap_or_default()).await
        }
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
    let upload = args.max_upload.is_some();
    let start = Instant::now();
    let mut clients = Vec::new();
    for i in 0..args.conns {
        clients.push(connect(&sched, addr, args.weight_of(i), &params, upload).await?);
    }
    let tty = std::io::stdout().is_terminal() && !args.json;
    // Units fixed for the run: the rate column's from a fair share, the aggregate's from the
    // limit.
    let limit = args.max_download as f64;
    let rate_unit = Unit::for_value(limit / f64::from(args.connections()));
    let total_unit = Unit::for_value(limit);
    let end = start + Duration::from_secs_f64(args.secs);
    let join_at = args.join_at.map(|j| start + Duration::from_secs_f64(j));
    let mut window = Window::new(WINDOW);
    window.record(start, vec![0; clients.len()]);
    let mut next = start + TICK;
    let mut last_line = start;
    while Instant::now() < end {
        tokio::time::sleep_until(next.min(end)).await;
        next += TICK;
        let now = Instant::now();
        if join_at.is_some_and(|j| now >= j) && clients.len() == args.conns as usize {
            let i = args.conns;
            clients.push(connect(&sched, addr, args.weight_of(i), &params, upload).await?);
        }
        window.record(
            now,
            clients.iter().map(|c| c.conn.stat().total_recv).collect(),
        );
        let rows: Vec<Row> = clients
            .iter()
            .zip(window.rates())
            .map(|(c, rate)| Row {
                id: c.conn.id(),
                weight: c.weight,
                rate,
                total: c.conn.stat().total_recv,
            })
            .collect();
        let elapsed = (now - start).as_secs_f64();
        if tty {
            let (cols, height) = terminal_size::terminal_size_of(std::io::stdout())
                .map_or((80, 24), |(w, h)| (usize::from(w.0), usize::from(h.0)));
            let frame = Frame {
                elapsed_secs: elapsed,
                window_secs: elapsed.min(WINDOW.as_secs_f64()),
                rows: &rows,
                limit: args.max_download,
                rate_unit,
                total_unit,
                weighted: args.policy.takes_weights(),
            };
            let mut stdout = std::io::stdout().lock();
            let _ = stdout.write_all(view::render(&frame, cols, height).as_bytes());
            let _ = stdout.flush();
        } else if !args.json && now - last_line >= Duration::from_secs(1) {
            last_line = now;
            let aggregate: f64 = rows.iter().map(|r| r.rate).sum();
            let rates: Vec<String> = rows
                .iter()
                .map(|r| format!("{}", (r.rate / 1024.0).round()))
                .collect();
            println!(
                "t={elapsed:>5.1}s aggregate {}/s of {}/s, jain {:.3}, per-conn KiB/s: {}",
                total_unit.format(aggregate),
                total_unit.format(limit),
                view::jain(&rows),
                rates.join(" ")
            );
        }
    }
    let summary = summarize(&clients, &args, start);
    sched.shutdown(Some(Duration::from_millis(500))).await;
    server_task.abort();
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&summary).map_err(|e| e.to_string())?
        );
    } else {
        summary.print();
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
    Ok(Client {
        conn,
        weight,
        joined: Instant::now(),
    })
}

fn summarize<P: Policy>(clients: &[Client<P>], args: &DemoArgs, start: Instant) -> Summary {
    let end = Instant::now();
    let connections = clients
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
    Summary::new(
        args.policy.as_str(),
        (end - start).as_secs_f64(),
        args.max_download,
        connections,
    )
}
