//! A minimal TCP relay, for issue 28's first question: does `splice(2)` pay on this machine's
//! paths? `relay --mode copy` moves each direction's bytes through a 64 KiB user-space buffer
//! (two copies per byte, as `fairio proxy`, HAProxy and nginx do); `relay --mode splice` moves
//! them socket -> pipe -> socket inside the kernel. Nothing else: no limit, no accounting, so
//! what differs between the two is the copy alone. `benches/proxy/splice.py` runs iperf3
//! through both, on loopback and across a veth pair.
//!
//! ```text
//! relay --mode splice --listen 127.0.0.1:7000 --upstream 127.0.0.1:5201 --threads 2
//! ```

#[cfg(target_os = "linux")]
mod splice;

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use clap::{Parser, ValueEnum};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// How bytes cross the relay.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Mode {
    /// Read into a 64 KiB buffer, write from it.
    Copy,
    /// `splice(2)` from the socket into a pipe, and from the pipe into the other socket.
    Splice,
}

/// A minimal TCP relay: copy or splice.
#[derive(Debug, Parser)]
struct Args {
    /// copy or splice.
    #[arg(long, value_enum)]
    mode: Mode,
    /// Where clients connect.
    #[arg(long)]
    listen: SocketAddr,
    /// Where each client's bytes go.
    #[arg(long)]
    upstream: SocketAddr,
    /// Runtime worker threads.
    #[arg(long, default_value_t = 2)]
    threads: usize,
}

/// The user-space buffer of the copy mode, per direction.
const BUF: usize = 64 * 1024;

fn main() -> io::Result<()> {
    let args = Args::parse();
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads.max(1))
        .enable_all()
        .build()?
        .block_on(serve(args))
}

async fn serve(args: Args) -> io::Result<()> {
    let listener = TcpListener::bind(args.listen).await?;
    eprintln!("relay ({:?}) on {}", args.mode, listener.local_addr()?);
    loop {
        let (client, _) = listener.accept().await?;
        let (mode, upstream) = (args.mode, args.upstream);
        tokio::spawn(async move {
            if let Err(e) = relay(client, upstream, mode).await {
                eprintln!("relay: {e}");
            }
        });
    }
}

/// Relays one client both ways until both directions have ended.
async fn relay(client: TcpStream, upstream: SocketAddr, mode: Mode) -> io::Result<()> {
    let server = TcpStream::connect(upstream).await?;
    client.set_nodelay(true)?;
    server.set_nodelay(true)?;
    match mode {
        Mode::Copy => {
            let (cr, cw) = client.into_split();
            let (sr, sw) = server.into_split();
            let up = tokio::spawn(copy(cr, sw));
            copy(sr, cw).await?;
            up.await.map_err(io::Error::other)?
        }
        Mode::Splice => {
            #[cfg(target_os = "linux")]
            {
                let (client, server) = (Arc::new(client), Arc::new(server));
                let up = tokio::spawn(splice::pump(Arc::clone(&client), Arc::clone(&server)));
                splice::pump(server, client).await?;
                up.await.map_err(io::Error::other)?
            }
            #[cfg(not(target_os = "linux"))]
            {
                let _ = (client, server, Arc::new(()));
                Err(io::Error::other("splice(2) is Linux's"))
            }
        }
    }
}

/// One direction through a user-space buffer; FIN is passed on.
async fn copy(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
) -> io::Result<()> {
    let mut buf = vec![0u8; BUF];
    loop {
        let n = from.read(&mut buf).await?;
        if n == 0 {
            return to.shutdown().await;
        }
        to.write_all(&buf[..n]).await?;
    }
}
