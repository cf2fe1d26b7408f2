//! The `fairio` command: `fairio demo` shows fair sharing live; `fairio proxy` shapes a TCP
//! service fairly among its clients.

mod demo;
mod metrics;
mod proxy;
mod rate;

use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

/// Fair bandwidth sharing over many connections.
#[derive(Debug, Parser)]
#[command(name = "fairio", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Watch connections share a limit: an embedded loopback server floods N clients through
    /// one scheduler, and a live table shows each client's rate.
    Demo(demo::DemoArgs),
    /// A TCP proxy that shares one upstream link fairly among its clients.
    Proxy(proxy::ProxyArgs),
}

/// Which sharing policy to use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum PolicyName {
    /// Every busy connection gets an equal share.
    Equal,
    /// Shares in proportion to each connection's weight.
    Weighted,
    /// Tezos's 1 s window quota, for comparison.
    Window,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let quiet = matches!(&cli.command, Command::Demo(a) if a.json);
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(if quiet {
            "error"
        } else {
            "warn,fairio_cli=info"
        })
    });
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("fairio: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Demo(args) => demo::run(args).await,
            Command::Proxy(args) => proxy::run(args).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("fairio: {e}");
            ExitCode::FAILURE
        }
    }
}
