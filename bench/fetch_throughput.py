"""Fetch throughput: the crawler against a loopback web with 100 ms per response.

    python -m bench.fetch_throughput [--pages 20000] [--hosts 200] [--latency 0.1]

The web runs in its own process (tests/faultweb.py, asyncio), so its CPU is not counted as
the crawler's. Two clients fetch the same pages in this one process, one after the other:

  webtext   pipeline.fetch.crawler.Crawler with the per-host limits on (robots.txt read per host,
            max_per_host, min_host_delay_s), writing every page to a WARC file and the
            fetch-log parts, as a fetch worker does.
  anchor    the OpenWebText scraper's way: a thread pool in which each thread calls
            requests.get(url, timeout) one URL after another; no politeness, no robots,
            no connection reuse across calls, nothing stored.

Reports pages/s and CPU seconds per page (process CPU time over all threads) for each, and
the ratio. The target is >= 300 pages/s per worker process for webtext.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

from pipeline.config import load
from pipeline.fetch.crawler import Crawler
from pipeline.fetch.records import FetchTask
from pipeline.fetch.stage import PartWriter

REPO = Path(__file__).resolve().parent.parent


def start_web(
    latency: float, page_bytes: int, extra_args: tuple[str, ...] = ()
) -> tuple[subprocess.Popen, int]:
    """The benchmark web (tests/faultweb.py) in a process of its own; returns it and its port."""
    port_file = Path(tempfile.mkdtemp()) / "port"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.faultweb",
            "bench",
            "--port-file",
            str(port_file),
            "--latency",
            str(latency),
            "--page-bytes",
            str(page_bytes),
            *extra_args,
        ],  # fmt: skip
        cwd=REPO,
    )
    deadline = time.monotonic() + 30
    while not port_file.exists() or not port_file.read_text():
        if time.monotonic() > deadline or proc.poll() is not None:
            proc.kill()
            raise SystemExit("the benchmark web did not start")
        time.sleep(0.05)
    return proc, int(port_file.read_text())


def urls_for(pages: int, hosts: int) -> list[str]:
    return [f"http://site{i % hosts:03d}.bench.test/article/{i}" for i in range(pages)]


def run_webtext(urls: list[str], port: int, concurrency: int, out_dir: str) -> dict:
    config = load(REPO / "configs" / "demo.toml")
    fetch = dataclasses.replace(
        config.fetch,
        resolve_overrides={"*": f"127.0.0.1:{port}"},
        concurrency=concurrency,
        max_per_host=2,
        min_host_delay_s=0.1,
        respect_robots=True,
        allow_private_networks=True,
        total_timeout_s=30.0,
        read_timeout_s=10.0,
    )
    writer = PartWriter(out_dir, "bench", fetch.warc_max_bytes, {"operator": "bench"})
    crawler = Crawler(fetch, config.links, seed=1)
    cpu0, t0 = time.process_time(), time.monotonic()
    ok = 0
    for result in crawler.crawl([FetchTask(u, u) for u in urls]):
        ok += result.ok
        writer.add(result)
    writer.commit()
    wall, cpu = time.monotonic() - t0, time.process_time() - cpu0
    crawler.close()
    return {"ok": ok, "wall_s": wall, "cpu_s": cpu, "robots": "on", "per_host": "2, 0.1 s"}


def run_anchor(urls: list[str], port: int, threads: int) -> dict:
    def get(url: str) -> bool:
        host, path = url.split("/", 3)[2], "/" + url.split("/", 3)[3]
        try:
            r = requests.get(f"http://127.0.0.1:{port}{path}", headers={"Host": host}, timeout=30)
            return r.status_code == 200 and bool(r.text)
        except requests.RequestException:
            return False

    cpu0, t0 = time.process_time(), time.monotonic()
    with ThreadPoolExecutor(threads) as pool:
        ok = sum(pool.map(get, urls))
    wall, cpu = time.monotonic() - t0, time.process_time() - cpu0
    return {"ok": ok, "wall_s": wall, "cpu_s": cpu, "robots": "off", "per_host": "none"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pages", type=int, default=20_000)
    parser.add_argument("--hosts", type=int, default=200)
    parser.add_argument("--latency", type=float, default=0.1)
    parser.add_argument("--page-bytes", type=int, default=8000)
    parser.add_argument("--concurrency", type=int, default=256)
    args = parser.parse_args()
    web, port = start_web(args.latency, args.page_bytes)
    try:
        urls = urls_for(args.pages, args.hosts)
        with tempfile.TemporaryDirectory() as out_dir:
            ours = run_webtext(urls, port, args.concurrency, out_dir)
            warc_mb = sum(f.stat().st_size for f in Path(out_dir).rglob("*")) / 1e6
        anchor = run_anchor(urls, port, args.concurrency)
    finally:
        web.kill()
    print(f"{args.pages} pages over {args.hosts} hosts, {args.latency * 1000:.0f} ms per response, "
          f"{args.page_bytes} B pages, {args.concurrency} threads, cpus={os.cpu_count()}")  # fmt: skip
    print(
        f"{'client':<9} {'ok':>6} {'wall s':>7} {'pages/s':>8} {'CPU ms/page':>12}  robots  per-host"
    )
    for name, r in (("webtext", ours), ("anchor", anchor)):
        print(f"{name:<9} {r['ok']:>6} {r['wall_s']:>7.1f} {r['ok'] / r['wall_s']:>8.0f} "
              f"{1000 * r['cpu_s'] / max(r['ok'], 1):>12.2f}  {r['robots']:<7} {r['per_host']}")  # fmt: skip
    print(f"webtext WARC + log written: {warc_mb:.1f} MB")
    rate = (ours["ok"] / ours["wall_s"]) / (anchor["ok"] / anchor["wall_s"])
    cpu = (ours["cpu_s"] / max(ours["ok"], 1)) / (anchor["cpu_s"] / max(anchor["ok"], 1))
    print(f"ratio webtext/anchor: pages/s x{rate:.2f}, CPU per page x{cpu:.2f}")


if __name__ == "__main__":
    main()
