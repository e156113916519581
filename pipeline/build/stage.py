"""The build stage: archived responses -> extracted, filtered, deduplicated documents.

    fetch/ fetch log --ReadFetchLog--> links/ --ReadLinks-->
        --JoinLinks-->      CoGroupByKey on normalized_url: one stored response per URL,
                            with the submissions and karma that brought it in
        --DropWikipedia-->  the final URL, after redirects, on a Wikipedia host
        --BatchPages-->     PAGES_PER_BATCH pages per extractor child per round trip
        --Extract-->        pipeline.build.extract.analyze in a killable child process
                            (pipeline.build.supervisor): read the WARC record, decode,
                            trafilatura, normalize, language, the filters' verdict
                            (pipeline.build.filters), word and GPT-2 token counts; then the
                            document row
        --Filter-->         keeps the documents no filter rejected: Wikipedia mirrors, junk
                            pages, language, length
        --Deduplicate-->    exact and MinHash near-duplicates (pipeline.build.dedup)
        --WriteDocuments--> pipeline.build.dataset: documents/data/documents-*.parquet
                            (schemas.DOCUMENT) and documents/removed/removed-*.parquet
                            (schemas.REMOVED: every dropped document and why), then the
                            manifest and the dataset card
    and documents/dead-letter-*.parquet (fetch-log rows that could not be used),
    documents/_summary.json. Files are written in documents.tmp/ (dataroot.scratch_dir) and
    moved into documents/ when complete; the run deletes documents.tmp/ when it finishes.

Every drop increments a counter named after its reason in the "webtext.build" namespace.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Iterable, Iterator
from typing import Any

import apache_beam as beam
import pyarrow.parquet as pq
from apache_beam.io.filesystems import CompressionTypes, FileSystems

from pipeline import beamio, dataroot
from pipeline.bpe import load_gpt2
from pipeline.build import dataset
from pipeline.build.dedup import Deduplicate
from pipeline.build.extract import (
    EXTRACTOR,
    AnalyzeSettings,
    PageText,
    StoredPage,
    analyze,
    document_id,
    failure_counter,
    warm_up,
)
from pipeline.build.filters import Rejection, wikipedia
from pipeline.build.supervisor import ItemFailed, SupervisorPool, default_pool_size
from pipeline.config import BuildConfig, Config
from pipeline.urls import host_of
from schemas.records import DEAD_LETTER, SCHEMA_NAME_KEY

STAGE = "build"
LINKS_PATTERN = "links-*.parquet"
DEAD_LETTER_PREFIX = "dead-letter"
# Pages sent to the extractor child in one message, so that it works through them without
# waiting on its parent; it reads their bodies from the WARC files one at a time.
PAGES_PER_BATCH = 16
LINK_COLUMNS = ["normalized_url", "karma", "first_created_utc", "submissions"]
FETCH_COLUMNS = [
    "normalized_url",
    "outcome",
    "final_url",
    "content_type",
    "charset",
    "warc_file",
    "warc_offset",
    "warc_length",
    "fetched_at",
]


# ---- plain functions -------------------------------------------------------------------------


def pick_fetch_row(rows: Iterable[dict]) -> dict | None:
    """The stored ("ok") row to build from: the latest fetch, ties broken by WARC position."""
    stored = [r for r in rows if r.get("outcome") == "ok" and r.get("warc_file")]
    if not stored:
        return None

    def order(row: dict) -> tuple:
        fetched = row.get("fetched_at")
        return (fetched.timestamp() if fetched else 0.0, row["warc_file"], row["warc_offset"] or 0)

    return max(stored, key=order)


def stored_page(row: dict, link: dict) -> StoredPage:
    return StoredPage(
        normalized_url=row["normalized_url"],
        final_url=row.get("final_url") or row["normalized_url"],
        content_type=row.get("content_type"),
        charset=row.get("charset"),
        warc_file=row["warc_file"],
        warc_offset=int(row["warc_offset"] or 0),
        warc_length=row.get("warc_length"),
        fetched_at=row.get("fetched_at"),
        karma=int(link["karma"]),
        first_created_utc=int(link["first_created_utc"]),
        submissions=list(link["submissions"] or []),
    )


def document_row(page: StoredPage, text: PageText) -> dict:
    """A schemas.DOCUMENT row: the page's analyzed text and its provenance."""
    return {
        "doc_id": document_id(page.normalized_url),
        "text": text.text,
        "title": text.title,
        "date": text.date,
        "language": text.language,
        "language_score": text.language_score,
        "word_count": text.word_count,
        "token_count": text.token_count,
        "normalized_url": page.normalized_url,
        "final_url": page.final_url,
        "host": host_of(page.final_url) or "",
        "karma": page.karma,
        "first_created_utc": page.first_created_utc,
        "submissions": page.submissions,
        "fetched_at": page.fetched_at,
        "warc_file": page.warc_file,
        "warc_offset": page.warc_offset,
        "extractor": EXTRACTOR,
        "text_hash": text.text_hash,
    }


def removed_row(
    normalized_url: str,
    final_url: str | None,
    stage: str,
    reason: str,
    detail: str,
    text: str | None,
) -> dict:
    """A schemas.REMOVED row for a document removed before dedup."""
    return {
        "doc_id": document_id(normalized_url),
        "normalized_url": normalized_url,
        "final_url": final_url,
        "stage": stage,
        "reason": reason,
        "detail": detail[:1000] if detail else detail,
        "cluster_id": None,
        "kept_doc_id": None,
        "text": text,
    }


def fetch_log_files(fetch_dir: str) -> list[str]:
    """The fetch folder's Parquet files whose schema says they are fetch logs.

    Only the folder's top level: fetch/parts/ holds the per-batch logs that the consolidated
    log already contains.
    """
    files = []
    for path in dataroot.match(dataroot.join(fetch_dir, "*.parquet")):
        with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as f:
            meta = pq.read_schema(f).metadata or {}
        if meta.get(SCHEMA_NAME_KEY) == b"fetch":
            files.append(path)
    return files


# ---- DoFns: wiring only ----------------------------------------------------------------------


class JoinFetchWithLink(beam.DoFn):
    """(normalized_url, {"fetch": rows, "link": rows}) -> StoredPage, or a dead letter."""

    def process(self, item: tuple[str, dict[str, list]]) -> Iterator[Any]:
        _, grouped = item
        fetch_rows, links = list(grouped["fetch"]), list(grouped["link"])
        if fetch_rows:  # a link never fetched is the fetch stage's to count
            beamio.counter(STAGE, "fetch_rows").inc(len(fetch_rows))
            yield from self._page(pick_fetch_row(fetch_rows), links)

    def _page(self, row: dict | None, links: list[dict]) -> Iterator[Any]:
        if row is None:
            beamio.counter(STAGE, "not_stored").inc()
        elif not links:
            beamio.counter(STAGE, "dead_letter_no_link").inc()
            detail = "no link row for this normalized_url"
            yield beam.pvalue.TaggedOutput(
                "dead_letter", beamio.dead_letter("fetch log", None, "no_link", detail, row)
            )
        else:
            yield stored_page(row, links[0])


class DropWikipedia(beam.DoFn):
    """Wikipedia by final URL costs nothing to check, so it goes before reading the WARC."""

    def process(self, page: StoredPage) -> Iterator[Any]:
        reason = wikipedia(page.final_url)
        if reason is None:
            yield page
        else:
            beamio.counter(STAGE, reason).inc()
            detail = host_of(page.final_url) or page.final_url
            yield beam.pvalue.TaggedOutput(
                "removed",
                removed_row(page.normalized_url, page.final_url, "filter", reason, detail, None),
            )


def extract_workers(build: BuildConfig) -> int:
    return build.extract_workers or default_pool_size()


class Extract(beam.DoFn):
    """A batch of StoredPages -> (document, the rejecting filter or None) each; pages without
    a document -> removed rows counted by reason, or dead letters when the WARC record cannot
    be read.

    Each page is `extract.analyze`d in one of this instance's killable child processes
    (pipeline.build.supervisor, `build.extract_workers` of them): a batch per round trip, a
    time limit per page.
    """

    def __init__(self, config: Config, fetch_dir: str):
        self.config = config
        self.fetch_dir = fetch_dir

    def setup(self) -> None:
        config = self.config
        load_gpt2(config.tokenizer)  # a missing ranks file fails here, not in every page
        settings = AnalyzeSettings(
            config.build, config.tokenizer, self.fetch_dir, config.decontaminate
        )
        self.supervisor = SupervisorPool(
            functools.partial(analyze, settings=settings),
            config.build.extract_timeout_s,
            warm_up=functools.partial(warm_up, settings),
            size=extract_workers(config.build),
        )
        self.progress = beamio.ProgressLog(STAGE, "responses extracted", config.run.progress_every)

    def process(self, pages: list[StoredPage]) -> Iterator[Any]:
        for page, outcome in zip(pages, self.supervisor.map(pages), strict=True):
            self.progress.tick()
            if isinstance(outcome, ItemFailed) and outcome.reason == "warc_unreadable":
                beamio.counter(STAGE, "dead_letter_warc").inc()
                path = dataroot.join(self.fetch_dir, page.warc_file)
                yield beam.pvalue.TaggedOutput(
                    "dead_letter",
                    beamio.dead_letter(
                        path, None, "warc_unreadable", outcome.detail, page.final_url
                    ),
                )
                continue
            beamio.counter(STAGE, "responses_read").inc()
            if isinstance(outcome, ItemFailed):
                counter = failure_counter(outcome)
                beamio.counter(STAGE, counter).inc()
                url, final_url = page.normalized_url, page.final_url
                yield beam.pvalue.TaggedOutput(
                    "removed", removed_row(url, final_url, "extract", counter, outcome.detail, None)
                )
            else:
                beamio.counter(STAGE, "extracted").inc()
                yield document_row(page, outcome), outcome.rejection

    def teardown(self) -> None:
        supervisor = getattr(self, "supervisor", None)
        if supervisor is not None:
            supervisor.close()


class Filter(beam.DoFn):
    """(document, rejection or None) -> the document, or a removed row named after the
    filter that rejected it (the verdict comes from the extractor child)."""

    def __init__(self, build: BuildConfig):
        self.build = build

    def process(self, item: tuple[dict, Rejection | None]) -> Iterator[Any]:
        doc, rejection = item
        if rejection is None:
            beamio.counter(STAGE, "kept").inc()
            yield doc
        else:
            beamio.counter(STAGE, rejection.reason).inc()
            text = doc["text"] if self.build.write_rejected else None
            url, final_url = doc["normalized_url"], doc["final_url"]
            yield beam.pvalue.TaggedOutput(
                "removed",
                removed_row(url, final_url, "filter", rejection.reason, rejection.detail, text),
            )


# ---- the stage -------------------------------------------------------------------------------


class BuildDocuments(beam.PTransform):
    """The pipeline up to deduplication: {"docs", "removed", "dead_letter"} PCollections."""

    def __init__(self, config: Config, data_root: str, fetch_logs: list[str]):
        super().__init__()
        self.config = config
        self.data_root = data_root
        self.fetch_logs = fetch_logs

    def expand(self, pipeline: beam.Pipeline) -> dict[str, beam.PCollection]:
        fetch_dir = dataroot.stage_dir(self.data_root, "fetch")
        links_glob = dataroot.join(dataroot.stage_dir(self.data_root, "links"), LINKS_PATTERN)
        fetch_rows = (
            pipeline
            | "FetchLogFiles" >> beam.Create(self.fetch_logs)
            | "ReadFetchLog" >> beam.io.ReadAllFromParquet(columns=FETCH_COLUMNS)
            | "KeyFetchRows" >> beam.Map(lambda row: (row["normalized_url"], row))
        )
        links = (
            pipeline
            | "ReadLinks" >> beam.io.ReadFromParquet(links_glob, columns=LINK_COLUMNS)
            | "KeyLinks" >> beam.Map(lambda row: (row["normalized_url"], row))
        )
        joined = (
            {"fetch": fetch_rows, "link": links}
            | "JoinLinks" >> beam.CoGroupByKey()
            | "PickResponse"
            >> beam.ParDo(JoinFetchWithLink()).with_outputs("dead_letter", main="pages")
        )
        not_wikipedia = joined.pages | "DropWikipedia" >> beam.ParDo(DropWikipedia()).with_outputs(
            "removed", main="pages"
        )
        batch = PAGES_PER_BATCH * extract_workers(self.config.build)  # a round trip per child
        extracted = (
            not_wikipedia.pages
            | "BatchPages" >> beam.BatchElements(min_batch_size=batch, max_batch_size=batch)
            | "Extract"
            >> beam.ParDo(Extract(self.config, fetch_dir)).with_outputs(
                "removed", "dead_letter", main="docs"
            )
        )
        filtered = extracted.docs | "Filter" >> beam.ParDo(Filter(self.config.build)).with_outputs(
            "removed", main="docs"
        )
        removed = (
            not_wikipedia.removed,
            extracted.removed,
            filtered.removed,
        ) | "RemovedBeforeDedup" >> beam.Flatten()
        dead = (joined.dead_letter, extracted.dead_letter) | "DeadLetters" >> beam.Flatten()
        return {"docs": filtered.docs, "removed": removed, "dead_letter": dead}


def _clear_outputs(docs_dir: str, scratch: str) -> None:
    """A rerun replaces the dead letters (pipeline.build.dataset replaces its own shards) and
    drops what a killed run left in the scratch folder."""
    stale = dataroot.match(dataroot.join(docs_dir, f"{DEAD_LETTER_PREFIX}-*.parquet"))
    if stale:
        FileSystems.delete(stale)
    dataroot.delete_folder(scratch)


def run(config: Config, data_root: str, beam_args: list[str]) -> dict:
    dataroot.check_not_renamed(data_root, STAGE)
    dataroot.check_data_root(config, data_root, STAGE)
    fetch_dir = dataroot.stage_dir(data_root, "fetch")
    links_dir = dataroot.stage_dir(data_root, "links")
    fetch_logs = fetch_log_files(fetch_dir)
    if not fetch_logs:
        raise dataroot.StageError(
            f"no fetch log under {fetch_dir}: run `webtext fetch` with this --data-root first"
        )
    if not dataroot.match(dataroot.join(links_dir, LINKS_PATTERN)):
        raise dataroot.StageError(
            f"no {LINKS_PATTERN} under {links_dir}: run `webtext links` with this --data-root first"
        )
    docs_dir = dataroot.stage_dir(data_root, STAGE)
    scratch = dataroot.scratch_dir(data_root, STAGE)
    _clear_outputs(docs_dir, scratch)
    dead_letter_prefix = dataroot.join(scratch, DEAD_LETTER_PREFIX)

    def build_pipeline(pipeline: beam.Pipeline) -> None:
        parts = pipeline | "BuildDocuments" >> BuildDocuments(config, data_root, fetch_logs)
        deduplicated = parts["docs"] | "Deduplicate" >> Deduplicate(config.dedup)
        kept = deduplicated["kept"] | "CountWritten" >> beam.Map(_count("documents_written"))
        removed = (parts["removed"], deduplicated["removed"]) | "AllRemoved" >> beam.Flatten()
        {"kept": kept, "removed": removed} | "WriteDocuments" >> dataset.WriteDocuments(
            data_root, config
        )
        parts["dead_letter"] | "WriteDeadLetters" >> beamio.WriteParquet(
            dead_letter_prefix, DEAD_LETTER, 1, config.build.row_group_rows
        )

    counters = beamio.run_pipeline(STAGE, build_pipeline, beam_args)
    dataroot.move_into(dataroot.match(f"{dead_letter_prefix}-*.parquet"), docs_dir)
    manifest = dataset.finish(config, data_root, counters)
    documents = manifest["totals"]["documents"]
    lines = funnel(counters) + [list(line) for line in dataset.build_funnel(counters, documents)]
    summary = {"stage": STAGE, "counters": counters, "funnel": lines, "totals": manifest["totals"]}
    dataroot.write_summary(data_root, STAGE, summary)
    return summary


def _count(name: str):
    def count(doc: dict) -> dict:
        beamio.counter(STAGE, name).inc()
        return doc

    return count


def funnel(counters: dict[str, int]) -> list[list[Any]]:
    """The extraction and filter lines of the whole-run funnel; dedup's follow them."""
    failed = sum(v for k, v in counters.items() if k.startswith("extract_"))
    junk = sum(v for k, v in counters.items() if k.startswith("junk_"))
    return [
        ["build: responses read", counters.get("responses_read", 0)],
        ["build: extraction failed or timed out", failed],
        ["build: Wikipedia (final URL)", counters.get("wikipedia", 0)],
        ["build: Wikipedia mirrors", counters.get("wikipedia_mirror", 0)],
        ["build: junk pages", junk],
        ["build: not the wanted language", counters.get("language", 0)],
        ["build: too short", counters.get("too_short", 0)],
        ["build: overlap an eval set ([decontaminate])", counters.get("eval_overlap", 0)],
        ["build: after filters", counters.get("kept", 0)],
    ]


if __name__ == "__main__":
    from pipeline.cli import main

    sys.exit(main([STAGE, *sys.argv[1:]]))
