"""The paper's 8-gram overlap (Bloom filter) and GPT-3's 13-gram decontamination, on planted pages."""

from __future__ import annotations

import dataclasses
import json
import random
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline import contamination, evalsets
from pipeline.build import decontaminate
from pipeline.build.extract import analyze
from pipeline.config import DecontaminateConfig, load
from pipeline.overlap import BloomFilter, bloom_size, ngrams, words
from tests.test_extract import settings, stored, warc_of

ROOT = Path(__file__).resolve().parent.parent
EVAL_DIR = ROOT.parent / "shared" / "eval"
needs_eval = pytest.mark.skipif(
    not EVAL_DIR.is_dir(), reason="../shared/eval is absent (the LAMBADA and WikiText files)"
)


def random_text(rng: random.Random, n_words: int) -> str:
    return " ".join(f"w{rng.getrandbits(40):x}" for _ in range(n_words))


def test_words_are_lowercased_alphanumeric() -> None:
    assert words("Don't STOP--me, now_2!") == ["don", "t", "stop", "me", "now", "2"]
    assert list(ngrams("A b. C d", 3)) == ["a b c", "b c d"]


@pytest.mark.parametrize("rate", [1e-3, 1e-8])
def test_bloom_false_positive_rate_on_a_million_random_ngrams_is_within_bound(rate) -> None:
    rng = random.Random(7)
    members = [random_text(rng, 8) for _ in range(100_000)]
    bloom = BloomFilter.for_items(len(members), rate)
    bloom.add(members)
    assert bloom.contains(members).all()  # no false negatives
    queries = [random_text(rng, 8) for _ in range(1_000_000)]
    measured = bloom.contains(queries).mean()
    assert measured <= rate * 1.1 if rate >= 1e-4 else measured == 0.0
    bits, hashes = bloom_size(100_000, 1e-8)
    assert (bits / 100_000, hashes) == (pytest.approx(38.3, abs=0.1), 27)


def write_dataset(folder: Path, texts: list[str]) -> Path:
    dataset = folder / "documents"
    (dataset / "data").mkdir(parents=True)
    table = pa.table(
        {
            "doc_id": [f"doc{i}" for i in range(len(texts))],
            "final_url": [f"https://site{i}.example/page" for i in range(len(texts))],
            "text": texts,
        }
    )
    pq.write_table(table, dataset / "data" / "documents-00000-of-00001.parquet")
    (dataset / "manifest.json").write_text(json.dumps({"totals": {"documents": len(texts)}}))
    (dataset / "README.md").write_text("---\nlicense: other\n---\n# Dataset\n")
    return dataset


@needs_eval
def test_planted_passages_are_found_with_the_expected_share(tmp_path: Path) -> None:
    rng = random.Random(3)
    passages = evalsets.read_lambada(EVAL_DIR / evalsets.FILES["lambada"])[:10]
    planted = [f"{random_text(rng, 50)}\n\n{p}\n\n{random_text(rng, 50)}" for p in passages[:3]]
    clean = [random_text(rng, 300) for _ in range(5)]
    dataset = write_dataset(tmp_path, planted + clean)

    result = contamination.measure(dataset, {"lambada": passages}, top=3)
    contamination.record(dataset, result)

    all_grams = {g for p in passages for g in ngrams(p, 8)}
    planted_grams = {g for p in passages[:3] for g in ngrams(p, 8)}
    lambada = result["sets"]["lambada"]
    assert lambada["ngrams"] == len(all_grams)
    assert lambada["share"] == pytest.approx(len(planted_grams) / len(all_grams))
    assert {d["doc_id"] for d in lambada["top_documents"]} == {"doc0", "doc1", "doc2"}
    assert result["dataset_ngrams"] == sum(len(words(t)) - 7 for t in planted + clean)
    assert json.loads((dataset / "manifest.json").read_text())["contamination"] == result
    card = (dataset / "README.md").read_text()
    contamination.record(dataset, result)  # a rerun replaces the section
    assert (dataset / "README.md").read_text() == card
    assert card.startswith("---\n") and card.count(contamination.CARD_HEADING) == 1
    assert f"{lambada['share']:.2%}" in card


@needs_eval
def test_decontaminate_removes_planted_pages_and_keeps_clean_ones(tmp_path: Path) -> None:
    passage = evalsets.read_lambada(EVAL_DIR / evalsets.FILES["lambada"])[0]
    rng = random.Random(5)
    config = load(
        ROOT / "configs" / "demo.toml",
        ["decontaminate.enabled=true", f'decontaminate.eval_dir="{EVAL_DIR}"'],
    )
    rejection = decontaminate.check(f"{random_text(rng, 40)} {passage}", config.decontaminate)
    assert rejection is not None and rejection.reason == "eval_overlap"
    gram = rejection.detail.removeprefix("lambada: ")
    assert rejection.detail.startswith("lambada: ") and gram in " ".join(words(passage))
    assert len(gram.split()) == 13
    assert decontaminate.check(random_text(rng, 400), config.decontaminate) is None
    off = dataclasses.replace(config.decontaminate, enabled=False)
    assert decontaminate.check(passage, off) is None
    assert (
        decontaminate.check(passage, DecontaminateConfig(True, ["wikitext"], str(EVAL_DIR), 13))
        is None
    )

    # Through the build's extraction, where the other filters reject documents.
    prose = " ".join(f"Paragraph {i} of an ordinary article about gardens." for i in range(60))
    bodies = [
        f"<html><body><article><p>{prose}</p><p>{passage}</p></article></body></html>",
        f"<html><body><article><p>{prose}</p></article></body></html>",
    ]
    with_filter = dataclasses.replace(
        settings(config, tmp_path), decontaminate=config.decontaminate
    )
    outcomes = []
    for page in warc_of(tmp_path, [b.encode() for b in bodies]):
        located = dataclasses.replace(
            stored(), **{k: getattr(page, k) for k in ("warc_file", "warc_offset", "warc_length")}
        )
        outcomes.append(analyze(located, with_filter).rejection)
    assert outcomes[0] is not None and outcomes[0].reason == "eval_overlap"
    assert outcomes[1] is None or outcomes[1].reason != "eval_overlap"


@needs_eval
def test_cli_writes_the_figure_into_the_dataset(tmp_path: Path, capsys) -> None:
    from pipeline import cli

    passage = evalsets.read_lambada(EVAL_DIR / evalsets.FILES["lambada"])[0]
    write_dataset(tmp_path, [passage, random_text(random.Random(1), 100)])
    argv = ["contamination", "--data-root", str(tmp_path), "--eval-dir", str(EVAL_DIR)]

    assert cli.main(argv) == 0

    assert "lambada" in capsys.readouterr().out
    manifest = json.loads((tmp_path / "documents" / "manifest.json").read_text())
    assert set(manifest["contamination"]["sets"]) == {"lambada", "wikitext"}
    assert 0 < manifest["contamination"]["sets"]["lambada"]["share"] < 0.01


@needs_eval
def test_demo_prints_the_contamination_figure(tmp_path: Path, capsys) -> None:
    from pipeline import cli

    passage = evalsets.read_lambada(EVAL_DIR / evalsets.FILES["lambada"])[0]
    write_dataset(tmp_path, [passage, random_text(random.Random(2), 100)])

    cli.demo_contamination(str(tmp_path))

    printed = capsys.readouterr().out
    assert "Test-set overlap" in printed and "lambada" in printed and "wikitext" in printed


def write_fetched_pages(root: Path, pages: dict[str, str]) -> None:
    """links/ and fetch/ (one WARC, a fetch log) holding `pages`: url -> article text."""
    import io

    from warcio.statusandheaders import StatusAndHeaders
    from warcio.warcwriter import WARCWriter

    from schemas.records import FETCH, LINK
    from tests.test_build_stage import fetch_row, html_page, link_row

    (root / "fetch" / "warc").mkdir(parents=True)
    (root / "links").mkdir(parents=True)
    warc_name = "warc/fetch-00000.warc.gz"
    rows = []
    with open(root / "fetch" / warc_name, "wb") as out:
        writer = WARCWriter(out, gzip=True)
        for url, text in pages.items():
            offset = out.tell()
            body = io.BytesIO(html_page(text, "News").encode())
            headers = StatusAndHeaders("200 OK", [("Content-Type", "text/html")], "HTTP/1.1")
            writer.write_record(
                writer.create_warc_record(url, "response", payload=body, http_headers=headers)
            )
            rows.append(fetch_row(url, warc_file=warc_name, warc_offset=offset))
    pq.write_table(pa.Table.from_pylist(rows, schema=FETCH), root / "fetch" / "log-0.parquet")
    links = [link_row(url, 50 - i) for i, url in enumerate(pages)]
    pq.write_table(pa.Table.from_pylist(links, schema=LINK), root / "links" / "links-0.parquet")


@needs_eval
@pytest.mark.slow
def test_planted_pages_through_the_build_are_measured_then_removed(tmp_path: Path) -> None:
    """Eval text planted in fetched pages: `contamination` finds the expected share in the
    built dataset, and a build with [decontaminate] removes exactly those pages."""
    from pipeline.build import stage as build
    from tests.conftest import DEMO_CONFIG, require_shared
    from tests.test_build_stage import BRIDGE, GARDEN, LIBRARY

    ranks = require_shared("tokenizers", "r50k_base.tiktoken")
    lambada = evalsets.read_lambada(EVAL_DIR / evalsets.FILES["lambada"])[:20]
    article = evalsets.read_wikitext(EVAL_DIR / evalsets.FILES["wikitext"])[0]
    paragraph = max(article.split("\n"), key=len).strip()
    pages = {
        "http://news.example/bridge": f"{BRIDGE}\n{lambada[4]}",
        "http://news.example/garden": f"{GARDEN}\n{paragraph}",
        "http://news.example/library": LIBRARY,
        "http://other.example/bridge": BRIDGE.replace("railway", "road"),
    }
    eval_sets = {"lambada": lambada, "wikitext": [article]}
    summaries = {}
    for enabled in ("false", "true"):
        root = tmp_path / f"decontaminate-{enabled}"
        write_fetched_pages(root, pages)
        overrides = [f'tokenizer.ranks_file="{ranks}"', "build.partitions=1"]
        overrides += ["run.progress_every=0", "build.extract_workers=1"]
        overrides += [f"decontaminate.enabled={enabled}", f'decontaminate.eval_dir="{EVAL_DIR}"']
        summaries[enabled] = build.run(load(DEMO_CONFIG, overrides), str(root), [])

    measured = contamination.measure(tmp_path / "decontaminate-false" / "documents", eval_sets)
    for name, planted in (("lambada", lambada[4]), ("wikitext", paragraph)):
        every = {g for text in eval_sets[name] for g in ngrams(text, 8)}
        expected = len(set(ngrams(planted, 8))) / len(every)
        assert measured["sets"][name]["share"] == pytest.approx(expected), name
    assert summaries["false"]["counters"]["documents_written"] == 4

    removed_dir = tmp_path / "decontaminate-true" / "documents" / "removed"
    removed = pa.concat_tables(pq.read_table(p) for p in sorted(removed_dir.glob("*.parquet")))
    reasons = {r["normalized_url"]: (r["reason"], r["detail"]) for r in removed.to_pylist()}
    assert set(reasons) == {"http://news.example/bridge", "http://news.example/garden"}
    assert reasons["http://news.example/bridge"][0] == "eval_overlap"
    assert reasons["http://news.example/bridge"][1].startswith("lambada: ")
    assert reasons["http://news.example/garden"][1].startswith("wikitext: ")
    counters = summaries["true"]["counters"]
    assert counters["eval_overlap"] == 2 and counters["documents_written"] == 2
    funnel = dict(summaries["true"]["funnel"])
    assert funnel["build: overlap an eval set ([decontaminate])"] == 2
