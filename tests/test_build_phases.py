"""The build stage's phases: one process and two workers write the same dataset, each phase
reruns alone, and an interrupted extraction resumes without loss or duplicates."""

from __future__ import annotations

import io
import random
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from warcio.statusandheaders import StatusAndHeaders
from warcio.warcwriter import WARCWriter

from pipeline import dataroot
from pipeline.build import stage as build
from pipeline.config import Config, load
from schemas.records import FETCH, LINK
from tests.conftest import DEMO_CONFIG, require_shared
from tests.test_build_stage import fetch_row, html_page, link_row

PAGES = 150
TWO_WORKERS = ["--direct_running_mode=multi_processing", "--direct_num_workers=2"]
NOUNS = "council river school bridge garden library market station harbour museum farmer "
NOUNS += "teacher engineer village budget festival orchard tunnel ferry clinic bakery"
VERBS = "opened closed repaired visited funded praised painted measured delayed approved"
ADJECTIVES = "old new quiet busy small large northern southern local public wooden green"


def _sentence(rng: random.Random) -> str:
    nouns, verbs, adjectives = NOUNS.split(), VERBS.split(), ADJECTIVES.split()
    return (
        f"The {rng.choice(adjectives)} {rng.choice(nouns)} {rng.choice(verbs)} the "
        f"{rng.choice(adjectives)} {rng.choice(nouns)} near the {rng.choice(nouns)} "
        f"after {rng.randint(2, 90)} days."
    )


def _articles(n: int, seed: int = 5) -> list[str]:
    """English articles of 24 sentences; every 10th an exact copy, every 7th a near copy."""
    rng = random.Random(seed)
    texts: list[str] = []
    for i in range(n):
        if i % 10 == 9:
            texts.append(texts[-1])
        elif i % 7 == 6:
            sentences = texts[-1].split(". ")
            sentences[3] = _sentence(rng).rstrip(".")
            texts.append(". ".join(sentences))
        else:
            texts.append(" ".join(_sentence(rng) for _ in range(24)))
    return texts


def write_corpus(root: Path, n: int = PAGES) -> None:
    """links/ and fetch/ for n stored pages in one WARC."""
    (root / "fetch" / "warc").mkdir(parents=True)
    (root / "links").mkdir(parents=True)
    warc_name = "warc/fetch-00000.warc.gz"
    fetch_rows, links = [], []
    with open(root / "fetch" / warc_name, "wb") as out:
        writer = WARCWriter(out, gzip=True)
        texts = _articles(n)
        for i, text in enumerate(texts):
            url = f"http://site{i % 9}.example/story/{i}"
            offset = out.tell()
            headers = StatusAndHeaders("200 OK", [("Content-Type", "text/html")], "HTTP/1.1")
            body = io.BytesIO(html_page(text, f"Story {texts.index(text)}").encode())
            writer.write_record(
                writer.create_warc_record(url, "response", payload=body, http_headers=headers)
            )
            fetch_rows.append(
                fetch_row(url, warc_file=warc_name, warc_offset=offset, content_type="text/html")
            )
            links.append(link_row(url, 1 + (i * 37) % 101))
    pq.write_table(pa.Table.from_pylist(fetch_rows, schema=FETCH), root / "fetch" / "log-0.parquet")
    pq.write_table(pa.Table.from_pylist(links, schema=LINK), root / "links" / "links-00000.parquet")


def _config(*overrides: str) -> Config:
    ranks = require_shared("tokenizers", "r50k_base.tiktoken")
    settings = [f'tokenizer.ranks_file="{ranks}"', "run.progress_every=0"]
    settings += ["build.partitions=3", "build.extract_workers=1", *overrides]
    return load(DEMO_CONFIG, settings)


def _output(root: Path) -> dict[str, bytes]:
    """Every file the run persisted, by path, but for what records when it ran."""
    files = {}
    for folder in ("documents", dataroot.EXTRACTED_DIR):
        for path in sorted((root / folder).rglob("*.parquet")):
            files[str(path.relative_to(root))] = path.read_bytes()
    removals = pa.concat_tables(pq.read_table(p) for p in (root / "dedup").glob("*.parquet"))
    files["removals"] = repr(sorted(removals.to_pylist(), key=lambda r: r["doc_id"])).encode()
    return files


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("corpus")
    write_corpus(root)
    return root


def _copy_inputs(corpus: Path, root: Path) -> Path:
    for stage in ("links", "fetch"):
        shutil.copytree(corpus / stage, root / stage)
    return root


@pytest.fixture(scope="module")
def one_process(corpus, tmp_path_factory) -> tuple[Path, dict]:
    root = _copy_inputs(corpus, tmp_path_factory.mktemp("one"))
    return root, build.run(_config(), str(root), [])


def test_the_corpus_has_duplicates_to_remove(one_process):
    _, summary = one_process
    counters = summary["counters"]
    assert counters["kept"] == PAGES
    assert counters["exact_duplicate"] >= 10 and counters["near_duplicate"] >= 10
    assert (
        summary["totals"]["documents"]
        == PAGES - counters["exact_duplicate"] - counters["near_duplicate"]
    )


def test_two_workers_write_the_same_dataset_as_one_process(one_process, corpus, tmp_path):
    root, summary = one_process
    other = _copy_inputs(corpus, tmp_path)
    again = build.run(_config(), str(other), TWO_WORKERS)
    assert again["counters"] == summary["counters"]
    assert _output(other) == _output(root)


def test_each_phase_reruns_alone_to_the_same_output(one_process):
    root, summary = one_process
    before = _output(root)
    for phase in ("extract", "dedup", "write"):
        result = build.run(_config(f'build.phase="{phase}"'), str(root), [])
        assert _output(root) == before, phase
    assert result["counters"] == summary["counters"]
    assert dataroot.read_summary(str(root), "build")["counters"] == summary["counters"]


def test_an_interrupted_extraction_resumes_only_the_missing_part(one_process):
    root, summary = one_process
    before = _output(root)
    extracted = root / dataroot.EXTRACTED_DIR
    (extracted / "_parts" / "part-00001-of-00003.json").unlink()
    (extracted / "part-00001-of-00003.parquet").unlink()
    written = {p: p.stat().st_mtime_ns for p in extracted.glob("part-*.parquet")}
    result = build.run(_config(), str(root), [])
    assert _output(root) == before
    assert result["counters"] == summary["counters"]
    assert all(p.stat().st_mtime_ns == t for p, t in written.items())  # the others were kept


def test_a_phase_before_its_input_says_what_to_run(corpus, tmp_path):
    root = _copy_inputs(corpus, tmp_path)
    with pytest.raises(dataroot.StageError, match='build.phase="extract"'):
        build.run(_config('build.phase="write"'), str(root), [])


def test_extracted_parts_of_another_config_are_refused(one_process, tmp_path):
    root, _ = one_process
    with pytest.raises(dataroot.StageError, match=r"\[build\] min_tokens"):
        build.run(_config("build.min_tokens=64", 'build.phase="extract"'), str(root), [])
