#!/usr/bin/env python3
"""Issue 28's first question: does splice(2) pay on this machine's paths?

iperf3 through a minimal relay (`cargo run --release -p fairio-benches --bin relay`), in copy
mode (a 64 KiB user-space buffer per direction) and in splice mode (socket -> pipe -> socket),
at 8 and 64 streams, both directions, on two paths:

- loopback: client, relay and iperf3 server on 127.0.0.1;
- veth: the client in one network namespace, the server in another, each joined to the relay's
  (the root namespace) by a veth pair, so bytes cross two virtual NICs (closer to a real NIC's
  path: no loopback shortcut).

For each run: the relay's CPU seconds (utime + stime of the process, from /proc) per GiB that
iperf3's receiver counted, and the throughput. Needs root (for the namespaces) and iperf3.

    python3 benches/proxy/splice.py [--secs 10] [--paths loopback veth] [--json out.jsonl]
"""
import argparse
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from run import cpu_secs, free_port, need  # noqa: E402

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
NS = {"client": ("fairio-sp-c", "10.77.1"), "server": ("fairio-sp-s", "10.77.2")}


def sh(*args, check=True):
    return subprocess.run(args, check=check, capture_output=True, text=True)


def veth_up():
    veth_down()
    for i, (name, net) in enumerate(NS.values()):
        host, peer = f"fsp{i}a", f"fsp{i}b"
        sh("ip", "netns", "add", name)
        sh("ip", "link", "add", host, "type", "veth", "peer", "name", peer)
        sh("ip", "link", "set", peer, "netns", name)
        sh("ip", "addr", "add", f"{net}.1/24", "dev", host)
        sh("ip", "link", "set", host, "up")
        sh("ip", "netns", "exec", name, "ip", "addr", "add", f"{net}.2/24", "dev", peer)
        sh("ip", "netns", "exec", name, "ip", "link", "set", peer, "up")
        sh("ip", "netns", "exec", name, "ip", "link", "set", "lo", "up")
        sh("ip", "netns", "exec", name, "ip", "route", "add", "default", "via", f"{net}.1")
    sh("sysctl", "-w", "net.ipv4.ip_forward=0")


def veth_down():
    for i, (name, _) in enumerate(NS.values()):
        sh("ip", "netns", "del", name, check=False)
        sh("ip", "link", "del", f"fsp{i}a", check=False)


def wait_listen(port, ns=None, secs=10):
    end = time.time() + secs
    while time.time() < end:
        cmd = ["ss", "-Hltn", f"sport = :{port}"]
        if ns:
            cmd = ["ip", "netns", "exec", ns] + cmd
        if sh(*cmd, check=False).stdout.strip():
            return
        time.sleep(0.05)
    sys.exit(f"nothing listens on {port}")


def iperf(client_ns, host, port, streams, secs, reverse):
    args = ["iperf3", "-c", host, "-p", str(port), "-P", str(streams), "-t", str(secs), "-J"]
    if reverse:
        args.append("-R")
    if client_ns:
        args = ["ip", "netns", "exec", client_ns] + args
    out = subprocess.run(args, capture_output=True, text=True, timeout=secs + 60)
    v = json.loads(out.stdout or "{}")
    if "error" in v or "end" not in v:
        raise RuntimeError(v.get("error", out.stderr))
    end = v["end"]
    return end["sum_received"]["bytes"], end["sum_received"]["seconds"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--secs", type=int, default=10)
    ap.add_argument("--paths", nargs="+", default=["loopback", "veth"])
    ap.add_argument("--streams", nargs="+", type=int, default=[8, 64])
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    need([("iperf3", "iperf3")])
    subprocess.run(["cargo", "build", "-q", "--release", "-p", "fairio-benches", "--bin", "relay"],
                   cwd=ROOT, check=True)
    relay_bin = os.path.join(ROOT, "target", "release", "relay")
    rows = []
    out = open(a.json, "w") if a.json else None
    try:
        for path in a.paths:
            if path == "veth":
                veth_up()
                cns, sns = NS["client"][0], NS["server"][0]
                relay_host, server_host = NS["client"][1] + ".1", NS["server"][1] + ".2"
            else:
                cns = sns = None
                relay_host = server_host = "127.0.0.1"
            up = free_port()
            server_cmd = ["iperf3", "-s", "-p", str(up), "-B", server_host]
            if sns:
                server_cmd = ["ip", "netns", "exec", sns] + server_cmd
            server = subprocess.Popen(server_cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            wait_listen(up, sns)
            try:
                for streams in a.streams:
                    for reverse in (False, True):
                        for mode in ("copy", "splice"):
                            port = free_port()
                            relay = subprocess.Popen(
                                [relay_bin, "--mode", mode, "--listen", f"{relay_host}:{port}",
                                 "--upstream", f"{server_host}:{up}"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                            try:
                                wait_listen(port)
                                c0 = cpu_secs(relay.pid)
                                nbytes, secs = iperf(cns, relay_host, port, streams, a.secs, reverse)
                                cpu = cpu_secs(relay.pid) - c0
                            finally:
                                relay.kill()
                                relay.wait()
                            row = {
                                "path": path, "mode": mode, "streams": streams,
                                "direction": "server->client" if reverse else "client->server",
                                "gbit_per_sec": nbytes * 8 / secs / 1e9,
                                "cpu_secs_per_gib": cpu / (nbytes / 2**30) if nbytes else None,
                            }
                            rows.append(row)
                            print(json.dumps(row), flush=True)
                            if out:
                                out.write(json.dumps(row) + "\n")
            finally:
                server.kill()
                server.wait()
                if path == "veth":
                    veth_down()
    finally:
        if out:
            out.close()
    print("\n| path | streams | direction | copy Gbit/s | splice Gbit/s | copy CPU s/GiB | splice CPU s/GiB |")
    print("|---|---|---|---|---|---|---|")
    key = lambda r: (r["path"], r["streams"], r["direction"])
    for k in sorted({key(r) for r in rows}):
        c = next(r for r in rows if key(r) == k and r["mode"] == "copy")
        s = next(r for r in rows if key(r) == k and r["mode"] == "splice")
        print(f"| {k[0]} | {k[1]} | {k[2]} | {c['gbit_per_sec']:.2f} | {s['gbit_per_sec']:.2f} | "
              f"{c['cpu_secs_per_gib']:.3f} | {s['cpu_secs_per_gib']:.3f} |")


if __name__ == "__main__":
    main()
