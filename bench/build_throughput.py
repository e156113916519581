"""Build stage throughput: documents per second on one core, next to trafilatura alone.

    python -m bench.build_throughput [--config configs/demo.toml] [--repeat 2] [--rounds 2]

The 130 readability pages (../shared/pages/readability), repeated --repeat times, go through:

  trafilatura.extract, defaults   what a user would call: the first anchor
  extractor alone                 pipeline.extract.run_trafilatura with the [build] settings,
                                  title and date included, on HTML decoded beforehand: the
                                  anchor the stage's overhead is measured against
  chain, in process               checks, decode, extractor, normalize, language, words, tokens,
                                  hash (DocumentBuilder.from_response) -> filters.check_document
  chain, extractor process        the same, with the page's work in the killable child process,
                                  exactly as the stage's Extract DoFn runs it
  DirectRunner                    the stage's BuildDocuments transform (read fetch log and links,
                                  join, read WARC, extract, filter) on a data root holding the
                                  pages as gzipped WARC records; one worker, wall time including
                                  pipeline start-up

How it is timed, and why:
- Time is CPU time (user + system) of the process doing the work plus its extractor child,
  so documents/s is documents per CPU-second, i.e. per core, and stays meaningful on a
  shared, busy machine where wall time does not.
- Each variant runs in a process of its own, so no variant profits from caches another one
  warmed: trafilatura and htmldate keep LRU caches of lines and date strings, and a page
  processed right after the same page in the same process is ~20% cheaper, which is not what
  a stage that sees each page once gets.
- The variants take turns page by page, in an order that rotates from page to page, and are
  summed over --rounds passes: a burst of load from other work hits every variant alike
  (whole rounds, alternated, differed by 10% on a busy 2-core machine).
- The in-process chain's steps are also timed one by one (ms per page), in their own process.
- The DirectRunner figure includes the pipeline's start-up (imports are already done), so it
  is pessimistic for small --repeat.
"""

from __future__ import annotations

import argparse
import io
import multiprocessing
import os
import resource
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq
import trafilatura
from warcio.statusandheaders import StatusAndHeaders
from warcio.warcwriter import WARCWriter

from pipeline import beamio
from pipeline.build import BuildDocuments
from pipeline.config import Config, load
from pipeline.extract import (
    DocumentBuilder,
    ExtractFailed,
    ExtractorProcess,
    ExtractSettings,
    PageFn,
    Response,
    decode_html,
    detect_language,
    run_trafilatura,
)
from pipeline.filters import check_document
from pipeline.textnorm import normalize_text, text_hash
from pipeline.tokenizer import load_gpt2
from schemas.records import FETCH, LINK

SHARED = Path(__file__).resolve().parent.parent.parent / "shared"
PAGES = SHARED / "pages" / "readability"
RANKS = SHARED / "tokenizers" / "r50k_base.tiktoken"
DEFAULTS = "trafilatura.extract, defaults"
ANCHOR = "extractor alone (anchor)"
IN_PROCESS = "chain, in process"
CHILD = "chain, extractor process"
STEPS = "in-process steps"
EXTRACTOR_STEP = "extractor (run_trafilatura)"
WARM_UP_PAGES = 3


def load_pages(repeat: int) -> list[tuple[str, bytes]]:
    sources = sorted(PAGES.glob("*/source.html"))
    return [
        (f"http://bench{r}.example/{path.parent.name}", path.read_bytes())
        for r in range(repeat)
        for path in sources
    ]


def response(url: str, body: bytes) -> Response:
    return Response(
        normalized_url=url,
        final_url=url,
        body=body,
        content_type="text/html",
        charset=None,
        karma=3,
        first_created_utc=0,
        submissions=[],
    )


def child_cpu_seconds(pid: int | None) -> float:
    """User + system CPU of a live child process, from /proc (Linux)."""
    if pid is None:
        return 0.0
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _cpu(fn: Callable[..., Any], *args: object) -> tuple[float, Any]:
    started = time.process_time()
    result = fn(*args)
    return time.process_time() - started, result


class Variant:
    """One way of processing a page; `__call__` returns {what: CPU seconds} for one page."""

    def __init__(self, name: str, config: Config):
        self.name = name
        self.config = config
        self.settings = ExtractSettings.from_config(config.build)
        self.builder = DocumentBuilder(config.build, config.tokenizer)
        self.encoding = load_gpt2(config.tokenizer)
        self.extractor: ExtractorProcess | None = None
        if name == CHILD:
            self.extractor = ExtractorProcess(
                config.build.extract_timeout_s, target=self.builder.analyzer
            )

    def __call__(self, url: str, body: bytes) -> dict[str, float]:
        if self.name == STEPS:
            return self.steps(url, body)
        if self.name == DEFAULTS:
            return {self.name: _cpu(trafilatura.extract, body)[0]}
        if self.name == ANCHOR:
            html = decode_html(body)  # outside the timing: the anchor starts from decoded HTML
            return {self.name: _cpu(run_trafilatura, html, url, self.settings)[0]}
        analyze: PageFn | None = self.extractor.call if self.extractor else None
        pid = self.extractor.pid if self.extractor else None
        child_started = child_cpu_seconds(pid)
        seconds = _cpu(self.chain, url, body, analyze)[0]
        if self.extractor is not None:
            if self.extractor.pid != pid and pid is not None:
                raise RuntimeError("the extractor child restarted: its CPU would be lost")
            seconds += child_cpu_seconds(self.extractor.pid) - child_started
        return {self.name: seconds}

    def chain(self, url: str, body: bytes, analyze: PageFn | None) -> None:
        try:
            doc, html = self.builder.from_response(response(url, body), analyze)
        except ExtractFailed:
            return
        check_document(doc, html, self.config.build)

    def steps(self, url: str, body: bytes) -> dict[str, float]:
        times: dict[str, float] = {}

        def step(name: str, fn: Callable[..., Any], *args: object) -> Any:
            times[name], result = _cpu(fn, *args)
            return result

        html = step("decode_html", decode_html, body, None)
        extraction = step(EXTRACTOR_STEP, run_trafilatura, html, url, self.settings)
        if extraction is None:
            return times
        text = step("normalize_text", normalize_text, extraction.text)
        lang, score = step("detect_language", detect_language, text)
        words = step("word count", lambda: len(text.split()))
        tokens = step("GPT-2 token count", lambda: len(self.encoding.encode_ordinary(text)))
        step("text_hash", text_hash, text)
        doc = {"final_url": url, "host": "", "text": text, "title": extraction.title}
        doc.update(language=lang, language_score=score, word_count=words, token_count=tokens)
        step("filters.check_document", check_document, doc, html, self.config.build)
        return times

    def close(self) -> None:
        if self.extractor is not None:
            self.extractor.close()


def _serve_variant(conn: Connection, name: str, config: Config) -> None:
    variant = Variant(name, config)
    conn.send("ready")
    while (job := conn.recv()) is not None:
        conn.send(variant(*job))
    variant.close()


class VariantProcess:
    """A Variant in a process of its own (not a daemon: the chain variant has a child too)."""

    def __init__(self, name: str, config: Config):
        context = multiprocessing.get_context("spawn")
        self.conn, child = context.Pipe()
        self.process = context.Process(target=_serve_variant, args=(child, name, config))
        self.process.start()
        child.close()
        if self.conn.recv() != "ready":
            raise RuntimeError(f"{name}: the benchmark process did not start")

    def __call__(self, url: str, body: bytes) -> dict[str, float]:
        self.conn.send((url, body))
        return self.conn.recv()

    def close(self) -> None:
        self.conn.send(None)
        self.process.join()


def interleaved(pages: list[tuple[str, bytes]], config: Config, rounds: int) -> dict[str, float]:
    """CPU seconds per variant (and per step of the in-process chain), summed over the pages
    and rounds; the variants take turns on every page, in a rotating order."""
    names = [DEFAULTS, ANCHOR, IN_PROCESS, CHILD, STEPS]
    variants = {name: VariantProcess(name, config) for name in names}
    try:
        for url, body in pages[:WARM_UP_PAGES]:  # the extractor child starts here, untimed
            for variant in variants.values():
                variant(url, body)
        seconds: dict[str, float] = {}
        for _ in range(rounds):
            for i, (url, body) in enumerate(pages):
                k = i % len(names)
                for name in names[k:] + names[:k]:
                    for what, cpu in variants[name](url, body).items():
                        seconds[what] = seconds.get(what, 0.0) + cpu
        return seconds
    finally:
        for variant in variants.values():
            variant.close()


def write_data_root(root: Path, pages: list[tuple[str, bytes]]) -> None:
    """links/ and fetch/ (one gzipped WARC, one fetch log) holding the pages."""
    (root / "fetch").mkdir(parents=True)
    (root / "links").mkdir(parents=True)
    fetched = datetime(2017, 6, 1, tzinfo=UTC)
    fetch_rows, links = [], []
    with open(root / "fetch" / "pages.warc.gz", "wb") as out:
        writer = WARCWriter(out, gzip=True)
        for url, body in pages:
            offset = out.tell()
            headers = StatusAndHeaders("200 OK", [("Content-Type", "text/html")], "HTTP/1.1")
            writer.write_record(
                writer.create_warc_record(url, "response", io.BytesIO(body), http_headers=headers)
            )
            row = dict.fromkeys(FETCH.names)
            row.update(url=url, normalized_url=url, outcome="ok", final_url=url, status=200)
            row.update(content_type="text/html", warc_file="pages.warc.gz", warc_offset=offset)
            row.update(fetched_at=fetched, source="live")
            fetch_rows.append(row)
            links.append(
                {
                    "normalized_url": url,
                    "host": url.split("/")[2],
                    "urls": [url],
                    "karma": 3,
                    "first_created_utc": 0,
                    "submissions": [],
                }
            )
    pq.write_table(pa.Table.from_pylist(fetch_rows, schema=FETCH), root / "fetch" / "log.parquet")
    pq.write_table(pa.Table.from_pylist(links, schema=LINK), root / "links" / "links-0.parquet")


def _all_cpu() -> float:
    """CPU of this process and of its finished children (the stage's extractor is joined)."""
    own, children = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def direct_runner(config: Config, pages: list[tuple[str, bytes]]) -> tuple[float, dict]:
    root = Path(tempfile.mkdtemp(prefix="bench-build-"))
    try:
        write_data_root(root, pages)
        fetch_logs = [str(root / "fetch" / "log.parquet")]

        def build(pipeline: beam.Pipeline) -> None:
            parts = pipeline | "BuildDocuments" >> BuildDocuments(config, str(root), fetch_logs)
            parts["docs"] | "Count" >> beam.combiners.Count.Globally()

        args = ["--direct_num_workers=1", "--direct_running_mode=in_memory"]
        started = _all_cpu()
        counters = beamio.run_pipeline("build", build, args)
        return _all_cpu() - started, counters
    finally:
        shutil.rmtree(root, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", default="configs/demo.toml")
    parser.add_argument("--repeat", type=int, default=2, help="times the 130 pages are repeated")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved passes, summed")
    args = parser.parse_args(argv)
    if not PAGES.exists() or not RANKS.exists():
        print(f"{SHARED} is absent: ../shared (test data beside the checkout) is needed")
        return 1
    config = load(args.config, [f'tokenizer.ranks_file="{RANKS}"', "run.progress_every=0"])
    pages = load_pages(args.repeat)
    seconds = interleaved(pages, config, args.rounds)
    documents = len(pages) * args.rounds
    beam_seconds, counters = direct_runner(config, pages)
    anchor = seconds[ANCHOR]
    print(f"\n{documents} documents ({args.rounds} x {args.repeat} x the readability pages)")
    print("| path | docs/s per core | time vs extractor alone |")
    print("|---|---|---|")
    for name in (DEFAULTS, ANCHOR, IN_PROCESS, CHILD):
        print(f"| {name} | {documents / seconds[name]:.1f} | {seconds[name] / anchor:.3f} |")
    per_doc = beam_seconds / len(pages)
    print(
        f"| DirectRunner, BuildDocuments ({len(pages)} documents, one pass) "
        f"| {1 / per_doc:.1f} | {per_doc * documents / anchor:.3f} |"
    )
    print("\nin-process chain, step by step")
    print("| step | ms per document | vs the extractor step |")
    print("|---|---|---|")
    step_names = ["decode_html", EXTRACTOR_STEP, "normalize_text", "detect_language"]
    step_names += ["word count", "GPT-2 token count", "text_hash", "filters.check_document"]
    for step in step_names:
        share = seconds[step] / seconds[EXTRACTOR_STEP]
        print(f"| {step} | {seconds[step] / documents * 1000:.3f} | {share:.1%} |")
    overhead = seconds[CHILD] / anchor - 1
    print(f"\nstage overhead beyond the extractor (extractor process chain): {overhead:+.1%}")
    print(f"DirectRunner counters: {counters}")
    return 0 if overhead <= 0.10 else 1


if __name__ == "__main__":
    sys.exit(main())
