"""The build stage end to end on DirectRunner, over a fetch output made of real WARC files."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from apache_beam.io.filebasedsink import FileBasedSink
from warcio.statusandheaders import StatusAndHeaders
from warcio.warcwriter import WARCWriter

from pipeline import dataroot
from pipeline.build import dataset
from pipeline.build import stage as build
from pipeline.build.extract import document_id
from pipeline.config import Config, load
from pipeline.dataroot import DOCUMENT_SHARDS
from pipeline.warc import read_response
from schemas.records import DEAD_LETTER, DOCUMENT, FETCH, LINK, REMOVED, check_table
from tests.conftest import DEMO_CONFIG, LIBRARY_ARTICLE, require_shared, write_old_build_output
from tests.readers import doc_ids_by_reader

LIBRARY = LIBRARY_ARTICLE
BRIDGE = (
    "Engineers finished inspecting the old railway bridge over the river last week and found "
    "that several of its steel beams had rusted far more than the records suggested. The "
    "regional transport office closed the crossing to heavy freight trains until repairs are "
    "complete, which could take most of the coming winter.\n"
    "Farmers who send grain to the port by rail worry about the extra cost of trucks, while "
    "residents near the station welcomed a quieter season. The office promised to publish a "
    "timetable for the works, and to hold a public meeting in the town hall next month so that "
    "everyone affected can ask questions about the detours and the budget. Until then, "
    "passenger trains will cross the bridge at walking pace."
)
GARDEN = (
    "Volunteers planted more than two hundred trees along the canal on Saturday, the first "
    "step of a plan to turn the empty industrial land into a “green corridor” for walkers and "
    "cyclists. The organisers said the cherry and lime trees were chosen because they cope "
    "well with dry summers and attract bees.\n"
    "Children from the nearby primary school helped to water the young trees and painted "
    "signs asking visitors to keep dogs on a lead. The council has agreed to pay for benches "
    "and lighting next year if the project keeps the support of local businesses, which have "
    "already donated tools, gloves and lunch for everyone who came to help on the day."
)
GERMAN = (
    "Der Stadtrat hat am Dienstagabend über den neuen Haushalt für die öffentlichen "
    "Bibliotheken beraten. Mehrere Bürgerinnen und Bürger sprachen sich für längere "
    "Öffnungszeiten aus, weil Schüler nach dem Unterricht einen ruhigen Arbeitsplatz "
    "brauchen. Der Bürgermeister versprach, den Vorschlag vor der nächsten Sitzung sorgfältig "
    "zu prüfen, denn die Kosten für Personal und Heizung müssten berücksichtigt werden. "
) * 2


def html_page(text: str, title: str) -> str:
    paragraphs = "".join(f"<p>{p}</p>" for p in text.split("\n"))
    return (
        f"<html><head><title>{title}</title></head><body><nav><a href='/'>Home</a></nav>"
        f"<article><h1>{title}</h1>{paragraphs}</article><footer>Example News</footer>"
        "</body></html>"
    )


def link_row(url: str, karma: int) -> dict:
    return {
        "normalized_url": url,
        "host": url.split("/")[2],
        "urls": [url],
        "karma": karma,
        "first_created_utc": 1_400_000_000 + karma,
        "submissions": [
            {"id": f"s{karma}", "subreddit": "news", "score": karma, "created_utc": 1, "title": "t"}
        ],
    }


def fetch_row(url: str, **fields) -> dict:
    row = {name: None for name in FETCH.names}
    row.update(url=url, normalized_url=url, outcome="ok", final_url=url, status=200)
    row.update(fetched_at=datetime(2017, 6, 1, tzinfo=UTC), source="live")
    row.update(fields)
    return row


def write_fetch_output(root: Path) -> dict[str, str]:
    """links/, fetch/ with one gzipped WARC and a fetch log; returns url -> what to expect."""
    pages = {
        "http://news.example/library": ("text/html; charset=utf-8", html_page(LIBRARY, "Library hours").encode(), "kept"),
        "http://news.example/bridge": ("text/html", html_page(BRIDGE, "Bridge closed").encode(), "kept"),
        # cp1252 with curly quotes and no declared charset anywhere
        "http://news.example/garden": ("text/html", html_page(GARDEN, "Trees").encode("cp1252"), "kept"),
        "http://copy.example/library": ("text/html", html_page(LIBRARY, "Library hours").encode(), "exact_duplicate"),
        "http://news.example/german": ("text/html", html_page(GERMAN, "Bibliothek").encode(), "language"),
        "http://news.example/short": ("text/html", html_page("Short note about a meeting on Tuesday.", "Note").encode(), "too_short"),
        "http://news.example/gone": ("text/html", html_page("Sorry, the page you are looking for could not be found. " * 30, "Page not found").encode(), "junk_soft_404"),
        "http://mirror.example/library": ("text/html", html_page("From Wikipedia, the free encyclopedia\n" + BRIDGE, "Library").encode(), "wikipedia_mirror"),
        "http://news.example/paper.pdf": ("application/pdf", b"%PDF-1.4 binary", "extract_failed_not_html"),
    }  # fmt: skip
    (root / "fetch" / "warc").mkdir(parents=True)
    (root / "links").mkdir(parents=True)
    warc_name = "warc/fetch-00000.warc.gz"
    fetch_rows, expected = [], {}
    with open(root / "fetch" / warc_name, "wb") as out:
        writer = WARCWriter(out, gzip=True)
        for url, (content_type, body, outcome) in pages.items():
            offset = out.tell()
            headers = StatusAndHeaders(
                "200 OK", [("Content-Type", content_type)], protocol="HTTP/1.1"
            )
            record = writer.create_warc_record(
                url, "response", payload=io.BytesIO(body), http_headers=headers
            )
            writer.write_record(record)
            fetch_rows.append(
                fetch_row(url, warc_file=warc_name, warc_offset=offset, content_type=content_type)
            )
            expected[url] = outcome
    shortener = "http://short.example/wp"
    fetch_rows.append(fetch_row(shortener, final_url="https://en.wikipedia.org/wiki/Library", warc_file=warc_name, warc_offset=0))  # fmt: skip
    expected[shortener] = "wikipedia"
    fetch_rows.append(fetch_row("http://dead.example/", outcome="timeout", final_url=None))
    fetch_rows.append(fetch_row("http://orphan.example/", warc_file=warc_name, warc_offset=0))
    fetch_rows.append(fetch_row("http://broken.example/", warc_file="warc/missing.warc.gz", warc_offset=0))  # fmt: skip
    pq.write_table(pa.Table.from_pylist(fetch_rows, schema=FETCH), root / "fetch" / "log-0.parquet")
    link_urls = [u for u in expected] + ["http://dead.example/", "http://broken.example/"]
    # the copy has the lowest karma, so dedup keeps the original
    karma = {url: 100 - i for i, url in enumerate(link_urls)}
    karma["http://copy.example/library"] = 3
    links = [link_row(url, karma[url]) for url in link_urls]
    pq.write_table(pa.Table.from_pylist(links, schema=LINK), root / "links" / "links-00000.parquet")
    return expected


def killed(*args, **kwargs):
    raise RuntimeError("killed")


@pytest.fixture(scope="module")
def killed_run(tmp_path_factory) -> tuple[Path, dict, Config, list[str]]:
    """A data root whose first build died while Beam's file sink was writing: (root, what
    to expect, config, the names the killed run left in the scratch folder)."""
    ranks = require_shared("tokenizers", "r50k_base.tiktoken")
    root = tmp_path_factory.mktemp("data")
    expected = write_fetch_output(root)
    config = load(
        DEMO_CONFIG,
        [f'tokenizer.ranks_file="{ranks}"', "build.partitions=2", "run.progress_every=0"],
    )
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(FileBasedSink, "finalize_write", killed)
        with pytest.raises(RuntimeError, match="killed"):
            build.run(config, str(root), [])
    left_over = sorted(p.name for p in (root / "dedup.tmp").iterdir())
    return root, expected, config, left_over


@pytest.fixture(scope="module")
def stage_run(killed_run):
    root, expected, config, _ = killed_run
    summary = build.run(config, str(root), [])
    return root, expected, summary


def read(root: Path, pattern: str) -> pa.Table:
    files = sorted((root / "documents").glob(pattern))
    assert files, f"no {pattern} under {root / 'documents'}"
    return pa.concat_tables(pq.read_table(f) for f in files)


def test_documents_match_the_schema_and_hold_the_kept_pages(stage_run):
    root, expected, _ = stage_run
    docs = read(root, DOCUMENT_SHARDS)
    assert check_table(docs.schema, DOCUMENT) == []
    kept = {url for url, outcome in expected.items() if outcome == "kept"}
    assert set(docs.column("normalized_url").to_pylist()) == kept


def test_documents_carry_provenance_back_to_reddit_and_the_warc(stage_run):
    root, _, _ = stage_run
    docs = {row["normalized_url"]: row for row in read(root, DOCUMENT_SHARDS).to_pylist()}
    library = docs["http://news.example/library"]
    assert library["doc_id"] == document_id("http://news.example/library")
    assert library["submissions"][0]["id"] == f"s{library['karma']}"
    assert library["warc_file"] == "warc/fetch-00000.warc.gz"
    assert library["fetched_at"] == datetime(2017, 6, 1, tzinfo=UTC)
    assert library["extractor"].startswith("trafilatura ")
    assert library["host"] == "news.example" and library["language"] == "en"
    assert library["title"] == "Library hours" and library["token_count"] >= 128
    _, body, target = read_response(
        str(root / "fetch" / library["warc_file"]), library["warc_offset"]
    )
    assert target == "http://news.example/library"
    assert b"city council met on Tuesday" in body


def test_undeclared_cp1252_page_is_decoded(stage_run):
    root, _, _ = stage_run
    docs = {row["normalized_url"]: row for row in read(root, DOCUMENT_SHARDS).to_pylist()}
    assert "“green corridor”" in docs["http://news.example/garden"]["text"]


def test_every_removed_page_is_listed_with_its_reason(stage_run):
    root, expected, _ = stage_run
    removed = read(root, "removed/removed-*.parquet")
    assert check_table(removed.schema, REMOVED) == []
    reasons = {row["normalized_url"]: row["reason"] for row in removed.to_pylist()}
    assert reasons == {url: o for url, o in expected.items() if o != "kept"}
    rows = {row["reason"]: row for row in removed.to_pylist()}
    assert rows["language"]["stage"] == "filter" and "Stadtrat" in rows["language"]["text"]
    assert rows["extract_failed_not_html"]["stage"] == "extract"
    assert rows["exact_duplicate"]["stage"] == "dedup"
    assert rows["wikipedia"]["final_url"] == "https://en.wikipedia.org/wiki/Library"


def test_unusable_fetch_rows_go_to_the_dead_letter_output(stage_run):
    root, _, _ = stage_run
    dead = read(root, "dead-letter-*.parquet")
    assert check_table(dead.schema, DEAD_LETTER) == []
    assert sorted(dead.column("reason").to_pylist()) == ["no_link", "warc_unreadable"]


def test_summary_counts_every_reason(stage_run):
    root, _, summary = stage_run
    counters = summary["counters"]
    assert counters["responses_read"] == 9
    assert counters["extracted"] == 8
    assert counters["kept"] == 4
    assert counters["documents_written"] == 3
    for reason in ("wikipedia", "wikipedia_mirror", "language", "too_short", "junk_soft_404"):
        assert counters[reason] == 1, reason
    assert counters["extract_failed_not_html"] == 1
    assert counters["not_stored"] == 1
    assert counters["dead_letter_no_link"] == 1 and counters["dead_letter_warc"] == 1
    assert dataroot.read_summary(str(root), "build")["counters"] == counters
    assert summary["totals"]["documents"] == 3
    assert (root / "documents" / "manifest.json").exists()


def test_the_dataset_opens_in_every_reader_and_validates(stage_run, tmp_path):
    root, _, summary = stage_run
    folder = root / "documents"
    manifest = json.loads((folder / "manifest.json").read_text())
    expected = sorted(read(root, DOCUMENT_SHARDS).column("doc_id").to_pylist())
    assert len(expected) == manifest["totals"]["documents"] == summary["totals"]["documents"]
    for reader, ids in doc_ids_by_reader(folder, tmp_path / "hf").items():
        assert ids == expected, reader
    assert dataset.validate(str(folder)) == []


def test_a_killed_build_rerun_leaves_no_temporary_files_in_the_dataset(killed_run, stage_run):
    root, _, _, left_over = killed_run
    assert [name for name in left_over if name.startswith("beam-temp-")], left_over
    assert not (root / "documents.tmp").exists()
    temporary = [
        p for p in (root / "documents").rglob("*") if "beam-temp" in p.name or ".tmp-" in p.name
    ]
    assert temporary == []


def test_build_over_the_old_docs_folder_says_it_was_renamed(tmp_path):
    old = write_old_build_output(tmp_path)
    with pytest.raises(dataroot.StageError) as error:
        build.run(load(DEMO_CONFIG), str(tmp_path), [])
    message = str(error.value)
    assert "\n" not in message
    assert (
        f"{old} is the old name of the build output; it is now {tmp_path / 'documents'}" in message
    )
    assert f"mv {old} {old}.old" in message and "webtext build" in message
    assert not (tmp_path / "documents").exists()


def test_stage_without_fetch_output_says_what_to_run(tmp_path):
    config = load(DEMO_CONFIG)
    with pytest.raises(dataroot.StageError, match="webtext fetch"):
        build.run(config, str(tmp_path), [])
