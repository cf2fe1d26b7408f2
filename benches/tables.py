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
    out = header(
        "N", "message", "contender", "throughput", "vs raw (target ≥ 0.90)", "CPU s per GiB",
        "vs raw (target ≤ 1.15)",
    )
    for r in rows:
        c = r["contender"]
        fair = c.startswith("fairio")
        tv, cv = r["throughput_vs_raw"], r["cpu_vs_raw"]
        t_mark = " **MISS**" if fair and tv < 0.90 else ""
        c_mark = " **MISS**" if fair and cv > 1.15 else ""
        msg = f"{r['msg_bytes'] // 1024} KiB"
        if r.get("direction") == "download":
            msg += f" download, fairio `{r.get('fairio_reads') or 'read'}`"
        out.append(
            f"| {r['n']} | {msg} | {c} | {r['throughput_bytes_per_sec'] / MIB:,.0f} MiB/s | "
            f"{tv:.2f}{t_mark} | {r['cpu_secs_per_gib']:.3f} | {cv:.2f}{c_mark} |"
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
    ]
    for name, f in sections:
        if name in by:
            print(f"#### {name}\n")
            print("\n".join(f(by[name])))
            print()


if __name__ == "__main__":
    main()
