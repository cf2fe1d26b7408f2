//! The `fairio` command: `fairio demo` shows fair sharing live; `fairio proxy` shapes a TCP
//! service fairly among its clients.

#![deny(unsafe_code)]

mod admin;
mod demo;
mod fdlimit;
mod logging;
mod metrics;
mod proxy;
mod rate;

use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand, ValueEnum};

/// Fair bandwidth sharing over many connections.
#[derive(Debug, Parser)]
#[command(name = "fairio", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Log lines as human-readable text (coloured only on a terminal) or as JSON objects, one
    /// per line, for log shippers.
    #[arg(long, value_enum, default_value_t = logging::LogFormat::Text, global = true)]
    log_format: logging::LogFormat,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Watch connections share a limit: an embedded loopback server floods N clients through
    /// one scheduler, and a live table shows each client's rate.
    Demo(demo::DemoArgs),
    /// A TCP proxy that shares one upstream link fairly among its clients.
    #[command(after_long_help = PROXY_SIGNALS)]
    Proxy(Box<proxy::ProxyArgs>),
    /// Write the man pages (fairio.1, fairio-demo.1, fairio-proxy.1) into DIR.
    #[command(hide = true)]
    Man {
        /// Where to write them.
        dir: std::path::PathBuf,
    },
}

/// Signals and environment of `fairio proxy`, for `--help` and the man page.
const PROXY_SIGNALS: &str = "\
Signals:
  SIGHUP   reload the config file; clients stay connected
  SIGUSR2  upgrade: start the binary at this path again, hand
           it the listening sockets, serve the clients already
           connected until they leave or --drain-timeout, exit
  SIGTERM  stop: flush the clients for up to 5 s, then exit

Environment:
  NOTIFY_SOCKET  systemd readiness notifications
  LISTEN_FDS     systemd socket activation (with LISTEN_PID):
                 sockets matched to listeners by address
  RUST_LOG       log filter, e.g. fairio=debug";

/// The case count of the property tests that fuzz untrusted input: `default`, or
/// `PROPTEST_CASES` when set (`PROPTEST_CASES=100000 cargo test -p fairio-cli fuzz` runs a long
/// campaign).
#[cfg(test)]
fn fuzz_cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(default)
}

/// Writes the man pages of the command and its subcommands into `dir`.
fn man_pages(dir: &std::path::Path) -> std::io::Result<()> {
    let mut cmd = Cli::command();
    cmd.build();
    let mut pages = vec![("fairio".to_owned(), cmd.clone())];
    for sub in cmd
        .get_subcommands()
        .filter(|s| !s.is_hide_set() && s.get_name() != "help")
    {
        let name = format!("fairio-{}", sub.get_name());
        pages.push((
            name.clone(),
            sub.clone().display_name(name.clone()).bin_name(name),
        ));
    }
    std::fs::create_dir_all(dir)?;
    for (name, page) in pages {
        let mut out = Vec::new();
        clap_mangen::Man::new(page).render(&mut out)?;
        std::fs::write(dir.join(format!("{name}.1")), out)?;
    }
    Ok(())
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
    /// Classes that share like Linux HTB: weights, guarantees and ceilings at every level
    /// (class, client address, connection).
    Hierarchical,
}

impl PolicyName {
    fn as_str(self) -> &'static str {
        match self {
            Self::Equal => "equal",
            Self::Weighted => "weighted",
            Self::Window => "window",
            Self::Hierarchical => "hierarchical",
        }
    }

    /// Whether the policy shares by weight.
    fn takes_weights(self) -> bool {
        matches!(self, Self::Weighted | Self::Hierarchical)
    }
}

/// A flag refused before anything runs: clap prints it as a usage error and exits with code 2.
#[derive(Debug)]
struct Refusal {
    kind: clap::error::ErrorKind,
    pub(crate) message: String,
}

impl Refusal {
    /// Two flags that contradict each other, or one that would do nothing beside the other.
    fn conflict(message: impl Into<String>) -> Self {
        Self {
            kind: clap::error::ErrorKind::ArgumentConflict,
            message: message.into(),
        }
    }

    /// A value this machine cannot honour.
    fn value(message: impl Into<String>) -> Self {
        Self {
            kind: clap::error::ErrorKind::ValueValidation,
            message: message.into(),
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let (name, checked) = match &cli.command {
        Command::Demo(a) => ("demo", a.check()),
        Command::Proxy(a) => ("proxy", a.check()),
        Command::Man { dir } => {
            return match man_pages(dir) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!(
                        "fairio: cannot write the man pages to {}: {e}",
                        dir.display()
                    );
                    ExitCode::FAILURE
                }
            };
        }
    };
    if let Err(r) = checked {
        let mut cmd = Cli::command();
        cmd.build();
        // The subcommand's own usage line, not the top-level one.
        match cmd.find_subcommand_mut(name) {
            Some(sub) => sub.error(r.kind, r.message).exit(),
            None => cmd.error(r.kind, r.message).exit(),
        }
    }
    let quiet = matches!(&cli.command, Command::Demo(a) if a.json);
    logging::init(cli.log_format, quiet);
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
            Command::Proxy(args) => proxy::run(*args).await,
            Command::Man { .. } => Ok(()),
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
