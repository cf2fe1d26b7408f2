#!/usr/bin/env python3
"""The proxy benchmark: iperf3 through fairio proxy (splicing, its default, and copying with
`--splice-pipes 0`), HAProxy (with and without `option splice-auto`) and nginx's stream
module, side by side on loopback, no limit.

    python3 benches/proxy/run.py [--secs 5] [--streams 8 64] > benches/results/proxy.jsonl

With `--limit MIB` only the fairio contenders run, with that limit both ways (the others'
limits are per connection, not shared).

For each proxy, stream count and direction it prints one JSON line: throughput (MiB/s, from
iperf3's receiver), the proxy's CPU seconds per GiB (utime + stime of all its processes, from
/proc/PID/stat), and Jain's index over the streams' bytes. Every proxy gets the machine's two
cores (two HAProxy threads, two nginx workers, fairio's two runtime workers). HAProxy, nginx
(with libnginx-mod-stream) and iperf3 are Debian packages: it installs them when missing (as
root), or says what to install.
"""
import argparse, json, os, shutil, signal, socket, subprocess, sys, tempfile, time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TICK = os.sysconf("SC_CLK_TCK")


def need(tools):
    missing = [pkg for cmd, pkg in tools if shutil.which(cmd) is None]
    if not os.path.exists("/usr/lib/nginx/modules/ngx_stream_module.so"):
        missing.append("libnginx-mod-stream")
    if not missing:
        return
    if os.geteuid() != 0:
        sys.exit(f"install first: apt-get install -y {' '.join(missing)}")
    subprocess.run(["apt-get", "update", "-q"], check=True, stdout=subprocess.DEVNULL)
    subprocess.run(["apt-get", "install", "-y", "-q", *missing], check=True, stdout=subprocess.DEVNULL)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def wait_port(port, secs=10):
    end = time.time() + secs
    while time.time() < end:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    sys.exit(f"nothing listens on {port}")


def tree(pid):
    """pid and its descendants."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            with open(f"/proc/{p}/task/{p}/children") as f:
                todo += [int(c) for c in f.read().split()]
        except OSError:
            pass
    return out


def cpu_secs(pid):
    total = 0
    for p in tree(pid):
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)
        except OSError:
            pass
    return total / TICK


def start_fairio(listen, up, tmp, extra=(), limit=None):
    binary = os.path.join(ROOT, "target", "release", "fairio")
    # Always through cargo: a binary left from older sources would be measured otherwise.
    subprocess.run(["cargo", "build", "-q", "--release", "-p", "fairio-cli"], cwd=ROOT, check=True)
    limits = ["--max-to-clients", f"{limit}MiB", "--max-from-clients", f"{limit}MiB"] if limit else []
    return subprocess.Popen(
        [binary, "proxy", "--listen", f"127.0.0.1:{listen}", "--upstream", f"127.0.0.1:{up}",
         "--fair-by", "connection", "--idle-timeout", "600", *limits, *extra],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def start_haproxy(listen, up, tmp, splice=False):
    cfg = os.path.join(tmp, "haproxy.cfg")
    # `option splice-auto`: HAProxy moves bytes with splice(2) when it judges it pays.
    extra = "    option splice-auto\n" if splice else ""
    with open(cfg, "w") as f:
        f.write(f"""global
    nbthread 2
    maxconn 4096
defaults
    mode tcp
{extra}    timeout connect 5s
    timeout client 60s
    timeout server 60s
frontend fe
    bind 127.0.0.1:{listen}
    default_backend be
backend be
    server up 127.0.0.1:{up}
""")
    return subprocess.Popen(["haproxy", "-db", "-f", cfg],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def start_nginx(listen, up, tmp):
    cfg = os.path.join(tmp, "nginx.conf")
    with open(cfg, "w") as f:
        f.write(f"""load_module /usr/lib/nginx/modules/ngx_stream_module.so;
worker_processes 2;
daemon off;
pid {tmp}/nginx.pid;
error_log {tmp}/nginx.err;
events {{ worker_connections 4096; }}
stream {{
    server {{
        listen 127.0.0.1:{listen};
        proxy_pass 127.0.0.1:{up};
    }}
}}
""")
    return subprocess.Popen(["nginx", "-c", cfg, "-p", tmp],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def jain(xs):
    s, q = sum(xs), sum(x * x for x in xs)
    return 1.0 if q == 0 else s * s / (len(xs) * q)


def run_iperf(port, streams, secs, reverse):
    args = ["iperf3", "-c", "127.0.0.1", "-p", str(port), "-P", str(streams), "-t", str(secs), "-J"]
    if reverse:
        args.append("-R")
    out = subprocess.run(args, capture_output=True, text=True, timeout=secs + 60)
    v = json.loads(out.stdout or "{}")
    if "error" in v:
        raise RuntimeError(v["error"])
    end = v["end"]
    per_stream = [s["receiver"]["bytes"] for s in end["streams"]]
    return end["sum_received"]["bytes"], end["sum_received"]["seconds"], per_stream


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--secs", type=int, default=5)
    ap.add_argument("--streams", type=int, nargs="+", default=[8, 64])
    ap.add_argument("--only", nargs="+",
                    default=["fairio", "fairio-copy", "haproxy", "haproxy-splice", "nginx"])
    ap.add_argument("--limit", type=int, help="MiB/s both ways, fairio contenders only")
    a = ap.parse_args()
    if a.limit:
        a.only = [n for n in a.only if n.startswith("fairio")]
    need([("iperf3", "iperf3"), ("haproxy", "haproxy"), ("nginx", "nginx-light")])
    tmp = tempfile.mkdtemp(prefix="fairio-proxy-bench-")
    up = free_port()
    server = subprocess.Popen(["iperf3", "-s", "-p", str(up), "-B", "127.0.0.1"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(up)
    starters = {
        "fairio": lambda listen, up, tmp: start_fairio(listen, up, tmp, limit=a.limit),
        "fairio-copy": lambda listen, up, tmp: start_fairio(
            listen, up, tmp, ["--splice-pipes", "0"], limit=a.limit),
        "haproxy": start_haproxy,
        "haproxy-splice": lambda listen, up, tmp: start_haproxy(listen, up, tmp, splice=True),
        "nginx": start_nginx,
    }
    try:
        for name in a.only:
            listen = free_port()
            proxy = starters[name](listen, up, tmp)
            wait_port(listen)
            time.sleep(0.5)
            try:
                for streams in a.streams:
                    for reverse in (True, False):
                        before = cpu_secs(proxy.pid)
                        total, secs, per = run_iperf(listen, streams, a.secs, reverse)
                        cpu = cpu_secs(proxy.pid) - before
                        gib = total / 2**30
                        print(json.dumps({
                            "scenario": "proxy", "proxy": name, "streams": streams,
                            "limit_mib": a.limit,
                            "direction": "download" if reverse else "upload",
                            "mib_per_sec": total / secs / 2**20,
                            "cpu_secs_per_gib": cpu / gib if gib else None,
                            "jain": jain(per),
                        }), flush=True)
                        time.sleep(1)
            finally:
                proxy.send_signal(signal.SIGTERM)
                try:
                    proxy.wait(10)
                except subprocess.TimeoutExpired:
                    proxy.kill()
    finally:
        server.kill()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
