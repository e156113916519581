"""MinHash throughput: signatures per second per core, and the whole dedup stage.

    python -m bench.minhash_throughput signatures [--docs 2000]
    python -m bench.minhash_throughput stage --docs 100000

`signatures`: 4 KB documents, 128 permutations, one process. webtext's
`MinHasher.signature(text)` (shingling included) against datasketch's
`MinHash(128).update_batch(shingles)` on the same texts, its shingles made beforehand and
not timed, so the ratio is conservative. Both give the same signatures (checked here too).

`stage`: the whole `Deduplicate` transform (verify = "exact", the demo config) on DirectRunner
over a corpus of 4 KB-ish articles of which ~10% are near-duplicate variants, read from
extracted parts written beforehand (not timed), as the build's dedup phase reads them; prints wall
time and the process's peak RSS.
"""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.dedup_quality import make_corpus, run_dedup, write_extracted
from pipeline.build import minhash
from pipeline.config import load

REPO = Path(__file__).resolve().parent.parent


def four_kb_texts(n: int) -> list[str]:
    docs, _ = make_corpus(clusters=0, singles=n, seed=1)
    texts = []
    for d in docs:
        text = d["text"]
        while len(text.encode()) < 4096:
            text += "\n\n" + text
        texts.append(text.encode()[:4096].decode("utf-8", "ignore"))
    return texts


def signatures(n: int) -> None:
    from datasketch import MinHash

    texts = four_kb_texts(n)
    hasher = minhash.MinHasher(128, 1)
    shingle_lists = [minhash.shingles(t, 5) for t in texts]
    for _ in range(2):  # best of two, on a shared machine
        started = time.perf_counter()
        ours = [hasher.signature(t, 5) for t in texts]
        ours_s = time.perf_counter() - started
        started = time.perf_counter()
        theirs = []
        for shingles in shingle_lists:
            m = MinHash(num_perm=128)
            m.update_batch(shingles)
            theirs.append(m.hashvalues)
        theirs_s = time.perf_counter() - started
    assert all(np.array_equal(a, b) for a, b in zip(ours, theirs, strict=True))
    mean_shingles = np.mean([len(s) for s in shingle_lists])
    print(f"{n} documents of 4096 bytes, {mean_shingles:.0f} shingles each, 128 permutations")
    print(f"webtext MinHasher.signature (text in):      {n / ours_s:8.0f} docs/s per core")
    print(f"datasketch update_batch (shingles given):   {n / theirs_s:8.0f} docs/s per core")
    print(f"ratio: {theirs_s / ours_s:.2f}x; signatures equal: True")


def stage(n: int) -> None:
    clusters = max(1, n // 100)
    docs, _ = make_corpus(clusters=clusters, singles=n - 10 * clusters, seed=2)
    config = load(REPO / "configs" / "demo.toml").dedup
    with tempfile.TemporaryDirectory() as tmp:
        parts = write_extracted(docs, Path(tmp))
        started = time.perf_counter()
        counters = run_dedup(parts, config, Path(tmp) / "removed", [])
        seconds = time.perf_counter() - started
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    mean_kb = np.mean([len(d["text"].encode()) for d in docs]) / 1024
    print(f"dedup stage, DirectRunner: {len(docs)} documents (mean {mean_kb:.1f} KB)")
    print(f"  wall {seconds:.1f} s ({len(docs) / seconds:.0f} docs/s), peak RSS {peak_mb:.0f} MB")
    print(f"  counters: {json.dumps(counters)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("what", choices=["signatures", "stage"])
    parser.add_argument("--docs", type=int, default=None)
    args = parser.parse_args()
    if args.what == "signatures":
        signatures(args.docs or 2000)
    else:
        stage(args.docs or 100_000)


if __name__ == "__main__":
    main()
