"""The crawl plan: what each host costs under the politeness config, and the host budget.

Politeness caps how fast one host can be crawled whatever the number of workers: one host
admits at most one start per `min_host_delay_s` and `max_per_host` requests in flight, so
with responses of about `plan_response_s` it serves

    rate = min(1 / min_host_delay_s, max_per_host / plan_response_s)   requests per second

and a host with n links (plus its robots.txt) needs (n + 1) / rate seconds. The slowest host
is the crawl's *critical path*: a lower bound on the run's time. At WebText's one request a
second, a host with 200,000 links needs more than two days.

`fetch.max_host_seconds` bounds that: a host keeps as many links live as fit in the budget,
its highest-karma links first, and the rest are *over budget*: sent to the archive fallback
(`over_budget = "archive"`; a miss is then deferred) or deferred (`"defer"`). A deferred link
is logged as `deferred` and fetched by a later run, under the same budget again.
"""

from __future__ import annotations

import heapq
import math

from pipeline.config import FetchConfig

TOP_HOSTS = 20


def host_rate(config: FetchConfig) -> float:
    """Requests per second one host admits under the politeness config (inf: no bound)."""
    by_delay = 1 / config.min_host_delay_s if config.min_host_delay_s > 0 else math.inf
    by_slots = (
        config.max_per_host / config.plan_response_s if config.plan_response_s > 0 else math.inf
    )
    return min(by_delay, by_slots)


def host_seconds(links: int, config: FetchConfig) -> float:
    """Seconds a host with this many links needs, its robots.txt included."""
    rate = host_rate(config)
    requests = links + (1 if config.respect_robots and links else 0)
    return 0.0 if math.isinf(rate) else requests / rate


def live_capacity(config: FetchConfig) -> int | None:
    """Links one host may fetch live within `max_host_seconds`; None when there is no budget."""
    if config.max_host_seconds <= 0:
        return None
    rate = host_rate(config)
    if math.isinf(rate):
        return None
    robots = 1 if config.respect_robots else 0
    return max(0, math.floor(config.max_host_seconds * rate + 1e-9) - robots)


def split_by_budget(links: list[dict], config: FetchConfig) -> tuple[list[dict], list[dict]]:
    """A host's links as (live, over budget): the highest karma first, then by URL."""
    capacity = live_capacity(config)
    if capacity is None or len(links) <= capacity:
        return links, []
    ordered = sorted(links, key=lambda link: (-(link.get("karma") or 0), link["normalized_url"]))
    return ordered[:capacity], ordered[capacity:]


def host_plan(host: str, links: int, config: FetchConfig) -> dict:
    capacity = live_capacity(config)
    live = links if capacity is None else min(links, capacity)
    return {
        "host": host,
        "links": links,
        "seconds": round(host_seconds(links, config), 3),
        "live": live,
        "over_budget": links - live,
        "budget_seconds": round(host_seconds(live, config), 3),
    }


def new_totals() -> dict:
    """What the plan adds up over hosts: counts, and the biggest hosts as a min-heap."""
    return {"hosts": 0, "links": 0, "live": 0, "over_budget": 0, "hosts_over_budget": 0,
            "host_seconds": 0.0, "budget_host_seconds": 0.0, "top": []}  # fmt: skip


def add_host(totals: dict, host: dict) -> dict:
    totals["hosts"] += 1
    totals["hosts_over_budget"] += host["over_budget"] > 0
    for key in ("links", "live", "over_budget"):
        totals[key] += host[key]
    totals["host_seconds"] += host["seconds"]
    totals["budget_host_seconds"] += host["budget_seconds"]
    entry = (host["links"], host["host"], host)
    if len(totals["top"]) < TOP_HOSTS:
        heapq.heappush(totals["top"], entry)
    else:
        heapq.heappushpop(totals["top"], entry)
    return totals


def merge_totals(many) -> dict:
    merged, top = new_totals(), []
    for totals in many:
        for key, value in totals.items():
            if key != "top":
                merged[key] += value
        top += totals["top"]
    merged["top"] = heapq.nlargest(TOP_HOSTS, top)
    heapq.heapify(merged["top"])
    return merged


def make_plan(totals: dict, config: FetchConfig) -> dict:
    """The plan as written to `_plan.json`. Every host admits the same rate, so the host
    with the most links is the slowest: the critical path is among the top hosts."""
    top = sorted((host for _, _, host in totals["top"]), key=lambda h: (-h["links"], h["host"]))
    slowest = max(top, key=lambda h: (h["seconds"], h["host"]), default=None)
    budget_slowest = max(top, key=lambda h: (h["budget_seconds"], h["host"]), default=None)
    archive_seconds = 0.0
    if config.over_budget == "archive" and totals["over_budget"]:
        archive_seconds = host_seconds(totals["over_budget"], config)
    return {
        "politeness": {
            "max_per_host": config.max_per_host,
            "min_host_delay_s": config.min_host_delay_s,
            "plan_response_s": config.plan_response_s,
            "requests_per_host_s": round(host_rate(config), 6),
        },
        "hosts": totals["hosts"],
        "links": totals["links"],
        "host_seconds_total": round(totals["host_seconds"], 3),
        "critical_path": _path(slowest, "seconds"),
        "budget": {
            "max_host_seconds": config.max_host_seconds,
            "over_budget": config.over_budget,
            "live_links_per_host": live_capacity(config),
            "hosts_over_budget": totals["hosts_over_budget"],
            "links_live": totals["live"],
            "links_over_budget": totals["over_budget"],
            "host_seconds_total": round(totals["budget_host_seconds"], 3),
            "critical_path": _path(budget_slowest, "budget_seconds"),
            # The archive's index is one more host behind the same gate: one lookup per link.
            "archive_lookup_seconds": round(archive_seconds, 3),
        },
        "top_hosts": top,
    }


def _path(host: dict | None, key: str) -> dict:
    if host is None:
        return {"host": None, "links": 0, "seconds": 0.0}
    return {"host": host["host"], "links": host["links"], "seconds": host[key]}


def format_plan(plan: dict) -> str:
    """The plan in a few lines, for the log."""
    critical, budget = plan["critical_path"], plan["budget"]
    lines = [
        f"fetch plan: {plan['links']:,} links over {plan['hosts']:,} hosts at "
        f"{plan['politeness']['requests_per_host_s']:g} requests/s per host",
        f"  critical path: {critical['host']} with {critical['links']:,} links, "
        f"{_duration(critical['seconds'])}",
    ]
    if budget["live_links_per_host"] is not None:
        lines.append(
            f"  budget {_duration(budget['max_host_seconds'])} per host: "
            f"{budget['links_over_budget']:,} links of {budget['hosts_over_budget']:,} hosts "
            f"over it ({budget['over_budget']}); critical path then "
            f"{_duration(budget['critical_path']['seconds'])}"
            + (
                f", archive lookups {_duration(budget['archive_lookup_seconds'])}"
                if budget["archive_lookup_seconds"]
                else ""
            )
        )
    for host in plan["top_hosts"][:5]:
        lines.append(
            f"  {host['host']}: {host['links']:,} links, {_duration(host['seconds'])}"
            + (f", {host['over_budget']:,} over budget" if host["over_budget"] else "")
        )
    return "\n".join(lines)


def _duration(seconds: float) -> str:
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds:.1f} s" if seconds < 60 else f"{seconds / 60:.1f} min"
