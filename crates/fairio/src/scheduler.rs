//! [`Scheduler`]: registers connections and shares bandwidth between them.

use std::fmt;
use std::num::NonZeroU64;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use dashmap::DashMap;
use fairio_fd::{CloseReason, Fd, Stream};
use fairio_policy::{EqualShare, Policy};
use fairio_queue::ByteQueue;
use fairio_stats::{Refresher, Registry, Stat};
use tokio::runtime::Handle;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{Checked, speed};
use crate::conn::{ConnInner, HandleGuard};
use crate::direction::{Direction, Directions, Way};
use crate::group::{Group, GroupInner};
use crate::lifecycle::Event;
use crate::read_side::ReadSide;
use crate::{Config, Connection, Error, ShutdownReport, task};

/// Shares a global upload and download limit fairly between connections.
///
/// A `Scheduler` is a cheap handle: clones share one scheduler. It must be created inside a
/// tokio runtime, and it spawns its tasks there: one budget timer per direction and one statistics
/// task, plus one task per connection. When every handle of the scheduler and of its
/// connections is dropped, all of them end and every stream is closed.
///
/// ```
/// use bytes::Bytes;
/// use fairio::{Config, Scheduler};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), fairio::Error> {
/// let sched = Scheduler::new(Config::new(16 * 1024).max_upload_speed(Some(1 << 20)))?;
/// let (ours, mut theirs) = tokio::io::duplex(64 * 1024);
/// let conn = sched.register(ours)?;
/// conn.write(Bytes::from_static(b"hello")).await?;
/// conn.close(None).await?; // flushes, then closes
///
/// use tokio::io::AsyncReadExt;
/// let mut got = Vec::new();
/// theirs.read_to_end(&mut got).await?;
/// assert_eq!(got, b"hello");
/// assert_eq!(sched.global_stat().total_sent, 5);
/// sched.shutdown(None).await;
/// # Ok(())
/// # }
/// ```
pub struct Scheduler<P: Policy = EqualShare> {
    shared: Arc<Shared<P>>,
    root: Arc<RootGuard<P>>,
}

/// Shuts the scheduler down gracefully, in the background, when the last handle (of the
/// scheduler or of any of its connections) is dropped: queued bytes are flushed for at most
/// [`Config::shutdown_timeout`], then every task ends and every stream is closed.
pub(crate) struct RootGuard<P: Policy> {
    shared: Arc<Shared<P>>,
}

impl<P: Policy> Drop for RootGuard<P> {
    fn drop(&mut self) {
        if self.shared.cancel.is_cancelled() {
            return;
        }
        let shared = Arc::clone(&self.shared);
        let timeout = shared.config.shutdown_timeout;
        // If the runtime is itself shutting down, the task is dropped with every other one,
        // which closes every stream as well.
        let runtime = shared.runtime.clone();
        runtime.spawn(async move { shared.shutdown(timeout).await });
    }
}

pub(crate) struct Shared<P: Policy> {
    pub(crate) config: Checked,
    pub(crate) dirs: Arc<Directions<P>>,
    pub(crate) conns: DashMap<u64, Arc<ConnInner<P>>>,
    registry: Arc<Registry>,
    refresher: Mutex<Option<Refresher>>,
    closed: AtomicBool,
    cancel: CancellationToken,
    tracker: TaskTracker,
    runtime: Handle,
}

impl<P: Policy> Shared<P> {
    /// See [`Scheduler::shutdown`].
    async fn shutdown(&self, timeout: Duration) -> ShutdownReport {
        let started = tokio::time::Instant::now();
        self.closed.store(true, Ordering::Release);
        tracing::info!(
            connections = self.conns.len(),
            ?timeout,
            "scheduler shutting down"
        );
        let conns: Vec<Arc<ConnInner<P>>> =
            self.conns.iter().map(|e| Arc::clone(e.value())).collect();
        let connections = conns.len();
        let unsent = Arc::new(AtomicU64::new(0));
        let failed = Arc::new(AtomicUsize::new(0));
        let closing = TaskTracker::new();
        for conn in conns {
            let (unsent, failed) = (Arc::clone(&unsent), Arc::clone(&failed));
            closing.spawn_on(
                async move {
                    let outcome = conn
                        .close(Some(timeout), CloseReason::SchedulerShutdown, false)
                        .await;
                    if let Err(e) = outcome {
                        failed.fetch_add(1, Ordering::Relaxed);
                        if let Error::Timeout { unsent: n } = e {
                            unsent.fetch_add(n as u64, Ordering::Relaxed);
                        }
                    }
                },
                &self.runtime,
            );
        }
        closing.close();
        // Each close is bounded by the timeout; the margin covers closes already under way
        // elsewhere, which may have no timeout.
        let _ = tokio::time::timeout(timeout + Duration::from_millis(100), closing.wait()).await;
        self.cancel.cancel();
        let refresher = self
            .refresher
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(r) = refresher {
            r.stop().await;
        }
        self.tracker.close();
        self.tracker.wait().await;
        let report = ShutdownReport {
            connections,
            unsent_bytes: unsent.load(Ordering::Relaxed),
            failed: failed.load(Ordering::Relaxed),
            elapsed: started.elapsed(),
        };
        tracing::info!(?report, "scheduler shut down");
        report
    }

    /// Whether new connections and groups are turned away: a shutdown has begun or ended.
    fn refusing(&self) -> bool {
        self.closed.load(Ordering::Acquire) || self.cancel.is_cancelled()
    }

    /// Takes a connection out of the scheduler once its task has ended.
    pub(crate) fn forget(&self, conn: &ConnInner<P>) {
        self.conns.remove(&conn.id());
        self.dirs.up.deregister(conn.up);
        self.dirs.down.deregister(conn.down);
        self.registry.retire(&conn.meter);
        if let Some(g) = conn.group().as_ref() {
            g.retire(conn.id());
        }
    }
}

impl Scheduler<EqualShare> {
    /// A scheduler with the equal-share policy.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for a zero speed, queue size or read buffer size;
    /// [`Error::NoRuntime`] outside a tokio runtime.
    pub fn new(config: Config) -> Result<Self, Error> {
        Self::with_policy(config, EqualShare)
    }
}

impl<P: Policy> Scheduler<P> {
    /// A scheduler with the given policy.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for a zero speed, queue size or read buffer size;
    /// [`Error::NoRuntime`] outside a tokio runtime.
    pub fn with_policy(config: Config, policy: P) -> Result<Self, Error> {
        let config = config.check()?;
        let runtime = Handle::try_current().map_err(|_| Error::NoRuntime)?;
        let _enter = runtime.enter();
        let registry = Arc::new(Registry::new(config.moving_average));
        let shared = Arc::new(Shared {
            dirs: Arc::new(Directions {
                up: Arc::new(Direction::new(
                    Way::Upload,
                    &policy,
                    config.max_upload_speed,
                )),
                down: Arc::new(Direction::new(
                    Way::Download,
                    &policy,
                    config.max_download_speed,
                )),
                classes: Default::default(),
            }),
            refresher: Mutex::new(Some(Refresher::spawn(&registry))),
            registry,
            conns: DashMap::new(),
            closed: AtomicBool::new(false),
            cancel: CancellationToken::new(),
            tracker: TaskTracker::new(),
            runtime,
            config,
        });
        for dir in [&shared.dirs.up, &shared.dirs.down] {
            let fut = Arc::clone(dir).run_timer(shared.cancel.clone());
            shared.tracker.spawn_on(fut, &shared.runtime);
        }
        tracing::info!(
            up = ?shared.config.max_upload_speed,
            down = ?shared.config.max_download_speed,
            "scheduler created"
        );
        let root = Arc::new(RootGuard {
            shared: Arc::clone(&shared),
        });
        Ok(Self { shared, root })
    }

    /// Registers a stream with the default parameters of the policy.
    ///
    /// # Errors
    /// [`Error::SchedulerClosed`] after [`shutdown`](Self::shutdown) (the stream is closed).
    pub fn register<S: Stream>(&self, stream: S) -> Result<Connection<P>, Error> {
        self.register_with(stream, P::Params::default())
    }

    /// Registers a stream with the given parameters (a weight, say).
    ///
    /// # Errors
    /// [`Error::SchedulerClosed`] after [`shutdown`](Self::shutdown) (the stream is closed).
    pub fn register_with<S: Stream>(
        &self,
        stream: S,
        params: P::Params,
    ) -> Result<Connection<P>, Error> {
        self.register_into(stream, params, None)
    }

    /// A new group of connections with the default parameters of the policy; see [`Group`].
    ///
    /// # Errors
    /// [`Error::SchedulerClosed`] after [`shutdown`](Self::shutdown).
    pub fn group(&self) -> Result<Group<P>, Error> {
        self.group_with(P::Params::default())
    }

    /// A new group of connections with the given parameters (a weight, say); see [`Group`].
    ///
    /// # Errors
    /// [`Error::SchedulerClosed`] after [`shutdown`](Self::shutdown).
    pub fn group_with(&self, params: P::Params) -> Result<Group<P>, Error> {
        if self.shared.refusing() {
            return Err(Error::SchedulerClosed);
        }
        Ok(Group {
            inner: Arc::new(GroupInner::new(&self.shared.dirs, params)),
        })
    }

    /// Registers a stream into `group`, with its own parameters within the group.
    ///
    /// # Errors
    /// [`Error::SchedulerClosed`] after [`shutdown`](Self::shutdown) (the stream is closed);
    /// [`Error::InvalidConfig`] for a group of another scheduler (the stream is closed).
    pub fn register_in<S: Stream>(
        &self,
        group: &Group<P>,
        stream: S,
        params: P::Params,
    ) -> Result<Connection<P>, Error> {
        if !group.inner.belongs_to(&self.shared.dirs) {
            drop(stream);
            return Err(Error::InvalidConfig(
                "the group belongs to another scheduler".to_owned(),
            ));
        }
        self.register_into(stream, params, Some(Arc::clone(&group.inner)))
    }

    fn register_into<S: Stream>(
        &self,
        stream: S,
        params: P::Params,
        group: Option<Arc<GroupInner<P>>>,
    ) -> Result<Connection<P>, Error> {
        let sh = &self.shared;
        if sh.refusing() {
            drop(stream);
            return Err(Error::SchedulerClosed);
        }
        let fd = Fd::with_unsent_limit(stream, sh.config.unsent_limit);
        let info = Arc::clone(fd.info());
        let (r, w) = fd.split();
        let (up_key, down_key) = match &group {
            Some(g) => (
                sh.dirs.up.register_in(g.up, params.clone()),
                sh.dirs.down.register_in(g.down, params.clone()),
            ),
            None => (
                sh.dirs.up.register(params.clone()),
                sh.dirs.down.register(params.clone()),
            ),
        };
        let cancel = sh.cancel.child_token();
        let inner = Arc::new(ConnInner {
            info,
            read_q: Arc::new(ByteQueue::with_bound(sh.config.read_queue_size)),
            read_side: ReadSide::new(r),
            write_q: Arc::new(ByteQueue::with_bound(sh.config.write_queue_size)),
            meter: sh.registry.register(),
            up: up_key,
            down: down_key,
            params: Mutex::new(params),
            in_flight: Default::default(),
            splicing_in: Default::default(),
            flush_want: Default::default(),
            written: Default::default(),
            flushed: Default::default(),
            linger: sh.config.linger,
            io_error: Mutex::new(None),
            status: watch::Sender::new(Default::default()),
            cancel,
            drained: tokio::sync::Notify::new(),
            handles: OnceLock::new(),
            group: Mutex::new(group),
        });
        if let Some(g) = inner.group().as_ref() {
            g.enlist(inner.id(), &inner.meter);
        }
        let guard = Arc::new(HandleGuard {
            conn: Arc::clone(&inner),
        });
        let _ = inner.handles.set(Arc::downgrade(&guard));
        sh.conns.insert(inner.id(), Arc::clone(&inner));
        if sh.closed.load(Ordering::Acquire) {
            // A shutdown began after the first check and may have missed this connection when
            // it listed them: it is turned away, as one that came after.
            sh.forget(&inner);
            // The shutdown may hold it already, and waits for it to end: it ends now, having
            // never run.
            inner.read_side.close();
            inner.read_q.close();
            inner.event(Event::Ended { dropped: 0 });
            inner.drained.notify_waiters();
            return Err(Error::SchedulerClosed);
        }
        sh.tracker.spawn_on(
            task::run(
                Arc::clone(&inner),
                Arc::clone(&sh.dirs),
                sh.config.read_buffer_size,
                w,
                task::ReadHalfGuard(Arc::clone(&inner)),
                {
                    let sh = Arc::clone(sh);
                    move |conn: &ConnInner<P>| sh.forget(conn)
                },
            ),
            &sh.runtime,
        );
        tracing::debug!(conn = inner.id(), "connection registered");
        Ok(Connection::new(
            Arc::clone(sh),
            guard,
            Arc::clone(&self.root),
        ))
    }

    /// The sum of the statistics of every connection, closed ones included.
    pub fn global_stat(&self) -> Stat {
        self.shared.registry.global_stat()
    }

    /// Follows the global statistics: a new value after every moving-average refresh.
    pub fn subscribe(&self) -> watch::Receiver<Stat> {
        self.shared.registry.subscribe()
    }

    /// Calls `f` on every open connection that has a live handle. No lock is held during the
    /// calls, so `f` may use the connection it is given.
    pub fn iter_connection(&self, mut f: impl FnMut(&Connection<P>)) {
        let conns: Vec<Arc<ConnInner<P>>> = self
            .shared
            .conns
            .iter()
            .map(|e| Arc::clone(e.value()))
            .collect();
        for inner in conns {
            let guard = inner.handles.get().and_then(std::sync::Weak::upgrade);
            if let Some(guard) = guard {
                f(&Connection::new(
                    Arc::clone(&self.shared),
                    guard,
                    Arc::clone(&self.root),
                ));
            }
        }
    }

    /// How many connections are open.
    pub fn connection_count(&self) -> usize {
        self.shared.conns.len()
    }

    /// Changes the global upload limit; takes effect at the next grant. `None` lifts it.
    ///
    /// # Panics
    /// Never; `Some(0)` is treated as 1 byte per second. Use
    /// [`try_set_max_upload_speed`](Self::try_set_max_upload_speed) to have it refused.
    pub fn set_max_upload_speed(&self, bytes_per_sec: Option<u64>) {
        self.shared
            .dirs
            .up
            .set_limit(bytes_per_sec.map(|v| NonZeroU64::new(v).unwrap_or(NonZeroU64::MIN)));
    }

    /// Changes the global download limit; takes effect at the next grant. `None` lifts it.
    /// `Some(0)` is treated as 1 byte per second; see
    /// [`try_set_max_download_speed`](Self::try_set_max_download_speed).
    pub fn set_max_download_speed(&self, bytes_per_sec: Option<u64>) {
        self.shared
            .dirs
            .down
            .set_limit(bytes_per_sec.map(|v| NonZeroU64::new(v).unwrap_or(NonZeroU64::MIN)));
    }

    /// Like [`set_max_upload_speed`](Self::set_max_upload_speed), refusing zero.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for `Some(0)`.
    pub fn try_set_max_upload_speed(&self, bytes_per_sec: Option<u64>) -> Result<(), Error> {
        self.shared
            .dirs
            .up
            .set_limit(speed("max_upload_speed", bytes_per_sec)?);
        Ok(())
    }

    /// Like [`set_max_download_speed`](Self::set_max_download_speed), refusing zero.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for `Some(0)`.
    pub fn try_set_max_download_speed(&self, bytes_per_sec: Option<u64>) -> Result<(), Error> {
        self.shared
            .dirs
            .down
            .set_limit(speed("max_download_speed", bytes_per_sec)?);
        Ok(())
    }

    /// The global upload limit in force.
    pub fn max_upload_speed(&self) -> Option<u64> {
        self.shared.dirs.up.limit().map(NonZeroU64::get)
    }

    /// The global download limit in force.
    pub fn max_download_speed(&self) -> Option<u64> {
        self.shared.dirs.down.limit().map(NonZeroU64::get)
    }

    /// Shuts down: turns new registrations away, closes every connection concurrently (each
    /// flushes for at most `timeout`, or [`Config::shutdown_timeout`] when `None`), stops the
    /// statistics task and the budget timers, and returns once every task has ended. It never
    /// hangs: whatever is still pending when the timeout expires is dropped, and counted in the
    /// returned [`ShutdownReport`]. A second call finds no connection and returns at once.
    ///
    /// # Cancel safety
    /// Registrations are refused from the first poll. If the future is dropped early, the
    /// connections already closing go on closing in the background.
    pub async fn shutdown(&self, timeout: Option<Duration>) -> ShutdownReport {
        let timeout = timeout.unwrap_or(self.shared.config.shutdown_timeout);
        self.shared.shutdown(timeout).await
    }
}

impl<P: Policy> Clone for Scheduler<P> {
    fn clone(&self) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
            root: Arc::clone(&self.root),
        }
    }
}

impl<P: Policy> fmt::Debug for Scheduler<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Scheduler")
            .field("connections", &self.shared.conns.len())
            .field("max_upload_speed", &self.max_upload_speed())
            .field("max_download_speed", &self.max_download_speed())
            .finish_non_exhaustive()
    }
}
