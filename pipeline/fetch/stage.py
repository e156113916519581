"""The fetch stage: links -> raw responses in WARC files + a fetch log (schemas.FETCH).

    ReadLinks -> SkipFetched -> GroupByHost -> ApplyBudget -> AssignBatches -> Crawl
        -> OnePerUrl -> WriteLog
    GroupByHost -> PlanHosts -> CombinePlan -> WritePlan (fetch/_plan.json; AssignBatches
        waits for it, so the plan is written and logged before the crawl starts)

Links are grouped by host, and hosts into batches of about `hosts_per_batch`, so all of a
host's URLs meet one politeness gate in one `Crawler`. The Crawl step writes its results as
*parts*: a WARC file and the log rows of the pages in it, each written under a temporary
name and renamed when complete, the WARC first. A part is the unit of progress:

    fetch/warc/<batch>-<seq>-<attempt>.warc.gz     the responses
    fetch/parts/<batch>-<seq>-<attempt>.parquet    their log rows (the commit marker)
    fetch/log-SSSSS-of-NNNNN.parquet               every row of every part, one per URL

A rerun reads the parts already there and skips their URLs (`rerun.link_to_fetch`: with
`fetch.retry_failed` it fetches the transient failures again), so a killed run loses only
what was in flight: a WARC whose log part never appeared is an orphan and is deleted, and
its URLs are fetched again. The consolidated log is rebuilt from all parts at the end of
each run (keeping one row per normalized_url, `rerun.best_row`), so it never holds a URL
twice.
"""

from __future__ import annotations

import hashlib
import logging
import sys
import uuid
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import Any

import apache_beam as beam
import xxhash
from apache_beam.io.filesystems import FileSystems
from apache_beam.io.parquetio import ReadAllFromParquet

import schemas
from pipeline import beamio, dataroot
from pipeline.config import Config, FetchConfig
from pipeline.fetch import archive, plan
from pipeline.fetch.crawler import Crawler
from pipeline.fetch.records import FetchResult, FetchTask
from pipeline.fetch.rerun import as_current, best_row, link_to_fetch
from pipeline.warc import WarcFile

log = logging.getLogger("webtext")

STAGE = "fetch"
WARC_DIR, PARTS_DIR, LOG_PREFIX = "warc", "parts", "log"
PLAN_FILE = "_plan.json"
# A part is also committed after this many log rows, so dead-link batches make progress too.
PART_MAX_ROWS = 1000


# --- plain functions --------------------------------------------------------------------------


def fetch_url(link: dict) -> str:
    """What to request for a link: the first URL as posted (sorted, so http:// before
    https://), not the normalized key, which drops `www.` and forces https."""
    for url in link.get("urls") or []:
        if url.lower().startswith(("http://", "https://")):
            return url
    return link["normalized_url"]


def fetch_row(
    result: FetchResult, warc_file: str | None, offset: int | None, length: int | None
) -> dict[str, Any]:
    """A schemas.FETCH row for one result; the WARC columns only for a stored page."""
    return {
        "url": result.task.url,
        "normalized_url": result.task.normalized_url,
        "outcome": result.outcome,
        "status": result.status,
        "error_class": result.error_class,
        "final_url": result.final_url,
        "redirects": list(result.redirects),
        "content_type": result.content_type,
        "charset": result.charset,
        "bytes": result.body_bytes,
        "truncated": result.truncated,
        "elapsed_s": round(result.elapsed_s, 4),
        "attempts": result.attempts,
        "warc_file": warc_file,
        "warc_offset": offset,
        "warc_length": length,
        "fetched_at": datetime.fromtimestamp(int(result.fetched_at), UTC),
        "source": result.source,
        "tls_verified": result.tls_verified,
        "retry_round": result.task.retry_round,
    }


def batch_name(normalized_urls: Iterable[str]) -> str:
    """A stable name for a batch: the hash of its URLs."""
    digest = hashlib.sha256("\n".join(sorted(normalized_urls)).encode()).hexdigest()
    return digest[:16]


def batch_of(host: str, num_batches: int) -> int:
    return xxhash.xxh64_intdigest(host.encode()) % max(num_batches, 1)


class PartWriter:
    """Writes a batch's results as parts: WARC renamed into place, then its log rows."""

    def __init__(self, fetch_dir: str, batch: str, warc_max_bytes: int, warcinfo: dict[str, str]):
        self.fetch_dir, self.batch = fetch_dir, batch
        self.warc_max_bytes = warc_max_bytes
        self.warcinfo = warcinfo
        self.attempt = uuid.uuid4().hex[:8]
        self.seq = 0
        self.rows: list[dict] = []
        self.warc: WarcFile | None = None

    def _stem(self) -> str:
        return f"{self.batch}-{self.seq:05d}-{self.attempt}"

    def add(self, result: FetchResult) -> list[dict]:
        """Record one result; returns the rows of a part that this completed, if any."""
        if result.ok:
            if self.warc is None:
                path = dataroot.join(self.fetch_dir, WARC_DIR, f"{self._stem()}.warc.gz")
                self.warc = WarcFile(path, self.warcinfo)
            offset, length = self.warc.write_result(result)
            self.rows.append(
                fetch_row(result, f"{WARC_DIR}/{self._stem()}.warc.gz", offset, length)
            )
        else:
            self.rows.append(fetch_row(result, None, None, None))
        full = self.warc is not None and self.warc.size >= self.warc_max_bytes
        if full or len(self.rows) >= PART_MAX_ROWS:
            return self.commit()
        return []

    def commit(self) -> list[dict]:
        if not self.rows:
            return []
        if self.warc is not None:
            self.warc.commit()
        part = dataroot.join(self.fetch_dir, PARTS_DIR, f"{self._stem()}.parquet")
        dataroot.write_bytes_atomic(
            part, beamio.parquet_bytes(self.rows, schemas.FETCH, len(self.rows))
        )
        rows, self.rows, self.warc = self.rows, [], None
        self.seq += 1
        return rows

    def abort(self) -> None:
        if self.warc is not None:
            self.warc.abort()


def crawl_batch(config: Config, fetch_dir: str, links: list[dict], seed: int = 0) -> Iterator[dict]:
    """Fetch a batch of links, writing parts as they fill; yields each committed row."""
    tasks = [
        FetchTask(
            fetch_url(link),
            link["normalized_url"],
            link.get("retry_round", 0),
            link.get("over_budget", False),
        )
        for link in links
    ]
    batch = batch_name(t.normalized_url for t in tasks)
    warcinfo = {
        "operator": "webtext",
        "http-header-user-agent": config.fetch.user_agent,
        "robots": "obey" if config.fetch.respect_robots else "ignore",
    }
    writer = PartWriter(fetch_dir, batch, config.fetch.warc_max_bytes, warcinfo)
    crawler = Crawler(
        config.fetch, config.links, seed=seed ^ xxhash.xxh64_intdigest(batch.encode())
    )
    try:
        for result in crawler.crawl(tasks):
            yield from writer.add(result)
        yield from writer.commit()
    except BaseException:
        writer.abort()
        raise
    finally:
        crawler.close()


# --- Beam wiring --------------------------------------------------------------------------------


def _links_to_fetch(item: tuple[str, dict], retry_failed: bool) -> Iterator[dict]:
    _, grouped = item
    for link in grouped["link"][:1]:
        todo = link_to_fetch(link, list(grouped["done"]), retry_failed)
        if todo is not None:
            if todo["retry_round"] > 0:
                beamio.counter(STAGE, "retried").inc()
            yield todo


def _plan_host(item: tuple[str, Iterable[dict]], config: FetchConfig) -> dict:
    host, links = item
    return plan.host_plan(host, sum(1 for _ in links), config)


def _apply_budget(item: tuple[str, Iterable[dict]], config: FetchConfig):
    """A host's links, those past its time budget marked `over_budget`."""
    host, links = item
    live, over = plan.split_by_budget(list(links), config)
    if over:
        to_archive = config.over_budget == "archive" and bool(config.archive_fallback)
        beamio.counter(STAGE, "budget_to_archive" if to_archive else "budget_deferred").inc(
            len(over)
        )
    return host, live + [{**link, "over_budget": True} for link in over]


class CombinePlan(beam.CombineFn):
    """Host plans -> the crawl plan (`plan.make_plan`)."""

    def __init__(self, config: FetchConfig):
        self.config = config

    def create_accumulator(self) -> dict:
        return plan.new_totals()

    def add_input(self, totals: dict, host: dict) -> dict:
        return plan.add_host(totals, host)

    def merge_accumulators(self, many: Iterable[dict]) -> dict:
        return plan.merge_totals(many)

    def extract_output(self, totals: dict) -> dict:
        return plan.make_plan(totals, self.config)


def _write_plan(crawl_plan: dict, fetch_dir: str) -> dict:
    dataroot.write_json(dataroot.join(fetch_dir, PLAN_FILE), crawl_plan)
    log.info("%s", plan.format_plan(crawl_plan))
    return crawl_plan


def _assign_batch(item: tuple[str, list[dict]], crawl_plan: dict, hosts_per_batch: int):
    host, links = item
    num_batches = -(-crawl_plan["hosts"] // max(hosts_per_batch, 1))
    return batch_of(host, num_batches), list(links)


class CrawlBatch(beam.DoFn):
    """Runs one Crawler over a batch of hosts; emits the fetch-log rows of committed parts."""

    def __init__(self, config: Config, fetch_dir: str):
        self.config, self.fetch_dir = config, fetch_dir

    def setup(self) -> None:
        self.progress = beamio.ProgressLog(STAGE, "urls", self.config.run.progress_every)

    def process(self, element: tuple[int, Iterable[list[dict]]]) -> Iterator[dict]:
        _, host_groups = element
        links = sorted(
            (link for group in host_groups for link in group), key=lambda x: x["normalized_url"]
        )
        for row in crawl_batch(self.config, self.fetch_dir, links, self.config.run.seed):
            beamio.counter(STAGE, row["outcome"]).inc()
            if row["source"] != "live":
                beamio.counter(STAGE, f"archive_{row['source']}").inc()
            self.progress.tick()
            yield row


def _count_logged(row: dict) -> dict:
    beamio.counter(STAGE, f"total_{row['outcome']}").inc()
    return row


def build_pipeline(
    pipeline: beam.Pipeline,
    config: Config,
    data_root: str,
    link_paths: list[str],
    part_paths: list[str],
) -> None:
    fetch_dir = dataroot.stage_dir(data_root, STAGE)
    links = (
        pipeline
        | "ListLinkShards" >> beam.Create(link_paths)
        | "ReadLinks" >> ReadAllFromParquet(columns=["normalized_url", "host", "urls", "karma"])
    )
    done = (
        pipeline
        | "ListLogParts" >> beam.Create(part_paths)
        | "ReadLogParts" >> ReadAllFromParquet()
        | "UpgradeRows" >> beam.Map(as_current)
    )
    todo = (
        {
            "link": links | "KeyLinks" >> beam.Map(lambda r: (r["normalized_url"], r)),
            "done": done | "KeyDone" >> beam.Map(lambda r: (r["normalized_url"], r)),
        }
        | "JoinFetched" >> beam.CoGroupByKey()
        | "SkipFetched" >> beam.FlatMap(_links_to_fetch, retry_failed=config.fetch.retry_failed)
    )
    by_host = (
        todo
        | "KeyByHost" >> beam.Map(lambda r: (r["host"], r))
        | "GroupByHost" >> beam.GroupByKey()
    )
    crawl_plan = (
        by_host
        | "PlanHosts" >> beam.Map(_plan_host, config=config.fetch)
        | "CombinePlan" >> beam.CombineGlobally(CombinePlan(config.fetch))
        | "WritePlan" >> beam.Map(_write_plan, fetch_dir=fetch_dir)
    )
    new_rows = (
        by_host
        | "ApplyBudget" >> beam.Map(_apply_budget, config=config.fetch)
        | "AssignBatches"
        >> beam.Map(
            _assign_batch,
            crawl_plan=beam.pvalue.AsSingleton(crawl_plan),
            hosts_per_batch=config.fetch.hosts_per_batch,
        )
        | "GroupBatches" >> beam.GroupByKey()
        | "Crawl" >> beam.ParDo(CrawlBatch(config, fetch_dir))
    )
    logged = (
        (done, new_rows)
        | "AllRows" >> beam.Flatten()
        | "KeyByUrl" >> beam.Map(lambda r: (r["normalized_url"], r))
        | "OnePerUrl" >> beam.CombinePerKey(best_row)
        | "DropKeys" >> beam.Values()
        | "CountLogged" >> beam.Map(_count_logged)
    )
    logged | "WriteLog" >> beamio.WriteParquet(dataroot.join(fetch_dir, LOG_PREFIX), schemas.FETCH)


def _check_config(config: Config) -> None:
    try:
        archive.parse_sources(config.fetch.archive_fallback)
    except ValueError as e:
        raise dataroot.StageError(str(e)) from None
    if config.fetch.oversize not in ("truncate", "drop"):
        raise dataroot.StageError(
            f'[fetch] oversize is {config.fetch.oversize!r}; use "truncate" or "drop"'
        )
    if config.fetch.over_budget not in ("archive", "defer"):
        raise dataroot.StageError(
            f'[fetch] over_budget is {config.fetch.over_budget!r}; use "archive" or "defer"'
        )
    if (
        config.fetch.max_host_seconds > 0
        and config.fetch.over_budget == "archive"
        and not config.fetch.archive_fallback
    ):
        raise dataroot.StageError(
            '[fetch] over_budget = "archive" needs an archive_fallback; set one, or use "defer"'
        )
    for host, address in config.fetch.resolve_overrides.items():
        if not address.rpartition(":")[2].isdigit():
            raise dataroot.StageError(
                f'[fetch] resolve_overrides["{host}"] = {address!r}; expected "ip:port"'
            )


def _stem(path: str, suffix: str) -> str:
    return path.rsplit("/", 1)[-1][: -len(suffix)]


def remove_leftovers(fetch_dir: str, old_log: bool) -> dict[str, int]:
    """Remove what a killed run or a retried bundle left: temporary files and WARCs whose
    log part never appeared; with `old_log`, the consolidated log too (rebuilt from parts).

    Only safe while no other fetch run writes to the same folder.
    """
    tmp = dataroot.match(dataroot.join(fetch_dir, WARC_DIR, "*.tmp-*")) + dataroot.match(
        dataroot.join(fetch_dir, PARTS_DIR, "*.tmp-*")
    )
    part_paths = dataroot.match(dataroot.join(fetch_dir, PARTS_DIR, "*.parquet"))
    parts = {_stem(p, ".parquet") for p in part_paths}
    warcs = dataroot.match(dataroot.join(fetch_dir, WARC_DIR, "*.warc.gz"))
    orphans = [w for w in warcs if _stem(w, ".warc.gz") not in parts]
    logs = dataroot.match(dataroot.join(fetch_dir, f"{LOG_PREFIX}-*.parquet")) if old_log else []
    if tmp or orphans or logs:
        FileSystems.delete(tmp + orphans + logs)
    return {"temporary_files_removed": len(tmp), "orphan_warcs_removed": len(orphans)}


def run(config: Config, data_root: str, beam_args: list[str]) -> dict:
    dataroot.check_data_root(config, data_root, STAGE)
    _check_config(config)
    link_paths = dataroot.match(
        dataroot.join(dataroot.stage_dir(data_root, "links"), "links-*.parquet")
    )
    if not link_paths:
        raise dataroot.StageError(
            f"no links shards under {dataroot.stage_dir(data_root, 'links')}; run `webtext links` first"
        )
    fetch_dir = dataroot.stage_dir(data_root, STAGE)
    cleaned = remove_leftovers(fetch_dir, old_log=True)
    part_paths = dataroot.match(dataroot.join(fetch_dir, PARTS_DIR, "*.parquet"))
    log.info("fetch: %d links shards, %d log parts already done", len(link_paths), len(part_paths))
    counters = beamio.run_pipeline(
        STAGE,
        lambda p: build_pipeline(p, config, data_root, link_paths, part_paths),
        beam_args,
    )
    after = remove_leftovers(fetch_dir, old_log=False)
    cleaned = {k: v + after[k] for k, v in cleaned.items()}
    run_counters = {k: v for k, v in counters.items() if not k.startswith("total_")}
    totals = {k[len("total_") :]: v for k, v in counters.items() if k.startswith("total_")}
    logged = sum(totals.values())
    plan_path = dataroot.join(fetch_dir, PLAN_FILE)
    summary = {
        "plan": dataroot.read_json(plan_path) if dataroot.exists(plan_path) else None,
        "counters": run_counters,
        "totals": totals,
        "cleanup": cleaned,
        "parts_before_run": len(part_paths),
        "funnel": [
            ("fetch: links logged", logged),
            ("fetch: pages stored", totals.get("ok", 0)),
            ("fetch: failed or skipped", logged - totals.get("ok", 0)),
        ],
    }
    dataroot.write_summary(data_root, STAGE, summary)
    return summary


if __name__ == "__main__":
    from pipeline.cli import main

    sys.exit(main([STAGE, *sys.argv[1:]]))
