"""Load benchmark of `squeezenet serve` (run by hand, loopback only, bounded in requests and time).

The server runs in a process of its own on 127.0.0.1 twice: with dynamic batching (``--max-batch 16``) and one
image at a time (``--max-batch 1``). Against each, 1, 8 and 32 concurrent clients (threads with a keep-alive
connection each) POST the 500 ImageNet sample photos to /predictions/squeezenet until every photo was sent
``--rounds`` times or ``--seconds`` ran out. Per run: throughput, p50/p99 latency, errors and the batch sizes
the server formed (from its /metrics), with ratios against one-at-a-time in the same run.

    .venv/bin/python benchmarks/serve_bench.py                       # the full run (a few minutes)
    .venv/bin/python benchmarks/serve_bench.py --clients 1,8 --rounds 1 --seconds 10   # a smoke run
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
WEIGHTS = SHARED / "weights/caffe_v1.1/squeezenet_v1.1.caffemodel"
SAMPLES = SHARED / "data/imagenet-samples"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start(args: argparse.Namespace, max_batch: int) -> tuple[subprocess.Popen, int]:
    port = free_port()
    command = [sys.executable, "-m", "squeezenet", "serve", "--weights", str(args.weights), "--backend",
               args.backend, "--port", str(port), "--max-batch", str(max_batch), "--max-wait-ms",
               str(args.max_wait_ms), "--no-access-log"]
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if server.poll() is not None:
            sys.exit(f"the server exited: {server.stderr.read()[-1000:]}")
        try:
            if request(port, "GET", "/v2/health/ready")[0] == 200:
                return server, port
        except OSError:
            time.sleep(0.2)
    server.kill()
    sys.exit("the server was not ready in 120 s")


def request(port: int, method: str, path: str, body: bytes | None = None,
            connection: http.client.HTTPConnection | None = None) -> tuple[int, bytes]:
    own = connection is None
    connection = connection or http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        connection.request(method, path, body=body, headers={"Content-Type": "image/jpeg"} if body else {})
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        if own:
            connection.close()


def batch_histogram(port: int) -> dict[str, float]:
    """The server's squeezenet_batch_size histogram: cumulative bucket counts, sum and count."""
    text = request(port, "GET", "/metrics")[1].decode()
    values = {}
    for line in text.splitlines():
        if line.startswith("squeezenet_batch_size_"):
            name, value = line.rsplit(" ", 1)
            values[name.removeprefix("squeezenet_batch_size_")] = float(value)
    return values


def load(port: int, photos: list[bytes], clients: int, total: int, seconds: float) -> dict[str, object]:
    """``clients`` threads sending photos in turn until ``total`` were sent or ``seconds`` passed."""
    sent, lock = [0], threading.Lock()
    latencies: list[float] = []
    errors: list[str] = []
    deadline = time.monotonic() + seconds

    def client() -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        while time.monotonic() < deadline:
            with lock:
                if sent[0] >= total:
                    break
                index = sent[0]
                sent[0] += 1
            started = time.perf_counter()
            try:
                status, body = request(port, "POST", "/predictions/squeezenet?topk=1", photos[index % len(photos)],
                                       connection)
            except (OSError, http.client.HTTPException) as error:
                errors.append(type(error).__name__)
                connection.close()
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
                continue
            elapsed = time.perf_counter() - started
            with lock:
                latencies.append(elapsed)
                if status != 200:
                    errors.append(f"HTTP {status}: {body[:100]!r}")
        connection.close()

    before = batch_histogram(port)
    threads = [threading.Thread(target=client) for _ in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    after = batch_histogram(port)
    batches = after.get("count", 0) - before.get("count", 0)
    images = after.get("sum", 0) - before.get("sum", 0)
    cumulative = [(key.split('"')[1], after[key] - before.get(key, 0)) for key in after if key.startswith("bucket")]
    formed = {bound: count - (cumulative[i - 1][1] if i else 0) for i, (bound, count) in enumerate(cumulative)}
    ordered = sorted(latencies)
    ok = len(latencies) - sum(1 for error in errors if error.startswith("HTTP"))
    return {"clients": clients, "requests": len(latencies) + sum(1 for e in errors if not e.startswith("HTTP")),
            "errors": len(errors), "error_examples": sorted(set(errors))[:3], "seconds": round(wall, 2),
            "img_per_s": round(ok / wall, 1) if wall else None,
            "p50_ms": round(1000 * statistics.median(ordered), 1) if ordered else None,
            "p99_ms": round(1000 * ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))], 1) if ordered else None,
            "mean_batch": round(images / batches, 2) if batches else None,
            "batches_by_size_bucket": {bound: count for bound, count in formed.items() if count}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", type=Path, default=WEIGHTS)
    parser.add_argument("--backend", default="pytorch")
    parser.add_argument("--clients", default="1,8,32", help="concurrent clients, one run each")
    parser.add_argument("--rounds", type=int, default=1, help="times each photo is sent per run (default 1: 500)")
    parser.add_argument("--seconds", type=float, default=120, help="time limit of each run")
    parser.add_argument("--max-batch", type=int, default=16, help="the batching server's --max-batch")
    parser.add_argument("--max-wait-ms", type=float, default=5)
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args()
    if not args.weights.is_file() or not SAMPLES.is_dir():
        sys.exit(f"needs the real data: {args.weights} and {SAMPLES}")
    photos = [path.read_bytes() for path in sorted(SAMPLES.glob("*.JPEG"))]
    total = len(photos) * args.rounds
    print(f"load average before: {os.getloadavg()[0]:.2f} ({os.cpu_count()} CPUs)", flush=True)
    rows = []
    for mode, max_batch in (("batching", args.max_batch), ("one-at-a-time", 1)):
        server, port = start(args, max_batch)
        try:
            for photo in photos[:20]:  # warm-up: first calls allocate
                request(port, "POST", "/predictions/squeezenet", photo)
            for clients in map(int, args.clients.split(",")):
                row = {"mode": mode, "max_batch": max_batch, **load(port, photos, clients, total, args.seconds)}
                rows.append(row)
                print(json.dumps(row), flush=True)
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=60)
    print(f"load average after: {os.getloadavg()[0]:.2f}", flush=True)
    baseline = {row["clients"]: row["img_per_s"] for row in rows if row["mode"] == "one-at-a-time"}
    single = baseline.get(1)
    print("\n| server | clients | requests | errors | img/s | p50 ms | p99 ms | mean batch | x one-at-a-time "
          "(same clients) | x one client, one at a time |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        same = baseline.get(row["clients"])
        ratio = f"{row['img_per_s'] / same:.2f}" if same and row["img_per_s"] else ""
        versus_single = f"{row['img_per_s'] / single:.2f}" if single and row["img_per_s"] else ""
        print(f"| {row['mode']} (--max-batch {row['max_batch']}) | {row['clients']} | {row['requests']} | "
              f"{row['errors']} | {row['img_per_s']} | {row['p50_ms']} | {row['p99_ms']} | {row['mean_batch']} | "
              f"{ratio} | {versus_single} |")
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "backend": args.backend}, indent=2))


if __name__ == "__main__":
    main()
