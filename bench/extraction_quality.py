"""Extraction quality on Mozilla Readability's 130 test pages: word 4-gram P / R / F1.

    python -m bench.extraction_quality [--config configs/demo.toml] [--grid]

For every page, the extracted text is compared with the text of expected.html (the article
as Readability's maintainers marked it): precision is the share of the extraction's word
4-grams found in the expected text (as multisets), recall the share of the expected 4-grams
found in the extraction. Scores are averaged over pages; a page with no extraction scores 0.

Rows: trafilatura.extract with its defaults (the anchor), and the project's extraction
(decode_html -> trafilatura with the [build] settings -> normalize_text). --grid scores
every combination of the [build] extraction switches, which is how they were chosen.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import re
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import lxml.html
import trafilatura

from pipeline.build.extract import ExtractSettings, run_trafilatura
from pipeline.build.textnorm import normalize_text
from pipeline.config import load
from pipeline.content import decode_html

PAGES = Path(__file__).resolve().parent.parent.parent / "shared" / "pages" / "readability"
_WORD = re.compile(r"\w+")


def word_ngrams(text: str, n: int = 4) -> Counter:
    words = _WORD.findall(text.lower())
    return Counter(tuple(words[i : i + n]) for i in range(len(words) - n + 1))


def prf(extracted: str, expected: Counter) -> tuple[float, float, float]:
    got = word_ngrams(extracted)
    overlap = sum((got & expected).values())
    precision = overlap / sum(got.values()) if got else 0.0
    recall = overlap / sum(expected.values()) if expected else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1


def load_pages(folder: Path = PAGES) -> list[tuple[str, bytes, Counter]]:
    pages = []
    for source in sorted(folder.glob("*/source.html")):
        expected_html = (source.parent / "expected.html").read_bytes()
        expected = lxml.html.fromstring(expected_html).text_content()
        pages.append((source.parent.name, source.read_bytes(), word_ngrams(expected)))
    return pages


def score(
    pages: list[tuple[str, bytes, Counter]], extract: Callable[[bytes], str | None]
) -> dict[str, float]:
    totals = [0.0, 0.0, 0.0]
    started = time.perf_counter()
    for _, body, expected in pages:
        for i, value in enumerate(prf(extract(body) or "", expected)):
            totals[i] += value
    seconds = time.perf_counter() - started
    n = len(pages)
    return {
        "precision": totals[0] / n,
        "recall": totals[1] / n,
        "f1": totals[2] / n,
        "pages_per_s": n / seconds,
    }


def project_extraction(settings: ExtractSettings) -> Callable[[bytes], str | None]:
    def extract(body: bytes) -> str | None:
        found = run_trafilatura(decode_html(body), None, settings)
        return normalize_text(found.text) if found else None

    return extract


def trafilatura_defaults(body: bytes) -> str | None:
    return trafilatura.extract(body)


def row(name: str, s: dict[str, float]) -> str:
    return (
        f"| {name} | {s['precision']:.4f} | {s['recall']:.4f} | {s['f1']:.4f} "
        f"| {s['pages_per_s']:.1f} |"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", default="configs/demo.toml")
    parser.add_argument("--grid", action="store_true", help="score every switch combination")
    args = parser.parse_args(argv)
    if not PAGES.exists():
        print(f"{PAGES} is absent: ../shared (test data beside the checkout) is needed")
        return 1
    pages = load_pages()
    configured = ExtractSettings.from_config(load(args.config).build)
    print(f"{len(pages)} pages from {PAGES}")
    print("| extraction | precision | recall | F1 | pages/s |")
    print("|---|---|---|---|---|")
    anchor = score(pages, trafilatura_defaults)
    print(row("trafilatura.extract defaults (anchor)", anchor), flush=True)
    ours = score(pages, project_extraction(configured))
    print(row(f"webtext {_describe(configured)}", ours), flush=True)
    if args.grid:
        for mode, comments, tables, dedup in itertools.product(
            ("neither", "precision", "recall"), (False, True), (False, True), (False, True)
        ):
            settings = ExtractSettings(
                favor_precision=mode == "precision",
                favor_recall=mode == "recall",
                include_comments=comments,
                include_tables=tables,
                deduplicate=dedup,
            )
            print(row(_describe(settings), score(pages, project_extraction(settings))), flush=True)
    verdict = "at least as good as" if ours["f1"] >= anchor["f1"] else "WORSE than"
    print(f"\nwebtext F1 {ours['f1']:.4f} is {verdict} trafilatura defaults {anchor['f1']:.4f}")
    return 0 if ours["f1"] >= anchor["f1"] else 1


def _describe(settings: ExtractSettings) -> str:
    on = [f.name for f in dataclasses.fields(settings) if getattr(settings, f.name)]
    return "+".join(on) if on else "no switches"


if __name__ == "__main__":
    sys.exit(main())
