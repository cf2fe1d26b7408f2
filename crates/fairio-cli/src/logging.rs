//! Log output: text for people (colour only on a terminal), or JSON lines for log shippers.

use std::io::IsTerminal;

use clap::ValueEnum;

/// How log lines are written to stderr.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum LogFormat {
    /// One readable line per event.
    Text,
    /// One JSON object per event.
    Json,
}

/// Installs the subscriber. `RUST_LOG` overrides the default filter: `info` for the command's
/// own lines and warnings from the libraries, or errors only when `quiet`. The binary is named
/// `fairio`, like the library, so its targets are `fairio::proxy::…` and `fairio::demo::…`:
/// the filter names those modules, which the library does not have.
pub(crate) fn init(format: LogFormat, quiet: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(if quiet {
            "error"
        } else {
            "warn,fairio::proxy=info,fairio::demo=info,fairio::metrics=info"
        })
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).init(),
        LogFormat::Json => builder.json().with_ansi(false).init(),
    }
}
