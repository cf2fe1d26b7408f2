//! The `join` scenario: how soon a connection joining 7 backlogged ones gets its share.

use std::time::Duration;

use serde_json::json;

use crate::MIB;
use crate::args::Args;
use crate::contender::Contender;
use crate::dir::Dir;
use crate::measure::{self, Outcome, Spec};
use crate::report::emit;

/// 7 downloads share the limit, an 8th joins: the time until its rate over 250 ms first
/// reaches 90% of its share. Full runs also draw `plots/join.svg`.
pub(crate) fn run(args: &Args) {
    let quick = args.quick;
    let (secs, at) = if quick { (1.0, 0.4) } else { (6.0, 2.0) };
    let limit = 16 * MIB;
    let mut plot = Vec::new();
    for c in Contender::LIMITERS {
        let mut s = Spec::new(c, 7, Some(limit), secs, Dir::Down);
        s.join_at = Some(at);
        s.sample = Duration::from_millis(10);
        let out = measure::run(&s);
        let share = limit as f64 / 8.0;
        // 250 ms windows ending at each sample after the join.
        let per = 25;
        let mut ms = None;
        for k in per..out.samples.len() {
            let (t, now) = (&out.samples[k].0, &out.samples[k].1);
            if *t < at + 0.25 {
                continue;
            }
            let rate = (now[7] - out.samples[k - per].1[7]) as f64 / 0.25;
            if rate >= 0.9 * share {
                ms = Some(((t - 0.25 - at) * 1000.0).max(0.0).round());
                break;
            }
        }
        emit(
            json!({"scenario": "join", "contender": c.name(), "n": 8, "limit": limit, "ms_to_90pct": ms}),
        );
        plot.push((c, out));
    }
    if !quick {
        draw(&plot, at);
    }
}

/// Each contender's per-connection rates over time, one panel each, the joining one in red.
fn draw(runs: &[(Contender, Outcome)], at: f64) {
    use plotters::prelude::*;
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/plots/join.svg");
    let root = SVGBackend::new(path, (1000, 900)).into_drawing_area();
    let _ = root.fill(&WHITE);
    let panels = root.split_evenly((runs.len(), 1));
    for ((c, out), area) in runs.iter().zip(panels.iter()) {
        let per = 25;
        let series: Vec<Vec<(f64, f64)>> = (0..8)
            .map(|i| {
                (per..out.samples.len())
                    .map(|k| {
                        (
                            out.samples[k].0,
                            (out.samples[k].1[i] - out.samples[k - per].1[i]) as f64
                                / 0.25
                                / MIB as f64,
                        )
                    })
                    .collect()
            })
            .collect();
        let ymax = series
            .iter()
            .flatten()
            .map(|p| p.1)
            .fold(0.0, f64::max)
            .max(1.0)
            * 1.1;
        let Ok(mut chart) = ChartBuilder::on(area)
            .caption(
                format!(
                    "{}: per-connection rate (MiB/s, 250 ms window); conn 8 joins at {at} s",
                    c.name()
                ),
                ("sans-serif", 16),
            )
            .margin(8)
            .x_label_area_size(25)
            .y_label_area_size(40)
            .build_cartesian_2d(0.0..out.elapsed, 0.0..ymax)
        else {
            continue;
        };
        let _ = chart.configure_mesh().draw();
        for (i, s) in series.into_iter().enumerate() {
            let color = if i == 7 {
                RED.stroke_width(2)
            } else {
                Palette99::pick(i).stroke_width(1)
            };
            let _ = chart.draw_series(LineSeries::new(s, color));
        }
    }
    let _ = root.present();
}
