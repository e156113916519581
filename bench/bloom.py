"""Bloom filter throughput and memory: `webtext contamination`'s 8-gram filter vs a Python set.

    python -m bench.bloom [--docs 2000] [--words 900]

Synthetic documents of `--words` words drawn from a Zipf-like vocabulary, one process. Times,
on the same n-grams: making the 8-grams from text (pipeline.overlap.ngrams), adding them to
the Bloom filter sized for them at a false-positive rate of 1e-8, querying them back; and
the anchor, a plain Python set of their 64-bit xxh3 hashes (hashing included), built and
queried. Memory: the filter's bit array, and the set's measured bytes per n-gram
(tracemalloc), both extrapolated to 1M documents of the same length.
"""

from __future__ import annotations

import argparse
import json
import time
import tracemalloc

import numpy as np
import xxhash

from pipeline.overlap import BloomFilter, bloom_size, ngrams

RATE = 1e-8


def documents(n: int, n_words: int, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    vocabulary = np.array([f"word{i}" for i in range(50_000)])
    ranks = np.minimum(rng.zipf(1.2, size=(n, n_words)), len(vocabulary)) - 1
    return [" ".join(vocabulary[row]) for row in ranks]


def rate(count: int, seconds: float) -> float:
    return count / seconds if seconds else float("inf")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=2000)
    parser.add_argument("--words", type=int, default=900)
    args = parser.parse_args()
    texts = documents(args.docs, args.words)

    started = time.perf_counter()
    grams = [g for text in texts for g in ngrams(text, 8)]
    make_s = time.perf_counter() - started
    bloom = BloomFilter.for_items(len(grams), RATE)
    started = time.perf_counter()
    for start in range(0, len(grams), 100_000):
        bloom.add(grams[start : start + 100_000])
    add_s = time.perf_counter() - started
    started = time.perf_counter()
    found = sum(
        int(bloom.contains(grams[start : start + 100_000]).sum())
        for start in range(0, len(grams), 100_000)
    )
    query_s = time.perf_counter() - started
    assert found == len(grams)

    started = time.perf_counter()
    hashes = {xxhash.xxh3_64_intdigest(g.encode()) for g in grams}
    set_add_s = time.perf_counter() - started
    tracemalloc.start()  # a second build, measured apart: tracing slows allocation
    measured = {xxhash.xxh3_64_intdigest(g.encode()) for g in grams}
    set_bytes = tracemalloc.get_traced_memory()[0]
    del measured
    tracemalloc.stop()
    started = time.perf_counter()
    hits = sum(xxhash.xxh3_64_intdigest(g.encode()) in hashes for g in grams)
    set_query_s = time.perf_counter() - started
    assert hits == len(grams)

    per_doc = len(grams) / len(texts)
    million_bits, hashes_k = bloom_size(round(per_doc * 1_000_000), RATE)
    print(
        json.dumps(
            {
                "documents": len(texts),
                "ngrams": len(grams),
                "distinct_ngrams": len(hashes),
                "bloom_hashes": hashes_k,
                "make_ngrams_per_s": round(rate(len(grams), make_s)),
                "bloom_add_ngrams_per_s": round(rate(len(grams), add_s)),
                "bloom_query_ngrams_per_s": round(rate(len(grams), query_s)),
                "set_add_ngrams_per_s": round(rate(len(grams), set_add_s)),
                "set_query_ngrams_per_s": round(rate(len(grams), set_query_s)),
                "bloom_bytes_per_ngram": bloom.nbytes / len(grams),
                "set_bytes_per_distinct_ngram": set_bytes / len(hashes),
                "bloom_gb_at_1m_docs": million_bits / 8 / 1e9,
                "set_gb_at_1m_docs": set_bytes / len(hashes) * per_doc * 1_000_000 / 1e9,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
