//! The flags of `fairio proxy`, and the pairs of them that are refused.

use std::net::SocketAddr;

use clap::Args;

use super::settings::Settings;
use crate::rate::parse_rate;

/// A value of `--unsent-limit`: bytes, or `None` for the kernel's own buffers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Unsent(pub(super) Option<u32>);

/// A size in bytes: it takes the units of rates (16384, 16KiB, 1MiB).
fn parse_size(s: &str) -> Result<u64, String> {
    parse_rate(s).map_err(|e| e.replace("rate in bytes per second", "size in bytes"))
}

fn parse_unsent(s: &str) -> Result<Unsent, String> {
    if s.trim().eq_ignore_ascii_case("none") {
        return Ok(Unsent(None));
    }
    let n = parse_size(s)?;
    u32::try_from(n)
        .ok()
        .filter(|&n| n <= fairio::MAX_UNSENT_LIMIT)
        .map(|n| Unsent(Some(n)))
        .ok_or_else(|| format!("'{s}' is above 2 GiB; expected a size such as 16KiB, or none"))
}

/// The default of `--queue-size`.
pub(super) const DEFAULT_QUEUE_SIZE: usize = 256 * 1024;

/// The most pipes splices use at once, unless `--splice-pipes` says otherwise.
pub(super) const DEFAULT_SPLICE_PIPES: usize = 1024;

/// A value of `--queue-size`: 1 KiB to 1 GiB.
fn parse_queue_size(s: &str) -> Result<usize, String> {
    let n = parse_size(s)?;
    usize::try_from(n)
        .ok()
        .filter(|n| (1024..=1 << 30).contains(n))
        .ok_or_else(|| format!("'{s}' is not between 1KiB and 1GiB; expected a size such as 64KiB"))
}

use crate::{PolicyName, Refusal};

/// Flags of `fairio proxy`.
#[derive(Debug, Args)]
pub(crate) struct ProxyArgs {
    /// A TOML config file: listeners, limits, classes of clients, timeouts (see
    /// proxy.example.toml). Flags override it; SIGHUP reloads it.
    #[arg(long, value_name = "FILE")]
    pub(super) config: Option<String>,
    /// Check the config file and flags, print what would run, and exit.
    #[arg(long)]
    pub(super) check_config: bool,
    /// Address to accept clients on, e.g. 127.0.0.1:8080 (replaces the file's listeners).
    #[arg(long, value_parser = parse_addr)]
    pub(super) listen: Option<SocketAddr>,
    /// The service to forward to, as host:port, e.g. 127.0.0.1:80 or backend.local:80 (a name
    /// is resolved at each connection, its addresses tried in turn).
    #[arg(long, value_name = "HOST:PORT")]
    pub(super) upstream: Option<String>,
    /// Networks of the load balancers in front of --listen, comma-separated, e.g.
    /// 10.0.0.0/8,192.168.1.7: their connections start with a PROXY protocol header (v1 or
    /// v2) naming the client, and connections from anywhere else are refused.
    #[arg(long, value_name = "NETWORKS")]
    pub(super) accept_proxy_protocol_from: Option<String>,
    /// Send the upstream a PROXY protocol header (v1 or v2) naming the client before its bytes.
    #[arg(long, value_name = "v1|v2", value_parser = super::pp::Version::parse)]
    pub(super) send_proxy_protocol: Option<super::pp::Version>,
    /// Limit on bytes sent to the clients (the upstream's replies, i.e. the clients' download),
    /// shared fairly among them, e.g. 8MiB.
    #[arg(long, value_parser = parse_rate, allow_hyphen_values = true)]
    pub(super) max_to_clients: Option<u64>,
    /// Limit on bytes received from the clients (their uploads to the upstream), shared fairly
    /// among them, e.g. 1MiB.
    #[arg(long, value_parser = parse_rate, allow_hyphen_values = true)]
    pub(super) max_from_clients: Option<u64>,
    /// Sharing policy [default: equal]. `weighted` needs classes with weights (config file).
    #[arg(long, value_enum)]
    pub(super) policy: Option<PolicyName>,
    /// What the limits are shared fairly between: client hosts (a host's connections share one
    /// part, however many it opens) or single connections [default: host].
    #[arg(long, value_enum)]
    pub(super) fair_by: Option<FairBy>,
    /// Each client's own cap in both directions, beneath the global limits, e.g. 256KiB.
    #[arg(long, value_parser = parse_rate, allow_hyphen_values = true)]
    pub(super) per_client_cap: Option<u64>,
    /// Most bytes read from a client at a time (1 to 16777216).
    #[arg(long, default_value_t = 64 * 1024, allow_negative_numbers = true,
          value_parser = clap::value_parser!(u32).range(1..=16 << 20))]
    pub(super) read_buffer_size: u32,
    /// Bytes held for each client in each direction (its read and write queues) before the
    /// proxy stops reading from the side that sends, e.g. 64KiB [default: 256KiB]. A client
    /// that reads slower than its share keeps its queue full: measured, about 250 KiB of
    /// memory per such client at 256KiB, 170 KiB at 64KiB (a smaller queue saves memory; a
    /// larger one rides out longer stalls of the upstream).
    #[arg(long, value_name = "BYTES", value_parser = parse_queue_size)]
    pub(super) queue_size: Option<usize>,
    /// The most bytes each client's socket holds unsent (TCP_NOTSENT_LOWAT), so that a slow
    /// client's share goes to the others rather than into a kernel buffer, e.g. 16KiB; "none"
    /// leaves the kernel's buffers as they are [default: 16KiB].
    #[arg(long, value_name = "BYTES|none", value_parser = parse_unsent)]
    pub(super) unsent_limit: Option<Unsent>,
    /// Move bytes between clients and the upstream with splice(2), through at most this many
    /// pipes at once (two descriptors each); 0 copies every byte through user space instead.
    /// A direction holds a pipe only while bytes are in flight in it; beyond the bound, and
    /// for Unix clients, bytes are copied [default: 1024].
    #[arg(long, value_name = "N")]
    pub(super) splice_pipes: Option<usize>,
    /// Print per-client and global figures every this many seconds.
    #[arg(long, allow_negative_numbers = true, value_parser = positive_secs)]
    pub(super) stats_interval: Option<f64>,
    /// Serve the admin API at http://ADDR: GET /metrics (Prometheus text), GET /clients
    /// (JSON), PUT /limits (JSON), e.g. 127.0.0.1:9100. Loopback only, unless --admin-token
    /// is set.
    #[arg(long, alias = "metrics", value_parser = parse_addr)]
    pub(super) admin: Option<SocketAddr>,
    /// Series per client address in /metrics (off by default: their number grows with the
    /// clients).
    #[arg(long)]
    pub(super) metrics_per_host: bool,
    /// A token the admin API asks every request for (`Authorization: Bearer TOKEN`); needed to
    /// serve it on an address other than loopback.
    #[arg(long, value_name = "TOKEN")]
    pub(super) admin_token: Option<String>,
    /// Seconds to wait for the upstream to accept a connection [default: 5].
    #[arg(long, allow_negative_numbers = true, value_parser = timeout_secs)]
    pub(super) connect_timeout: Option<f64>,
    /// Seconds a half-closed pair (one side ended, the other still open) may move no byte
    /// before both are closed, whatever the other side does (HAProxy's client-fin and
    /// server-fin) [default: 30].
    #[arg(long, allow_negative_numbers = true, value_parser = timeout_secs)]
    pub(super) half_close_timeout: Option<f64>,
    /// Seconds the old process serves its clients after an upgrade (SIGUSR2) handed its
    /// listeners to a new one; those still connected then are closed [default: 300].
    #[arg(long, allow_negative_numbers = true, value_parser = timeout_secs)]
    pub(super) drain_timeout: Option<f64>,
    /// Seconds a client may move no byte in either direction before it is closed [default:
    /// 600].
    #[arg(long, allow_negative_numbers = true, value_parser = timeout_secs)]
    pub(super) idle_timeout: Option<f64>,
    /// Most clients at once; more are refused [default: as many as the descriptor limit allows,
    /// two descriptors per client].
    #[arg(long, allow_negative_numbers = true, value_parser = clap::value_parser!(u32).range(1..))]
    pub(super) max_connections: Option<u32>,
    /// Most clients at once from one address.
    #[arg(long, allow_negative_numbers = true, value_parser = clap::value_parser!(u32).range(1..))]
    pub(super) max_connections_per_host: Option<u32>,
    /// Share --max-to-clients and --max-from-clients with other proxies through this Redis,
    /// e.g. redis://127.0.0.1:6379/0: the limits become fleet-wide, and each proxy gets a
    /// max-min fair lease of them.
    #[arg(long, value_name = "REDIS_URL")]
    pub(super) fleet: Option<String>,
    /// The fleet budget's name: proxies that share one use the same name [default:
    /// fairio-proxy].
    #[arg(long, value_name = "NAME")]
    pub(super) fleet_budget: Option<String>,
    /// This proxy's weight in the fleet [default: 1].
    #[arg(long, allow_negative_numbers = true, value_parser = clap::value_parser!(u32).range(1..))]
    pub(super) fleet_weight: Option<u32>,
    /// How many proxies the fleet is expected to have: without Redis each falls back to the
    /// limit divided by this (default: the proxies it last saw).
    #[arg(long, allow_negative_numbers = true, value_parser = clap::value_parser!(u32).range(1..))]
    pub(super) fleet_expected: Option<u32>,
}

/// The unit of fairness.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum FairBy {
    /// One share per client address.
    Host,
    /// One share per connection.
    Connection,
}

fn parse_addr(s: &str) -> Result<SocketAddr, String> {
    s.parse().map_err(|_| {
        format!("'{s}' is not an IP:port address; for example 127.0.0.1:8080 or [::1]:8080")
    })
}

/// A timeout in seconds: positive, and at most a year (beyond, clocks overflow).
fn timeout_secs(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v > 0.0 && v <= 31_536_000.0 => Ok(v),
        _ => Err(format!(
            "'{s}' is not a timeout: a positive number of seconds up to a year (31536000), e.g. 30"
        )),
    }
}

fn positive_secs(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v > 0.0 && v.is_finite() => Ok(v),
        _ => Err(format!("'{s}' is not a positive number of seconds, e.g. 5")),
    }
}

impl ProxyArgs {
    /// Refuses a config file or flags that are wrong, contradict each other or would do
    /// nothing (see [`Settings::load`]).
    pub(crate) fn check(&self) -> Result<(), Refusal> {
        Settings::load(self).map(drop)
    }

    /// The fleet to join, if any, with the limits the settings give.
    pub(super) fn fleet(&self, s: &Settings) -> Option<fairio_fleet::Fleet> {
        let url = self.fleet.as_ref()?;
        let mut fleet = fairio_fleet::Fleet::new(
            url.clone(),
            self.fleet_budget.as_deref().unwrap_or("fairio-proxy"),
        )
        .upload(s.max_to_clients)
        .download(s.max_from_clients)
        .weight(self.fleet_weight.unwrap_or(1));
        if let Some(n) = self.fleet_expected {
            fleet = fleet.expected_members(n);
        }
        Some(fleet)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsent_limits_take_sizes_or_none() {
        assert_eq!(parse_unsent("16KiB"), Ok(Unsent(Some(16 * 1024))));
        assert_eq!(parse_unsent("none"), Ok(Unsent(None)));
        let zero = parse_unsent("0").unwrap_err();
        assert!(zero.contains("size in bytes"), "{zero}");
        let big = parse_unsent("8GiB").unwrap_err();
        assert!(big.contains("above 2 GiB"), "{big}");
        assert_eq!(parse_unsent("None"), Ok(Unsent(None)));
    }

    #[test]
    fn queue_sizes_take_sizes_between_1_kib_and_1_gib() {
        assert_eq!(parse_queue_size("64KiB"), Ok(64 * 1024));
        assert_eq!(parse_queue_size("1024"), Ok(1024));
        assert_eq!(parse_queue_size("1GiB"), Ok(1 << 30));
        for bad in ["1023", "2GiB", "0"] {
            let e = parse_queue_size(bad).unwrap_err();
            assert!(e.contains(bad), "{e}");
        }
        let e = parse_queue_size("lots").unwrap_err();
        assert!(e.contains("size in bytes"), "{e}");
    }
}
