"""The micro-web's costs: generating the demo web, and serving it.

    python -m bench.microweb [--seconds 3] [--clients 8]

1. `generate` at demo scale, CPU seconds: the first call in a process (which reads the
   Python documentation for its text) and a second call (text cached in the process).
2. Pages per second served over loopback to `--clients` threads, each with its own
   keep-alive connection, requesting the demo's article pages by Host header. The anchor,
   in the same run, is the standard library's own `python -m http.server --protocol
   HTTP/1.1` serving the same body files by path. Each server runs in its own process, so
   the clients' CPU is not the server's.
"""

from __future__ import annotations

import argparse
import http.client
import json
import random
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from pipeline.demo import generate


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port}")


def load(port: int, requests: list[tuple[str, str]], seconds: float, clients: int) -> float:
    """Pages per second that `clients` keep-alive connections get in `seconds`."""
    done = [0] * clients
    stop = time.monotonic() + seconds

    def client(index: int) -> None:
        rng = random.Random(index)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        while time.monotonic() < stop:
            host, target = rng.choice(requests)
            conn.request("GET", target, headers={"Host": host})
            response = conn.getresponse()
            response.read()
            assert response.status == 200, (host, target, response.status)
            done[index] += 1
        conn.close()

    started = time.monotonic()
    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(done) / (time.monotonic() - started)


def serve(command: list[str], port: int) -> subprocess.Popen:
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for_port(port)
    return process


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--clients", type=int, default=8)
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        cpu = time.process_time()
        truth = generate(str(out / "a"), seed=1234)
        first = time.process_time() - cpu
        cpu = time.process_time()
        generate(str(out / "b"), seed=1234)
        second = time.process_time() - cpu
        print(f"generate demo: {first:.2f} s CPU first call, {second:.2f} s cached text")
        print(
            f"  {truth.submissions_total:,} submissions, {truth.pages_total} pages, "
            f"{truth.hosts_total} hosts"
        )

        routes = json.loads((out / "a" / "site" / "routes.json").read_text())["routes"]
        pages = [
            r
            for r in routes
            if r["status"] == 200 and r.get("body", "").endswith(".html") and not r["delay_s"]
        ]
        by_host = [(r["host"], r["target"]) for r in pages]
        by_path = [("127.0.0.1", "/" + r["body"].removeprefix("bodies/")) for r in pages]

        port = free_port()
        site = str(out / "a" / "site")
        ours = serve(
            [sys.executable, "-m", "pipeline.demo", "serve", site, "--port", str(port)], port
        )
        try:
            ours_rate = load(port, by_host, args.seconds, args.clients)
        finally:
            ours.terminate()
            ours.wait()
        port = free_port()
        bodies = str(out / "a" / "site" / "bodies")
        anchor_cmd = [sys.executable, "-m", "http.server", "-b", "127.0.0.1", "-d", bodies]
        anchor = serve([*anchor_cmd, "-p", "HTTP/1.1", str(port)], port)
        try:
            anchor_rate = load(port, by_path, args.seconds, args.clients)
        finally:
            anchor.terminate()
            anchor.wait()
    print(f"serve, {args.clients} keep-alive clients, {args.seconds:.0f} s each:")
    print(f"  micro-web (Host routing)      {ours_rate:8.0f} pages/s")
    print(f"  python -m http.server (files) {anchor_rate:8.0f} pages/s")
    print(f"  ratio                         {ours_rate / anchor_rate:8.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
