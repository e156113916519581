"""Dedup quality: precision and recall of the removed pairs against brute-force exact Jaccard.

    python -m bench.dedup_quality [--clusters 200] [--singles 1000] [--seed 0]

The corpus: synthetic articles (Zipf-distributed pseudo-words in sentences and paragraphs,
with a header and footer of site boilerplate), and for each of `--clusters` articles a set
of near-duplicate variants made the way the web makes them: word edits at several rates,
inserted sentences, the same body under another site's boilerplate, reordered paragraphs,
an exact copy, plus a heavily edited variant that is not a near-duplicate. Unrelated
articles share the same boilerplate pool, so boilerplate alone must not make duplicates.

Truth: every pair that shares a shingle gets its exact Jaccard over 5-gram shingle sets
(all other pairs have Jaccard 0). The webtext dedup runs on DirectRunner with the demo
config; the anchor is OpenWebText2's setting on the same corpus and shingles: datasketch
MinHashLSH with 10 permutations at threshold 0.5, one process, each document dropped when
it matches one kept before it.

Recall at level L: the share of true pairs with Jaccard >= L that end in one cluster
(and, looser, the share of which at most one document is kept).
Precision: the share of removed (document, kept document) pairs whose exact Jaccard is
>= the threshold (strict), and the share whose kept document is reachable through true
pairs (chain: what connected components promise).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import random
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import apache_beam as beam
import numpy as np

from pipeline import beamio
from pipeline.build import minhash
from pipeline.build.dedup import Deduplicate
from pipeline.build.graph import union_find_components
from pipeline.build.parts import ExtractedParts, write_documents
from pipeline.build.textnorm import text_hash
from pipeline.config import load

REPO = Path(__file__).resolve().parent.parent
NGRAM = 5
PARTS = 8  # extracted parts the documents are written to before dedup reads them


class TextMaker:
    """Pseudo-English: a Zipf vocabulary of made-up words, sentences and paragraphs."""

    def __init__(self, rng: random.Random, vocab_size: int = 30000):
        self.rng = rng
        syllables = [
            "ka",
            "lo",
            "mi",
            "ten",
            "ra",
            "su",
            "ve",
            "dor",
            "an",
            "is",
            "pe",
            "qu",
            "bo",
            "ni",
        ]
        words = set()
        while len(words) < vocab_size:
            words.add("".join(rng.choice(syllables) for _ in range(rng.randint(1, 5))))
        self.words = sorted(words)
        weights = 1.0 / np.arange(1, vocab_size + 1) ** 1.05
        self.cdf = np.cumsum(weights / weights.sum())
        self.np_rng = np.random.default_rng(rng.getrandbits(32))

    def word(self) -> str:
        return self.words[int(np.searchsorted(self.cdf, self.np_rng.random()))]

    def sentence(self) -> str:
        words = [self.word() for _ in range(self.rng.randint(8, 22))]
        return words[0].capitalize() + " " + " ".join(words[1:]) + self.rng.choice(".!?.")

    def paragraph(self) -> list[str]:
        return [self.sentence() for _ in range(self.rng.randint(2, 5))]

    def article(self, paragraphs: int) -> list[list[str]]:
        return [self.paragraph() for _ in range(paragraphs)]


def render(header: str, body: list[list[str]], footer: str) -> str:
    return "\n\n".join([header, *(" ".join(p) for p in body), footer])


def edit_words(text: str, rate: float, maker: TextMaker) -> str:
    words = text.split(" ")
    for i in range(len(words)):
        if maker.rng.random() < rate:
            words[i] = maker.word()
    return " ".join(words)


def make_corpus(
    clusters: int, singles: int, seed: int
) -> tuple[list[dict], dict[str, tuple[str, str]]]:
    """Documents, and each document's (variant kind, original's doc_id)."""
    rng = random.Random(seed)
    maker = TextMaker(rng)
    boilerplate = [" ".join(maker.sentence() for _ in range(3)) for _ in range(30)]
    docs, kinds = [], {}

    def add(kind: str, text: str, original: str | None = None) -> str:
        doc_id = f"{len(docs):06d}-{rng.getrandbits(32):08x}"
        docs.append(
            {
                "doc_id": doc_id,
                "text": text,
                "text_hash": text_hash(text),
                "karma": rng.randint(3, 500),
                "first_created_utc": 1_300_000_000 + rng.randint(0, 10**8),
                "normalized_url": f"http://site{rng.randint(0, 99)}.example/{doc_id}",
                "final_url": f"http://site{rng.randint(0, 99)}.example/{doc_id}",
                "host": "site.example",
                "word_count": len(text.split()),
                "token_count": len(text.split()),
                "submissions": [],
                "extractor": "bench",
            }
        )
        kinds[doc_id] = (kind, original or doc_id)
        return doc_id

    for _ in range(clusters):
        body = maker.article(rng.randint(4, 9))
        header, footer = rng.choice(boilerplate), rng.choice(boilerplate)
        original = render(header, body, footer)
        first = add("original", original)
        add("exact_copy", original, first)
        for rate in (0.005, 0.01, 0.02, 0.04):
            add(f"edit_{rate:.1%}", edit_words(original, rate, maker), first)
        inserted = [list(p) for p in body]
        for _ in range(2):
            p = rng.randrange(len(inserted))
            inserted[p].insert(rng.randrange(len(inserted[p]) + 1), maker.sentence())
        add("insert_2_sentences", render(header, inserted, footer), first)
        add(
            "other_boilerplate",
            render(rng.choice(boilerplate), body, rng.choice(boilerplate)),
            first,
        )
        reordered = list(body)
        rng.shuffle(reordered)
        add("reordered_paragraphs", render(header, reordered, footer), first)
        add("edit_15%_not_dup", edit_words(original, 0.15, maker), first)
    for _ in range(singles):
        add(
            "single",
            render(
                rng.choice(boilerplate), maker.article(rng.randint(4, 9)), rng.choice(boilerplate)
            ),
        )
    rng.shuffle(docs)
    return docs, kinds


def true_pairs(docs: list[dict]) -> dict[tuple[str, str], float]:
    """Exact Jaccard of every pair sharing at least one shingle (the rest are 0)."""
    sets = {
        d["doc_id"]: minhash.shingle_set(minhash.shingle_hashes(d["text"], NGRAM)) for d in docs
    }
    postings: dict[int, list[str]] = defaultdict(list)
    for doc_id, shingle_ids in sets.items():
        for h in shingle_ids.tolist():
            postings[h].append(doc_id)
    pairs: set[tuple[str, str]] = set()
    for ids in postings.values():
        if 1 < len(ids) < 200:
            ids = sorted(ids)
            pairs.update((a, b) for i, a in enumerate(ids) for b in ids[i + 1 :])
    return {(a, b): minhash.exact_jaccard(sets[a], sets[b]) for a, b in pairs}


def write_extracted(docs: list[dict], folder: Path) -> ExtractedParts:
    """The documents as the build's extract phase leaves them, so dedup reads them from files."""
    parts = ExtractedParts(str(folder / "extracted"), PARTS)
    write_documents(parts, docs, row_group_rows=1000)
    return parts


def run_dedup(parts: ExtractedParts, config, out: Path, beam_args: list[str]) -> dict:
    """Deduplicate over the extracted parts; removals as JSON lines [doc_id, kept_doc_id]."""

    def build(p: beam.Pipeline) -> None:
        (
            p
            | Deduplicate(config, parts)
            | beam.Map(lambda r: json.dumps([r["doc_id"], r["kept_doc_id"]]))
            | beam.io.WriteToText(str(out))
        )

    return beamio.run_pipeline("build", build, beam_args)


def webtext_removed(
    docs: list[dict], config, folder: Path
) -> tuple[list[tuple[str, str]], dict, float]:
    parts = write_extracted(docs, folder)
    started = time.perf_counter()
    counters = run_dedup(parts, config, folder / "removed", [])
    seconds = time.perf_counter() - started
    lines = [line for f in folder.glob("removed*") for line in f.read_text().splitlines()]
    return [tuple(json.loads(line)) for line in lines], counters, seconds


def owt2_removed(docs: list[dict]) -> list[tuple[str, str]]:
    """OpenWebText2's dedup: MinHashLSH(threshold=0.5, num_perm=10), first kept wins."""
    from datasketch import MinHash, MinHashLSH

    lsh = MinHashLSH(threshold=0.5, num_perm=10)
    removed = []
    for doc in docs:
        m = MinHash(num_perm=10)
        m.update_batch(minhash.shingles(doc["text"], NGRAM))
        matches = lsh.query(m)
        if matches:
            removed.append((doc["doc_id"], min(matches)))
        else:
            lsh.insert(doc["doc_id"], m)
    return removed


def score(
    removed: list[tuple[str, str]], truth: dict[tuple[str, str], float], threshold: float
) -> dict[str, float]:
    cluster = union_find_components(removed)
    gone = {doc_id for doc_id, _ in removed}
    truth_components = union_find_components([p for p, j in truth.items() if j >= threshold])

    def same(a: str, b: str) -> bool:
        return cluster.get(a, a) == cluster.get(b, b)

    out: dict[str, float] = {}
    for level in (0.9, threshold, 0.5):
        pairs = [p for p, j in truth.items() if j >= level]
        out[f"recall_J>={level}"] = sum(same(a, b) for a, b in pairs) / max(1, len(pairs))
        out[f"not_both_kept_J>={level}"] = sum(a in gone or b in gone for a, b in pairs) / max(
            1, len(pairs)
        )
        out[f"pairs_J>={level}"] = len(pairs)
    strict = [truth.get(tuple(sorted(p)), 0.0) >= threshold for p in removed]
    chain = [truth_components.get(a, a) == truth_components.get(b, b) for a, b in removed]
    out["removed"] = len(removed)
    out["precision_strict"] = sum(strict) / max(1, len(strict))
    out["precision_chain"] = sum(chain) / max(1, len(chain))
    out["removed_with_J<0.5"] = sum(truth.get(tuple(sorted(p)), 0.0) < 0.5 for p in removed)
    return out


def by_kind(
    removed: list[tuple[str, str]], kinds: dict[str, tuple[str, str]], truth: dict
) -> dict[str, tuple[float, float]]:
    """Per variant kind: mean exact Jaccard to its original, share clustered with it."""
    cluster = union_find_components(removed)
    rows: dict[str, list[tuple[float, bool]]] = defaultdict(list)
    for doc_id, (kind, original) in kinds.items():
        if kind in ("original", "single"):
            continue
        jaccard = truth.get(tuple(sorted((doc_id, original))), 0.0)
        rows[kind].append((jaccard, cluster.get(doc_id, doc_id) == cluster.get(original, original)))
    return {
        kind: (float(np.mean([j for j, _ in v])), float(np.mean([c for _, c in v])))
        for kind, v in sorted(rows.items())
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clusters", type=int, default=200)
    parser.add_argument("--singles", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    config = load(REPO / "configs" / "demo.toml").dedup
    docs, kinds = make_corpus(args.clusters, args.singles, args.seed)
    started = time.perf_counter()
    truth = true_pairs(docs)
    brute_s = time.perf_counter() - started
    print(f"corpus: {len(docs)} documents, {len(truth)} pairs sharing a shingle ({brute_s:.1f} s)")
    levels = np.histogram(list(truth.values()), bins=[0, 0.5, 0.8, 0.9, 0.95, 1.0001])[0]
    print("true pairs by Jaccard [0,.5) [.5,.8) [.8,.9) [.9,.95) [.95,1]:", levels.tolist())
    params = minhash.optimal_params(config.threshold, config.num_perm)
    results, kind_rows = {}, {}
    for verify in ("exact", "estimate", "none"):
        cfg = dataclasses.replace(config, verify=verify)
        with tempfile.TemporaryDirectory() as tmp:
            removed, counters, seconds = webtext_removed(docs, cfg, Path(tmp))
        name = f"webtext {cfg.num_perm} perms, t={cfg.threshold}, b={params.bands} r={params.rows}, verify={verify}"
        results[name] = {
            **score(removed, truth, config.threshold),
            "kept_below_threshold": counters.get("dedup_kept_below_threshold", 0),
            "seconds": seconds,
        }
        kind_rows[name] = by_kind(removed, kinds, truth)
    started = time.perf_counter()
    removed = owt2_removed(docs)
    owt2 = "OpenWebText2: datasketch MinHashLSH 10 perms, t=0.5 (b=3 r=3)"
    results[owt2] = {
        **score(removed, truth, config.threshold),
        "seconds": time.perf_counter() - started,
    }
    kind_rows[owt2] = by_kind(removed, kinds, truth)
    for name, r in results.items():
        print(f"\n{name}")
        for key, value in r.items():
            print(
                f"  {key:<22} {value:.4f}" if isinstance(value, float) else f"  {key:<22} {value}"
            )
        print("  variant kind: mean exact Jaccard to its original, share clustered with it")
        for kind, (jaccard, found) in kind_rows[name].items():
            print(f"    {kind:<22} J={jaccard:.3f}  found={found:.3f}")


if __name__ == "__main__":
    main()
