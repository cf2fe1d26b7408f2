#!/usr/bin/env python3
"""Turns the JSON lines of `loopback all` into the Markdown tables of BENCHMARKS.md.

    FAIRIO_BENCH_PIN=1 cargo run --release -p fairio-benches --bin loopback -- all > run.jsonl
    python3 benches/tables.py < run.jsonl

Targets apply to fairio's fair policies (EqualShare, Weighted); the window quota (Tezos's
algorithm) and async-speed-limit are shown for comparison. Misses are marked **MISS**.
"""

import json
import sys

FAIR = ("fairio-equal", "fairio-weighted")
LIMITERS = ("fairio-equal", "fairio-weighted", "fairio-window", "async-speed-limit")
MIB = 1 << 20


def miss(contender, bad):
    return " **MISS**" if contender in FAIR and bad else ""


def header(*cols):
    """A Markdown table's header and rule."""
    return ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]


def limit_name(limit):
    return f"{limit // MIB} MiB/s"


def overhead(rows):
    ups = [r for r in rows if r.get("direction") != "download"]
    downs = [r for r in rows if r.get("direction") == "download"]
    out = header(
        "N", "message", "contender", "throughput", "vs raw (target ≥ 0.90)", "CPU s per GiB",
        "vs raw (target ≤ 1.15)",
    )
    for r in ups:
        c = r["contender"]
        fair = c.startswith("fairio")
        tv, cv = r["throughput_vs_raw"], r["cpu_vs_raw"]
        t_mark = " **MISS**" if fair and tv < 0.90 else ""
        c_mark = " **MISS**" if fair and cv > 1.15 else ""
        msg = f"{r['msg_bytes'] // 1024} KiB"
        out.append(
            f"| {r['n']} | {msg} | {c} | {r['throughput_bytes_per_sec'] / MIB:,.0f} MiB/s | "
            f"{tv:.2f}{t_mark} | {r['cpu_secs_per_gib']:.3f} | {cv:.2f}{c_mark} |"
        )
    if downs:
        out += ["", "Downloads (the speed issue's targets):", ""]
        out += download_overhead(downs)
    return out


def download_overhead(rows):
    """Targets: with `read_bytes`, throughput ≥ 0.95x and CPU per GiB ≤ 1.10x raw tokio's; with
    `read` (N = 64), ≥ 0.90x and ≤ 1.20x; under a 256 MiB/s limit (N = 64), the rate within 1%
    of the limit and CPU per GiB ≤ 1.25x raw tokio's unlimited."""
    out = header(
        "N", "fairio reads", "limit", "contender", "throughput", "vs raw", "CPU s per GiB",
        "CPU vs raw (unlimited)", "targets",
    )
    for r in rows:
        c = r["contender"]
        fair = c in FAIR
        tv, cv = r["throughput_vs_raw"], r["cpu_vs_raw"]
        limit = r.get("limit")
        rate = r["throughput_bytes_per_sec"]
        if limit:
            err = rate / limit - 1
            t_cell = f"{err * 100:+.2f}% of the limit" + miss(c, abs(err) > 0.01)
            c_mark = miss(c, cv > 1.25)
            targets = "rate ±1%, CPU ≤ 1.25"
        elif r.get("fairio_reads") == "read":
            t_cell = f"{tv:.2f}" + miss(c, tv < 0.90)
            c_mark = miss(c, cv > 1.20)
            targets = "≥ 0.90, ≤ 1.20"
        else:
            t_cell = f"{tv:.2f}" + miss(c, tv < 0.95)
            c_mark = miss(c, cv > 1.10)
            targets = "≥ 0.95, ≤ 1.10"
        out.append(
            f"| {r['n']} | `{r.get('fairio_reads') or 'read'}` | "
            f"{limit_name(limit) if limit else 'none'} | {c} | {rate / MIB:,.0f} MiB/s | "
            f"{t_cell} | {r['cpu_secs_per_gib']:.3f} | {cv:.2f}{c_mark} | "
            f"{targets if fair else ''} |"
        )
    return out


def grid(rows, cell):
    keys = []
    for r in rows:
        k = (r["limit"], r["n"])
        if k not in keys:
            keys.append(k)
    out = header("limit", "N", *LIMITERS)
    for limit, n in keys:
        cells = []
        for c in LIMITERS:
            r = next(
                (x for x in rows if x["limit"] == limit and x["n"] == n and x["contender"] == c),
                None,
            )
            cells.append("–" if r is None else cell(r))
        out.append(f"| {limit_name(limit)} | {n} | " + " | ".join(cells) + " |")
    return out


def accuracy(rows):
    return grid(
        rows,
        lambda r: f"{r['error'] * 100:+.2f}%" + miss(r["contender"], abs(r["error"]) > 0.01)
    )


def fairness(rows):
    def cell(r):
        target = 0.98 if r["n"] >= 512 else 0.99
        return f"{r['jain']:.4f} / {r['min_window_jain']:.4f}" + miss(
            r["contender"], r["min_window_jain"] < target
        )

    return grid(rows, cell)


def weighted(rows):
    out = header("contender", "largest relative error, whole run", "after the first second", "shares")
    for r in rows:
        e = r["largest_relative_error"]
        shares = ", ".join(f"{s:.4f}" for s in r["shares"])
        out.append(
            f"| {r['contender']} | {e * 100:.2f}%{miss(r['contender'], e > 0.03)} | "
            f"{r['largest_relative_error_after_warmup'] * 100:.2f}% | {shares} |"
        )
    return out


def join(rows):
    out = header("contender", "ms until the newcomer's 250 ms rate reaches 90% of its share")
    for r in rows:
        ms = r["ms_to_90pct"]
        text = "never" if ms is None else f"{ms:.0f}"
        out.append(f"| {r['contender']} | {text}{miss(r['contender'], ms is None or ms > 100)} |")
    return out


def sparse(rows):
    out = header("contender", "messages delivered (of ~500)", "p50", "p99")
    def ms(v):
        return "–" if v is None else f"{v:.3f} ms"

    for r in rows:
        p99 = r["p99_ms"]
        out.append(
            f"| {r['contender']} | {r['messages']} | {ms(r['p50_ms'])} | "
            f"{ms(p99)}{miss(r['contender'], p99 is None or p99 > 5)} |"
        )
    return out


def scale(rows):
    out = header(
        "contender", "resident bytes per connection (fairio)", "the in-memory streams alone"
    )
    for r in rows:
        b = r["resident_bytes_per_connection"]
        mark = " **MISS**" if b > 16 * 1024 else ""
        out.append(
            f"| {r['contender']} | {b:,.0f}{mark} | {r['streams_alone_bytes_per_connection']:,.0f} |"
        )
    return out


def rate_name(bps):
    return f"{bps / MIB:.2f} MiB/s" if bps >= MIB else f"{bps / 1024:.0f} KiB/s"


def slow(rows):
    out = header(
        "setting", "direction", "contender", "used (target ≥ 0.98)", "used at the limiter",
        "slow ones: rate got / their rate", "Jain among fast, whole / smallest 250 ms window "
        "(target ≥ 0.99)", "fast: got / expected share", "largest fast error",
    )
    for r in rows:
        c = r["contender"]
        setting = f"N={r['n']}, k={r['k']} at {rate_name(r['slow_rate'])}, {limit_name(r['limit'])}"
        if r.get("concurrent_directions"):
            setting += " (both directions at once)"
        direction = r["direction"]
        if r["fast_weights"] and len(set(r["fast_weights"])) > 1:
            direction += ", fast weights " + ":".join(str(w) for w in r["fast_weights"])
        fast = ", ".join(f"{v:.3f}" for v in r["fast_vs_expected"])
        out.append(
            f"| {setting} | {direction} | {c} | {r['used']:.3f}{miss(c, r['used'] < 0.98)} | "
            f"{r['used_at_limiter']:.3f} | {r['slow_vs_rate_min']:.3f}–{r['slow_vs_rate_max']:.3f} | "
            f"{r['fast_jain']:.4f} / {r['fast_min_window_jain']:.4f}"
            f"{miss(c, r['fast_jain'] < 0.99)} | {fast} | {r['fast_largest_error'] * 100:.2f}% |"
        )
    return out


def relimit(rows):
    out = header(
        "direction", "contender", "after each re-limit: bytes / (L × T)", "max",
        "target (L·T + B)", "while lifted: bytes / (L × 100 ms)",
    )
    for r in rows:
        c = r["contender"]
        direction = r["direction"] + (" (both at once)" if r.get("concurrent_directions") else "")
        cycles = ", ".join(f"{m:.3f}" for m in r["multiples"])
        lifted = ", ".join(f"{m:.0f}" for m in r["open_multiples"])
        target = r["target_multiple"]
        out.append(
            f"| {direction} | {c} | {cycles} | {r['max_multiple']:.3f}"
            f"{miss(c, r['max_multiple'] > target)} | ≤ {target:.3f} | {lifted} |"
        )
    return out


def main():
    rows = [json.loads(line) for line in sys.stdin if line.strip()]
    by = {}
    for r in rows:
        by.setdefault(r["scenario"], []).append(r)
    sections = [
        ("overhead", overhead),
        ("accuracy", accuracy),
        ("fairness", fairness),
        ("scale-active", fairness),
        ("weighted", weighted),
        ("join", join),
        ("sparse", sparse),
        ("scale-idle", scale),
        ("slow", slow),
        ("relimit", relimit),
    ]
    for name, f in sections:
        if name in by:
            print(f"#### {name}\n")
            print("\n".join(f(by[name])))
            print()


if __name__ == "__main__":
    main()
