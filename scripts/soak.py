#!/usr/bin/env python3
"""A soak of `fairio proxy`: thousands of concurrent clients for minutes, with churn.

    python3 scripts/soak.py run --minutes 10 --clients 10000 --out soak-out
    python3 scripts/soak.py run --minutes 4 --clients 2000 --queue-size 64KiB --out soak-64k

Starts Redis, a test upstream and the proxy (under a fleet budget in Redis), then a client
process whose clients come from 127.0.0.2-127.0.0.9 and do, in a mix: long and short
downloads, uploads that half-close and wait for the upstream's count, resets mid-download,
slow readers (20 KiB/s), readers that stall and then leave, and idle holders. The upstream is
restarted twice and Redis killed and restarted once. Every 5 s it samples the proxy's resident
memory, descriptors, CPU time and byte counters (`/metrics`).

At the end it checks:
- the descriptors come back to the baseline taken before the clients started;
- no unexpected log line (warnings and errors other than the outages it caused);
- to the clients, each whole minute stays within 1% of the limit in force;
- memory over the run's second half grows by less than 5% (flat once warmed up);
- the proxy fell back to its safe share while Redis was down, and leased again after;
- the proxy lived to the end, stopped cleanly on SIGTERM, and every client finished;

and writes `report.json`, `samples.csv` and `soak.svg` (memory and descriptors over time) into
`--out`, with a Markdown summary on stdout. It exits 1 if a check failed.

Only the standard library; `target/release/fairio` must be built
(`cargo build --release -p fairio-cli`). The proxy is one process, so it holds at most the
descriptor limit of this machine (`ulimit -Hn`) less a few: two per client.
"""

import argparse
import asyncio
import csv
import json
import os
import random
import re
import resource
import signal
import socket
import struct
import subprocess
import sys
import time
import urllib.request

KIB, MIB = 1024, 1024 * 1024
CHUNK = bytes(64 * KIB)


# ---------------------------------------------------------------------------------------------
# The upstream: "D <n>\n" -> n bytes then close; "U\n" -> reads to EOF, replies "<count>\n";
# "H\n" -> holds until the client's EOF.


async def upstream_conn(reader, writer):
    try:
        line = await asyncio.wait_for(reader.readline(), 60)
        if line.startswith(b"D "):
            n = int(line[2:])
            while n > 0:
                k = min(n, len(CHUNK))
                writer.write(CHUNK[:k])
                await writer.drain()
                n -= k
        elif line == b"U\n":
            count = 0
            while True:
                data = await reader.read(64 * KIB)
                if not data:
                    break
                count += len(data)
            writer.write(b"%d\n" % count)
            await writer.drain()
        elif line == b"H\n":
            while await reader.read(64 * KIB):
                pass
    except (OSError, asyncio.TimeoutError, ValueError):
        pass
    finally:
        try:
            writer.close()
            await writer.wait_closed()
        except OSError:
            pass


async def upstream_main(port):
    server = await asyncio.start_server(
        upstream_conn, "127.0.0.1", port, reuse_address=True, backlog=4096
    )
    async with server:
        await server.serve_forever()


# ---------------------------------------------------------------------------------------------
# The clients.


class Tally:
    def __init__(self):
        self.counts = {}
        self.bytes_down = 0
        self.bytes_up = 0
        self.open = 0
        self.peak = 0

    def add(self, what):
        self.counts[what] = self.counts.get(what, 0) + 1


async def connect(proxy, source, tally):
    host, port = proxy
    try:
        r, w = await asyncio.wait_for(
            asyncio.open_connection(host, port, local_addr=(source, 0)), 10
        )
    except (OSError, asyncio.TimeoutError):
        tally.add("connect_failed")
        return None
    tally.open += 1
    tally.peak = max(tally.peak, tally.open)
    return r, w


def close(w, tally, reset=False):
    tally.open -= 1
    try:
        if reset:
            sock = w.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        w.close()
    except OSError:
        # Closed already (the peer reset it, or the transport gave up on it).
        pass


async def read_n(r, n, tally, pace=None):
    """Reads up to n bytes (at `pace` bytes per second if given); returns how many came."""
    got = 0
    while got < n:
        data = await r.read(min(64 * KIB, n - got) if pace is None else 4 * KIB)
        if not data:
            break
        got += len(data)
        tally.bytes_down += len(data)
        if pace is not None:
            await asyncio.sleep(len(data) / pace)
    return got


async def one_client(kind, proxy, source, tally, stop_at):
    # Every client ends within 30 s of the run's end, whatever it was doing.
    try:
        await asyncio.wait_for(
            client_body(kind, proxy, source, tally, stop_at), max(5, stop_at + 30 - time.time())
        )
    except asyncio.TimeoutError:
        tally.add(f"{kind}_at_the_end")


async def client_body(kind, proxy, source, tally, stop_at):
    conn = await connect(proxy, source, tally)
    if conn is None:
        await asyncio.sleep(1)
        return
    r, w = conn
    reset = False
    try:
        if kind == "idle":
            w.write(b"H\n")
            await w.drain()
            await asyncio.sleep(min(random.uniform(30, 120), max(0, stop_at - time.time())))
            tally.add("idle_done")
        elif kind in ("short", "long"):
            n = 64 * KIB if kind == "short" else 32 * MIB
            w.write(b"D %d\n" % n)
            await w.drain()
            got = await asyncio.wait_for(read_n(r, n, tally), 600)
            tally.add(f"{kind}_ok" if got == n else f"{kind}_cut")
        elif kind == "slow":
            w.write(b"D %d\n" % (4 * MIB))
            await w.drain()
            try:
                await asyncio.wait_for(read_n(r, 4 * MIB, tally, pace=20 * KIB), 60)
            except asyncio.TimeoutError:
                pass
            tally.add("slow_done")
        elif kind == "stall":
            w.write(b"D %d\n" % MIB)
            await w.drain()
            await asyncio.sleep(20)
            tally.add("stall_done")
            reset = True  # closing over unread bytes resets, as a real client's would
        elif kind == "reset":
            w.write(b"D %d\n" % (16 * MIB))
            await w.drain()
            await read_n(r, 64 * KIB, tally)
            reset = True
            tally.add("reset_done")
        elif kind == "upload":
            w.write(b"U\n")
            n = MIB
            sent = 0
            while sent < n:
                w.write(CHUNK)
                await w.drain()
                sent += len(CHUNK)
                tally.bytes_up += len(CHUNK)
            w.write_eof()
            line = await asyncio.wait_for(r.readline(), 120)
            tally.add("upload_ok" if line.strip() == b"%d" % n else "upload_cut")
    except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError):
        tally.add(f"{kind}_error")
    finally:
        close(w, tally, reset)


KINDS = [("idle", 40), ("slow", 20), ("stall", 8), ("short", 14), ("long", 5), ("upload", 8), ("reset", 5)]


async def slot(i, proxy, tally, stop_at):
    source = f"127.0.0.{2 + i % 8}"
    kinds = [k for k, _ in KINDS]
    weights = [w for _, w in KINDS]
    # Spread the start over 30 s, so that 10,000 clients do not connect in one burst.
    await asyncio.sleep(random.uniform(0, 30))
    while time.time() < stop_at:
        kind = random.choices(kinds, weights)[0]
        try:
            await one_client(kind, proxy, source, tally, stop_at)
        except Exception as e:  # a slot goes on whatever one client met
            tally.add(f"{kind}_unexpected_{type(e).__name__}")


async def clients_main(args):
    proxy = (args.proxy.rsplit(":", 1)[0], int(args.proxy.rsplit(":", 1)[1]))
    tally = Tally()
    stop_at = time.time() + args.seconds
    tasks = [asyncio.create_task(slot(i, proxy, tally, stop_at)) for i in range(args.clients)]

    async def report():
        while True:
            with open(args.tally + ".tmp", "w") as f:
                json.dump(vars(tally), f)
            os.replace(args.tally + ".tmp", args.tally)
            await asyncio.sleep(5)

    reporter = asyncio.create_task(report())
    # Clients in the middle of a long download finish it; bounded all the same.
    done, pending = await asyncio.wait(tasks, timeout=args.seconds + 300)
    for t in pending:
        t.cancel()
    tally.counts["unfinished"] = len(pending)
    reporter.cancel()
    with open(args.tally, "w") as f:
        json.dump(vars(tally), f)


# ---------------------------------------------------------------------------------------------
# The run.


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def proc_sample(pid):
    """Resident memory, descriptors and CPU seconds of `pid`; None once it has gone (a zombie
    has no memory line)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            rss = int(re.search(r"VmRSS:\s+(\d+) kB", f.read()).group(1)) * 1024
        fds = len(os.listdir(f"/proc/{pid}/fd"))
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (OSError, AttributeError):
        return None
    tick = os.sysconf("SC_CLK_TCK")
    cpu = (int(fields[11]) + int(fields[12])) / tick
    return rss, fds, cpu


def metrics(admin):
    try:
        text = urllib.request.urlopen(f"http://{admin}/metrics", timeout=5).read().decode()
    except OSError:
        return None
    out = {}
    for line in text.splitlines():
        m = re.match(r'(fairio_[a-z_]+)(?:\{direction="([a-z_]+)"\})?\s+(\S+)$', line)
        if m:
            key = m.group(1) + (":" + m.group(2) if m.group(2) else "")
            out[key] = float(m.group(3))
    return out


def svg_plot(samples, path):
    """Resident memory (MiB) and descriptors over time, as two lines on one chart."""
    w, h, pad = 900, 360, 60
    t_max = max(s["t"] for s in samples) or 1
    series = [
        ("resident memory, MiB", [s["rss"] / MIB for s in samples], "#1f77b4"),
        ("descriptors", [s["fds"] for s in samples], "#d62728"),
    ]
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12">',
        f'<rect width="{w}" height="{h}" fill="white"/>',
        f'<text x="{pad}" y="20">fairio proxy soak: resident memory and descriptors over time</text>',
        f'<line x1="{pad}" y1="{h - pad}" x2="{w - pad}" y2="{h - pad}" stroke="black"/>',
        f'<text x="{w / 2}" y="{h - 20}">seconds</text>',
    ]
    for k in range(0, 6):
        t = t_max * k / 5
        x = pad + (w - 2 * pad) * k / 5
        parts.append(f'<text x="{x:.0f}" y="{h - pad + 15}" text-anchor="middle">{t:.0f}</text>')
    for i, (name, ys, colour) in enumerate(series):
        y_max = max(ys) * 1.1 or 1
        pts = " ".join(
            f"{pad + (w - 2 * pad) * s['t'] / t_max:.1f},{h - pad - (h - 2 * pad) * y / y_max:.1f}"
            for s, y in zip(samples, ys)
        )
        parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="1.5" points="{pts}"/>')
        x_axis = pad if i == 0 else w - pad
        anchor = "end" if i == 0 else "start"
        off = -5 if i == 0 else 5
        for k in range(0, 5):
            y = h - pad - (h - 2 * pad) * k / 4
            parts.append(
                f'<text x="{x_axis + off}" y="{y:.0f}" text-anchor="{anchor}" fill="{colour}">{y_max * k / 4:.0f}</text>'
            )
        parts.append(f'<text x="{pad + 10 + 250 * i}" y="40" fill="{colour}">{name}</text>')
    parts.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(parts))


# Warnings the run explains, by their message: the upstream's restarts, Redis's outage, the
# connection limit (the clients outnumber what one process's descriptors allow), and clients
# that leave with bytes still unsent (the stalled readers, the resets, the slow readers that
# give up).
EXPECTED = [
    r"^upstream unreachable; closing the client$",
    r"^Redis did not answer",
    r"^Redis answers again",
    r"^client refused: connection limit reached",
    r"^client left$",
]


def run(args):
    """The soak; whatever it started is killed when it ends, however it ends."""
    procs = {}
    try:
        return soak(args, procs)
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.kill()
                p.wait()


def soak(args, procs):
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    binary = os.path.join(root, "target", "release", "fairio")
    if not os.path.exists(binary):
        sys.exit(f"{binary} is missing: cargo build --release -p fairio-cli")
    os.makedirs(args.out, exist_ok=True)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    max_conns = min(args.clients, hard // 2 - 64)
    redis_port, up_port, proxy_port, admin_port = (free_port() for _ in range(4))
    limit_to, limit_from = 64 * MIB, 16 * MIB

    def start_redis():
        procs["redis"] = subprocess.Popen(
            [
                "redis-server", "--port", str(redis_port), "--bind", "127.0.0.1",
                "--save", "", "--appendonly", "no",
            ],
            stdout=subprocess.DEVNULL,
        )

    def start_upstream():
        procs["upstream"] = subprocess.Popen(
            [sys.executable, __file__, "upstream", "--port", str(up_port)]
        )

    def wait_port(port, secs=10):
        end = time.time() + secs
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return True
            except OSError:
                if time.time() >= end:
                    return False
                time.sleep(0.1)

    start_redis()
    start_upstream()
    assert wait_port(redis_port) and wait_port(up_port), "redis or the upstream did not start"
    log_path = os.path.join(args.out, "proxy.log")
    log = open(log_path, "w")
    proxy = procs["proxy"] = subprocess.Popen(
        [
            binary, "proxy",
            "--listen", f"127.0.0.1:{proxy_port}",
            "--upstream", f"127.0.0.1:{up_port}",
            "--max-to-clients", str(limit_to),
            "--max-from-clients", str(limit_from),
            "--max-connections", str(max_conns),
            "--admin", f"127.0.0.1:{admin_port}",
            "--fleet", f"redis://127.0.0.1:{redis_port}/0",
            # Two expected: the safe share (half the limit) differs from the lease (all of
            # it), so that the fallback shows in the rate.
            "--fleet-expected", "2",
            "--log-format", "json",
        ]
        + (["--queue-size", args.queue_size] if args.queue_size else []),
        stderr=log,
        stdout=log,
    )
    assert wait_port(proxy_port) and wait_port(admin_port), "the proxy did not start"
    time.sleep(2)
    base_rss, base_fds, _ = proc_sample(proxy.pid)
    tally_path = os.path.join(args.out, "clients.json")
    secs = args.minutes * 60
    clients = procs["clients"] = subprocess.Popen(
        [
            sys.executable, __file__, "clients",
            "--proxy", f"127.0.0.1:{proxy_port}",
            "--clients", str(args.clients),
            "--seconds", str(secs),
            "--tally", tally_path,
        ]
    )
    # Outages, in seconds from the start: upstream restarts at 25% and 60%, Redis down from 40%
    # to 45% of the run.
    # At least 15 s, so that samples 5 s apart see it.
    redis_down = (0.40 * secs, max(0.45 * secs, 0.40 * secs + 15))
    events = sorted(
        [
            (0.25 * secs, "restart upstream"),
            (0.60 * secs, "restart upstream"),
            (redis_down[0], "kill redis"),
            (redis_down[1], "start redis"),
        ]
    )
    samples, marks = [], []
    t0 = time.time()
    while clients.poll() is None and time.time() - t0 < secs + 400:
        t = time.time() - t0
        if proxy.poll() is not None:
            break
        while events and events[0][0] <= t:
            _, what = events.pop(0)
            marks.append((round(t, 1), what))
            if what == "restart upstream":
                procs["upstream"].kill()
                procs["upstream"].wait()
                time.sleep(1)
                start_upstream()
                marks.append((round(time.time() - t0, 1), f"upstream answers: {wait_port(up_port)}"))
            elif what == "kill redis":
                procs["redis"].kill()
                procs["redis"].wait()
            elif what == "start redis":
                start_redis()
                marks.append((round(time.time() - t0, 1), f"redis answers: {wait_port(redis_port)}"))
        sample = proc_sample(proxy.pid)
        if sample is None or proxy.poll() is not None:
            break
        rss, fds, cpu = sample
        # The counters are read somewhere between the request and the answer, which can take
        # a second on a loaded box: the midpoint, and half the span as the uncertainty.
        asked = time.time()
        m = metrics(f"127.0.0.1:{admin_port}") or {}
        answered = time.time()
        redis_up = wait_port(redis_port, 0)
        samples.append(
            {
                "t": round((asked + answered) / 2 - t0, 2),
                "t_err": round((answered - asked) / 2, 2),
                "redis": int(redis_up),
                "rss": rss,
                "fds": fds,
                "cpu": cpu,
                "to_clients": m.get("fairio_bytes_total:to_clients"),
                "from_clients": m.get("fairio_bytes_total:from_clients"),
                "lease_to": m.get("fairio_fleet_lease_bytes_per_second:to_clients"),
                "fallback": m.get("fairio_fleet_fallback:to_clients"),
                "clients": m.get("fairio_connections"),
            }
        )
        time.sleep(5)
    if proxy.poll() is not None:
        print(f"- FAIL: the proxy died (exit {proxy.returncode}) after {time.time() - t0:.0f} s; its log: {log_path}")
        return 1
    clients_done = clients.poll() is not None
    if not clients_done:
        clients.kill()
    # Descriptors back to the baseline: every client has gone, so every pair must close.
    end = time.time() + 120
    sample = proc_sample(proxy.pid)
    while sample is not None and time.time() < end and sample[1] > base_fds:
        time.sleep(1)
        sample = proc_sample(proxy.pid)
    if sample is None:
        print(f"- FAIL: the proxy died (exit {proxy.poll()}) after {time.time() - t0:.0f} s; its log: {log_path}")
        return 1
    rss_end, fds_end, cpu_end = sample
    m_end = metrics(f"127.0.0.1:{admin_port}") or {}
    proxy.send_signal(signal.SIGTERM)
    try:
        proxy_rc = proxy.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proxy.kill()
        proxy_rc = "killed after 60 s"
    for p in procs.values():
        p.kill()
    log.close()

    # Log lines: count levels, keep what no outage explains.
    levels, unexpected = {}, []
    with open(log_path) as f:
        for line in f:
            try:
                j = json.loads(line)
            except ValueError:
                unexpected.append(line.strip()[:300])
                continue
            level = str(j.get("level", "?")).upper()
            levels[level] = levels.get(level, 0) + 1
            if level in ("WARN", "ERROR"):
                message = str(j.get("fields", {}).get("message", ""))
                if level == "ERROR" or not any(re.search(p, message) for p in EXPECTED):
                    unexpected.append(json.dumps(j)[:300])

    # Each whole minute to the clients, against the limit in force (the fleet lease).
    minutes = []
    by_t = [s for s in samples if s["to_clients"] is not None]
    for k in range(int(samples[-1]["t"] // 60) if samples else 0):
        a = min(by_t, key=lambda s: abs(s["t"] - 60 * k), default=None)
        b = min(by_t, key=lambda s: abs(s["t"] - 60 * (k + 1)), default=None)
        if not a or not b or b["t"] <= a["t"]:
            continue
        span = b["t"] - a["t"]
        moved = b["to_clients"] - a["to_clients"]
        rate = moved / span
        # The fastest the counters allow, given when each was read.
        rate_hi = moved / max(span - a["t_err"] - b["t_err"], 1)
        leases = [s["lease_to"] for s in by_t if a["t"] <= s["t"] <= b["t"] and s["lease_to"]]
        limit = max(leases) if leases else limit_to
        minutes.append(
            {
                "minute": k + 1,
                "rate": rate,
                "limit": limit,
                "ratio": rate / limit,
                "ratio_bound": rate_hi / limit,
                "fallback": any(s["fallback"] for s in by_t if a["t"] <= s["t"] <= b["t"]),
            }
        )
    # Flat once warmed up: what the second half adds to the memory at its start. (The queues
    # of thousands of clients take minutes to reach their high-water mark; 2 minutes in is
    # reported too.)
    late = [s for s in samples if s["t"] >= secs / 2]
    rss_mid = late[0]["rss"] if late else base_rss
    rss_late_max = max((s["rss"] for s in late), default=rss_mid)
    warm = [s for s in samples if s["t"] >= 120]
    rss_warm = warm[0]["rss"] if warm else base_rss
    rss_max_after = max((s["rss"] for s in warm), default=rss_warm)
    moved = (m_end.get("fairio_bytes_total:to_clients", 0) + m_end.get("fairio_bytes_total:from_clients", 0))
    cpu_per_gib = cpu_end / (moved / (1 << 30)) if moved else None
    try:
        with open(tally_path) as f:
            tally = json.load(f)
    except (OSError, ValueError) as e:
        print(f"- FAIL: the clients left no tally ({e})")
        return 1
    if not samples:
        print("- FAIL: not one sample was taken")
        return 1
    answered_fallback = [s for s in samples if s["fallback"] is not None]
    checks = {
        "descriptors back to the baseline": fds_end <= base_fds,
        "no unexpected log line": not unexpected,
        "every minute within 1% of the limit": bool(minutes)
        and all(x["ratio"] <= 1.01 for x in minutes),
        "the proxy fell back while Redis was down": any(
            s["fallback"] for s in samples if redis_down[0] <= s["t"] <= redis_down[1] + 5
        ),
        "Redis's outage ends in the proxy too": bool(answered_fallback)
        and not answered_fallback[-1]["fallback"],
        "memory flat over the second half (grows < 5%)": rss_late_max <= 1.05 * rss_mid,
        "the proxy stopped cleanly": proxy_rc == 0,
        "the clients finished": clients_done and tally["counts"].get("unfinished", 0) == 0,
    }
    report = {
        "clients": args.clients,
        "minutes": args.minutes,
        "max_connections": max_conns,
        "peak_open_clients": tally["peak"],
        "peak_proxy_connections": max((s["clients"] or 0 for s in samples), default=0),
        "outcomes": tally["counts"],
        "limits": {"to_clients": limit_to, "from_clients": limit_from},
        "events": marks,
        "base": {"rss": base_rss, "fds": base_fds},
        "end": {"rss": rss_end, "fds": fds_end},
        "rss_after_warmup": rss_warm,
        "rss_max_after_warmup": rss_max_after,
        "rss_at_half": rss_mid,
        "rss_max_second_half": rss_late_max,
        "cpu_secs": cpu_end,
        "bytes_moved": moved,
        "cpu_secs_per_gib": cpu_per_gib,
        "minutes_to_clients": minutes,
        "log_levels": levels,
        "unexpected_log_lines": unexpected[:50],
        "checks": checks,
    }
    with open(os.path.join(args.out, "report.json"), "w") as f:
        json.dump(report, f, indent=1)
    with open(os.path.join(args.out, "samples.csv"), "w", newline="") as f:
        wr = csv.DictWriter(f, fieldnames=list(samples[0].keys()))
        wr.writeheader()
        wr.writerows(samples)
    svg_plot(samples, os.path.join(args.out, "soak.svg"))
    print(f"## Soak: {args.clients} clients, {args.minutes} min\n")
    print(f"- peak clients open at the clients: {tally['peak']}, at the proxy: {report['peak_proxy_connections']:.0f} (limit {max_conns})")
    print(f"- outcomes: {json.dumps(tally['counts'], sort_keys=True)}")
    print(
        f"- resident memory: {base_rss / MIB:.1f} MiB before, {rss_warm / MIB:.1f} MiB at 2 min, at most {rss_max_after / MIB:.1f} MiB after;"
        f" {rss_mid / MIB:.1f} MiB halfway, at most {rss_late_max / MIB:.1f} MiB in the second half; {rss_end / MIB:.1f} MiB at the end"
    )
    print(f"- descriptors: {base_fds} before, {fds_end} at the end")
    print(f"- CPU: {cpu_end:.1f} s for {moved / (1 << 30):.2f} GiB: {cpu_per_gib or 0:.2f} s per GiB")
    for x in minutes:
        print(
            f"- minute {x['minute']}: {x['rate'] / MIB:.2f} MiB/s to the clients, {x['ratio']:.4f} of the limit in force"
            f" (at most {x['ratio_bound']:.4f} given when the counters were read){' [fleet fallback]' if x['fallback'] else ''}"
        )
    print(f"- log levels: {levels}; unexpected lines: {len(unexpected)}")
    for u in unexpected[:10]:
        print(f"  - {u}")
    for name, ok in checks.items():
        print(f"- {'PASS' if ok else 'FAIL'}: {name}")
    return 0 if all(checks.values()) else 1


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="the whole soak")
    r.add_argument("--minutes", type=float, default=10)
    r.add_argument("--clients", type=int, default=10000)
    r.add_argument("--out", default="soak-out")
    r.add_argument("--queue-size", help="the proxy's --queue-size (its default if not given)")
    u = sub.add_parser("upstream", help="(internal) the test upstream")
    u.add_argument("--port", type=int, required=True)
    c = sub.add_parser("clients", help="(internal) the clients")
    c.add_argument("--proxy", required=True)
    c.add_argument("--clients", type=int, required=True)
    c.add_argument("--seconds", type=float, required=True)
    c.add_argument("--tally", required=True)
    args = ap.parse_args()
    if args.cmd in ("upstream", "clients"):
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if args.cmd == "upstream":
        asyncio.run(upstream_main(args.port))
    elif args.cmd == "clients":
        asyncio.run(clients_main(args))
    else:
        sys.exit(run(args))


if __name__ == "__main__":
    main()
