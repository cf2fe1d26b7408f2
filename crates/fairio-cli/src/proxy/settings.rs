//! The proxy's settings: the config file (if any) with the flags over it, checked as a whole.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::args::{FairBy, ProxyArgs};
use super::class::Classes;
use super::file::{self, Source};
use super::pp;
use super::prefixes::{PrefixTable, parse_net};
use crate::rate::human;
use crate::{PolicyName, Refusal};

/// Where a listener accepts clients.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Listen {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

impl std::fmt::Display for Listen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Tcp(a) => write!(f, "{a}"),
            Self::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}

/// `IP:port` or `unix:/path`.
fn parse_listen(s: &str) -> Result<Listen, String> {
    if let Some(path) = s.strip_prefix("unix:") {
        if path.is_empty() {
            return Err(format!(
                "'{s}' names no socket path; e.g. unix:/run/fairio.sock"
            ));
        }
        return Ok(Listen::Unix(PathBuf::from(path)));
    }
    s.parse().map(Listen::Tcp).map_err(|_| {
        format!("'{s}' is not IP:port or unix:/path; for example 127.0.0.1:8080 or unix:/run/fairio.sock")
    })
}

/// `host:port`, a name or an address.
fn check_upstream(s: &str) -> Result<String, String> {
    let ok = s
        .rsplit_once(':')
        .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok_and(|p| p > 0));
    if ok {
        Ok(s.to_owned())
    } else {
        Err(format!(
            "'{s}' is not host:port; for example backend.local:80 or 127.0.0.1:80"
        ))
    }
}

/// Where a listener's clients go, and the PROXY protocol on either side.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Route {
    /// `host:port`.
    pub(crate) upstream: String,
    /// The networks whose connections start with a PROXY protocol header, which names the
    /// client; `None`: clients connect directly. On a listener that has them, a connection
    /// from elsewhere is refused.
    pub(crate) accept_proxy_from: Option<Trusted>,
    /// The header sent to the upstream before the client's bytes.
    pub(crate) send_proxy: Option<pp::Version>,
}

/// Networks trusted to send PROXY protocol headers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Trusted {
    table: PrefixTable<()>,
    count: usize,
}

impl Trusted {
    fn parse<'a>(nets: impl IntoIterator<Item = &'a str>) -> Result<Self, String> {
        let mut table = PrefixTable::default();
        let mut count = 0;
        for n in nets {
            table.insert(parse_net(n)?, ());
            count += 1;
        }
        Ok(Self { table, count })
    }

    /// Whether `ip` may send a header.
    pub(crate) fn trusts(&self, ip: std::net::IpAddr) -> bool {
        self.table.get(ip).is_some()
    }
}

impl std::fmt::Display for Route {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.upstream)?;
        if let Some(t) = &self.accept_proxy_from {
            write!(f, ", PROXY protocol from {} trusted networks", t.count)?;
        }
        if let Some(v) = self.send_proxy {
            write!(f, ", sends PROXY protocol {}", v.as_str())?;
        }
        Ok(())
    }
}

/// Everything the proxy runs with.
#[derive(Clone, Debug)]
pub(crate) struct Settings {
    /// Each listener, and the upstream its clients go to.
    pub(crate) listeners: Vec<(Listen, Route)>,
    pub(crate) max_to_clients: Option<u64>,
    pub(crate) max_from_clients: Option<u64>,
    pub(crate) per_client_cap: Option<u64>,
    pub(crate) policy: PolicyName,
    pub(crate) fair_by: FairBy,
    pub(crate) classes: Classes,
    pub(crate) connect_timeout: Duration,
    pub(crate) half_close_timeout: Duration,
    /// How long an old process serves its clients after handing over to a new one.
    pub(crate) drain_timeout: Duration,
    pub(crate) idle_timeout: Duration,
    pub(crate) max_connections: Option<usize>,
    pub(crate) max_connections_per_host: Option<usize>,
    pub(crate) admin: Option<SocketAddr>,
    pub(crate) admin_token: Option<String>,
    /// Series per client address in `/metrics`.
    pub(crate) metrics_per_host: bool,
}

/// A timeout from the file: positive, at most a year.
fn timeout(
    src: &Source<'_>,
    v: &Option<toml::Spanned<f64>>,
    key: &str,
) -> Result<Option<f64>, String> {
    match v {
        Some(t) if !(*t.get_ref() > 0.0 && *t.get_ref() <= 31_536_000.0) => {
            Err(src.at(t, key, "a positive number of seconds up to a year, e.g. 30"))
        }
        t => Ok(t.as_ref().map(|t| *t.get_ref())),
    }
}

/// A count from the file that must be at least 1.
fn at_least_one(
    src: &Source<'_>,
    v: &Option<toml::Spanned<u32>>,
    key: &str,
) -> Result<Option<u32>, String> {
    match v {
        Some(n) if *n.get_ref() == 0 => Err(src.at(n, key, "at least 1, e.g. 1000")),
        n => Ok(n.as_ref().map(|n| *n.get_ref())),
    }
}

impl Settings {
    /// Reads the file (if any), lays the flags over it, and checks the whole.
    ///
    /// # Errors
    /// A refusal naming the file's line and key, or the flags in conflict.
    pub(crate) fn load(args: &ProxyArgs) -> Result<Self, Refusal> {
        let (f, text) = match &args.config {
            Some(path) => file::read(path).map_err(Refusal::value)?,
            None => (file::File::default(), String::new()),
        };
        let path = args.config.as_deref().unwrap_or("");
        let src = Source { path, text: &text };
        let v = |e: String| Refusal::value(e);

        let mut listeners = Vec::new();
        for l in &f.listener {
            let listen =
                parse_listen(l.listen.get_ref()).map_err(|e| v(src.at(&l.listen, "listen", e)))?;
            let upstream = check_upstream(l.upstream.get_ref())
                .map_err(|e| v(src.at(&l.upstream, "upstream", e)))?;
            let accept_proxy_from = match &l.accept_proxy_protocol_from {
                None => None,
                Some(nets) => {
                    let key = "accept_proxy_protocol_from";
                    if let Listen::Unix(_) = listen {
                        return Err(v(src.at(
                            &l.listen,
                            key,
                            "PROXY protocol headers are accepted on TCP listeners only",
                        )));
                    }
                    if nets.get_ref().is_empty() {
                        return Err(v(src.at(
                            nets,
                            key,
                            "no network: name the load balancers' networks, e.g. [\"10.0.0.0/8\"]",
                        )));
                    }
                    Some(
                        Trusted::parse(nets.get_ref().iter().map(String::as_str))
                            .map_err(|e| v(src.at(nets, key, e)))?,
                    )
                }
            };
            let send_proxy = l
                .send_proxy_protocol
                .as_ref()
                .map(|s| {
                    pp::Version::parse(s.get_ref())
                        .map_err(|e| v(src.at(s, "send_proxy_protocol", e)))
                })
                .transpose()?;
            listeners.push((
                listen,
                Route {
                    upstream,
                    accept_proxy_from,
                    send_proxy,
                },
            ));
        }
        match (&args.listen, &args.upstream) {
            (Some(l), Some(u)) => {
                let upstream =
                    check_upstream(u).map_err(|e| Refusal::value(format!("--upstream: {e}")))?;
                let accept_proxy_from = args
                    .accept_proxy_protocol_from
                    .as_deref()
                    .map(|nets| Trusted::parse(nets.split(',')))
                    .transpose()
                    .map_err(|e| Refusal::value(format!("--accept-proxy-protocol-from: {e}")))?;
                listeners = vec![(
                    Listen::Tcp(*l),
                    Route {
                        upstream,
                        accept_proxy_from,
                        send_proxy: args.send_proxy_protocol,
                    },
                )];
            }
            (None, None) => {
                if args.accept_proxy_protocol_from.is_some() || args.send_proxy_protocol.is_some() {
                    return Err(Refusal::conflict(
                        "--accept-proxy-protocol-from and --send-proxy-protocol apply to \
                         --listen; in a config file, set them on each [[listener]]",
                    ));
                }
            }
            _ => {
                return Err(Refusal::conflict(
                    "--listen and --upstream go together (they replace the file's listeners)",
                ));
            }
        }
        let fair_by = match (args.fair_by, &f.fair_by) {
            (Some(x), _) => x,
            (None, Some(s)) => match s.get_ref().as_str() {
                "host" => FairBy::Host,
                "connection" => FairBy::Connection,
                other => {
                    return Err(v(src.at(
                        s,
                        "fair_by",
                        format!("'{other}' is not \"host\" or \"connection\""),
                    )));
                }
            },
            (None, None) => FairBy::Host,
        };
        let policy = match (args.policy, &f.policy) {
            (Some(p), _) => p,
            (None, Some(s)) => match s.get_ref().as_str() {
                "equal" => PolicyName::Equal,
                "weighted" => PolicyName::Weighted,
                "window" => PolicyName::Window,
                "hierarchical" => PolicyName::Hierarchical,
                other => {
                    return Err(v(src.at(
                        s,
                        "policy",
                        format!(
                            "'{other}' is not \"equal\", \"weighted\", \"window\" or \"hierarchical\""
                        ),
                    )));
                }
            },
            (None, None) => PolicyName::Equal,
        };
        let classes = f.classes(&src).map_err(v)?;
        let secs = |flag: Option<f64>, file: Option<f64>, default: f64| {
            Duration::from_secs_f64(flag.or(file).unwrap_or(default))
        };
        let s = Self {
            listeners,
            max_to_clients: args
                .max_to_clients
                .or(src.rate(&f.max_to_clients, "max_to_clients").map_err(v)?),
            max_from_clients: args.max_from_clients.or(src
                .rate(&f.max_from_clients, "max_from_clients")
                .map_err(v)?),
            per_client_cap: args
                .per_client_cap
                .or(src.rate(&f.per_client_cap, "per_client_cap").map_err(v)?),
            policy,
            fair_by,
            classes,
            connect_timeout: secs(
                args.connect_timeout,
                timeout(&src, &f.connect_timeout, "connect_timeout").map_err(v)?,
                5.0,
            ),
            drain_timeout: secs(
                args.drain_timeout,
                timeout(&src, &f.drain_timeout, "drain_timeout").map_err(v)?,
                300.0,
            ),
            half_close_timeout: secs(
                args.half_close_timeout,
                timeout(&src, &f.half_close_timeout, "half_close_timeout").map_err(v)?,
                30.0,
            ),
            idle_timeout: secs(
                args.idle_timeout,
                timeout(&src, &f.idle_timeout, "idle_timeout").map_err(v)?,
                600.0,
            ),
            max_connections: args
                .max_connections
                .or(at_least_one(&src, &f.max_connections, "max_connections").map_err(v)?)
                .map(|m| m as usize),
            max_connections_per_host: args
                .max_connections_per_host
                .or(at_least_one(
                    &src,
                    &f.max_connections_per_host,
                    "max_connections_per_host",
                )
                .map_err(v)?)
                .map(|m| m as usize),
            admin: match (args.admin, &f.admin) {
                (Some(a), _) => Some(a),
                (None, Some(a)) => Some(a.get_ref().parse().map_err(|_| {
                    v(src.at(
                        a,
                        "admin",
                        "not an IP:port address, e.g. \"127.0.0.1:9100\"",
                    ))
                })?),
                (None, None) => None,
            },
            admin_token: args.admin_token.clone().or(f.admin_token.clone()),
            metrics_per_host: args.metrics_per_host || f.metrics_per_host,
        };
        s.check(args)?;
        Ok(s)
    }

    /// Settings that contradict each other, or would do nothing.
    fn check(&self, args: &ProxyArgs) -> Result<(), Refusal> {
        if self.listeners.is_empty() {
            return Err(Refusal::conflict(
                "no listener: give --listen and --upstream, or --config FILE with a [[listener]]",
            ));
        }
        let weighted_classes: Vec<&str> = self
            .classes
            .all()
            .filter(|c| c.weight != 1)
            .map(|c| c.name.as_str())
            .collect();
        // Weights come from classes: with none, weighted would act as equal. (Classes whose
        // weights are all 1 for now are fine: a reload may change them.)
        if self.policy == PolicyName::Weighted
            && self.classes.list.is_empty()
            && weighted_classes.is_empty()
        {
            return Err(Refusal::conflict(
                "--policy weighted has no weights to use: define classes with weights in the \
                 config file (--config); without them every client gets weight 1, which is what \
                 --policy equal does",
            ));
        }
        if !self.policy.takes_weights() && !weighted_classes.is_empty() {
            return Err(Refusal::conflict(format!(
                "class `{}` has a weight, which only --policy weighted or hierarchical uses",
                weighted_classes[0]
            )));
        }
        // Guarantees and per-address caps need a class above its addresses: three levels.
        if let Some(c) = self
            .classes
            .three_level()
            .filter(|_| self.policy != PolicyName::Hierarchical)
        {
            return Err(Refusal::conflict(format!(
                "class `{}` has a guarantee (min_to_clients, min_from_clients) or a per-address \
                 cap (max_to_each_address, max_from_each_address), which only --policy \
                 hierarchical (policy = \"hierarchical\") keeps",
                c.name
            )));
        }
        for (i, (listen, _)) in self.listeners.iter().enumerate() {
            if self.listeners[..i].iter().any(|(l, _)| l == listen) {
                return Err(Refusal::conflict(format!(
                    "two listeners on {listen}: one address serves one upstream"
                )));
            }
        }
        for (listen, route) in &self.listeners {
            if let Listen::Tcp(l) = listen {
                if route.upstream.parse::<SocketAddr>().ok() == Some(*l) {
                    return Err(Refusal::conflict(format!(
                        "--listen and --upstream are both {l}: the proxy would forward to itself"
                    )));
                }
                if self.admin == Some(*l) {
                    return Err(Refusal::conflict(format!(
                        "--admin and --listen are both {l}: one address cannot serve both"
                    )));
                }
            }
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
        if args.fleet.is_some() && self.max_to_clients.is_none() && self.max_from_clients.is_none()
        {
            return Err(Refusal::conflict(
                "--fleet shares --max-to-clients and --max-from-clients with other proxies; set at \
                 least one of them",
            ));
        }
        if args.fleet.is_none()
            && (args.fleet_budget.is_some()
                || args.fleet_weight.is_some()
                || args.fleet_expected.is_some())
        {
            return Err(Refusal::conflict(
                "--fleet-budget, --fleet-weight and --fleet-expected need --fleet REDIS_URL",
            ));
        }
        for (to_clients, key, limit) in [
            (true, "max_to_clients", self.max_to_clients),
            (false, "max_from_clients", self.max_from_clients),
        ] {
            if let Some(what) = self.needs_limit(to_clients).filter(|_| limit.is_none()) {
                return Err(Refusal::conflict(format!(
                    "{what}, but there is no global `{key}`: a cap applies beneath a global \
                     limit; set one"
                )));
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

    /// What would silently stop applying without a global limit toward clients (`to_clients`)
    /// or from them: a class's cap or per-address cap, named; `None` when nothing would. (A
    /// guarantee needs no limit: without one, every class gets all it asks for. The per-client
    /// cap applies beneath either limit.)
    pub(crate) fn needs_limit(&self, to_clients: bool) -> Option<String> {
        let way = |pair: (Option<u64>, Option<u64>)| if to_clients { pair.0 } else { pair.1 };
        let keys = if to_clients {
            ["max_to_clients", "max_to_each_address"]
        } else {
            ["max_from_clients", "max_from_each_address"]
        };
        self.classes.all().find_map(|c| {
            keys.iter()
                .zip([c.caps, c.each])
                .find(|(_, pair)| way(*pair).is_some())
                .map(|(key, _)| format!("class `{}` sets `{key}`", c.name))
        })
    }

    /// The limits and the sharing, as one phrase for the ready line.
    pub(crate) fn limits(&self, args: &ProxyArgs) -> String {
        let rate =
            |r: Option<u64>| r.map_or("unlimited".to_owned(), |r| format!("{}/s", human(r as f64)));
        let fleet = args.fleet.as_ref().map_or(String::new(), |url| {
            format!(
                ", shared with the fleet '{}' at {url} (weight {})",
                args.fleet_budget.as_deref().unwrap_or("fairio-proxy"),
                args.fleet_weight.unwrap_or(1)
            )
        });
        let classes = if self.classes.list.is_empty() {
            String::new()
        } else {
            format!(", {} classes", self.classes.list.len())
        };
        format!(
            "to clients {}, from clients {}, per client {}, policy {}, fair by {}{classes}{fleet}",
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

#[cfg(test)]
mod fuzz {
    //! Config files from outside: any bytes, and files built from the schema's keys with values
    //! of any type, give settings or a refusal, never a panic.

    use clap::Parser;
    use proptest::prelude::*;

    use super::*;

    #[derive(Debug, Parser)]
    struct Wrap {
        #[command(flatten)]
        args: ProxyArgs,
    }

    fn load(text: &[u8]) -> Result<Settings, Refusal> {
        static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let path = std::env::temp_dir().join(format!(
            "fairio-fuzz-{}-{}.toml",
            std::process::id(),
            N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        std::fs::write(&path, text).unwrap();
        let args = Wrap::try_parse_from(["fairio", "--config", path.to_str().unwrap()])
            .unwrap()
            .args;
        let got = Settings::load(&args);
        let _ = std::fs::remove_file(&path);
        got
    }

    /// A TOML value of any type, biased to what the keys take.
    fn value() -> impl Strategy<Value = String> {
        let word = prop_oneof![
            Just("8MiB".to_owned()),
            Just("0".to_owned()),
            Just("-1KiB".to_owned()),
            Just("127.0.0.1:8080".to_owned()),
            Just("unix:/tmp/x.sock".to_owned()),
            Just("unix:".to_owned()),
            Just("h:0".to_owned()),
            Just("10.0.0.0/8".to_owned()),
            Just("::/0".to_owned()),
            Just("v2".to_owned()),
            Just("weighted".to_owned()),
            Just("host".to_owned()),
            "[ -~]{0,24}",
        ];
        prop_oneof![
            word.clone().prop_map(|w| format!("{w:?}")),
            any::<i64>().prop_map(|i| i.to_string()),
            any::<f64>().prop_map(|f| {
                if f.is_nan() {
                    "nan".to_owned()
                } else if f.is_infinite() {
                    if f > 0.0 { "inf" } else { "-inf" }.to_owned()
                } else {
                    format!("{f:?}")
                }
            }),
            any::<bool>().prop_map(|b| b.to_string()),
            proptest::collection::vec(word, 0..4).prop_map(|v| format!("{v:?}")),
        ]
    }

    /// A value `key` takes (three times in four), or one of any type.
    fn value_for(key: &'static str) -> BoxedStrategy<String> {
        let rate = (1u64..100_000).prop_map(|k| format!("\"{k}KiB\""));
        let valid: BoxedStrategy<String> = match key {
            "max_to_clients" | "max_from_clients" | "per_client_cap" => rate.boxed(),
            "policy" => Just("\"equal\"".to_owned()).boxed(),
            "fair_by" => proptest::sample::select(vec!["\"host\"", "\"connection\""])
                .prop_map(str::to_owned)
                .boxed(),
            "connect_timeout" | "half_close_timeout" | "idle_timeout" | "drain_timeout" => (1u32
                ..100_000)
                .prop_map(|t| format!("{}", f64::from(t) / 10.0))
                .boxed(),
            "max_connections" | "max_connections_per_host" => {
                (1u32..100_000).prop_map(|n| n.to_string()).boxed()
            }
            "admin" => (1024u16..60000)
                .prop_map(|p| format!("\"127.0.0.1:{p}\""))
                .boxed(),
            "admin_token" => "\"[a-z0-9]{16,32}\"".boxed(),
            "metrics_per_host" => any::<bool>().prop_map(|b| b.to_string()).boxed(),
            "accept_proxy_protocol_from" => Just("[\"10.0.0.0/8\", \"::1\"]".to_owned()).boxed(),
            "send_proxy_protocol" => proptest::sample::select(vec!["\"v1\"", "\"v2\""])
                .prop_map(str::to_owned)
                .boxed(),
            "weight" => Just("1".to_owned()).boxed(),
            _ => value().boxed(),
        };
        prop_oneof![3 => valid, 1 => value()].boxed()
    }

    /// Lines for a subset of `keys`, each once (a key twice is a TOML error, which would hide
    /// the checks behind it).
    fn lines(keys: &'static [&'static str], most: usize) -> impl Strategy<Value = String> {
        proptest::sample::subsequence(keys, 0..=most.min(keys.len()))
            .prop_flat_map(|ks| {
                let values: Vec<BoxedStrategy<String>> = ks.iter().map(|k| value_for(k)).collect();
                (Just(ks), values)
            })
            .prop_map(|(ks, vs)| {
                ks.iter()
                    .zip(vs)
                    .map(|(k, v)| format!("{k} = {v}\n"))
                    .collect()
            })
    }

    const TOP: &[&str] = &[
        "max_to_clients",
        "max_from_clients",
        "per_client_cap",
        "policy",
        "fair_by",
        "connect_timeout",
        "half_close_timeout",
        "idle_timeout",
        "drain_timeout",
        "max_connections",
        "max_connections_per_host",
        "admin",
        "admin_token",
        "metrics_per_host",
    ];
    const LISTENER: &[&str] = &["accept_proxy_protocol_from", "send_proxy_protocol"];
    const CLASS: &[&str] = &[
        "weight",
        "max_to_clients",
        "max_from_clients",
        "max_connections",
    ];

    /// A file whose listeners have a valid address and upstream (and other keys at random),
    /// and whose classes have names and networks, so that most files parse and the checks
    /// behind the parser are what decides.
    fn file() -> impl Strategy<Value = String> {
        (
            lines(TOP, 4),
            proptest::collection::vec((1024u16..60000, lines(LISTENER, 2)), 1..3),
            proptest::collection::vec(lines(CLASS, 3), 0..3),
            proptest::option::of(lines(CLASS, 2)),
            proptest::bool::weighted(0.1),
        )
            .prop_map(|(top, listeners, classes, default, unknown)| {
                let mut s = top;
                if unknown {
                    s += "no_such_key = 1\n";
                }
                for (port, l) in listeners {
                    s += &format!(
                        "[[listener]]\nlisten = \"127.0.0.1:{port}\"\nupstream = \"127.0.0.1:9\"\n{l}"
                    );
                }
                for (i, c) in classes.into_iter().enumerate() {
                    s += &format!("[[class]]\nname = \"c{i}\"\nnetworks = [\"10.{i}.0.0/16\"]\n{c}");
                }
                if let Some(d) = default {
                    s += "[default_class]\n";
                    s += &d;
                }
                s
            })
    }

    /// Files of the schema: settings or a refusal, and a good part of them settings (the
    /// strategy reaches past the parser).
    #[test]
    fn fuzz_files_of_the_schema_give_settings_or_a_refusal() {
        let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig::with_cases(
            crate::fuzz_cases(256),
        ));
        let (ok, refused) = (
            std::sync::atomic::AtomicU64::new(0),
            std::sync::atomic::AtomicU64::new(0),
        );
        runner
            .run(&file(), |text| {
                match load(text.as_bytes()) {
                    Ok(s) => {
                        prop_assert!(!s.listeners.is_empty());
                        ok.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                    Err(r) => {
                        prop_assert!(!r.message.is_empty(), "{}", text);
                        refused.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                }
                Ok(())
            })
            .unwrap();
        let (ok, refused) = (ok.into_inner(), refused.into_inner());
        println!("{ok} files gave settings, {refused} were refused");
        assert!(ok > 0 && refused > 0, "{ok} settings, {refused} refusals");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(crate::fuzz_cases(256)))]

        #[test]
        fn fuzz_any_bytes_give_settings_or_a_refusal(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            if let Err(r) = load(&bytes) {
                prop_assert!(!r.message.is_empty());
            }
        }

    }
}
