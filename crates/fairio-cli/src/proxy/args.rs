//! The flags of `fairio proxy`, and the pairs of them that are refused.

use std::net::SocketAddr;

use clap::Args;

use crate::rate::{human, parse_rate};
use crate::{PolicyName, Refusal};

/// Flags of `fairio proxy`.
#[derive(Debug, Args)]
pub(crate) struct ProxyArgs {
    /// Address to accept clients on, e.g. 127.0.0.1:8080.
    #[arg(long, value_parser = parse_addr)]
    pub(super) listen: SocketAddr,
    /// The service to forward to, as IP:port, e.g. 127.0.0.1:80.
    #[arg(long, value_parser = parse_addr)]
    pub(super) upstream: SocketAddr,
    /// Limit on bytes sent to the clients (the upstream's replies, i.e. the clients' download),
    /// shared fairly among them, e.g. 8MiB.
    #[arg(long, value_parser = parse_rate, allow_hyphen_values = true)]
    pub(super) max_to_clients: Option<u64>,
    /// Limit on bytes received from the clients (their uploads to the upstream), shared fairly
    /// among them, e.g. 1MiB.
    #[arg(long, value_parser = parse_rate, allow_hyphen_values = true)]
    pub(super) max_from_clients: Option<u64>,
    /// Sharing policy. `weighted` is refused until clients can be given weights: with every
    /// weight 1 it would act as `equal`.
    #[arg(long, value_enum, default_value_t = PolicyName::Equal)]
    pub(super) policy: PolicyName,
    /// What the limits are shared fairly between: client hosts (a host's connections share one
    /// part, however many it opens) or single connections.
    #[arg(long, value_enum, default_value_t = FairBy::Host)]
    pub(super) fair_by: FairBy,
    /// Each client's own cap in both directions, beneath the global limits, e.g. 256KiB.
    #[arg(long, value_parser = parse_rate, allow_hyphen_values = true)]
    pub(super) per_client_cap: Option<u64>,
    /// Most bytes read from a client at a time.
    #[arg(long, default_value_t = 64 * 1024, allow_negative_numbers = true,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub(super) read_buffer_size: u32,
    /// Print per-client and global figures every this many seconds.
    #[arg(long, allow_negative_numbers = true, value_parser = positive_secs)]
    pub(super) stats_interval: Option<f64>,
    /// Serve the admin API at http://ADDR: GET /metrics (Prometheus text), GET /clients
    /// (JSON), PUT /limits (JSON), e.g. 127.0.0.1:9100. Loopback only, unless --admin-token
    /// is set.
    #[arg(long, alias = "metrics", value_parser = parse_addr)]
    pub(super) admin: Option<SocketAddr>,
    /// A token the admin API asks every request for (`Authorization: Bearer TOKEN`); needed to
    /// serve it on an address other than loopback.
    #[arg(long, value_name = "TOKEN")]
    pub(super) admin_token: Option<String>,
    /// Seconds to wait for the upstream to accept a connection.
    #[arg(long, default_value_t = 5.0, allow_negative_numbers = true, value_parser = timeout_secs)]
    pub(super) connect_timeout: f64,
    /// Seconds a half-closed pair (one side ended, the other still open) may move no byte
    /// before both are closed, whatever the other side does (HAProxy's client-fin and
    /// server-fin).
    #[arg(long, default_value_t = 30.0, allow_negative_numbers = true, value_parser = timeout_secs)]
    pub(super) half_close_timeout: f64,
    /// Seconds a client may move no byte in either direction before it is closed.
    #[arg(long, default_value_t = 600.0, allow_negative_numbers = true, value_parser = timeout_secs)]
    pub(super) idle_timeout: f64,
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
    /// Refuses flags that contradict each other or would do nothing.
    pub(crate) fn check(&self) -> Result<(), Refusal> {
        if self.policy == PolicyName::Weighted {
            return Err(Refusal::conflict(
                "--policy weighted has no weights to use: the proxy gives every client weight 1, \
                 which is what --policy equal does; use --policy equal",
            ));
        }
        if self.listen == self.upstream {
            return Err(Refusal::conflict(format!(
                "--listen and --upstream are both {}: the proxy would forward to itself",
                self.listen
            )));
        }
        if self.admin == Some(self.listen) {
            return Err(Refusal::conflict(format!(
                "--admin and --listen are both {}: one address cannot serve both",
                self.listen
            )));
        }
        if let Some(addr) = self.admin {
            if crate::admin::needs_token(addr) && self.admin_token.is_none() {
                return Err(Refusal::conflict(format!(
                    "--admin {addr} is not a loopback address: the admin API has no other \
                     protection, so set --admin-token too"
                )));
            }
        }
        if self.admin_token.as_deref().is_some_and(|t| t.len() < 16) {
            return Err(Refusal::value(
                "--admin-token must be at least 16 characters",
            ));
        }
        if self.fleet.is_some() && self.max_to_clients.is_none() && self.max_from_clients.is_none()
        {
            return Err(Refusal::conflict(
                "--fleet shares --max-to-clients and --max-from-clients with other proxies; set at \
                 least one of them",
            ));
        }
        if self.fleet.is_none() {
            let given = self.fleet_budget.is_some()
                || self.fleet_weight.is_some()
                || self.fleet_expected.is_some();
            if given {
                return Err(Refusal::conflict(
                    "--fleet-budget, --fleet-weight and --fleet-expected need --fleet REDIS_URL",
                ));
            }
        }
        if let Some(cap) = self.per_client_cap {
            // A cap applies only in a direction with a global limit, and does something only
            // below that limit.
            let limits: Vec<u64> = [self.max_to_clients, self.max_from_clients]
                .into_iter()
                .flatten()
                .collect();
            if limits.is_empty() {
                return Err(Refusal::conflict(
                    "--per-client-cap applies beneath --max-to-clients or --max-from-clients; \
                     set one of them",
                ));
            }
            if limits.iter().all(|&l| cap >= l) {
                return Err(Refusal::conflict(format!(
                    "--per-client-cap {}/s is not below --max-to-clients or --max-from-clients, \
                     so it would never limit a client",
                    human(cap as f64),
                )));
            }
        }
        Ok(())
    }

    /// The fleet to join, if any.
    pub(super) fn fleet(&self) -> Option<fairio_fleet::Fleet> {
        let url = self.fleet.as_ref()?;
        let mut fleet = fairio_fleet::Fleet::new(
            url.clone(),
            self.fleet_budget.as_deref().unwrap_or("fairio-proxy"),
        )
        .upload(self.max_to_clients)
        .download(self.max_from_clients)
        .weight(self.fleet_weight.unwrap_or(1));
        if let Some(n) = self.fleet_expected {
            fleet = fleet.expected_members(n);
        }
        Some(fleet)
    }

    /// The limits as one phrase for the ready line.
    pub(super) fn limits(&self) -> String {
        let rate =
            |r: Option<u64>| r.map_or("unlimited".to_owned(), |r| format!("{}/s", human(r as f64)));
        let fleet = self.fleet.as_ref().map_or(String::new(), |url| {
            format!(
                ", shared with the fleet '{}' at {url} (weight {})",
                self.fleet_budget.as_deref().unwrap_or("fairio-proxy"),
                self.fleet_weight.unwrap_or(1)
            )
        });
        format!(
            "to clients {}, from clients {}, per client {}, policy {}, fair by {}{fleet}",
            rate(self.max_to_clients),
            rate(self.max_from_clients),
            rate(self.per_client_cap),
            self.policy.as_str(),
            match self.fair_by {
                FairBy::Host => "host",
                FairBy::Connection => "connection",
            }
        )
    }
}
