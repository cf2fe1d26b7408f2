//! The flags of `fairio demo`, and the pairs of them that are refused.

use clap::Args;

use crate::rate::parse_rate;
use crate::{PolicyName, Refusal, fdlimit};

/// Flags of `fairio demo`.
#[derive(Debug, Args)]
pub(crate) struct DemoArgs {
    /// Number of client connections.
    #[arg(long, default_value_t = 8, allow_negative_numbers = true,
          value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub(super) conns: u32,
    /// Total download limit shared by the clients, e.g. 8MiB, 10MB, 80Mbit.
    #[arg(long, value_parser = parse_rate, default_value = "8MiB", allow_hyphen_values = true)]
    pub(super) max_download: u64,
    /// Total upload limit; when set, the clients also send as fast as they can.
    #[arg(long, value_parser = parse_rate, allow_hyphen_values = true)]
    pub(super) max_upload: Option<u64>,
    /// Sharing policy.
    #[arg(long, value_enum, default_value_t = PolicyName::Equal)]
    pub(super) policy: PolicyName,
    /// Weights for `--policy weighted`, cycled over the connections, e.g. 1,2,3,4.
    #[arg(long, value_delimiter = ',', allow_negative_numbers = true,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub(super) weights: Vec<u32>,
    /// How long to run, in seconds.
    #[arg(long, default_value_t = 10.0, allow_negative_numbers = true, value_parser = positive_secs)]
    pub(super) secs: f64,
    /// Add one more connection after this many seconds, to show how fast it gets its share.
    #[arg(long, allow_negative_numbers = true, value_parser = positive_secs)]
    pub(super) join_at: Option<f64>,
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

impl DemoArgs {
    /// Refuses flags that contradict each other or would do nothing, and makes sure the run's
    /// descriptors fit under the open-file limit (raising the soft limit when it can).
    pub(crate) fn check(&self) -> Result<(), Refusal> {
        if !self.weights.is_empty() && !self.policy.takes_weights() {
            return Err(Refusal::conflict(format!(
                "--weights needs --policy weighted; with --policy {} every connection gets the \
                 same share and the weights would be ignored",
                self.policy.as_str()
            )));
        }
        if let Some(at) = self.join_at {
            if at >= self.secs {
                return Err(Refusal::conflict(format!(
                    "--join-at {at} is not before the end of the run (--secs {}): the extra \
                     connection would never join",
                    self.secs
                )));
            }
        }
        let used = self.connections();
        if self.weights.len() > used as usize {
            return Err(Refusal::conflict(format!(
                "--weights lists {} weights but the run has only {used} connections (--conns {}{}), \
                 so some weights would be ignored",
                self.weights.len(),
                self.conns,
                if self.join_at.is_some() {
                    " and --join-at"
                } else {
                    ""
                }
            )));
        }
        // Each connection is two sockets here (client and embedded server), plus a margin for
        // the runtime, the listener and the standard streams.
        let need = 2 * u64::from(used) + 64;
        fdlimit::ensure(need).map_err(|e| Refusal::value(format!("--conns {}: {e}", self.conns)))
    }

    /// Connections over the whole run, the late joiner included.
    pub(super) fn connections(&self) -> u32 {
        self.conns + u32::from(self.join_at.is_some())
    }

    /// The weight of the `i`th connection.
    pub(super) fn weight_of(&self, i: u32) -> u32 {
        if self.weights.is_empty() {
            1
        } else {
            self.weights[i as usize % self.weights.len()]
        }
    }
}
