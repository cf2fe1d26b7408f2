//! The end-of-run summary: printed as text, or as one JSON object with `--json`.

use serde::Serialize;

use crate::rate::human;

/// One client's figures in the summary.
#[derive(Debug, Serialize)]
pub(super) struct ConnSummary {
    pub(super) id: u64,
    pub(super) weight: u32,
    pub(super) joined_at_secs: f64,
    pub(super) bytes: u64,
    /// Bytes over the time since it joined.
    pub(super) rate: f64,
}

/// The `--json` summary.
#[derive(Debug, Serialize)]
pub(super) struct Summary {
    pub(super) policy: &'static str,
    pub(super) secs: f64,
    pub(super) limit: u64,
    pub(super) connections: Vec<ConnSummary>,
    pub(super) aggregate_bytes: u64,
    pub(super) aggregate_rate: f64,
    /// (aggregate rate − limit) / limit.
    pub(super) error_vs_limit: f64,
    /// Jain's index of the weight-normalised rates (1 is perfectly fair).
    pub(super) jain: f64,
}

impl Summary {
    pub(super) fn new(
        policy: &'static str,
        secs: f64,
        limit: u64,
        connections: Vec<ConnSummary>,
    ) -> Self {
        let aggregate_bytes: u64 = connections.iter().map(|c| c.bytes).sum();
        let aggregate_rate = aggregate_bytes as f64 / secs.max(1e-3);
        let xs: Vec<f64> = connections
            .iter()
            .map(|c| c.rate / f64::from(c.weight))
            .collect();
        Self {
            policy,
            secs,
            limit,
            connections,
            aggregate_bytes,
            aggregate_rate,
            error_vs_limit: aggregate_rate / limit as f64 - 1.0,
            jain: fairio_stats::jain(&xs),
        }
    }

    pub(super) fn print(&self) {
        println!("\nsummary ({} policy, {:.1} s):", self.policy, self.secs);
        for c in &self.connections {
            println!(
                "  conn {:>4} weight {:>2}: {:>12} at {}/s",
                c.id,
                c.weight,
                human(c.bytes as f64),
                human(c.rate)
            );
        }
        println!(
            "  aggregate {}/s of {}/s ({:+.2}%), Jain's index {:.4} (1.0 = perfectly fair{})",
            human(self.aggregate_rate),
            human(self.limit as f64),
            self.error_vs_limit * 100.0,
            self.jain,
            if self.policy == "weighted" {
                ", of rate/weight"
            } else {
                ""
            }
        );
    }
}
