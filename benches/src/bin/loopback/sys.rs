//! What the harness asks of the host: runtimes, pinned threads, and figures read from `/proc`.

/// A single-threaded runtime with I/O and time: each side of a run (peer, measured) has one.
pub(crate) fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// With `FAIRIO_BENCH_PIN=1`, pins the calling thread to `cpu`, so that the peer and the
/// measured side never share a core (`taskset` on the thread's id: no unsafe code needed).
pub(crate) fn pin_thread(cpu: usize) {
    if std::env::var_os("FAIRIO_BENCH_PIN").is_none() {
        return;
    }
    let Ok(link) = std::fs::read_link("/proc/thread-self") else {
        return;
    };
    let Some(tid) = link.file_name().and_then(|t| t.to_str()).map(str::to_owned) else {
        return;
    };
    let _ = std::process::Command::new("taskset")
        .args(["-pc", &cpu.to_string(), &tid])
        .stdout(std::process::Stdio::null())
        .status();
}

/// The CPU time the calling thread has run for, in seconds: the measured side's cost.
pub(crate) fn thread_cpu_secs() -> f64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .next()
                .and_then(|v| v.parse::<f64>().ok())
        })
        .map_or(0.0, |ns| ns / 1e9)
}

/// The process's resident memory in bytes (4 KiB pages).
pub(crate) fn resident() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .nth(1)
                .and_then(|p| p.parse::<u64>().ok())
        })
        .unwrap_or(0)
        * 4096
}
