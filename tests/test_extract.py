"""Extraction: analyze from the WARC record to the verdict, the killable child process it runs
in (pipeline.build.supervisor), and the document row the stage builds from it."""

from __future__ import annotations

import dataclasses
import functools
import os
import time
from datetime import UTC, datetime

import pytest
from warcio.archiveiterator import ArchiveIterator

from pipeline.bpe import load_gpt2
from pipeline.build.extract import (
    EXTRACTOR,
    AnalyzeSettings,
    ExtractFailed,
    ExtractSettings,
    StoredPage,
    analyze,
    count_tokens,
    detect_language,
    document_id,
    failure_counter,
    run_trafilatura,
    warm_up,
)
from pipeline.build.stage import document_row
from pipeline.build.supervisor import ItemFailed, Supervisor, SupervisorPool
from pipeline.config import load
from pipeline.fetch.records import Exchange, FetchResult, FetchTask
from pipeline.warc import WarcFile
from tests.conftest import DEMO_CONFIG, LIBRARY_ARTICLE, require_shared

ARTICLE = LIBRARY_ARTICLE


def page(body_text: str, title: str = "Library hours debate", head: str = "") -> str:
    paragraphs = "".join(f"<p>{p}</p>" for p in body_text.split("\n"))
    return (
        f"<html><head><title>{title}</title>{head}</head><body>"
        "<nav><a href='/'>Home</a> <a href='/news'>News</a></nav>"
        f"<article><h1>{title}</h1>{paragraphs}</article>"
        "<footer>Copyright 2017 Example News</footer></body></html>"
    )


def stored(**overrides) -> StoredPage:
    fields = dict(
        normalized_url="http://example.com/library",
        final_url="https://example.com/library",
        content_type="text/html",
        charset=None,
        warc_file="warc/fetch-0.warc.gz",
        warc_offset=1234,
        warc_length=567,
        fetched_at=datetime(2017, 6, 1, tzinfo=UTC),
        karma=7,
        first_created_utc=1_500_000_000,
        submissions=[
            {"id": "abc", "subreddit": "news", "score": 7, "created_utc": 1, "title": "t"}
        ],
    )
    fields.update(overrides)
    return StoredPage(**fields)


def document(config, folder, body: bytes, content_type: str = "text/html") -> dict:
    """The document row of a body served at stored()'s final URL, analyzed in this process
    from a WARC file in `folder`."""
    (written,) = warc_of(folder, [body])
    located = dataclasses.replace(
        stored(),
        content_type=content_type,
        warc_file=written.warc_file,
        warc_offset=written.warc_offset,
        warc_length=written.warc_length,
    )
    return document_row(stored(), analyze(located, settings(config, folder)))


def settings(config, fetch_dir) -> AnalyzeSettings:
    return AnalyzeSettings(config.build, config.tokenizer, str(fetch_dir))


def analyze_here(pages: list[StoredPage], settings: AnalyzeSettings) -> list:
    """analyze on each page in this process: a PageText or the ExtractFailed, per page."""
    outcomes = []
    for page in pages:
        try:
            outcomes.append(analyze(page, settings))
        except ExtractFailed as failure:
            outcomes.append(failure)
    return outcomes


def warc_of(folder, bodies: list[bytes]) -> list[StoredPage]:
    """A WARC file in `folder` holding the bodies, and the StoredPages that point at them."""
    warc = WarcFile(str(folder / "pages.warc.gz"))
    pages = []
    for i, body in enumerate(bodies):
        url = f"https://example.com/{i}"
        headers = [("Content-Type", "text/html")]
        hop = Exchange(url, None, "GET", [], 200, "OK", "HTTP/1.1", headers, body)
        offset, length = warc.write_result(FetchResult(FetchTask(url, url), "ok", exchanges=[hop]))
        page = stored(normalized_url=url, final_url=url, warc_file="pages.warc.gz")
        pages.append(dataclasses.replace(page, warc_offset=offset, warc_length=length))
    warc.commit()
    return pages


@pytest.fixture(scope="module")
def config():
    ranks = require_shared("tokenizers", "r50k_base.tiktoken")
    return load(DEMO_CONFIG, [f'tokenizer.ranks_file="{ranks}"'])


# ---- the document row ---------------------------------------------------------------------


def test_token_count_equals_encode_ordinary_with_special_token_text(config):
    encoding = load_gpt2(config.tokenizer)
    for text in ("", "Hello world", "ends here <|endoftext|> and goes on", "日本語 and  spaces\n"):
        assert count_tokens(encoding, text) == len(encoding.encode_ordinary(text))


def test_document_has_text_metadata_and_provenance(config, tmp_path):
    head = '<meta property="article:published_time" content="2017-05-03T10:00:00Z">'
    doc = document(config, tmp_path, page(ARTICLE, head=head).encode())
    assert "city council met on Tuesday" in doc["text"]
    assert "Copyright 2017" not in doc["text"] and "Home" not in doc["text"]
    assert "\n" in doc["text"]  # paragraphs survive
    assert doc["title"] == "Library hours debate"
    assert doc["date"] == "2017-05-03"
    assert doc["language"] == "en" and doc["language_score"] > 0.9
    assert doc["word_count"] == len(doc["text"].split())
    encoding = load_gpt2(config.tokenizer)
    assert doc["token_count"] == len(encoding.encode_ordinary(doc["text"])) > 128
    assert doc["doc_id"] == document_id("http://example.com/library")
    assert doc["host"] == "example.com"
    assert doc["extractor"] == EXTRACTOR and EXTRACTOR.startswith("trafilatura ")
    assert (doc["karma"], doc["warc_file"], doc["warc_offset"]) == (7, "warc/fetch-0.warc.gz", 1234)
    assert doc["submissions"][0]["id"] == "abc"


def test_document_id_is_stable_and_depends_only_on_normalized_url():
    assert document_id("http://a.com/x") == document_id("http://a.com/x")
    assert document_id("http://a.com/x") != document_id("http://a.com/y")
    assert len(document_id("http://a.com/x")) == 32


def test_cp1252_page_without_declared_charset_extracts_clean_text(config, tmp_path):
    text = ARTICLE.replace("Several residents", "“Several residents”")
    doc = document(config, tmp_path, page(text).encode("cp1252"))
    assert "“Several residents”" in doc["text"]


def test_shift_jis_page_extracts_japanese_text(config, tmp_path):
    japanese = "東京都は新しい図書館の開館時間について発表しました。" * 6
    html = page(japanese).replace("<head>", '<head><meta charset="shift_jis">')
    doc = document(config, tmp_path, html.encode("shift_jis"))
    assert "新しい図書館" in doc["text"]
    assert doc["language"] == "ja"


def test_oversized_page_fails_as_too_large(config, tmp_path):
    with pytest.raises(ExtractFailed) as failure:
        document(config, tmp_path, b"x" * (config.build.max_html_bytes + 1))
    assert failure_counter(failure.value) == "extract_failed_too_large"


def test_non_html_response_fails_as_not_html(config, tmp_path):
    with pytest.raises(ExtractFailed) as failure:
        document(config, tmp_path, b"%PDF-1.4 ...", content_type="application/pdf")
    assert failure_counter(failure.value) == "extract_failed_not_html"


def test_page_without_text_fails_as_no_text(config, tmp_path):
    body = b"<html><head><title>t</title></head><body><script>var x;</script></body></html>"
    with pytest.raises(ExtractFailed) as failure:
        document(config, tmp_path, body)
    assert failure_counter(failure.value) == "extract_failed_no_text"


def test_language_detection_names_the_language():
    assert detect_language(ARTICLE)[0] == "en"
    lang, score = detect_language("Der Stadtrat hat am Dienstag über die Bibliotheken beraten.")
    assert lang == "de" and 0.0 <= score <= 1.0


# ---- the supervisor: the killable child process and its time limit -------------------------

# trafilatura on one page's HTML, as a function of one item for the supervisor.
extract_html = functools.partial(run_trafilatura, url=None, settings=ExtractSettings())


def run_one(supervisor: Supervisor, item):
    """supervisor.map on one item: its result, or its ItemFailed raised."""
    (outcome,) = supervisor.map([item])
    if isinstance(outcome, ItemFailed):
        raise outcome
    return outcome


def sleep_forever(html: str):
    time.sleep(600)


def exit_abruptly(html: str):
    os._exit(3)


def raise_error(html: str):
    raise RuntimeError("broken page")


def pathological_page(paragraphs: int = 20_000) -> str:
    """About 1.7 MB, under the size cap, that keeps trafilatura busy for seconds."""
    cells = "".join(
        f"<div><p>Paragraph {i} with words and a <a href='/x{i}'>link</a>.</p></div>"
        for i in range(paragraphs)
    )
    return f"<html><body>{cells}</body></html>"


def test_extractor_process_extracts_like_trafilatura_in_process():
    html = page(ARTICLE)
    with Supervisor(extract_html, timeout_s=30) as supervisor:
        assert run_one(supervisor, html) == run_trafilatura(html, None, ExtractSettings())


def test_pathological_page_times_out_and_worker_recovers():
    html = pathological_page()
    assert len(html) < 2_000_000
    with Supervisor(extract_html, timeout_s=0.5) as supervisor:
        run_one(supervisor, "<p>warm up</p>")  # the child is running
        child_pid = supervisor.pid
        started = time.monotonic()
        with pytest.raises(ItemFailed) as failure:
            run_one(supervisor, html)
        assert failure_counter(failure.value) == "extract_timeout"
        assert time.monotonic() - started < 5
        assert supervisor.restarts == 1
        with pytest.raises(ProcessLookupError):  # the busy child was killed and reaped
            os.kill(child_pid, 0)
        found = run_one(supervisor, page(ARTICLE))
        assert "city council" in found.text


def test_hanging_extractor_is_killed_at_the_time_limit():
    with Supervisor(sleep_forever, timeout_s=0.3) as supervisor:
        started = time.monotonic()
        with pytest.raises(ItemFailed) as failure:
            run_one(supervisor, "<p>x</p>")
        assert failure.value.reason == "timeout"
        assert time.monotonic() - started < 10
        assert supervisor.pid is None  # killed; the next page starts a fresh child


def test_extractor_crash_is_reported_and_recovered():
    with Supervisor(exit_abruptly, timeout_s=30) as supervisor:
        with pytest.raises(ItemFailed) as failure:
            run_one(supervisor, "<p>x</p>")
        assert failure_counter(failure.value) == "extract_failed_crash"
        supervisor.function = extract_html
        assert "city council" in run_one(supervisor, page(ARTICLE)).text


def test_extractor_error_is_reported_without_restart():
    with Supervisor(raise_error, timeout_s=30) as supervisor:
        with pytest.raises(ItemFailed) as failure:
            run_one(supervisor, "<p>x</p>")
        assert failure_counter(failure.value) == "extract_failed_error"
        assert "broken page" in failure.value.detail
        assert supervisor.restarts == 0


def act(what: str) -> str:
    """A target that does what its job says, to put failures in the middle of a batch."""
    if what == "hang":
        time.sleep(600)
    if what == "exit":
        os._exit(3)
    if what == "raise":
        raise RuntimeError("broken page")
    if what == "fail":
        raise ExtractFailed("no_text")
    return what.upper()


def test_a_batch_comes_back_in_order_with_each_failure_on_its_own_job():
    items = ["a", "hang", "b", "exit", "raise", "fail", "c"]
    with Supervisor(act, timeout_s=1.0) as supervisor:
        started = time.monotonic()
        outcomes = supervisor.map(items)
        assert time.monotonic() - started < 30
        assert supervisor.restarts == 2  # one kill at the time limit, one crash
    assert [o if isinstance(o, str) else failure_counter(o) for o in outcomes] == [
        "A",
        "extract_timeout",
        "B",
        "extract_failed_crash",
        "extract_failed_error",
        "extract_failed_no_text",
        "C",
    ]


def test_a_pool_gives_the_same_outcomes_in_the_same_order_as_one_child():
    items = ["a", "hang", "b", "exit", "raise", "fail", "c", "d", "e"]
    with Supervisor(act, timeout_s=1.0) as one, SupervisorPool(act, 1.0, size=3) as pool:
        alone, pooled = one.map(items), pool.map(items)
        assert pool.restarts == 2  # the hang and the exit each cost their own child a restart
        assert len({child.pid for child in pool.children} - {None}) >= 2  # several children ran

    def shown(outcomes):
        return [o if isinstance(o, str) else failure_counter(o) for o in outcomes]

    assert shown(pooled) == shown(alone)


def test_a_pool_runs_its_children_at_once():
    # Six jobs of 0.5 s on three children: about 1 s, where one child takes 3 s.
    with SupervisorPool(time.sleep, timeout_s=5.0, size=3) as pool:
        pool.map([0] * 3)  # every child is running: start-up is not the jobs' time
        started = time.monotonic()
        assert pool.map([0.5] * 6) == [None] * 6
        assert time.monotonic() - started < 2.5


def test_each_job_of_a_batch_has_its_own_time_limit():
    # Five jobs of 0.4 s each under a 1 s limit: the batch takes 2 s, and no job times out.
    with Supervisor(time.sleep, timeout_s=1.0) as supervisor:
        run_one(supervisor, 0)  # the child is running: start-up is not a job's time
        assert supervisor.map([0.4] * 5) == [None] * 5
        assert supervisor.restarts == 0


def test_the_child_reads_each_record_and_gives_the_filters_verdict(config, tmp_path):
    footer = "Wikipedia® is a registered trademark of the Wikimedia Foundation, Inc."
    mirror = page(ARTICLE).replace("Copyright 2017 Example News", footer).encode()
    german = page(
        "Der Stadtrat hat am Dienstag lange über die Öffnungszeiten der Bibliotheken beraten, "
        "und viele Bürger kamen, um ihre Meinung zu sagen. " * 8
    ).encode()
    pages = warc_of(tmp_path, [page(ARTICLE).encode(), mirror, german, b"%PDF-1.4"])
    pages[3] = dataclasses.replace(pages[3], content_type="application/pdf")
    lost = dataclasses.replace(pages[0], warc_file="missing.warc.gz")
    in_child = settings(config, tmp_path)
    analyze_page = functools.partial(analyze, settings=in_child)
    with Supervisor(analyze_page, 30, warm_up=functools.partial(warm_up, in_child)) as supervisor:
        outcomes = supervisor.map([*pages, lost])
        assert supervisor.restarts == 0
    kept, copy, foreign, not_html, unreadable = outcomes
    assert kept.rejection is None and kept.token_count > 128 and "city council" in kept.text
    assert "registered trademark" not in copy.text  # the signature was only in the HTML
    assert copy.rejection.reason == "wikipedia_mirror"
    assert foreign.rejection.reason == "language" and foreign.language == "de"
    # Tokens are counted only for pages that pass every filter but the length one.
    assert copy.token_count is None and foreign.token_count is None
    assert isinstance(not_html, ExtractFailed)
    assert failure_counter(not_html) == "extract_failed_not_html"
    assert unreadable.reason == "warc_unreadable" and "missing.warc.gz" in unreadable.detail


def test_settings_come_from_the_build_config(config):
    build = dataclasses.replace(config.build, favor_recall=True, include_tables=False)
    settings = ExtractSettings.from_config(build)
    assert settings.favor_recall and not settings.include_tables


# ---- real WARC files written by another crawler ------------------------------------------


def test_real_warc_files_are_read_and_extracted(config):
    folder = require_shared("warc")
    pages = []
    for path in sorted(folder.glob("*.warc.gz")):
        with open(path, "rb") as f:
            it = ArchiveIterator(f)
            for record in it:
                if record.rec_type == "response":
                    uri = record.rec_headers.get_header("WARC-Target-URI")
                    offset = it.get_record_offset()
                    page = stored(normalized_url=uri, final_url=uri, content_type=None)
                    pages.append(
                        dataclasses.replace(
                            page, warc_file=path.name, warc_offset=offset, warc_length=None
                        )
                    )
    outcomes = analyze_here(pages, settings(config, folder))
    assert len(outcomes) == 37
    docs = [
        document_row(page, outcome)
        for page, outcome in zip(pages, outcomes, strict=True)
        if not isinstance(outcome, ExtractFailed)
    ]
    assert len(docs) >= 30 and sum(doc["language"] == "en" for doc in docs) >= 25
    for doc in docs:
        assert doc["text"] and doc["host"]
        assert doc["token_count"] is None or doc["token_count"] > 0
