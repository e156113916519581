"""The host long tail: the crawl plan against the crawl, with and without a per-host budget.

    python -m bench.fetch_longtail [--plan-links 1000000] [--links 3000] [--hosts 12000]

Links are spread over hosts by Zipf's law (host of rank r gets a share proportional to
1 / r^s, apportioned by largest remainder). With s = 1 over 12,000 hosts the biggest host
holds 10% of the links: 100,300 of 1,000,000.

1. The plan for `--plan-links` links under configs/webtext.toml's politeness (1 request a
   second per host) and its budget: the critical path with and without it, and the time
   the archive's index would need for the links over budget.
2. Three crawls of `--links` links with the same shape against a loopback web (its own
   process, `--latency` per response, robots.txt per host), politeness scaled down to
   `--delay` seconds between two requests to a host so that the run takes minutes: no
   budget, a `--budget` seconds budget deferring the tail, and the same budget sending the
   tail to a loopback Common Crawl stub. One `Crawler` crawls every host (one fetch worker).
   Each run reports its planned critical path (the archive's index counts as a host) and the
   wall time it took.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import tempfile
import time
import zlib
from collections import Counter
from pathlib import Path

from bench.fetch_throughput import start_web
from pipeline.config import FetchConfig, load
from pipeline.fetch import plan
from pipeline.fetch.crawler import Crawler
from pipeline.fetch.records import FetchTask
from tests.faultweb import ArchiveEmulation

REPO = Path(__file__).resolve().parent.parent


def zipf_counts(links: int, hosts: int, exponent: float) -> list[int]:
    """Links per host, biggest first, summing to `links` exactly; hosts left with none dropped."""
    weights = [1 / (rank**exponent) for rank in range(1, hosts + 1)]
    total = sum(weights)
    exact = [links * w / total for w in weights]
    counts = [int(x) for x in exact]
    by_remainder = sorted(range(hosts), key=lambda i: (counts[i] - exact[i], i))
    for i in by_remainder[: links - sum(counts)]:
        counts[i] += 1
    return [c for c in counts if c]


def host_links(counts: list[int]) -> dict[str, list[dict]]:
    """Links per host name; karma is a deterministic pseudo-random number per URL."""
    out = {}
    for rank, count in enumerate(counts):
        host = f"h{rank:05d}.zipf.test"
        urls = [f"http://{host}/a/{i}" for i in range(count)]
        out[host] = [{"normalized_url": u, "karma": zlib.crc32(u.encode()) % 1000} for u in urls]
    return out


def make_plan(counts: list[int], config: FetchConfig) -> dict:
    totals = plan.new_totals()
    for rank, count in enumerate(counts):
        plan.add_host(totals, plan.host_plan(f"h{rank:05d}", count, config))
    return plan.make_plan(totals, config)


def planned_seconds(crawl_plan: dict, budgeted: bool) -> float:
    if not budgeted:
        return crawl_plan["critical_path"]["seconds"]
    budget = crawl_plan["budget"]
    return max(budget["critical_path"]["seconds"], budget["archive_lookup_seconds"])


def tasks_for(links: dict[str, list[dict]], config: FetchConfig) -> list[FetchTask]:
    tasks = []
    for host_list in links.values():
        live, over = plan.split_by_budget(host_list, config)
        tasks += [FetchTask(link["normalized_url"], link["normalized_url"]) for link in live]
        tasks += [
            FetchTask(link["normalized_url"], link["normalized_url"], 0, True) for link in over
        ]
    return tasks


def crawl(tasks: list[FetchTask], config: FetchConfig, links_config, big_host: str) -> dict:
    crawler = Crawler(config, links_config, seed=1)
    outcomes, sources = Counter(), Counter()
    started = time.monotonic()
    big_done = 0.0
    for result in crawler.crawl(tasks):
        outcomes[result.outcome] += 1
        sources[result.source] += result.ok
        if f"//{big_host}/" in result.task.url and result.source == "live":
            big_done = time.monotonic() - started
    wall = time.monotonic() - started
    crawler.close()
    return {"wall_s": wall, "big_host_s": big_done, "outcomes": outcomes, "sources": sources}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--plan-links", type=int, default=1_000_000)
    parser.add_argument("--links", type=int, default=3_000)
    parser.add_argument("--hosts", type=int, default=12_000)
    parser.add_argument("--exponent", type=float, default=1.0)
    parser.add_argument("--latency", type=float, default=0.01)
    parser.add_argument("--delay", type=float, default=0.2)
    parser.add_argument("--budget", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=256)
    args = parser.parse_args()

    webtext = load(REPO / "configs" / "webtext.toml")
    full = zipf_counts(args.plan_links, args.hosts, args.exponent)
    print(f"plan: {args.plan_links:,} links over {len(full):,} hosts (Zipf s={args.exponent}, "
          f"{args.hosts:,} ranks); biggest host {full[0]:,} links; configs/webtext.toml politeness")  # fmt: skip
    # With the tail sent to the archive, so that the plan also shows the index's share.
    print(
        plan.format_plan(make_plan(full, dataclasses.replace(webtext.fetch, over_budget="archive")))
    )

    counts = zipf_counts(args.links, args.hosts, args.exponent)
    links = host_links(counts)
    big_host = next(iter(links))
    base = dataclasses.replace(
        load(REPO / "configs" / "demo.toml").fetch,
        concurrency=args.concurrency,
        max_per_host=1,
        min_host_delay_s=args.delay,
        plan_response_s=args.latency,
        respect_robots=True,
        allow_private_networks=True,
        total_timeout_s=30.0,
        max_retries=0,
    )
    budgeted = dataclasses.replace(base, max_host_seconds=args.budget)
    runs = [
        ("no budget", base),
        ("budget, defer", dataclasses.replace(budgeted, over_budget="defer")),
        ("budget, archive", dataclasses.replace(budgeted, over_budget="archive")),
    ]
    over_urls = [t.url for t in tasks_for(links, budgeted) if t.over_budget]
    with tempfile.TemporaryDirectory() as tmp:
        url_file = Path(tmp) / "cc-urls.txt"
        url_file.write_text("\n".join(over_urls))
        web, port = start_web(args.latency, 2000, ("--commoncrawl-urls", str(url_file)))
        try:
            stub = ArchiveEmulation.endpoints()
            print(f"\ncrawl: {args.links:,} links over {len(counts):,} hosts, biggest "
                  f"{counts[0]:,}; {args.latency * 1000:.0f} ms per response; 1 request per "
                  f"{args.delay:g} s per host; budget {args.budget:g} s; "
                  f"{args.concurrency} threads; cpus={os.cpu_count()}")  # fmt: skip
            print(f"{'run':<16} {'live':>6} {'archive':>7} {'deferred':>8} {'planned s':>9} "
                  f"{'wall s':>7} {'big host s':>10} {'ok':>6}")  # fmt: skip
            for name, config in runs:
                config = dataclasses.replace(
                    config,
                    resolve_overrides={"*": f"127.0.0.1:{port}"},
                    archive_fallback="commoncrawl" if config.over_budget == "archive" else "",
                    **stub,
                )
                tasks = tasks_for(links, config)
                crawl_plan = make_plan(counts, config)
                result = crawl(tasks, config, webtext.links, big_host)
                over = sum(t.over_budget for t in tasks)
                archived = result["sources"]["commoncrawl"]
                print(f"{name:<16} {len(tasks) - over:>6} {archived:>7} "
                      f"{result['outcomes']['deferred']:>8} "
                      f"{planned_seconds(crawl_plan, config.max_host_seconds > 0):>9.1f} "
                      f"{result['wall_s']:>7.1f} {result['big_host_s']:>10.1f} "
                      f"{result['outcomes']['ok']:>6}")  # fmt: skip
        finally:
            web.kill()


if __name__ == "__main__":
    main()
