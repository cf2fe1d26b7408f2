//! The command line, parsed once into [`Args`], which `main` hands to every scenario.

use std::num::NonZeroUsize;
use std::sync::OnceLock;

use clap::Parser;

use crate::contender::Contender;
use crate::dir::Dir;

/// fairio's macro-benchmarks over loopback TCP: one JSON object per run, on stdout.
#[derive(Debug, Parser)]
#[command(name = "loopback")]
pub(crate) struct Args {
    /// The scenario to run: overhead, accuracy, fairness, weighted, join, sparse, scale, slow,
    /// relimit, groups, stuck, or all of them.
    #[arg(value_name = "SCENARIO", default_value = "all")]
    pub(crate) scenario: String,
    /// Short runs, fewer sizes and one repetition (CI).
    #[arg(long)]
    pub(crate) quick: bool,
    /// Runs only this contender (repeatable: raw-tokio, fairio-equal, fairio-weighted,
    /// fairio-window, async-speed-limit, raw-paced) in the overhead, accuracy, fairness, slow and relimit
    /// scenarios, to profile one (ratios are then to raw tokio only if it ran too).
    #[arg(long = "only", value_name = "CONTENDER")]
    only: Vec<String>,
    /// Runs only this many connections (repeatable) in the overhead, accuracy, fairness and
    /// slow scenarios.
    #[arg(long = "n", value_name = "N")]
    ns: Vec<usize>,
    /// The size of the messages uploading clients send in the overhead scenario (64 KiB, plus
    /// a 1 KiB row, unless set).
    #[arg(long, value_name = "BYTES")]
    msg: Option<NonZeroUsize>,
    /// Only uploads or only downloads in the overhead, slow and relimit scenarios.
    #[arg(long, value_enum)]
    pub(crate) dir: Option<Dir>,
    /// fairio's bound on the bytes a socket holds unsent (`Config::unsent_limit`), in bytes,
    /// or `none` to leave the kernel's buffers as they are; fairio's default unless set.
    #[arg(long, value_name = "BYTES|none", value_parser = parse_unsent)]
    unsent_limit: Option<Unsent>,
    /// Runs only the overhead rows under a limit (what grants cost).
    #[arg(long)]
    pub(crate) limited: bool,
}

/// A value of `--unsent-limit`.
#[derive(Clone, Copy, Debug)]
struct Unsent(Option<u32>);

fn parse_unsent(s: &str) -> Result<Unsent, String> {
    if s == "none" {
        return Ok(Unsent(None));
    }
    match s.parse::<u32>() {
        Ok(0) => Err(format!("{s}: at least 1 byte, or none")),
        Ok(n) => Ok(Unsent(Some(n))),
        Err(e) => Err(format!("{s}: {e} (bytes, or none)")),
    }
}

/// `--unsent-limit`, set once by `main`.
static UNSENT: OnceLock<Option<u32>> = OnceLock::new();

/// fairio's settings as every scenario starts from them: `chunk`-byte reads, and the unsent
/// bound of `--unsent-limit`.
pub(crate) fn config(chunk: usize) -> fairio::Config {
    let base = fairio::Config::new(chunk);
    match UNSENT.get() {
        Some(&limit) => base.unsent_limit(limit),
        None => base,
    }
}

impl Args {
    /// Makes `--unsent-limit` apply to every [`config`] from now on.
    pub(crate) fn apply_globals(&self) {
        if let Some(Unsent(limit)) = self.unsent_limit {
            let _ = UNSENT.set(limit);
        }
    }

    /// Whether contender `c` runs: no `--only`, or one names it.
    pub(crate) fn selected(&self, c: Contender) -> bool {
        self.only.is_empty() || self.only.iter().any(|o| o == c.name())
    }

    /// The contenders of `set` that run, in order.
    pub(crate) fn chosen(
        &self,
        set: impl IntoIterator<Item = Contender>,
    ) -> impl Iterator<Item = Contender> {
        set.into_iter().filter(|c| self.selected(*c))
    }

    /// Whether runs over `n` connections happen: no `--n`, or one gives it.
    pub(crate) fn selected_n(&self, n: usize) -> bool {
        self.ns.is_empty() || self.ns.contains(&n)
    }

    /// `--msg`, if given.
    pub(crate) fn msg(&self) -> Option<usize> {
        self.msg.map(NonZeroUsize::get)
    }

    /// The sets of directions the lane scenarios (slow, relimit) run at once. Quick runs (CI)
    /// move uploads and downloads at once, over lanes of their own, to halve the time; full
    /// runs measure each direction alone. `--dir` keeps one.
    pub(crate) fn dir_sets(&self) -> Vec<Vec<Dir>> {
        match (self.dir, self.quick) {
            (Some(d), _) => vec![vec![d]],
            (None, true) => vec![vec![Dir::Up, Dir::Down]],
            (None, false) => vec![vec![Dir::Up], vec![Dir::Down]],
        }
    }
}
