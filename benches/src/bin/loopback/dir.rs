//! Which way the measured bytes move.

use clap::ValueEnum;

/// A direction, as seen from the measured side; also the value of `--dir`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum Dir {
    /// The peer floods; the measured clients read.
    Down,
    /// The measured clients write messages (64 KiB unless `--msg`); the peer drains.
    Up,
}

impl Dir {
    /// Its name in the JSON rows.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Up => "upload",
            Self::Down => "download",
        }
    }
}
