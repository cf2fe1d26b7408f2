//! Rates over one common window: every figure on a frame covers the same span, so the
//! connections' rates add up to the aggregate, and the aggregate cannot read above the limit
//! unless more than the limit really moved.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::time::Instant;

/// Every connection's byte total, sampled once per tick.
#[derive(Debug)]
pub(super) struct Window {
    span: Duration,
    /// Oldest first. A connection is an index; connections are only ever appended, so a sample
    /// taken before one joined is shorter, and counts it as 0.
    samples: VecDeque<(Instant, Vec<u64>)>,
}

impl Window {
    pub(super) fn new(span: Duration) -> Self {
        Self {
            span,
            samples: VecDeque::new(),
        }
    }

    /// Records the totals at `now` and forgets what the window no longer needs: it keeps the
    /// newest sample at or before `now - span` as the base.
    pub(super) fn record(&mut self, now: Instant, totals: Vec<u64>) {
        self.samples.push_back((now, totals));
        while self.samples.len() > 2 && self.samples[1].0 + self.span <= now {
            self.samples.pop_front();
        }
    }

    /// Each connection's rate in bytes per second, from the base sample to the newest one.
    pub(super) fn rates(&self) -> Vec<f64> {
        let (Some((t0, base)), Some((t1, last))) = (self.samples.front(), self.samples.back())
        else {
            return Vec::new();
        };
        let secs = (*t1 - *t0).as_secs_f64();
        last.iter()
            .enumerate()
            .map(|(i, &b)| {
                if secs > 0.0 {
                    b.saturating_sub(base.get(i).copied().unwrap_or(0)) as f64 / secs
                } else {
                    0.0
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_cover_one_span_and_add_up() {
        let t = Instant::now();
        let ms = Duration::from_millis;
        let mut w = Window::new(ms(1000));
        w.record(t, vec![0, 0]);
        w.record(t + ms(500), vec![500, 1000]);
        // A third connection joins between samples: its bytes before joining were 0.
        w.record(t + ms(1000), vec![1000, 2000, 100]);
        w.record(t + ms(1500), vec![1500, 3000, 600]);
        // The base is now the sample at t + 500 ms.
        assert_eq!(w.rates(), vec![1000.0, 2000.0, 600.0]);
    }

    #[test]
    fn a_single_sample_has_no_rate_yet() {
        let mut w = Window::new(Duration::from_secs(1));
        assert!(w.rates().is_empty());
        w.record(Instant::now(), vec![10]);
        assert_eq!(w.rates(), vec![0.0]);
    }
}
