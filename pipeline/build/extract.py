"""Main-text extraction: one archived HTML response in, one document (schemas.DOCUMENT) out.

The chain for one stored response, each step a plain function:

    read the WARC record -> check size and type -> decode_html -> trafilatura
        -> normalize_text -> language -> filters -> GPT-2 token count -> document row

trafilatura has no time limit of its own, and a pathological page can keep it busy for
minutes. `ExtractorProcess` runs the page's work in a child process and kills the child when
a document takes longer than [build] extract_timeout_s, so no page can hang a worker. It only
needs the standard library's multiprocessing, so it works the same inside a Beam DoFn on
DirectRunner, Dataflow, Flink or Spark. Everything from reading the record to the filters'
verdict (`PageAnalyzer`) runs in the child, so the time limit covers all of it and a body
never passes through the Beam worker: the records' locations go in, the finished texts, their
metadata and the verdict come back. Pages go to the child in batches
(`ExtractorProcess.call_each`) and come back one by one, each page with its own time limit, so
the child works through a batch without waiting on its parent.

The GPT-2 token count, the dearest step after trafilatura, is made only for pages that pass
every other filter: the length filter is the last one and the only one that needs it.

Failures raise `ExtractFailed` with a reason; the stage counts them as
`extract_failed_<reason>` (and `extract_timeout` for the time limit).
"""

from __future__ import annotations

import functools
import gc
import hashlib
import multiprocessing
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from multiprocessing.connection import Connection
from typing import Any

import htmldate
import trafilatura

from pipeline import dataroot
from pipeline.bpe import load_gpt2
from pipeline.build.filters import Rejection, check_content, check_length
from pipeline.build.textnorm import normalize_text, text_hash, word_count
from pipeline.config import BuildConfig, TokenizerConfig
from pipeline.content import SNIFF_BYTES, decode_html, judge_content_type, mime_of
from pipeline.urls import host_of
from pipeline.warc import read_response

EXTRACTOR = f"trafilatura {trafilatura.__version__}"
# Language identification reads the start of the text; its cost grows with the length. On the
# 130 readability pages and the 37 real WARC responses, the first 300 characters give the same
# keep/remove decision (language and score) as the whole text; 200 already miss one.
LANGUAGE_SAMPLE_CHARS = 300
STARTUP_TIMEOUT_S = 120.0  # a cold child on a busy machine; far above the usual second


class ExtractFailed(Exception):
    """A response that yields no document; `reason` names the counter."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail

    @property
    def counter(self) -> str:
        return "extract_timeout" if self.reason == "timeout" else f"extract_failed_{self.reason}"


@dataclass(frozen=True)
class ExtractSettings:
    """trafilatura's options, picklable so the child process receives them with each page."""

    favor_precision: bool = False
    favor_recall: bool = False
    include_comments: bool = False
    include_tables: bool = True
    deduplicate: bool = False

    @classmethod
    def from_config(cls, build: BuildConfig) -> ExtractSettings:
        return cls(
            favor_precision=build.favor_precision,
            favor_recall=build.favor_recall,
            include_comments=build.include_comments,
            include_tables=build.include_tables,
            deduplicate=build.dedup_boilerplate,
        )


@dataclass(frozen=True)
class Extraction:
    text: str  # as trafilatura returns it, before normalization
    title: str | None
    date: str | None


@dataclass
class StoredPage:
    """A stored response and its provenance: a fetch-log row joined to its link. The body
    stays in the WARC file until the extractor child reads it."""

    normalized_url: str
    final_url: str
    content_type: str | None
    charset: str | None
    warc_file: str  # relative to the fetch folder
    warc_offset: int
    warc_length: int | None
    fetched_at: datetime | None
    karma: int
    first_created_utc: int
    submissions: list[dict] = field(default_factory=list)


def document_id(normalized_url: str) -> str:
    """A stable id for a document: the first 128 bits of SHA-256 of its normalized URL."""
    return hashlib.sha256(normalized_url.encode("utf-8")).hexdigest()[:32]


def run_trafilatura(html: str, url: str | None, settings: ExtractSettings) -> Extraction | None:
    """trafilatura on one page, in this process and without a time limit; None if no text.

    The page is parsed once and shared by the three calls. Title and date are read directly
    (`page_title`, htmldate without its extensive text search) rather than through
    trafilatura's with_metadata, which also looks for authors, categories, tags and the
    licence, and more than doubles the time per page.
    """
    tree = trafilatura.load_html(html)
    if tree is None:
        return None
    result = trafilatura.bare_extraction(  # parses a copy: `tree` is left as it was
        tree,
        url=url,
        with_metadata=False,
        include_comments=settings.include_comments,
        include_tables=settings.include_tables,
        favor_precision=settings.favor_precision,
        favor_recall=settings.favor_recall,
        deduplicate=settings.deduplicate,
        include_images=False,
        include_links=False,
        include_formatting=False,
    )
    if result is None or not result.text:
        return None
    return Extraction(text=result.text, title=page_title(tree), date=page_date(tree, url))


def page_title(tree: Any) -> str | None:
    """The page's own title: og:title, else <title>, else the first <h1>."""
    for xpath in (
        '//meta[@property="og:title"]/@content',
        "//head/title//text()",
        "(//h1)[1]//text()",
    ):
        found = " ".join(str(part) for part in tree.xpath(xpath)).strip()
        if found:
            return found[:1000]
    return None


def page_date(tree: Any, url: str | None) -> str | None:
    """The publication date the markup gives (ISO YYYY-MM-DD), or None."""
    try:
        return htmldate.find_date(tree, url=url, extensive_search=False, original_date=True)
    except Exception:  # htmldate's parsers raise many types on odd markup; a date is optional
        return None


ExtractFn = Callable[[str, str | None, ExtractSettings], Extraction | None]


def _serve(conn: Connection, target: Callable[..., Any]) -> None:
    """The child's loop: warm up, say it is ready, then for each batch of jobs received, run
    `target` on each job and send its outcome, until told to stop. `target`'s ExtractFailed
    keeps its reason; any other exception is an "error"."""
    try:
        warm_up = getattr(target, "warm_up", None)
        if warm_up is not None:
            warm_up()  # models and tables load here, never inside a page's time limit
    except Exception as e:
        conn.send(("error", f"{type(e).__name__}: {e}"[:500]))
        return
    # What is alive now (the models, trafilatura's tables) lives as long as the child: frozen,
    # the cyclic GC no longer walks it on each full collection, which cost ~1% of the time.
    gc.freeze()
    conn.send(("ready", None))  # time limits start counting from here
    while True:
        try:
            jobs = conn.recv()
        except (EOFError, OSError):
            return
        if jobs is None:
            return
        for job in jobs:
            try:
                reply: tuple[str, Any] = ("ok", target(*job))
            except ExtractFailed as e:
                reply = ("failed", (e.reason, e.detail))
            except Exception as e:  # any error in the extractor is this page's failure
                reply = ("error", f"{type(e).__name__}: {e}"[:500])
            conn.send(reply)


class ExtractorProcess:
    """Runs `target` in a child process that is killed when one job exceeds `timeout_s`.

    The child starts on first use with the "spawn" method (safe in the multi-threaded
    processes of Beam workers, where fork is not) and again after a kill or a crash.
    `target` is what the child runs: a module-level function or a picklable object such as
    `PageAnalyzer` (whose `warm_up` runs before the child says it is ready). `call_each`
    sends a batch of jobs at once and receives each job's outcome as the child finishes it,
    so a timeout or a crash always belongs to the job that caused it.
    """

    def __init__(self, timeout_s: float, target: Callable[..., Any] = run_trafilatura):
        self.timeout_s = timeout_s
        self.target = target
        self.restarts = 0
        self._process: multiprocessing.process.BaseProcess | None = None
        self._conn: Connection | None = None

    def _start(self) -> None:
        context = multiprocessing.get_context("spawn")
        parent, child = context.Pipe()
        process = context.Process(target=_serve, args=(child, self.target), daemon=True)
        process.start()
        child.close()
        self._process, self._conn = process, parent
        # Starting Python and importing trafilatura must not count against the first page.
        if not parent.poll(STARTUP_TIMEOUT_S):
            self._kill()
            raise ExtractFailed("crash", f"extractor process not ready in {STARTUP_TIMEOUT_S} s")
        status, value = parent.recv()
        if status != "ready":
            self._kill()
            raise ExtractFailed("crash", f"extractor process did not start: {value}")

    def _kill(self) -> None:
        if self._process is not None:
            self._process.kill()
            self._process.join(timeout=10)
            self._process.close()
        if self._conn is not None:
            self._conn.close()
        self._process = self._conn = None
        self.restarts += 1

    def call_each(self, jobs: list[tuple]) -> list[Any]:
        """`target(*job)` in the child for each job, in order: its result, or an ExtractFailed
        ("timeout", "crash", "error", or the reason of an ExtractFailed that `target` raised).

        Each job has `timeout_s` from the moment the one before it came back. After a kill or
        a crash the jobs not yet done go to a fresh child.
        """
        outcomes: list[Any] = []
        while len(outcomes) < len(jobs):
            pending = jobs[len(outcomes) :]
            try:
                if self._process is None or not self._process.is_alive():
                    if self._process is not None:
                        self._kill()
                    self._start()
                self._conn.send(pending)
                for _ in pending:
                    if not self._conn.poll(self.timeout_s):
                        self._kill()
                        outcomes.append(ExtractFailed("timeout", f"over {self.timeout_s:g} s"))
                        break
                    outcomes.append(_outcome(*self._conn.recv()))
            except ExtractFailed as failure:  # the child did not start
                outcomes.append(failure)
            except (EOFError, OSError) as e:
                self._kill()
                detail = f"extractor process died: {type(e).__name__}"
                outcomes.append(ExtractFailed("crash", detail))
        return outcomes

    def call(self, *job: Any) -> Any:
        """`target(*job)` in the child, or the ExtractFailed of `call_each` raised."""
        (outcome,) = self.call_each([job])
        if isinstance(outcome, ExtractFailed):
            raise outcome
        return outcome

    def extract(self, html: str, url: str | None, settings: ExtractSettings) -> Extraction | None:
        """The default target, run_trafilatura, in the child."""
        return self.call(html, url, settings)

    @property
    def pid(self) -> int | None:
        """The child's process id while one is running."""
        return self._process.pid if self._process is not None else None

    def close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.send(None)
            except OSError:
                pass
        if self._process is not None:
            self._process.join(timeout=2)
            if self._process.is_alive():
                self._process.kill()
                self._process.join()
            self._process.close()
        if self._conn is not None:
            self._conn.close()
        self._process = self._conn = None

    def __enter__(self) -> ExtractorProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _outcome(status: str, value: Any) -> Any:
    """One reply of the child as a result or an ExtractFailed."""
    if status == "failed":
        return ExtractFailed(*value)
    if status == "error":
        return ExtractFailed("error", value)
    return value


@functools.cache
def _language_identifier() -> Any:
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    return LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)


def detect_language(text: str) -> tuple[str, float]:
    """ISO 639-1 code and probability, from py3langid's bundled model."""
    lang, score = _language_identifier().classify(text[:LANGUAGE_SAMPLE_CHARS])
    return lang, float(score)


def count_tokens(encoding: Any, text: str) -> int:
    """GPT-2 tokens in `text`, special-token strings read as plain text (as encode_ordinary
    does); the count only, so no Python list of the ids is built."""
    return len(encoding.encode_to_numpy(text, disallowed_special=()))


def check_body(body: bytes, content_type: str | None, max_bytes: int) -> None:
    """ExtractFailed unless the body is non-empty HTML of at most `max_bytes`."""
    if len(body) > max_bytes:
        raise ExtractFailed("too_large", f"{len(body)} bytes > {max_bytes}")
    verdict = judge_content_type(mime_of(content_type), body[:SNIFF_BYTES])
    if verdict is not None:
        raise ExtractFailed("not_html", f"{verdict}:{content_type or 'none'}")
    if not body or body.isspace():  # strip() would copy the body
        raise ExtractFailed("empty_body")


@dataclass(frozen=True)
class PageText:
    """Everything in a document row that depends on the page's content, and the verdict."""

    text: str  # normalized
    title: str | None  # normalized
    date: str | None
    language: str
    language_score: float
    word_count: int
    token_count: int | None  # None when a filter rejected the page before the length check
    text_hash: str
    rejection: Rejection | None  # the first filter that rejects the page; None: keep it


# Where the child finds one stored response: WARC path, offset, stored length (or None), and
# the fetch log's content type and charset and the final URL.
PageJob = tuple[str, int, int | None, str | None, str | None, str]
# Runs PageAnalyzer on each job: a PageText or an ExtractFailed per job, in order.
PagesFn = Callable[[list[PageJob]], list[Any]]


def page_job(page: StoredPage, fetch_dir: str) -> PageJob:
    location = (dataroot.join(fetch_dir, page.warc_file), page.warc_offset, page.warc_length)
    return (*location, page.content_type, page.charset, page.final_url)


@dataclass(frozen=True)
class PageAnalyzer:
    """One page's own work, from its WARC record to PageText: read, check, decode, extract,
    normalize, language, filters, word and GPT-2 token counts, hash. Picklable, so the stage
    runs it in the extractor child, where the time limit covers all of it; also callable in
    this process. `from_body` and `from_html` start further along the chain."""

    build: BuildConfig
    tokenizer: TokenizerConfig
    extract: ExtractFn = run_trafilatura

    @functools.cached_property
    def settings(self) -> ExtractSettings:
        return ExtractSettings.from_config(self.build)

    def warm_up(self) -> None:
        load_gpt2(self.tokenizer)
        _language_identifier()

    def __call__(
        self,
        warc_path: str,
        offset: int,
        length: int | None,
        content_type: str | None,
        charset: str | None,
        url: str,
    ) -> PageText:
        try:
            headers, body, _ = read_response(warc_path, offset, length)
        except Exception as e:  # missing file, truncated gzip, wrong offset: malformed input
            raise ExtractFailed("warc_unreadable", f"{warc_path} at {offset}: {e}") from e
        return self.from_body(
            body, content_type or headers.get_header("Content-Type"), charset, url
        )

    def from_body(
        self, body: bytes, content_type: str | None, charset: str | None, url: str
    ) -> PageText:
        check_body(body, content_type, self.build.max_html_bytes)
        return self.from_html(decode_html(body, charset), url)

    def from_html(self, html: str, url: str) -> PageText:
        extraction = self.extract(html, url, self.settings)
        if extraction is None:
            raise ExtractFailed("no_text")
        text = normalize_text(extraction.text)
        if not text:
            raise ExtractFailed("no_text", "only whitespace after normalization")
        title = normalize_text(extraction.title) if extraction.title else None
        lang, score = detect_language(text)
        doc = {"final_url": url, "host": host_of(url) or "", "text": text, "title": title}
        doc.update(language=lang, language_score=score)
        rejection = check_content(doc, html, self.build)
        token_count = None
        if rejection is None:
            token_count = count_tokens(load_gpt2(self.tokenizer), text)
            rejection = check_length(token_count, self.build)
        return PageText(
            text=text,
            title=title,
            date=extraction.date,
            language=lang,
            language_score=score,
            word_count=word_count(text),
            token_count=token_count,
            text_hash=text_hash(text),
            rejection=rejection,
        )


class DocumentBuilder:
    """Turns StoredPages into document rows (schemas.DOCUMENT) with the filters' verdict, or
    ExtractFailed.

    `from_pages` is the stage's path: the pages' work by `analyze_each`, which runs
    `self.analyzer` in this process or, in the stage, is an ExtractorProcess's `call_each`
    running `self.analyzer` in the child. `row` makes the document row of one page.
    """

    def __init__(
        self,
        build: BuildConfig,
        tokenizer: TokenizerConfig,
        extract: ExtractFn = run_trafilatura,
    ):
        load_gpt2(tokenizer)  # a missing ranks file fails here, at setup, not in every page
        self.analyzer = PageAnalyzer(build, tokenizer, extract)

    def from_pages(
        self, pages: list[StoredPage], fetch_dir: str, analyze_each: PagesFn | None = None
    ) -> list[tuple[dict, Rejection | None] | ExtractFailed]:
        """For each page, in order: (document row, the rejecting filter or None to keep it),
        or the ExtractFailed that says why there is no document. The WARC files are named
        relative to `fetch_dir`."""
        jobs = [page_job(page, fetch_dir) for page in pages]
        analyzed = (analyze_each or self._analyze_here)(jobs) if jobs else []
        return [
            outcome
            if isinstance(outcome, ExtractFailed)
            else (self.row(page, outcome), outcome.rejection)
            for page, outcome in zip(pages, analyzed, strict=True)
        ]

    def _analyze_here(self, jobs: list[PageJob]) -> list[Any]:
        outcomes: list[Any] = []
        for job in jobs:
            try:
                outcomes.append(self.analyzer(*job))
            except ExtractFailed as failure:
                outcomes.append(failure)
        return outcomes

    def row(self, page: StoredPage, text: PageText) -> dict:
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
