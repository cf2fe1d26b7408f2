//! [`Refresher`]: the one timer task that refreshes a registry's averages.

use std::sync::{Arc, Weak};

use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};

use crate::Registry;

/// The task that refreshes a [`Registry`] every [`StatsConfig::refresh`](crate::StatsConfig).
///
/// One task serves a whole scheduler. It holds the registry weakly, so it ends by itself once
/// the registry is dropped; [`stop`](Self::stop) ends it at once and waits for it. It runs on
/// tokio's clock, so tests drive it with a paused clock.
#[derive(Debug)]
pub struct Refresher {
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl Refresher {
    /// Spawns the refresh task on the current tokio runtime.
    ///
    /// # Panics
    /// Panics outside a tokio runtime, as `tokio::spawn` does. Check with
    /// `tokio::runtime::Handle::try_current` first where that can happen.
    pub fn spawn(registry: &Arc<Registry>) -> Self {
        let (stop, mut stopped) = oneshot::channel();
        let period = registry.config().refresh();
        let weak: Weak<Registry> = Arc::downgrade(registry);
        let task = tokio::spawn(async move {
            let mut last = Instant::now();
            let mut ticks = tokio::time::interval_at(last + period, period);
            ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = &mut stopped => return,
                    now = ticks.tick() => {
                        let Some(registry) = weak.upgrade() else { return };
                        registry.refresh(now - last);
                        last = now;
                    }
                }
            }
        });
        Self {
            stop: Some(stop),
            task,
        }
    }

    /// Stops the task and waits until it has ended.
    ///
    /// # Cancel safety
    /// The task is told to stop at the first poll; dropping the future afterwards leaves it to
    /// end on its own.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        // A task that panicked or was cancelled has ended all the same.
        let _ = (&mut self.task).await;
    }

    /// Whether the task has ended.
    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::StatsConfig;

    /// The next refresh; on the paused clock a missing one fails at once instead of hanging.
    async fn refreshed(updates: &mut tokio::sync::watch::Receiver<crate::Stat>) {
        tokio::time::timeout(Duration::from_secs(10), updates.changed())
            .await
            .expect("no refresh within 10 s")
            .unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn refreshes_on_the_paused_clock_and_stops() {
        let registry = Arc::new(Registry::new(StatsConfig::default()));
        let meter = registry.register();
        let mut updates = registry.subscribe();
        let refresher = Refresher::spawn(&registry);
        meter.add_sent(10_000);
        refreshed(&mut updates).await;
        assert_eq!(meter.stat().current_outflow, 2_000);
        meter.add_sent(10_000);
        refreshed(&mut updates).await;
        assert_eq!(meter.stat().current_outflow, 3_600); // 0.2 × 10000 + 0.8 × 2000
        refresher.stop().await;
    }

    /// `stop` ends the task while the registry lives on: no refresh after it.
    #[tokio::test(start_paused = true)]
    async fn stop_ends_the_task_at_once() {
        let registry = Arc::new(Registry::new(StatsConfig::default()));
        let updates = registry.subscribe();
        let refresher = Refresher::spawn(&registry);
        assert!(!refresher.is_finished());
        let task = refresher.task.abort_handle();
        // Bounded: a stop that waits for ever fails here rather than hanging the run.
        tokio::time::timeout(Duration::from_secs(1), refresher.stop())
            .await
            .expect("stop did not end the task");
        assert!(task.is_finished());
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert!(!updates.has_changed().unwrap(), "refreshed after stop");
    }

    #[tokio::test(start_paused = true)]
    async fn ends_by_itself_when_the_registry_is_dropped() {
        let registry = Arc::new(Registry::new(StatsConfig::default()));
        let refresher = Refresher::spawn(&registry);
        drop(registry);
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert!(refresher.is_finished());
    }
}
