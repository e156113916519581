"""The build stage: archived responses -> extracted, filtered, deduplicated documents, in
three phases, each a Beam pipeline with one persisted output (docs/build.md):

extract (this module):
    fetch/ fetch log --ReadFetchLog--> links/ --ReadLinks-->
        --JoinLinks-->      CoGroupByKey on normalized_url: one stored response per URL,
                            with the submissions and karma that brought it in
        --DropWikipedia-->  the final URL, after redirects, on a Wikipedia host
        --GroupByPart-->    pages (WARC locations, never text), removed rows and dead
                            letters by part: xxh64(doc_id) mod build.partitions
        --ExtractPart-->    per part, pipeline.build.extract.analyze in killable child
                            processes (pipeline.build.supervisor): read the WARC record,
                            decode, trafilatura, normalize, language, the filters' verdict
                            (pipeline.build.filters), word and GPT-2 token counts; the
                            documents no filter rejected, the removed rows and the dead
                            letters written as the part's files in extracted/
                            (pipeline.build.parts); a part already written is skipped
dedup (pipeline.build.phases): extracted/ --Deduplicate--> dedup/removals-*.parquet
write (pipeline.build.phases): each part without its removals --WriteDocuments-->
    documents/data/documents-*.parquet (schemas.DOCUMENT), documents/removed/removed-*.parquet
    (schemas.REMOVED: every dropped document and why), documents/dead-letter-*.parquet, then
    the manifest, the dataset card and documents/_summary.json.

`build.phase` runs one phase alone. Files are written in a scratch folder beside their own
(extracted.tmp/, dedup.tmp/, documents.tmp/) and moved in when complete.

Every drop increments a counter named after its reason in the "webtext.build" namespace.
"""

from __future__ import annotations

import dataclasses
import functools
import sys
from collections import Counter
from collections.abc import Iterable, Iterator
from typing import Any

import apache_beam as beam
import pyarrow.parquet as pq
from apache_beam.io.filesystems import CompressionTypes, FileSystems

from pipeline import beamio, dataroot
from pipeline.bpe import load_gpt2
from pipeline.build import dataset, parts, phases
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
from pipeline.build.filters import wikipedia
from pipeline.build.parts import ExtractedParts
from pipeline.build.supervisor import ItemFailed, SupervisorPool
from pipeline.config import BuildConfig, Config
from pipeline.urls import host_of
from schemas.records import SCHEMA_NAME_KEY, removed_row

STAGE = "build"
LINKS_PATTERN = "links-*.parquet"
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
            dead = beamio.dead_letter("fetch log", None, "no_link", detail, row)
            yield beam.pvalue.TaggedOutput("dead_letter", (row["normalized_url"], dead))
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
            url, final_url = page.normalized_url, page.final_url
            row = removed_row(document_id(url), url, final_url, "filter", reason, detail)
            yield beam.pvalue.TaggedOutput("removed", row)


def extract_workers(build: BuildConfig) -> int:
    return build.extract_workers or beamio.usable_cpus()


def page_outcome(
    page: StoredPage, outcome: PageText | ItemFailed, fetch_dir: str, write_rejected: bool
) -> tuple[str, dict, list[str]]:
    """What one analyzed page becomes: (parts kind, its row, the counters it increments).

    A document no filter rejected is kept; a rejected one, or a page without a document, is
    a removed row named after the reason; an unreadable WARC record is a dead letter.
    """
    doc_id, url, final_url = document_id(page.normalized_url), page.normalized_url, page.final_url
    if isinstance(outcome, ItemFailed) and outcome.reason == "warc_unreadable":
        path = dataroot.join(fetch_dir, page.warc_file)
        row = beamio.dead_letter(path, None, "warc_unreadable", outcome.detail, final_url)
        return parts.DEAD_LETTER, row, ["dead_letter_warc"]
    if isinstance(outcome, ItemFailed):
        counter = failure_counter(outcome)
        row = removed_row(doc_id, url, final_url, "extract", counter, outcome.detail)
        return parts.REMOVED, row, ["responses_read", counter]
    doc, rejection = document_row(page, outcome), outcome.rejection
    if rejection is None:
        return parts.DOCUMENTS, doc, ["responses_read", "extracted", "kept"]
    text = doc["text"] if write_rejected else None
    row = removed_row(doc_id, url, final_url, "filter", rejection.reason, rejection.detail, text)
    return parts.REMOVED, row, ["responses_read", "extracted", rejection.reason]


class ExtractPart(beam.DoFn):
    """(part, {"page": StoredPages, "removed": rows, "dead_letter": rows}) -> the part's files
    in extracted/ (pipeline.build.parts), written by this DoFn: documents never enter a
    PCollection. A part already written is skipped and its recorded counters counted again,
    so a rerun resumes without loss or duplicates.

    Each page is `extract.analyze`d in one of this instance's killable child processes
    (pipeline.build.supervisor, `build.extract_workers` of them): PAGES_PER_BATCH pages per
    child per round trip, a time limit per page.
    """

    def __init__(self, config: Config, fetch_dir: str, extracted: ExtractedParts, scratch: str):
        self.config, self.fetch_dir = config, fetch_dir
        self.extracted, self.scratch = extracted, scratch

    def setup(self) -> None:
        config = self.config
        load_gpt2(config.tokenizer)  # a missing ranks file fails here, not in every page
        settings = AnalyzeSettings(
            config.build, config.tokenizer, self.fetch_dir, config.decontaminate
        )
        self.workers = extract_workers(config.build)
        self.supervisor = SupervisorPool(
            functools.partial(analyze, settings=settings),
            config.build.extract_timeout_s,
            warm_up=functools.partial(warm_up, settings),
            size=self.workers,
        )
        self.progress = beamio.ProgressLog(STAGE, "responses extracted", config.run.progress_every)

    def process(self, item: tuple[int, dict[str, Iterable[Any]]]) -> Iterator[int]:
        index, grouped = item
        if self.extracted.is_written(index):
            tally = self.extracted.read_record(index)["counters"]
        else:
            tally = self._extract(index, grouped)
        for name, value in tally.items():
            beamio.counter(STAGE, name).inc(value)
        yield index

    def _extract(self, index: int, grouped: dict[str, Iterable[Any]]) -> dict[str, int]:
        rows: dict[str, list[dict]] = {
            parts.DOCUMENTS: [],
            parts.REMOVED: list(grouped["removed"]),
            parts.DEAD_LETTER: list(grouped["dead_letter"]),
        }
        tally: Counter[str] = Counter()
        pages = sorted(grouped["page"], key=lambda page: page.normalized_url)
        batch = PAGES_PER_BATCH * self.workers
        for start in range(0, len(pages), batch):
            chunk = pages[start : start + batch]
            for page, outcome in zip(chunk, self.supervisor.map(chunk), strict=True):
                self.progress.tick()
                kind, row, counters = page_outcome(
                    page, outcome, self.fetch_dir, self.config.build.write_rejected
                )
                rows[kind].append(row)
                tally.update(counters)
        counts = dict(sorted(tally.items()))
        self.extracted.write(index, rows, counts, self.scratch, self.config.build.row_group_rows)
        return counts

    def teardown(self) -> None:
        supervisor = getattr(self, "supervisor", None)
        if supervisor is not None:
            supervisor.close()


# ---- the stage -------------------------------------------------------------------------------


class ExtractParts(beam.PTransform):
    """The extract phase: fetch log + links -> extracted/ parts; outputs the parts written."""

    def __init__(
        self, config: Config, data_root: str, fetch_logs: list[str], extracted: ExtractedParts
    ):
        super().__init__()
        self.config, self.data_root = config, data_root
        self.fetch_logs, self.extracted = fetch_logs, extracted

    def expand(self, pipeline: beam.Pipeline) -> beam.PCollection:
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
        part_of = self.extracted.part_of
        by_part = {
            "part": pipeline
            | "EveryPart" >> beam.Create([(i, i) for i in range(self.extracted.count)]),
            "page": not_wikipedia.pages
            | "PagesByPart"
            >> beam.Map(lambda page: (part_of(document_id(page.normalized_url)), page)),
            "removed": not_wikipedia.removed
            | "RemovedByPart" >> beam.Map(lambda row: (part_of(row["doc_id"]), row)),
            "dead_letter": joined.dead_letter
            | "DeadLettersByPart"
            >> beam.MapTuple(lambda url, row: (part_of(document_id(url)), row)),
        }
        scratch = dataroot.join(self.data_root, f"{dataroot.EXTRACTED_DIR}.tmp")
        return (
            by_part
            | "GroupByPart" >> beam.CoGroupByKey()
            | "ExtractPart"
            >> beam.ParDo(ExtractPart(self.config, fetch_dir, self.extracted, scratch))
        )


PHASES = ("all", "extract", "dedup", "write")


def run(config: Config, data_root: str, beam_args: list[str]) -> dict:
    """Run `build.phase`: all three phases in order, or one alone over the earlier phases'
    folders. Returns the stage summary when the write phase ran, else the phase's counters."""
    phase = config.build.phase
    if phase not in PHASES:
        raise dataroot.StageError(f"[build] phase = {phase!r}: use one of {', '.join(PHASES)}")
    # The phase chosen is how this run reaches the output, not what it is: never recorded.
    config = dataclasses.replace(config, build=dataclasses.replace(config.build, phase="all"))
    dataroot.check_not_renamed(data_root, STAGE)
    dataroot.check_data_root(config, data_root, STAGE)
    if phase in ("all", "extract"):
        counters = run_extract(config, data_root, beam_args)
    if phase in ("all", "dedup"):
        counters = phases.run_dedup(config, data_root, beam_args)
    if phase not in ("all", "write"):
        return {"stage": STAGE, "phase": phase, "counters": counters}
    written = phases.run_write(config, data_root, beam_args)
    counters, manifest = written["counters"], written["manifest"]
    documents = manifest["totals"]["documents"]
    lines = funnel(counters) + [list(line) for line in dataset.build_funnel(counters, documents)]
    summary = {"stage": STAGE, "counters": counters, "funnel": lines, "totals": manifest["totals"]}
    dataroot.write_summary(data_root, STAGE, summary)
    return summary


def run_extract(config: Config, data_root: str, beam_args: list[str]) -> dict[str, int]:
    """fetch log + links -> extracted/; parts an earlier run wrote are kept."""
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
    folder = dataroot.EXTRACTED_DIR
    dataroot.check_folder_config(config, data_root, folder, phases.EXTRACT_INPUTS, "build extract")
    summary = dataroot.join(data_root, folder, dataroot.SUMMARY)
    if dataroot.exists(summary):
        FileSystems.delete([summary])
    extracted = phases.extracted_parts(config, data_root)

    def build_pipeline(pipeline: beam.Pipeline) -> None:
        _ = pipeline | "ExtractParts" >> ExtractParts(config, data_root, fetch_logs, extracted)

    counters = beamio.run_pipeline(STAGE, build_pipeline, beam_args)
    dataroot.delete_folder(dataroot.scratch_beside(data_root, folder))
    phases.write_phase_summary(data_root, folder, counters)
    return counters


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
