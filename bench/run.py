#!/usr/bin/env python3
"""Load benchmark of an NGSI-LD broker with wrk; workloads are data (bench/workloads/*.json).

Runs against any broker URL (to compare Haskap with others side by side), or starts Haskap itself
on a temporary data directory (--haskap BINARY), which also lets it report RSS.

  bench/run.py --haskap target/release/haskap                 # Haskap, started here
  bench/run.py --url http://127.0.0.1:1026                    # any broker already running

Prints a Markdown table (req/s, entities/s, p50, p99, errors, RSS) and writes it with the raw
numbers to bench/runs/<date>-<host>/.
"""
import argparse, json, os, re, shutil, socket, subprocess, sys, tempfile, time, urllib.request, datetime

HERE = os.path.dirname(os.path.abspath(__file__))
PREFIX = "urn:ngsi-ld:BeeHive:"


def http(method, url, body=None, headers=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=120) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def free_port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close(); return p


def spread_box(spec, n):
    """The lon/lat box over which n entities get the spec's density."""
    s = spec["spread"]
    km2 = n / s["entities_per_km2"]
    side_km = km2 ** 0.5
    dlat = side_km / 111.32 / 2
    dlon = side_km / (111.32 * __import__("math").cos(__import__("math").radians(s["lat"]))) / 2
    return [s["lon"] - dlon, s["lat"] - dlat, s["lon"] + dlon, s["lat"] + dlat]


def entity(template, i, box=None):
    e = json.loads(template.replace("{{id}}", f"{PREFIX}{i}"))
    if box:
        # A low-discrepancy spread, so that density is even at every scale.
        fx, fy = (i * 0.6180339887) % 1, (i * 0.7548776662) % 1
        e["location"]["value"]["coordinates"] = [round(box[0] + fx * (box[2] - box[0]), 6), round(box[1] + fy * (box[3] - box[1]), 6)]
        e["incoming"]["value"] = i % 40
    return e


def preload(base, template, n, start=0, batch=1000, box=None):
    for lo in range(start, n, batch):
        items = [entity(template, i, box) for i in range(lo, min(n, lo + batch))]
        st, body = http("POST", f"{base}/ngsi-ld/v1/entityOperations/upsert", items)
        if st >= 300 and st != 207:
            sys.exit(f"preload failed: {st} {body[:300]}")


def wrk(base, workload, clients, duration, n, template, box=None):
    env = dict(os.environ, MODE=workload["mode"], PREFIX=PREFIX, N=str(n), TEMPLATE=template,
               BOX=",".join(str(v) for v in (box or [0, 0, 0, 0])), MAX_DISTANCE=str(workload.get("max_distance", 1000)),
               GET_PATH=workload.get("path", "/health"), ATTR=workload.get("attr", "incoming"),
               BODY=workload.get("body", "{}"), BATCH=str(workload.get("batch", 100)))
    threads = min(clients, 2)
    cmd = ["wrk", "-t", str(threads), "-c", str(clients), "-d", f"{duration}s", "--latency", "-s", os.path.join(HERE, "wrk", "ngsi.lua"), base]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=duration + 60).stdout
    m = re.search(r"RESULT requests=(\d+) duration_us=(\d+) p50_us=(\d+) p99_us=(\d+) non2xx=(\d+) socket_errors=(\d+)", out)
    if not m:
        sys.exit(f"wrk gave no result:\n{out}")
    req, dur, p50, p99, non2xx, sock = map(int, m.groups())
    rps = req / (dur / 1e6)
    return {"requests": req, "rps": rps, "per_s": rps * workload.get("batch", 1), "p50_ms": p50 / 1000, "p99_ms": p99 / 1000, "errors": non2xx + sock}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", help="base URL of a running broker (without /ngsi-ld/v1)")
    ap.add_argument("--haskap", help="path to the haskap binary to start on a temporary data dir")
    ap.add_argument("--workload", default=os.path.join(HERE, "workloads", "core.json"))
    ap.add_argument("--duration", type=int, help="seconds per run (overrides the workload file)")
    ap.add_argument("--label", default="haskap")
    args = ap.parse_args()
    if not shutil.which("wrk"):
        sys.exit("wrk is needed: apt-get install wrk")
    spec = json.load(open(args.workload))
    template = json.dumps(json.load(open(os.path.join(HERE, "template-entity.json"))))
    duration = args.duration or spec["duration_s"]
    proc, tmp = None, None
    if args.haskap:
        tmp = tempfile.mkdtemp(prefix="haskap-bench-")
        port = free_port()
        proc = subprocess.Popen([args.haskap, "serve", "--listen", f"127.0.0.1:{port}", "--data-dir", tmp],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=dict(os.environ, HASKAP_LOG="warn"))
        base = f"http://127.0.0.1:{port}"
        for _ in range(200):
            try:
                if http("GET", base + "/health")[0] == 200: break
            except OSError: time.sleep(0.05)
    elif args.url:
        base = args.url.rstrip("/")
    else:
        sys.exit("give --url or --haskap")
    if spec.get("scales"):
        if not args.haskap:
            sys.exit("scale runs start Haskap themselves: give --haskap")
        return run_scales(args, spec, template, duration)
    rows = []
    try:
        n = spec["preload"]
        t0 = time.time(); preload(base, template, n); print(f"preloaded {n} entities in {time.time() - t0:.1f}s", file=sys.stderr)
        for w in spec["workloads"]:
            for c in spec["clients"]:
                r = wrk(base, w, c, duration, n, template)
                r.update(workload=w["name"], clients=c)
                if proc: r["rss_mib"] = rss_kib(proc.pid) / 1024
                rows.append(r)
                print(f"{w['name']:28s} c={c:<3d} {r['rps']:>10.0f} req/s {r['per_s']:>10.0f}/s p50 {r['p50_ms']:.2f} ms p99 {r['p99_ms']:.2f} ms errors {r['errors']}", file=sys.stderr)
        memory = None
        if proc and spec.get("memory"):
            # RSS per entity: a fresh broker, measured empty and with the target count.
            proc.terminate(); proc.wait()
            shutil.rmtree(tmp, ignore_errors=True); os.makedirs(tmp)
            proc = subprocess.Popen([args.haskap, "serve", "--listen", base.split("//")[1], "--data-dir", tmp],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=dict(os.environ, HASKAP_LOG="warn"))
            for _ in range(200):
                try:
                    if http("GET", base + "/health")[0] == 200: break
                except OSError: time.sleep(0.05)
            empty = rss_kib(proc.pid)
            m = spec["memory"]["entities"]
            preload(base, template, m)
            time.sleep(1)
            full = rss_kib(proc.pid)
            memory = {"entities": m, "rss_empty_mib": empty / 1024, "rss_full_mib": full / 1024, "kib_per_entity": (full - empty) / m}
            print(f"RSS: {empty/1024:.0f} MiB empty, {full/1024:.0f} MiB with {m} entities: {(full-empty)/m:.2f} KiB/entity", file=sys.stderr)
    finally:
        if proc: proc.terminate(); proc.wait()
        if tmp: shutil.rmtree(tmp, ignore_errors=True)
    lines = ["| workload | clients | req/s | entities/s | p50 ms | p99 ms | errors | RSS MiB |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['workload']} | {r['clients']} | {r['rps']:.0f} | {r['per_s']:.0f} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {r['errors']} | {r.get('rss_mib', float('nan')):.0f} |")
    if memory:
        lines.append(f"\nRSS with {memory['entities']} entities: {memory['rss_full_mib']:.0f} MiB ({memory['rss_empty_mib']:.0f} MiB empty): **{memory['kib_per_entity']:.2f} KiB per entity**.")
    table = "\n".join(lines)
    print(table)
    out = os.path.join(HERE, "runs", f"{datetime.date.today()}-{socket.gethostname()}-{args.label}")
    os.makedirs(out, exist_ok=True)
    json.dump({"label": args.label, "duration_s": duration, "rows": rows, "memory": memory}, open(os.path.join(out, "results.json"), "w"), indent=1)
    open(os.path.join(out, "results.md"), "w").write(table + "\n")


def start_haskap(binary, tmp, port):
    proc = subprocess.Popen([binary, "serve", "--listen", f"127.0.0.1:{port}", "--data-dir", tmp],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=dict(os.environ, HASKAP_LOG="warn"))
    t0 = time.time()
    base = f"http://127.0.0.1:{port}"
    while time.time() - t0 < 300:
        try:
            if http("GET", base + "/health")[0] == 200:
                break
        except OSError:
            time.sleep(0.05)
    return proc, base, time.time() - t0


def run_scales(args, spec, template, duration):
    rows, scales = [], []
    for n in spec["scales"]:
        tmp = tempfile.mkdtemp(prefix="haskap-bench-")
        port = free_port()
        proc, base, _ = start_haskap(args.haskap, tmp, port)
        try:
            box = spread_box(spec, n)
            t0 = time.time(); preload(base, template, n, box=box); load_s = time.time() - t0
            proc.terminate(); proc.wait()
            proc, base, startup = start_haskap(args.haskap, tmp, port)
            rss_idle = rss_kib(proc.pid) / 1024
            print(f"n={n}: loaded in {load_s:.1f}s, start-up {startup:.1f}s, RSS {rss_idle:.0f} MiB", file=sys.stderr)
            peak = rss_idle
            for w in spec["workloads"]:
                for c in spec["clients"]:
                    r = wrk(base, w, c, duration, n, template, box)
                    r.update(workload=w["name"], clients=c, entities=n)
                    r["rss_mib"] = rss_kib(proc.pid) / 1024
                    peak = max(peak, r["rss_mib"])
                    rows.append(r)
                    print(f"n={n} {w['name']:28s} c={c:<3d} {r['rps']:>9.0f} req/s p50 {r['p50_ms']:.2f} ms p99 {r['p99_ms']:.2f} ms errors {r['errors']}", file=sys.stderr)
            scales.append({"entities": n, "load_s": load_s, "startup_s": startup, "rss_idle_mib": rss_idle, "rss_peak_mib": peak})
        finally:
            proc.terminate(); proc.wait()
            shutil.rmtree(tmp, ignore_errors=True)
    lines = ["| entities | workload | clients | req/s | p50 ms | p99 ms | errors |", "|---:|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['entities']} | {r['workload']} | {r['clients']} | {r['rps']:.0f} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {r['errors']} |")
    lines += ["", "| entities | bulk load s | start-up s | RSS idle MiB | RSS peak under queries MiB |", "|---:|---:|---:|---:|---:|"]
    for sc in scales:
        lines.append(f"| {sc['entities']} | {sc['load_s']:.1f} | {sc['startup_s']:.1f} | {sc['rss_idle_mib']:.0f} | {sc['rss_peak_mib']:.0f} |")
    table = "\n".join(lines)
    print(table)
    out = os.path.join(HERE, "runs", f"{datetime.date.today()}-{socket.gethostname()}-{args.label}-query")
    os.makedirs(out, exist_ok=True)
    json.dump({"rows": rows, "scales": scales}, open(os.path.join(out, "results.json"), "w"), indent=1)
    open(os.path.join(out, "results.md"), "w").write(table + "\n")


if __name__ == "__main__":
    main()
