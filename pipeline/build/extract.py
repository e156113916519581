"""Main-text extraction: one archived HTML response in, its text and the filters' verdict out.

    analyze(page, settings) -> PageText, or raises ExtractFailed

reads the WARC record -> checks size and type -> decode_html -> trafilatura -> normalize_text
    -> language -> filters.check_content -> GPT-2 token count -> filters.check_length
    -> word count, text hash

each step a plain function. The token count, the dearest step after trafilatura, is made only
for pages that pass every other filter: the length filter is the last one and the only one
that needs it. A page that yields no document raises `ExtractFailed` with a reason, which the
stage counts as `extract_failed_<reason>`.

trafilatura has no time limit of its own, so the stage runs `analyze` in a killable child
process (pipeline.build.supervisor) with `warm_up` run there first; `AnalyzeSettings` is
picklable so it travels to the child once, when the child starts.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import htmldate
import trafilatura

from pipeline import dataroot
from pipeline.bpe import load_gpt2
from pipeline.build import decontaminate
from pipeline.build.filters import Rejection, check_content, check_length
from pipeline.build.supervisor import ItemFailed
from pipeline.build.textnorm import normalize_text, text_hash, word_count
from pipeline.config import BuildConfig, DecontaminateConfig, TokenizerConfig
from pipeline.content import SNIFF_BYTES, decode_html, judge_content_type, mime_of
from pipeline.urls import host_of
from pipeline.warc import read_response

EXTRACTOR = f"trafilatura {trafilatura.__version__}"
# Language identification reads the start of the text, as its cost grows with the length;
# docs/build.md says how 300 was chosen.
LANGUAGE_SAMPLE_CHARS = 300


class ExtractFailed(ItemFailed):
    """A response that yields no document; `reason` names it (see `failure_counter`). Raised
    in the supervisor's child it comes back as it is; the supervisor's own failures
    ("timeout", "crash", "error") are plain ItemFailed."""


def failure_counter(failure: ItemFailed) -> str:
    """The stage's counter for a page without a document."""
    return "extract_timeout" if failure.reason == "timeout" else f"extract_failed_{failure.reason}"


@dataclass(frozen=True)
class ExtractSettings:
    """trafilatura's options, as the [build] config sets them."""

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


@dataclass(frozen=True)
class AnalyzeSettings:
    """What `analyze` needs besides the page; picklable, so it travels to the child."""

    build: BuildConfig  # trafilatura's options, the size cap, the filters
    tokenizer: TokenizerConfig
    fetch_dir: str  # the pages' WARC files are named relative to it
    decontaminate: DecontaminateConfig | None = None  # None: no eval-overlap filter


def warm_up(settings: AnalyzeSettings) -> None:
    """Load the tokenizer, the language model and the eval sets' n-grams, so that no page's
    time limit pays for it."""
    load_gpt2(settings.tokenizer)
    _language_identifier()
    decontaminate.warm_up(settings.decontaminate)


def analyze(page: StoredPage, settings: AnalyzeSettings) -> PageText:
    """One stored page from its WARC record to its normalized text, metadata and the filters'
    verdict; ExtractFailed when it yields no document."""
    build = settings.build
    body, content_type = read_body(page, settings.fetch_dir)
    check_body(body, content_type, build.max_html_bytes)
    html = decode_html(body, page.charset)
    extraction = run_trafilatura(html, page.final_url, ExtractSettings.from_config(build))
    if extraction is None:
        raise ExtractFailed("no_text")
    text = normalize_text(extraction.text)
    if not text:
        raise ExtractFailed("no_text", "only whitespace after normalization")
    title = normalize_text(extraction.title) if extraction.title else None
    lang, score = detect_language(text)
    doc = {"final_url": page.final_url, "host": host_of(page.final_url) or "", "text": text}
    doc.update(title=title, language=lang, language_score=score)
    rejection = check_content(doc, html, build) or decontaminate.check(text, settings.decontaminate)
    token_count = None
    if rejection is None:
        token_count = count_tokens(load_gpt2(settings.tokenizer), text)
        rejection = check_length(token_count, build)
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


def read_body(page: StoredPage, fetch_dir: str) -> tuple[bytes, str | None]:
    """The stored body and its content type (the fetch log's, else the record's header)."""
    path = dataroot.join(fetch_dir, page.warc_file)
    try:
        headers, body, _ = read_response(path, page.warc_offset, page.warc_length)
    except Exception as e:  # missing file, truncated gzip, wrong offset: malformed input
        raise ExtractFailed("warc_unreadable", f"{path} at {page.warc_offset}: {e}") from e
    return body, page.content_type or headers.get_header("Content-Type")
