//! The demo's live view on a real pseudo-terminal of a fixed size (`script` from util-linux,
//! `stty` for the size): every frame redraws in place and fits the terminal.
#![cfg(target_os = "linux")]

mod common;

use std::process::{Command, Stdio};

use common::BIN;

/// Runs the demo on a `cols` × `rows` terminal and returns everything it wrote there.
fn run_on_terminal(cols: u16, rows: u16, demo_args: &str) -> String {
    let out = Command::new("timeout")
        .args(["60", "script", "-qfec"])
        .arg(format!(
            "stty rows {rows} cols {cols} && exec {BIN} demo {demo_args}"
        ))
        .arg("/dev/null")
        .stdin(Stdio::null())
        .output()
        .expect("`script` (util-linux) runs the demo on a pseudo-terminal");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).replace('\r', "")
}

/// The frames: what follows each cursor-home, up to the clear-to-end-of-screen that ends it.
fn frames(screen: &str) -> Vec<&str> {
    screen
        .split("\x1b[H")
        .skip(1)
        .map(|f| f.split("\x1b[J").next().unwrap_or(f))
        .collect()
}

fn check_fits(screen: &str, cols: usize, rows: usize, conns: usize) {
    assert!(
        !screen.contains("\x1b[2J"),
        "the whole screen is never cleared"
    );
    let frames = frames(screen);
    assert!(frames.len() >= 3, "only {} frames", frames.len());
    for frame in &frames {
        let lines: Vec<&str> = frame.split('\n').collect();
        assert!(
            lines.len() <= rows,
            "{} lines on {rows} rows:\n{frame}",
            lines.len()
        );
        for line in &lines {
            let visible = line.replace("\x1b[K", "");
            assert!(visible.chars().count() < cols, "too wide: {visible}");
            assert!(
                line.ends_with("\x1b[K"),
                "a line not cleared to its end: {line:?}"
            );
        }
        assert!(lines[0].starts_with(&format!("fairio demo: {conns} connections")));
        assert!(lines.iter().any(|l| l.starts_with("aggregate ")), "{frame}");
        assert!(lines.last().unwrap().contains("Jain's index"), "{frame}");
    }
}

#[test]
fn sixty_four_connections_fit_a_120_by_40_terminal() {
    let screen = run_on_terminal(120, 40, "--secs 1.5 --conns 64 --max-download 1MiB");
    check_fits(&screen, 120, 40, 64);
    assert!(screen.contains("… 31 more"), "the middle rows are elided");
}

#[test]
fn eight_connections_on_a_small_terminal_keep_one_rate_unit() {
    let screen = run_on_terminal(80, 12, "--secs 1.5 --conns 8");
    check_fits(&screen, 80, 12, 8);
    for frame in frames(&screen) {
        for line in frame.lines().skip(3).filter(|l| l.contains("/s ")) {
            assert!(line.contains(" MiB/s"), "a rate in another unit: {line}");
        }
    }
}
