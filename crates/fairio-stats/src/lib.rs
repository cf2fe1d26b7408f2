//! Byte counters and moving-average rates: Tezos's `Moving_average` and `P2p_stat`.
//!
//! - [`Meter`]: one connection's lock-free byte counters and its current rates.
//! - [`Ewma`]: the moving-average arithmetic, with time passed in, so tests check exact numbers.
//! - [`Registry`]: every meter of a scheduler, the global figures (closed connections
//!   included), and a [`watch`](tokio::sync::watch) channel of updates.
//! - [`Refresher`]: the one task per scheduler that refreshes the averages on a timer.
//!
//! ```
//! use std::time::Duration;
//! use fairio_stats::{Registry, StatsConfig};
//!
//! let registry = Registry::new(StatsConfig::default());
//! let meter = registry.register();
//! meter.add_sent(1000);
//! registry.refresh(Duration::from_secs(1)); // a refresh task does this every second
//! let stat = meter.stat();
//! assert_eq!(stat.total_sent, 1000);
//! assert_eq!(stat.current_outflow, 200); // alpha 0.2 × 1000 B/s
//! assert_eq!(registry.global_stat(), stat);
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs, missing_debug_implementations)]

mod config;
mod ewma;
mod jain;
mod meter;
mod refresher;
mod registry;
mod stat;

pub use config::{StatsConfig, StatsConfigError};
pub use ewma::Ewma;
pub use jain::jain;
pub use meter::Meter;
pub use refresher::Refresher;
pub use registry::Registry;
pub use stat::Stat;
