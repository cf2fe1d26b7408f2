//! The live table, rendered to a string that fits a terminal of a given size and redraws in
//! place: cursor home, every line overwritten and cleared to its end, the rest of the screen
//! cleared. It never clears the whole screen (which terminals such as tmux push into the
//! scrollback) and never scrolls (no newline after the last line).

use crate::rate::Unit;

/// One connection's line.
#[derive(Clone, Debug)]
pub(super) struct Row {
    pub(super) id: u64,
    pub(super) weight: u32,
    /// Bytes per second over the frame's window.
    pub(super) rate: f64,
    /// Bytes received since it joined.
    pub(super) total: u64,
}

/// Everything one frame shows.
#[derive(Debug)]
pub(super) struct Frame<'a> {
    pub(super) elapsed_secs: f64,
    pub(super) window_secs: f64,
    pub(super) rows: &'a [Row],
    pub(super) limit: u64,
    /// The unit of the rate column, fixed for the run.
    pub(super) rate_unit: Unit,
    /// The unit of the aggregate and the limit, fixed for the run.
    pub(super) total_unit: Unit,
    pub(super) weighted: bool,
}

/// Lines other than the connections': title, blank, header, and blank, aggregate, footnote.
const FIXED_LINES: usize = 6;
const BAR: usize = 30;
/// id, weight, rate, share and total columns with their gaps, without the bar.
const COLUMNS_WITHOUT_BAR: usize = 6 + 2 + 6 + 2 + 14 + 2 + 2 + 12 + 2 + 6;

/// The frame as terminal output for `cols` × `rows` cells.
pub(super) fn render(frame: &Frame<'_>, cols: usize, rows: usize) -> String {
    let mut out = String::from("\x1b[H");
    let lines = lines(frame, cols, rows);
    for (i, line) in lines.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        // One cell short of the width: a line that fills the last column leaves some
        // terminals about to wrap.
        out.extend(line.chars().take(cols.saturating_sub(1)));
        out.push_str("\x1b[K");
    }
    out.push_str("\x1b[J");
    out
}

/// The frame's lines, at most `rows` of them, connections elided in the middle when they do
/// not all fit.
fn lines(frame: &Frame<'_>, cols: usize, rows: usize) -> Vec<String> {
    let n = frame.rows.len();
    let room = rows.saturating_sub(FIXED_LINES);
    let shown = shown_rows(frame.rows, room);
    let bar = cols.saturating_sub(COLUMNS_WITHOUT_BAR + 1).min(BAR);
    let aggregate: f64 = frame.rows.iter().map(|r| r.rate).sum();
    let max = frame.rows.iter().map(|r| r.rate).fold(1.0, f64::max);

    let mut out = Vec::with_capacity(rows);
    out.push(format!(
        "fairio demo: {n} connections, {:.1} s, rates over the last {:.1} s{}",
        frame.elapsed_secs,
        frame.window_secs,
        if shown.len() < n {
            ", fastest and slowest shown"
        } else {
            ""
        }
    ));
    out.push(String::new());
    out.push(format!(
        "{:>6}  {:>6}  {:>14}  {:<bar$}  {:>6}  {:>12}",
        "id", "weight", "rate", "", "share", "total"
    ));
    for item in &shown {
        out.push(match item {
            Shown::Row(r) => {
                let width = ((r.rate / max) * bar as f64).round() as usize;
                let share = if aggregate > 0.0 {
                    r.rate / aggregate * 100.0
                } else {
                    0.0
                };
                format!(
                    "{:>6}  {:>6}  {:>12}/s  {:<bar$}  {:>5.1}%  {:>12}",
                    r.id,
                    r.weight,
                    frame.rate_unit.format(r.rate),
                    "#".repeat(width.min(bar)),
                    share,
                    crate::rate::human(r.total as f64),
                )
            }
            Shown::More(k) => format!("{:>6}  … {k} more", ""),
        });
    }
    out.push(String::new());
    out.push(format!(
        "aggregate {}/s of {}/s limit ({:+.1}%), Jain's index {:.4}",
        frame.total_unit.format(aggregate),
        frame.total_unit.format(frame.limit as f64),
        (aggregate / frame.limit as f64 - 1.0) * 100.0,
        jain(frame.rows)
    ));
    out.push(if frame.weighted {
        "Jain's index of rate/weight: 1.0 = every connection gets its weighted share, 1/n = one takes all".to_owned()
    } else {
        "Jain's index: 1.0 = every connection gets the same rate, 1/n = one takes all".to_owned()
    });
    out.truncate(rows);
    out
}

/// Jain's index of the weight-normalised rates.
pub(super) fn jain(rows: &[Row]) -> f64 {
    let xs: Vec<f64> = rows.iter().map(|r| r.rate / f64::from(r.weight)).collect();
    fairio_stats::jain(&xs)
}

enum Shown<'a> {
    Row(&'a Row),
    More(usize),
}

/// Every row in id order when they fit in `room` lines; otherwise the fastest and the slowest,
/// with a line that counts the rest.
fn shown_rows(rows: &[Row], room: usize) -> Vec<Shown<'_>> {
    if rows.len() <= room {
        return rows.iter().map(Shown::Row).collect();
    }
    if room == 0 {
        return Vec::new();
    }
    let mut by_rate: Vec<&Row> = rows.iter().collect();
    by_rate.sort_by(|a, b| b.rate.total_cmp(&a.rate).then(a.id.cmp(&b.id)));
    let slots = room - 1;
    let top = slots.div_ceil(2);
    let bottom = slots - top;
    let mut out: Vec<Shown<'_>> = by_rate[..top].iter().map(|r| Shown::Row(r)).collect();
    out.push(Shown::More(rows.len() - slots));
    out.extend(by_rate[rows.len() - bottom..].iter().map(|r| Shown::Row(r)));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(n: u64) -> Vec<Row> {
        (1..=n)
            .map(|id| Row {
                id,
                weight: 1,
                rate: 1000.0 * id as f64,
                total: 5000 * id,
            })
            .collect()
    }

    fn frame(rows: &[Row]) -> Frame<'_> {
        Frame {
            elapsed_secs: 3.0,
            window_secs: 1.0,
            rows,
            limit: 8 << 20,
            rate_unit: Unit::for_value(1024.0),
            total_unit: Unit::for_value(8.0 * 1024.0 * 1024.0),
            weighted: false,
        }
    }

    /// The visible lines: the output split at newlines, each stripped of its control sequences.
    fn screen(out: &str) -> Vec<String> {
        out.split('\n')
            .map(|l| {
                l.replace("\x1b[H", "")
                    .replace("\x1b[K", "")
                    .replace("\x1b[J", "")
            })
            .collect()
    }

    #[test]
    fn sixty_four_connections_fit_forty_rows_with_header_and_aggregate() {
        let rows = rows(64);
        let out = render(&frame(&rows), 120, 40);
        assert!(!out.contains("\x1b[2J"), "never clears the whole screen");
        assert!(out.starts_with("\x1b[H") && out.ends_with("\x1b[J"));
        assert!(!out.ends_with('\n'), "a trailing newline would scroll");
        let lines = screen(&out);
        assert_eq!(lines.len(), 40);
        assert!(lines.iter().all(|l| l.chars().count() < 120));
        assert!(lines[0].starts_with("fairio demo: 64 connections"));
        assert!(lines[2].contains("rate") && lines[2].contains("total"));
        assert!(lines[38].starts_with("aggregate"), "{}", lines[38]);
        assert!(lines[39].contains("Jain's index"));
        // 34 rows of room: 17 fastest, the "more" line, 16 slowest.
        assert!(lines[3].trim_start().starts_with("64 "), "{}", lines[3]);
        assert!(lines[20].contains("… 31 more"), "{}", lines[20]);
        assert!(lines[36].trim_start().starts_with("1 "), "{}", lines[36]);
    }

    #[test]
    fn eight_connections_show_in_id_order_with_a_fixed_unit() {
        let rows = rows(8);
        let lines = screen(&render(&frame(&rows), 120, 40));
        assert_eq!(lines.len(), 14);
        for (i, line) in lines[3..11].iter().enumerate() {
            assert!(
                line.trim_start().starts_with(&format!("{} ", i + 1)),
                "{line}"
            );
            assert!(line.contains(" KiB/s"), "{line}");
        }
        assert!(lines[12].contains("of 8.00 MiB/s limit"), "{}", lines[12]);
    }

    #[test]
    fn a_narrow_short_terminal_still_gets_a_frame_that_fits() {
        let rows = rows(64);
        for (cols, height) in [(40, 10), (20, 3), (1, 1), (0, 0)] {
            let out = render(&frame(&rows), cols, height);
            let lines = screen(&out);
            assert!(
                lines.len() <= height.max(1),
                "{cols}x{height}: {}",
                lines.len()
            );
            assert!(
                lines
                    .iter()
                    .all(|l| l.chars().count() <= cols.saturating_sub(1))
            );
        }
    }

    #[test]
    fn the_weighted_footnote_says_it_is_weight_normalised() {
        let rows = rows(2);
        let mut f = frame(&rows);
        f.weighted = true;
        assert!(render(&f, 120, 40).contains("rate/weight"));
    }
}
