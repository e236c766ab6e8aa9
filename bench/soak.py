#!/usr/bin/env python3
"""Soak test of issue 19: hostile and careless clients against Haskap for about a minute, with
writes and notifications running all the while.

Starts the given Haskap binary on a temporary data directory, preloads entities, subscribes a
healthy receiver to every change, then for the duration runs at the same time:

  - writes (partial updates, ~200/s) whose notifications the healthy receiver must all get;
  - a stream (SSE) client that never reads;
  - 20 periodic subscriptions (timeInterval 1 s) to an endpoint that accepts and never answers;
  - 3,000 slowloris connections (a header line every few seconds, reopened when closed);
  - 5,000 idle connections (reopened when closed);
  - a /health probe on a fresh connection every 20 ms, from a process of its own (so that the
    load generator's own event loop does not count in the latency).

It samples the broker's RSS and open files every second and prints a Markdown summary:
baseline and peak RSS, open files, /health p50/p99/max and failures, writes done, notifications
delivered. Exit status 1 when a target of issue 19 is missed (RSS < 2x baseline, /health p99 <
100 ms, every notification to the healthy receiver delivered, open files bounded).

  bench/soak.py --haskap target/release/haskap [--seconds 60]
"""
import argparse, asyncio, json, os, resource, shutil, socket, subprocess, sys, tempfile, time

SLOWLORIS = 3000
IDLE = 5000
DEAD_SUBSCRIPTIONS = 20
WRITE_RATE = 200
ENTITIES = 200


def free_port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close(); return p


def proc_stats(pid):
    with open(f"/proc/{pid}/status") as f:
        rss = next(int(l.split()[1]) for l in f if l.startswith("VmRSS:"))
    return rss, len(os.listdir(f"/proc/{pid}/fd"))


async def request(port, method, path, body=None, headers=None):
    """One HTTP/1.1 request on a fresh connection; returns (status, body)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    data = b"" if body is None else json.dumps(body).encode()
    head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Length: {len(data)}\r\n"
    if body is not None:
        head += "Content-Type: application/json\r\n"
    for k, v in (headers or {}).items():
        head += f"{k}: {v}\r\n"
    writer.write(head.encode() + b"\r\n" + data)
    await writer.drain()
    raw = await reader.read()
    writer.close()
    status = int(raw.split(b" ", 2)[1]) if raw.startswith(b"HTTP/1.1 ") else 0
    return status, raw.split(b"\r\n\r\n", 1)[-1]


class Receiver:
    """A healthy notification endpoint: counts the changes notified per entity."""

    def __init__(self):
        self.seen = {}

    async def handle(self, reader, writer):
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next((int(l.split(b":")[1]) for l in head.split(b"\r\n") if l.lower().startswith(b"content-length:")), 0)
                body = json.loads(await reader.readexactly(length)) if length else {}
                for e in body.get("data", []):
                    n = e.get("n", {}).get("value")
                    if n is not None:
                        self.seen[e["id"]] = max(self.seen.get(e["id"], -1), n)
                writer.write(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        writer.close()


async def black_hole(reader, writer):
    """An endpoint that accepts and never answers."""
    try:
        await asyncio.sleep(3600)
    except asyncio.CancelledError:
        writer.close()


async def keep_slowloris(port, stop, counters):
    while not stop.is_set():
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            counters["opened"] += 1
            writer.write(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            while not stop.is_set() and not reader.at_eof():
                writer.write(b"X-a: b\r\n")
                await writer.drain()
                try:
                    await asyncio.wait_for(reader.read(1), 5)
                except asyncio.TimeoutError:
                    pass
            writer.close()
        except (ConnectionError, OSError):
            await asyncio.sleep(0.5)


async def keep_idle(port, stop, counters):
    while not stop.is_set():
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            counters["opened"] += 1
            while not stop.is_set():
                try:
                    if not await asyncio.wait_for(reader.read(1), 2) and reader.at_eof():
                        break
                except asyncio.TimeoutError:
                    pass
            writer.close()
        except (ConnectionError, OSError):
            await asyncio.sleep(0.5)


async def non_reading_stream(port, stop):
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    sock.sendall(b"GET /haskap/v1/stream?type=Sensor HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n")
    await stop.wait()
    sock.close()


def probe_health(port, seconds):
    """`soak.py --probe PORT SECONDS`: GET /health on a fresh connection every 20 ms, blocking
    sockets, one process; prints the latencies (s) and failures as JSON."""
    latencies, failures = [], []
    end = time.time() + seconds
    while time.time() < end:
        started = time.perf_counter()
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as c:
                c.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
                raw = b""
                while chunk := c.recv(4096):
                    raw += chunk
            if raw.startswith(b"HTTP/1.1 200"):
                latencies.append(time.perf_counter() - started)
            else:
                failures.append(raw[:40].decode(errors="replace"))
        except OSError as e:
            failures.append(type(e).__name__)
        time.sleep(0.02)
    print(json.dumps({"latencies": latencies, "failures": failures}))


async def writes(port, stop, done):
    n = 0
    while not stop.is_set():
        started = time.perf_counter()
        i = n % ENTITIES
        status, body = await request(port, "PATCH", f"/ngsi-ld/v1/entities/urn:ngsi-ld:Sensor:{i}/attrs", {"n": n})
        if status == 204:
            done[f"urn:ngsi-ld:Sensor:{i}"] = n
        else:
            print(f"write failed: {status} {body[:200]}", file=sys.stderr)
        n += 1
        await asyncio.sleep(max(0, 1 / WRITE_RATE - (time.perf_counter() - started)))


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--haskap", required=True)
    ap.add_argument("--seconds", type=int, default=60)
    args = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    data = tempfile.mkdtemp(prefix="haskap-soak-")
    port = free_port()
    broker = subprocess.Popen([args.haskap, "serve", "--listen", f"127.0.0.1:{port}", "--data-dir", data],
                              env={**os.environ, "HASKAP_LOG": "warn"}, stderr=open(os.path.join(data, "log"), "w"))
    try:
        for _ in range(200):
            try:
                if (await request(port, "GET", "/health"))[0] == 200:
                    break
            except OSError:
                await asyncio.sleep(0.05)
        receiver = Receiver()
        healthy = await asyncio.start_server(receiver.handle, "127.0.0.1", 0)
        hole = await asyncio.start_server(black_hole, "127.0.0.1", 0)
        healthy_port, hole_port = healthy.sockets[0].getsockname()[1], hole.sockets[0].getsockname()[1]
        batch = [{"id": f"urn:ngsi-ld:Sensor:{i}", "type": "Sensor", "n": -1} for i in range(ENTITIES)]
        assert (await request(port, "POST", "/ngsi-ld/v1/entityOperations/upsert", batch))[0] in (201, 204)
        sub = {"type": "Subscription", "entities": [{"type": "Sensor"}], "watchedAttributes": ["n"],
               "notification": {"endpoint": {"uri": f"http://127.0.0.1:{healthy_port}/notify"}, "attributes": ["n"]}}
        assert (await request(port, "POST", "/ngsi-ld/v1/subscriptions", sub))[0] == 201
        for i in range(DEAD_SUBSCRIPTIONS):
            dead = {"type": "Subscription", "entities": [{"type": "Sensor"}], "timeInterval": 1,
                    "notification": {"endpoint": {"uri": f"http://127.0.0.1:{hole_port}/dead{i}"}}}
            assert (await request(port, "POST", "/ngsi-ld/v1/subscriptions", dead))[0] == 201
        await asyncio.sleep(1)
        base_rss, base_files = proc_stats(broker.pid)
        stop = asyncio.Event()
        counters = {"opened": 0}
        done = {}
        probe = await asyncio.create_subprocess_exec(sys.executable, __file__, "--probe", str(port), str(args.seconds),
                                                     stdout=asyncio.subprocess.PIPE)
        tasks = [asyncio.create_task(writes(port, stop, done)), asyncio.create_task(non_reading_stream(port, stop))]
        for i in range(SLOWLORIS):
            tasks.append(asyncio.create_task(keep_slowloris(port, stop, counters)))
        for i in range(IDLE):
            tasks.append(asyncio.create_task(keep_idle(port, stop, counters)))
        peak_rss, peak_files = base_rss, base_files
        started = time.time()
        while time.time() - started < args.seconds:
            await asyncio.sleep(1)
            rss, files = proc_stats(broker.pid)
            peak_rss, peak_files = max(peak_rss, rss), max(peak_files, files)
        stop.set()
        probed = json.loads((await probe.communicate())[0])
        latencies, failures = probed["latencies"], probed["failures"]
        await asyncio.sleep(0.5)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        # Every write's notification reaches the healthy receiver (allow for the last batch).
        deadline = time.time() + 15
        missing = done
        while time.time() < deadline:
            missing = {i: n for i, n in done.items() if receiver.seen.get(i, -1) < n}
            if not missing:
                break
            await asyncio.sleep(0.2)
        end_rss, end_files = proc_stats(broker.pid)
        latencies.sort()
        pct = lambda p: latencies[min(len(latencies) - 1, int(len(latencies) * p))] * 1000 if latencies else float("nan")
        writes_done = sum(n + 1 for n in done.values()) and max(done.values()) + 1
        rows = [
            ("RSS baseline / peak / end (MiB)", f"{base_rss / 1024:.0f} / {peak_rss / 1024:.0f} / {end_rss / 1024:.0f}"),
            ("open files baseline / peak / end", f"{base_files} / {peak_files} / {end_files}"),
            ("connections opened by slowloris and idle clients", f"{counters['opened']:,}"),
            ("/health probes ok / failed", f"{len(latencies):,} / {len(failures)}"),
            ("/health p50 / p99 / max (ms)", f"{pct(0.5):.1f} / {pct(0.99):.1f} / {pct(1.0) if latencies else float('nan'):.1f}"),
            ("writes acknowledged", f"{writes_done:,}"),
            ("entities whose last change was not notified", f"{len(missing)}"),
        ]
        print(f"| soak, {args.seconds} s | |\n|---|---:|")
        for k, v in rows:
            print(f"| {k} | {v} |")
        ok = peak_rss < 2 * base_rss and pct(0.99) < 100 and not missing and not failures and peak_files < 20_000
        print("targets met" if ok else "TARGETS MISSED")
        return 0 if ok else 1
    finally:
        broker.terminate()
        try:
            broker.wait(10)
        except subprocess.TimeoutExpired:
            broker.kill()
        shutil.rmtree(data, ignore_errors=True)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--probe"]:
        probe_health(int(sys.argv[2]), int(sys.argv[3]))
    else:
        sys.exit(asyncio.run(main()))
