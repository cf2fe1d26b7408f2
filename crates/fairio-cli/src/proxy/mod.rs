//! `fairio proxy`: upstream links shared fairly among many TCP clients.

mod args;
mod class;
mod client;
mod file;
mod guard;
mod handover;
mod inherit;
mod listeners;
mod notify;
mod pp;
mod prefixes;
mod settings;
mod stats;
mod upgrade;

use std::net::IpAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use args::FairBy;
pub(crate) use args::ProxyArgs;
use fairio::{
    Config, EqualShare, GroupsBy, Hierarchical, Policy, Scheduler, Weight, Weighted, WindowQuota,
};
pub(crate) use guard::Admission;
use notify::Notifier;
pub(crate) use settings::Settings;
use tokio::net::TcpListener;
use tokio::signal::unix::SignalKind;

use crate::PolicyName;
use crate::rate::human;

/// How long clients may flush at shutdown.
const FLUSH_AT_SHUTDOWN: Duration = Duration::from_secs(5);

/// A policy's parameters made from a class's weight: `()` has none to take.
pub(crate) trait FromWeight: Clone {
    fn from_weight(weight: u32) -> Self;
}

impl FromWeight for () {
    fn from_weight(_: u32) {}
}

impl FromWeight for Weight {
    fn from_weight(weight: u32) -> Self {
        Self::new(weight).unwrap_or_default()
    }
}

pub(crate) async fn run(args: ProxyArgs) -> Result<(), String> {
    let settings = Settings::load(&args).map_err(|r| r.message)?;
    if args.check_config {
        for (l, u) in &settings.listeners {
            println!("listener {l} → {u}");
        }
        for c in settings.classes.all() {
            let three_level = if c.is_three_level() {
                format!(", guarantees {:?}, caps per address {:?}", c.mins, c.each)
            } else {
                String::new()
            };
            println!(
                "class {}: {} networks, weight {}, caps {:?}, max connections {:?}{three_level}",
                c.name,
                c.networks.len(),
                c.weight,
                c.caps,
                c.max_connections
            );
        }
        println!("{}", settings.limits(&args));
        println!("configuration ok");
        return Ok(());
    }
    match settings.policy {
        PolicyName::Equal => proxy(args, settings, EqualShare).await,
        PolicyName::Weighted => proxy(args, settings, Weighted).await,
        PolicyName::Window => proxy(args, settings, WindowQuota).await,
        PolicyName::Hierarchical => proxy(args, settings, Hierarchical).await,
    }
}

/// What every accept loop and the reload share.
pub(crate) struct Proxy<P: Policy> {
    sched: Scheduler<P>,
    hosts: Option<GroupsBy<(Arc<str>, IpAddr), P>>,
    /// One group per class, above its addresses, under `policy = "hierarchical"`.
    classes: Option<GroupsBy<Arc<str>, P>>,
    admission: Arc<Admission>,
    /// The settings in force; a reload replaces them.
    settings: Arc<RwLock<Arc<Settings>>>,
    fleet: bool,
    /// The admin API's token, which a reload may change.
    admin_token: Arc<RwLock<Option<String>>>,
    /// The settings at start: those a reload cannot change are compared with these.
    started: Arc<Settings>,
    /// The part of the limits an older process keeps while it drains (this process was
    /// started by its upgrade); `(None, None)` otherwise.
    held: std::sync::Mutex<upgrade::Hold>,
    /// Serialises [`set_limits`](Self::set_limits).
    limits_lock: std::sync::Mutex<()>,
    /// The pipes clients' bytes are spliced through; `None` with `--splice-pipes 0`.
    pipes: Option<fairio::Pipes>,
}

impl<P: Policy> Proxy<P>
where
    P::Params: FromWeight,
{
    fn settings(&self) -> Arc<Settings> {
        Arc::clone(&self.settings.read().unwrap_or_else(|e| e.into_inner()))
    }

    /// Sets the limits of the settings in force, less what an older process keeps (unless a
    /// fleet sets them). Under one lock, so that of a reload and a new part, the last to come
    /// applies both.
    fn set_limits(&self) {
        if self.fleet {
            return;
        }
        let _one_at_a_time = self.limits_lock.lock().unwrap_or_else(|e| e.into_inner());
        let s = self.settings();
        let held = *self.held.lock().unwrap_or_else(|e| e.into_inner());
        self.sched
            .set_max_upload_speed(upgrade::rest(s.max_to_clients, held.up));
        self.sched
            .set_max_download_speed(upgrade::rest(s.max_from_clients, held.down));
    }

    /// Moves each client whose address `new` puts in another class into that class (its
    /// address's group there), without dropping it.
    fn move_reclassified(&self, classes: &GroupsBy<Arc<str>, P>, new: &Settings) {
        let clients = self.admission.clients();
        self.sched.iter_connection(|c| {
            let Some(info) = clients.get(&c.id()) else {
                return;
            };
            let Some(ip) = info.ip else {
                return;
            };
            client::follow_class(
                classes,
                self.hosts.as_ref(),
                &self.admission,
                c,
                (&info.peer, ip, &info.class),
                new,
            );
        });
    }

    /// The older process now keeps `held`: of the limits, and of the connection limit.
    fn hold(&self, held: upgrade::Hold) {
        *self.held.lock().unwrap_or_else(|e| e.into_inner()) = held;
        self.admission.hold_open(held.open);
        self.set_limits();
    }

    /// Applies new settings to what runs: the limits (unless a fleet sets them), and each live
    /// group's weight and caps from its class (a class gone: the default's). Clients stay
    /// connected; new ones come under the new settings.
    fn apply(&self, mut new: Settings, max_total: usize) {
        // Restart-only settings are compared with what runs: the values at start.
        let old = &self.started;
        let restart_only = [
            ("admin", old.admin != new.admin),
            ("policy", old.policy != new.policy),
            ("fair_by", old.fair_by != new.fair_by),
            (
                "metrics_per_host",
                old.metrics_per_host != new.metrics_per_host,
            ),
        ];
        for (key, changed) in restart_only {
            if changed {
                tracing::warn!("`{key}` changed: it takes effect at the next start, not on reload");
            }
        }
        // The file was checked against the policy it names; the running one may keep two
        // levels only, and then has nothing to apply these to until a restart.
        if self.classes.is_none() {
            if let Some(c) = new.classes.three_level() {
                tracing::warn!(
                    "class `{}`: guarantees and per-address caps apply only under policy = \"hierarchical\", from the next start",
                    c.name
                );
            }
        }

        self.admission.set_limits(
            new.max_connections
                .unwrap_or(max_total)
                .min(max_total)
                .max(1),
            new.max_connections_per_host,
        );
        if new.admin_token.is_none() && old.admin.is_some_and(crate::admin::needs_token) {
            // The admin API still listens where it did (that takes a restart), and that address
            // needs a token: the old one stays.
            tracing::warn!(
                "admin_token removed while the admin API listens beyond loopback: the token stays until a restart"
            );
            new.admin_token = self
                .admin_token
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .clone();
        }
        *self.admin_token.write().unwrap_or_else(|e| e.into_inner()) = new.admin_token.clone();
        // Stored first: a client admitted from now on, whose group is new, takes the new class.
        let new = Arc::new(new);
        *self.settings.write().unwrap_or_else(|e| e.into_inner()) = Arc::clone(&new);
        self.set_limits();
        if let Some(classes) = &self.classes {
            classes.for_each(|name, g| client::set_up_class(g, new.classes.named(name)));
            self.move_reclassified(classes, &new);
        }
        if let Some(hosts) = &self.hosts {
            hosts.for_each(|(class, _), g| {
                let c = new.classes.named(class);
                if self.classes.is_some() {
                    // Three levels: an address has its own cap, under its class's.
                    let _ = g.set_caps(c.each.0, c.each.1);
                } else {
                    g.set_params(P::Params::from_weight(c.weight));
                    let _ = g.set_caps(c.caps.0, c.caps.1);
                }
            });
        }
    }
}

async fn proxy<P: Policy>(args: ProxyArgs, settings: Settings, policy: P) -> Result<(), String>
where
    P::Params: FromWeight,
{
    // Installed first: a SIGHUP from now on reloads, and none is lost during a reload; the
    // same for SIGUSR2 (an upgrade) and the stop signals.
    let mut hup = Hangups::new(SignalKind::hangup());
    let mut usr2 = Hangups::new(SignalKind::user_defined2());
    let (mut term, mut int) = (
        Hangups::new(SignalKind::terminate()),
        Hangups::new(SignalKind::interrupt()),
    );
    let stop = async move {
        tokio::select! {
            () = term.next() => {}
            () = int.next() => {}
        }
    };
    tokio::pin!(stop);
    // The binary to start again at an upgrade: its path now, before a package replaces it.
    let exe = std::env::current_exe().ok();
    let notifier = Arc::new(Notifier::from_env());
    // Started by an older fairio handing over: it keeps a part of the limits for a while.
    let successor = upgrade::Successor::from_env();
    let held = successor
        .as_ref()
        .map_or_else(upgrade::Hold::default, |s| s.held);
    let queue = args.queue_size.unwrap_or(args::DEFAULT_QUEUE_SIZE);
    let config = Config::new(args.read_buffer_size as usize)
        .max_upload_speed(upgrade::rest(settings.max_to_clients, held.up))
        .max_download_speed(upgrade::rest(settings.max_from_clients, held.down))
        .read_queue_size(Some(queue))
        .write_queue_size(Some(queue))
        .shutdown_timeout(FLUSH_AT_SHUTDOWN)
        .unsent_limit(match args.unsent_limit {
            Some(args::Unsent(bytes)) => bytes,
            None => Some(fairio::DEFAULT_UNSENT_LIMIT.get()),
        });
    let sched = Scheduler::with_policy(config, policy).map_err(|e| e.to_string())?;
    let member = match args.fleet(&settings) {
        Some(fleet) => Some(fleet.join(&sched).map_err(|e| e.to_string())?),
        None => None,
    };
    // Two descriptors per client (client and upstream), two per splice pipe (at most an
    // eighth of the limit's worth of pipes), and a margin for the rest (the listeners, the
    // runtime, the standard streams): a quarter of the limit, at most 64.
    let fds = crate::fdlimit::raise_to_hard();
    let asked = args.splice_pipes.unwrap_or(args::DEFAULT_SPLICE_PIPES);
    let pipe_max = asked.min(fds / 8);
    if pipe_max < asked {
        tracing::info!(
            "splicing through at most {pipe_max} pipes ({asked} asked): the descriptor limit is {fds}"
        );
    }
    let by_descriptors = fds.saturating_sub((fds / 4).min(64) + 2 * pipe_max) / 2;
    let max_total = settings
        .max_connections
        .unwrap_or(by_descriptors)
        .min(by_descriptors)
        .max(1);
    let admission = Admission::new(max_total, settings.max_connections_per_host);
    admission.hold_open(held.open);
    let proxy = Arc::new(Proxy {
        hosts: (settings.fair_by == FairBy::Host).then(|| GroupsBy::new(&sched)),
        classes: (settings.policy == PolicyName::Hierarchical).then(|| GroupsBy::new(&sched)),
        sched: sched.clone(),
        admission: Arc::clone(&admission),
        settings: Arc::new(RwLock::new(Arc::new(settings.clone()))),
        fleet: member.is_some(),
        admin_token: Arc::new(RwLock::new(settings.admin_token.clone())),
        started: Arc::new(settings.clone()),
        held: std::sync::Mutex::new(held),
        limits_lock: std::sync::Mutex::new(()),
        pipes: (pipe_max > 0).then(|| fairio::Pipes::new(pipe_max)),
    });
    let reload = Arc::new(tokio::sync::Notify::new());
    let mut running = listeners::Running::with(inherit::Inherited::from_env());
    let inherited = running.inherited.len();
    running.update(&proxy, &settings.listeners).await?;
    let mut admin_task = None;
    let mut admin_socket = None;
    if let Some(addr) = settings.admin {
        let l = match running.inherited.take_tcp(addr) {
            Some((l, _)) => TcpListener::from_std(l),
            None => TcpListener::bind(addr).await,
        }
        .map_err(|e| format!("cannot serve the admin API on {addr}: {e}"))?;
        admin_socket = socket2::SockRef::from(&l).try_clone().ok();
        let admin = crate::admin::Admin {
            sched: sched.clone(),
            admission: Arc::clone(&admission),
            lease: member.as_ref().map(fairio_fleet::Member::subscribe),
            token: Arc::clone(&proxy.admin_token),
            reload: Arc::clone(&reload),
            hosts: proxy.hosts.clone(),
            per_host: settings.metrics_per_host,
            classes: proxy.classes.clone(),
            settings: Arc::clone(&proxy.settings),
        };
        admin_task = Some(tokio::spawn(crate::admin::serve(l, Arc::new(admin))));
    }
    running.inherited.close_rest();
    if let Some(secs) = args.stats_interval {
        let every = Duration::from_secs_f64(secs);
        tokio::spawn(stats::print(sched.clone(), proxy.hosts.clone(), every));
    }
    let listening: Vec<String> = settings
        .listeners
        .iter()
        .map(|(l, r)| format!("{l} → {r}"))
        .collect();
    tracing::info!(
        "listening on {}, {}, at most {} clients{}{}",
        listening.join(", "),
        settings.limits(&args),
        admission.max_total(),
        settings
            .admin
            .map(|m| format!(", admin API at http://{m}/ (metrics, clients, limits)"))
            .unwrap_or_default(),
        if inherited > 0 {
            format!(", {inherited} listening sockets inherited")
        } else {
            String::new()
        }
    );
    notifier.ready(&status(&sched));
    let status_task = notifier
        .is_active()
        .then(|| tokio::spawn(report_status(Arc::clone(&notifier), sched.clone())));
    if let Some(s) = successor {
        let report = {
            let p = Arc::clone(&proxy);
            move || {
                let settings = p.settings();
                (
                    p.admission.in_hand(),
                    settings.max_to_clients,
                    settings.max_from_clients,
                )
            }
        };
        s.ready(report());
        let q = Arc::clone(&proxy);
        tokio::spawn(s.follow(report, move |h| q.hold(h)));
    }
    let handover = loop {
        tokio::select! {
            () = hup.next() => {}
            () = reload.notified() => {}
            () = usr2.next() => {
                let following = *proxy.held.lock().unwrap_or_else(|e| e.into_inner())
                    != upgrade::Hold::default();
                match exe.as_deref() {
                    // The older process's part and this one's would both be kept: the sum
                    // could pass the limit.
                    _ if following => tracing::warn!(
                        "upgrade refused: the process this one replaced is still draining; \
                         try again once it has exited"
                    ),
                    Some(exe) => {
                        let sockets: Vec<(&socket2::Socket, bool)> = running
                            .sockets()
                            .into_iter()
                            .chain(admin_socket.as_ref().map(|s| (s, false)))
                            .collect();
                        // A stop signal meanwhile wins: the new process, not ready, is killed.
                        let started = tokio::select! {
                            r = handover::start(&proxy, exe, &sockets) => r,
                            () = &mut stop => {
                                // The start lowered this process's limits: its flush has them
                                // whole again.
                                proxy.set_limits();
                                break None;
                            }
                        };
                        match started {
                            Ok(h) => break Some(h),
                            Err(e) => tracing::warn!("upgrade failed, this process goes on serving: {e}"),
                        }
                    }
                    None => tracing::warn!("upgrade refused: the path of this binary is unknown"),
                }
                continue;
            }
            () = &mut stop => break None,
        }
        notifier.reloading();
        match Settings::load(&args) {
            Err(r) => {
                tracing::warn!("reload refused, the running settings stay: {}", r.message)
            }
            Ok(new) => {
                if let Err(e) = running.update(&proxy, &new.listeners).await {
                    tracing::warn!("reload: {e}; the other settings are applied");
                }
                let n = new.classes.list.len();
                proxy.apply(new, by_descriptors);
                tracing::info!(classes = n, "reloaded");
            }
        }
        notifier.ready(&status(&sched));
    };
    let report = match handover {
        Some(h) => {
            running.hand_over();
            // The new process serves the admin API and the service manager's status now.
            for t in [admin_task.take(), status_task].into_iter().flatten() {
                t.abort();
            }
            handover::drain(&proxy, h, &notifier, &mut stop).await
        }
        None => {
            notifier.send("STOPPING=1\nSTATUS=stopping");
            running.stop();
            tracing::info!(
                "stopping: {} clients connected, flushing them for up to {} s",
                sched.connection_count(),
                FLUSH_AT_SHUTDOWN.as_secs()
            );
            sched.shutdown(Some(FLUSH_AT_SHUTDOWN)).await
        }
    };
    if let Some(m) = member {
        // After the flush, which still needs its lease: its share goes to the other proxies
        // now rather than one TTL later.
        if let Err(e) = m.leave().await {
            tracing::info!(error = %e, "could not leave the fleet; its entry lapses by itself");
        }
    }
    let g = sched.global_stat();
    tracing::info!(
        "stopped in {:.2} s: {} clients closed, {} bytes unsent; {} to clients and {} from \
         clients in all",
        report.elapsed.as_secs_f64(),
        report.connections,
        report.unsent_bytes,
        human(g.total_sent as f64),
        human(g.total_recv as f64)
    );
    Ok(())
}

/// The status line for the service manager.
fn status<P: Policy>(sched: &Scheduler<P>) -> String {
    format!("serving {} clients", sched.connection_count())
}

/// Keeps the service manager's status line current (every 10 s).
async fn report_status<P: Policy>(notifier: Arc<Notifier>, sched: Scheduler<P>) {
    let mut every = tokio::time::interval(Duration::from_secs(10));
    every.tick().await;
    loop {
        every.tick().await;
        notifier.send(&format!("STATUS={}", status(&sched)));
    }
}

/// The signals of one kind the process receives (none where there are no such signals).
struct Hangups {
    #[cfg(unix)]
    signal: Option<tokio::signal::unix::Signal>,
}

impl Hangups {
    fn new(kind: SignalKind) -> Self {
        Self {
            #[cfg(unix)]
            signal: tokio::signal::unix::signal(kind).ok(),
        }
    }

    /// Completes at the next signal.
    async fn next(&mut self) {
        #[cfg(unix)]
        if let Some(s) = self.signal.as_mut() {
            s.recv().await;
            return;
        }
        std::future::pending::<()>().await;
    }
}
