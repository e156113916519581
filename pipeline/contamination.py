"""`webtext contamination`: how much of each test set a built dataset holds (the GPT-2 paper's Table 6).

The dataset's 8-grams go into a Bloom filter sized from their count for a false-positive rate
of at most 1e-8; each eval set's distinct 8-grams are looked up in it, and the share found is
the set's overlap. The documents holding the most of a set's 8-grams are listed with it. The
result is written into the dataset's manifest.json and its card (README.md).
"""

from __future__ import annotations

import heapq
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import xxhash

from pipeline import evalsets
from pipeline.dataroot import DOCUMENT_SHARDS
from pipeline.overlap import BloomFilter, ngram_count, ngrams

NGRAM = 8
FALSE_POSITIVE_RATE = 1e-8
CARD_HEADING = "## Test-set overlap"


def documents(dataset_dir: str | Path) -> Iterator[tuple[str, str, str]]:
    """(doc_id, final_url, text) of every document in the dataset's Parquet shards."""
    for path in sorted(Path(dataset_dir).glob(DOCUMENT_SHARDS)):
        shard = pq.ParquetFile(path)
        for batch in shard.iter_batches(columns=["doc_id", "final_url", "text"]):
            columns = batch.to_pydict()
            yield from zip(columns["doc_id"], columns["final_url"], columns["text"], strict=True)


def _key(ngram: str) -> int:
    return xxhash.xxh3_64_intdigest(ngram.encode())


def measure(
    dataset_dir: str | Path,
    eval_sets: dict[str, list[str]],
    n: int = NGRAM,
    false_positive_rate: float = FALSE_POSITIVE_RATE,
    top: int = 5,
) -> dict[str, Any]:
    """Per eval set: its distinct n-grams, how many the dataset holds, the share, top documents."""
    total = sum(ngram_count(text, n) for _, _, text in documents(dataset_dir))
    bloom = BloomFilter.for_items(total, false_positive_rate)
    eval_keys = {
        name: {_key(g) for text in texts for g in ngrams(text, n)}
        for name, texts in eval_sets.items()
    }
    heaps: dict[str, list[tuple[int, str, str]]] = {name: [] for name in eval_sets}
    for doc_id, url, text in documents(dataset_dir):
        grams = list(ngrams(text, n))
        bloom.add(grams)
        keys = {_key(g) for g in grams}
        for name, wanted in eval_keys.items():
            shared = len(keys & wanted)
            if shared:
                heapq.heappush(heaps[name], (shared, doc_id, url))
                if len(heaps[name]) > top:
                    heapq.heappop(heaps[name])
    sets = {}
    for name, texts in eval_sets.items():
        distinct = sorted({g for text in texts for g in ngrams(text, n)})
        found = int(bloom.contains(distinct).sum()) if distinct else 0
        sets[name] = {
            "ngrams": len(distinct),
            "found": found,
            "share": found / len(distinct) if distinct else 0.0,
            "top_documents": [
                {"doc_id": doc_id, "url": url, "shared_ngrams": shared}
                for shared, doc_id, url in sorted(heaps[name], reverse=True)
            ],
        }
    return {
        "method": f"GPT-2 paper: distinct {n}-grams of lower-cased alphanumeric words, "
        "looked up in a Bloom filter of the dataset's",
        "ngram": n,
        "false_positive_rate": false_positive_rate,
        "bloom_bits": bloom.bits,
        "bloom_hashes": bloom.hashes,
        "dataset_ngrams": total,
        "sets": sets,
    }


def format_report(result: dict[str, Any]) -> str:
    lines = [f"{'eval set':<12} {'8-grams':>10} {'in dataset':>11} {'share':>8}"]
    for name, s in result["sets"].items():
        lines.append(f"{name:<12} {s['ngrams']:>10,} {s['found']:>11,} {s['share']:>8.2%}")
        for doc in s["top_documents"][:3]:
            lines.append(f"    {doc['shared_ngrams']:>6,} shared  {doc['url']}")
    return "\n".join(lines)


def card_section(result: dict[str, Any]) -> str:
    rows = [
        f"| {name} | {s['ngrams']:,} | {s['found']:,} | {s['share']:.2%} |"
        for name, s in result["sets"].items()
    ]
    return "\n".join(
        [
            CARD_HEADING,
            "",
            f"Share of each test set's distinct {result['ngram']}-grams (lower-cased "
            "alphanumeric words) found in this dataset, through a Bloom filter with a "
            f"false-positive rate at most {result['false_positive_rate']:g}, as in the GPT-2 "
            "paper's Table 6 (`webtext contamination`; the top documents are in manifest.json).",
            "",
            "| eval set | n-grams | in dataset | share |",
            "|---|---:|---:|---:|",
            *rows,
            "",
        ]
    )


def record(dataset_dir: str | Path, result: dict[str, Any]) -> None:
    """Put the result into manifest.json ("contamination") and the card, replacing an old one."""
    folder = Path(dataset_dir)
    manifest_path = folder / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["contamination"] = result
    manifest_path.write_text(json.dumps(manifest, indent=2) + "\n")
    card_path = folder / "README.md"
    card = card_path.read_text() if card_path.exists() else ""
    if CARD_HEADING in card:
        before, _, after = card.partition(CARD_HEADING)
        rest = after.split("\n## ", 1)
        card = before + ("## " + rest[1] if len(rest) > 1 else "")
    card_path.write_text(card.rstrip("\n") + "\n\n" + card_section(result))


def run(dataset_dir: str, eval_dir: str, sets: list[str]) -> dict[str, Any]:
    if not (Path(dataset_dir) / "manifest.json").exists():
        raise FileNotFoundError(f"{dataset_dir}: no manifest.json; run `webtext build` first")
    eval_sets = {name: evalsets.read(name, evalsets.path_of(name, eval_dir)) for name in sets}
    result = measure(dataset_dir, eval_sets)
    record(dataset_dir, result)
    print(format_report(result))
    return result
