"""The crawl plan and the per-host budget: plain functions, then the stage on a small skewed
web whose over-budget tail goes to a loopback Common Crawl stub (or is deferred)."""

from __future__ import annotations

import dataclasses
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import schemas
from pipeline.config import load
from pipeline.fetch import plan
from pipeline.fetch import stage as fetch
from pipeline.fetch.crawler import Crawler
from pipeline.fetch.records import FetchTask
from tests.conftest import DEMO_CONFIG
from tests.faultweb import ArchiveEmulation, FaultWeb
from tests.test_fetch_stage import PAGE, overrides, read_log

POLITE = dataclasses.replace(
    load(DEMO_CONFIG).fetch,
    max_per_host=1,
    min_host_delay_s=0.1,
    plan_response_s=0.01,
    respect_robots=False,
    max_host_seconds=1.0,
)


def test_a_host_admits_the_slower_of_its_delay_and_its_slots():
    assert plan.host_rate(POLITE) == pytest.approx(10.0)  # one start per 0.1 s
    slots = dataclasses.replace(POLITE, min_host_delay_s=0.0, max_per_host=2, plan_response_s=0.5)
    assert plan.host_rate(slots) == pytest.approx(4.0)
    assert plan.host_seconds(30, POLITE) == pytest.approx(3.0)
    robots = dataclasses.replace(POLITE, respect_robots=True)
    assert plan.host_seconds(30, robots) == pytest.approx(3.1)
    webtext = load(DEMO_CONFIG.parent / "webtext.toml").fetch
    assert plan.host_seconds(200_000, webtext) > 2 * 86_400  # the two days


def test_the_budget_keeps_the_highest_karma_links_live():
    assert plan.live_capacity(POLITE) == 10
    assert plan.live_capacity(dataclasses.replace(POLITE, respect_robots=True)) == 9
    assert plan.live_capacity(dataclasses.replace(POLITE, max_host_seconds=0.0)) is None
    links = [{"normalized_url": f"u{i:02d}", "karma": i % 7} for i in range(30)]
    live, over = plan.split_by_budget(links, POLITE)
    assert len(live) == 10 and len(over) == 20
    assert min(link["karma"] for link in live) >= max(link["karma"] for link in over)
    assert plan.split_by_budget(links[:10], POLITE) == (links[:10], [])


def test_the_plan_adds_up_hosts_and_finds_the_critical_path_with_and_without_budget():
    hosts = [plan.host_plan("big.test", 30, POLITE), plan.host_plan("mid.test", 6, POLITE)]
    hosts += [plan.host_plan(f"s{i}.test", 1, POLITE) for i in range(40)]
    halves = [plan.new_totals(), plan.new_totals()]
    for i, host in enumerate(hosts):
        plan.add_host(halves[i % 2], host)
    crawl_plan = plan.make_plan(plan.merge_totals(halves), POLITE)
    assert (crawl_plan["hosts"], crawl_plan["links"]) == (42, 76)
    assert crawl_plan["critical_path"] == {"host": "big.test", "links": 30, "seconds": 3.0}
    budget = crawl_plan["budget"]
    assert (budget["links_live"], budget["links_over_budget"], budget["hosts_over_budget"]) == (
        56,
        20,
        1,
    )
    assert budget["critical_path"]["seconds"] == pytest.approx(1.0)
    assert len(crawl_plan["top_hosts"]) == plan.TOP_HOSTS
    assert crawl_plan["top_hosts"][0]["host"] == "big.test"
    assert "big.test with 30 links" in plan.format_plan(crawl_plan)


def write_skewed_links(data_root, hosts: dict[str, int]) -> list[dict]:
    """`hosts`: host -> link count; karma falls with the path number."""
    rows = [
        {"normalized_url": f"https://{host}/{i:03d}", "host": host,
         "urls": [f"http://{host}/{i:03d}"], "karma": 1000 - i, "first_created_utc": 1,
         "submissions": []}
        for host, count in hosts.items()
        for i in range(count)
    ]  # fmt: skip
    (data_root / "links").mkdir(parents=True, exist_ok=True)
    table = pa.Table.from_pylist(rows, schema=schemas.LINK)
    pq.write_table(table, data_root / "links" / "links-00000-of-00001.parquet")
    return rows


SKEW = {"big.test": 30, "mid.test": 6, **{f"s{i}.test": 1 for i in range(6)}}
BUDGET = {"fetch.max_per_host": "1", "fetch.min_host_delay_s": "0.1",
          "fetch.plan_response_s": "0.01", "fetch.max_host_seconds": "1.0",
          "fetch.respect_robots": "false"}  # fmt: skip


def test_the_budget_sends_a_big_hosts_tail_to_common_crawl_and_the_counters_add_up(tmp_path):
    with FaultWeb() as web:
        for host, count in SKEW.items():
            for i in range(count):
                web.page(host, f"/{i:03d}", PAGE.format(f"{host} {i}"))
        archive = ArchiveEmulation(web)
        for i in range(10, 25):  # 15 of the 20 over budget were captured
            archive.add_commoncrawl(f"http://big.test/{i:03d}", PAGE.format(f"cc {i}").encode())
        write_skewed_links(tmp_path, SKEW)
        endpoints = {f"fetch.{k}": f'"{v}"' for k, v in archive.endpoints().items()}
        to_archive = {"fetch.archive_fallback": '"commoncrawl"', "fetch.over_budget": '"archive"'}
        sets = overrides(web, **BUDGET, **endpoints, **to_archive)
        summary = fetch.run(load(DEMO_CONFIG, sets), str(tmp_path), [])
        live_hits = {i: web.hits_for("big.test", f"/{i:03d}") for i in range(30)}

    written = json.loads((tmp_path / "fetch" / "_plan.json").read_text())
    assert written == summary["plan"]
    assert written["critical_path"] == {"host": "big.test", "links": 30, "seconds": 3.0}
    assert written["budget"]["links_over_budget"] == 20
    assert written["budget"]["archive_lookup_seconds"] == pytest.approx(2.0)  # 20 at 10/s
    assert written["budget"]["critical_path"]["seconds"] == pytest.approx(1.0)
    assert [i for i, n in live_hits.items() if n] == list(range(10))  # the top karma, live
    assert all(n <= 1 for n in live_hits.values())
    counters, totals = summary["counters"], summary["totals"]
    assert counters["budget_to_archive"] == 20 and "budget_deferred" not in counters
    assert counters["archive_commoncrawl"] == 15
    links = sum(SKEW.values())
    assert totals == {"ok": links - 5, "deferred": 5}
    rows = {r["url"]: r for r in read_log(tmp_path)}
    assert rows["http://big.test/012"]["source"] == "commoncrawl"
    assert rows["http://big.test/012"]["error_class"] == "live:deferred"
    assert rows["http://big.test/027"]["error_class"] == "over_budget"


def test_deferred_links_wait_for_the_next_run_which_takes_the_next_slice(tmp_path):
    with FaultWeb() as web:
        for host, count in SKEW.items():
            for i in range(count):
                web.page(host, f"/{i:03d}", PAGE.format(f"{host} {i}"))
        write_skewed_links(tmp_path, SKEW)
        sets = overrides(web, **BUDGET, **{"fetch.over_budget": '"defer"'})
        first = fetch.run(load(DEMO_CONFIG, sets), str(tmp_path), [])
        second = fetch.run(load(DEMO_CONFIG, sets), str(tmp_path), [])
        hits = [web.hits_for("big.test", f"/{i:03d}") for i in range(30)]
    assert first["counters"]["budget_deferred"] == 20
    assert first["totals"] == {"ok": 22, "deferred": 20}
    assert second["plan"]["links"] == 20 and second["counters"]["budget_deferred"] == 10
    assert second["totals"] == {"ok": 32, "deferred": 10}
    assert hits == [1] * 20 + [0] * 10  # each link live at most once, in karma order
    assert len(read_log(tmp_path)) == sum(SKEW.values())


def test_a_crawler_defers_more_links_than_its_result_queue_holds_without_waiting():
    config = dataclasses.replace(POLITE, concurrency=4, over_budget="defer")
    tasks = [
        FetchTask(f"http://big.test/{i}", f"https://big.test/{i}", 0, True) for i in range(500)
    ]
    crawler = Crawler(config, load(DEMO_CONFIG).links)
    try:
        results = list(crawler.crawl(tasks))
    finally:
        crawler.close()
    assert len(results) == 500
    assert {(r.outcome, r.error_class) for r in results} == {("deferred", "over_budget")}
