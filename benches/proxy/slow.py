#!/usr/bin/env python3
"""Slow clients through `fairio proxy`, with the kernel's default socket buffers: 4 clients
download as fast as they can beside 4 that read 4 KiB at a time at 96 KiB/s, through
`--max-to-clients 8MiB --fair-by connection`. Counted at the clients.

    python3 benches/proxy/slow.py [--secs 12] [--unsent-limit 16KiB|none] >> benches/results/proxy-slow.jsonl

Prints one JSON line: the fast clients' total rate over seconds 2-6 and 2-end (MiB/s), each
client's rate, and the share of the limit used. Max-min fairness gives the fast clients
8 MiB/s less the slow ones' 4 x 96 KiB/s: 7.625 MiB/s.
"""
import argparse, json, os, socket, subprocess, sys, threading, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from run import free_port, wait_port  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MIB = 1024 * 1024
LIMIT = 8 * MIB
SLOW_RATE = 96 * 1024


def upstream():
    """A server that sends every client an endless stream."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(64)

    def serve(c):
        chunk = b"x" * 65536
        try:
            while True:
                c.sendall(chunk)
        except OSError:
            pass

    def accept():
        while True:
            c, _ = srv.accept()
            threading.Thread(target=serve, args=(c,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    return srv.getsockname()[1]


def client(port, rate, samples, stop):
    """Reads as fast as it can (rate None) or 4 KiB at a time at `rate`; appends (time, total)
    to `samples` every read."""
    s = socket.create_connection(("127.0.0.1", port))
    total, start = 0, time.time()
    while not stop.is_set():
        if rate is None:
            n = len(s.recv(65536))
        else:
            due = start + (total + 4096) / rate
            time.sleep(max(0.0, due - time.time()))
            n = len(s.recv(4096))
        if n == 0:
            break
        total += n
        samples.append((time.time(), total))
    s.close()


def at(samples, t):
    """Bytes a client had at time t."""
    best = 0
    for when, total in samples:
        if when > t:
            break
        best = total
    return best


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--secs", type=float, default=12)
    ap.add_argument("--unsent-limit", default=None)
    a = ap.parse_args()
    subprocess.run(["cargo", "build", "-q", "--release", "-p", "fairio-cli"], cwd=ROOT, check=True)
    up = upstream()
    port = free_port()
    cmd = [os.path.join(ROOT, "target", "release", "fairio"), "proxy",
           "--listen", f"127.0.0.1:{port}", "--upstream", f"127.0.0.1:{up}",
           "--max-to-clients", "8MiB", "--fair-by", "connection"]
    if a.unsent_limit:
        cmd += ["--unsent-limit", a.unsent_limit]
    proxy = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(port)
        stop = threading.Event()
        rates = [None] * 4 + [SLOW_RATE] * 4
        samples = [[] for _ in rates]
        t0 = time.time()
        threads = [threading.Thread(target=client, args=(port, r, smp, stop), daemon=True)
                   for r, smp in zip(rates, samples)]
        for t in threads:
            t.start()
        time.sleep(a.secs)
        stop.set()
    finally:
        proxy.terminate()
        proxy.wait()

    def rate(i, t1, t2):
        return (at(samples[i], t0 + t2) - at(samples[i], t0 + t1)) / (t2 - t1) / MIB

    end = a.secs - 0.5
    fast_first = sum(rate(i, 2, 6) for i in range(4))
    fast_all = sum(rate(i, 2, end) for i in range(4))
    total_all = sum(rate(i, 2, end) for i in range(8))
    print(json.dumps({
        "scenario": "proxy-slow-clients", "contender": "fairio",
        "unsent_limit": a.unsent_limit or "default", "limit_mib": LIMIT / MIB,
        "fast_mib_s_2_6": fast_first, "fast_mib_s_2_end": fast_all,
        "fast_max_min_share_mib_s": (LIMIT - 4 * SLOW_RATE) / MIB,
        "used_2_end": total_all * MIB / LIMIT,
        "per_client_mib_s_2_end": [rate(i, 2, end) for i in range(8)],
    }))


if __name__ == "__main__":
    main()
