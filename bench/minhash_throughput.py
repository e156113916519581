"""MinHash throughput: signatures per second per core, and the whole dedup stage.

    python -m bench.minhash_throughput signatures [--docs 2000]
    python -m bench.minhash_throughput stage [--docs 100000]

`signatures`: 4 KB documents, 128 permutations, one process. webtext's
`MinHasher.signature(text)` (shingling included) against datasketch's
`MinHash(128).update_batch(shingles)` on the same texts, its shingles made beforehand and
not timed, so the ratio is conservative. Both give the same signatures (checked here too).

`stage`: the whole `Deduplicate` transform ([dedup] of configs/webtext.toml) on the
DirectRunner, in one process, over a corpus of 3.8 KB articles of which 1 % are cluster
originals with 10 variants each. The corpus is written to Parquet files first and read inside
the pipeline (`beam.Create` of a large list would pickle and compress the whole corpus into
the pipeline, and its cost would swamp the transform's). In the same run, in a process of its
own: datasketch's `MinHashLSH` (128 permutations, threshold 0.8) over the same texts and
shingles, one process, no I/O and no verification, as the anchor. Prints wall, CPU (user +
sys of the process) and peak RSS of each, and how many documents each removes.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from bench.dedup_quality import PARTS, make_corpus, run_dedup, write_extracted
from pipeline import dataroot
from pipeline.build import minhash
from pipeline.build.parts import ExtractedParts
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


def corpus_files(n: int, folder: Path) -> list[dict]:
    """The corpus written as the build's extract phase leaves it (extracted parts)."""
    clusters = max(1, n // 100)
    docs, _ = make_corpus(clusters=clusters, singles=n - 10 * clusters, seed=2)
    write_extracted(docs, folder)
    return docs


def extracted(folder: str) -> ExtractedParts:
    return ExtractedParts(str(Path(folder) / "extracted"), PARTS)


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def dedup_child(folder: str) -> None:
    """Child: the build's dedup over the extracted parts in `folder`; prints figures as JSON."""
    config = load(REPO / "configs" / "webtext.toml").dedup
    out = Path(folder) / "removed"
    cpu0, started = cpu_seconds(), time.monotonic()
    run_dedup(extracted(folder), config, out, ["--direct_num_workers=1"])
    wall, cpu = time.monotonic() - started, cpu_seconds() - cpu0
    removed = sum(len(f.read_text().splitlines()) for f in Path(folder).glob("removed*"))
    print(json.dumps({"wall_s": wall, "cpu_s": cpu, "removed": removed, "peak_mb": peak_mb()}))


def run_datasketch(folder: str) -> None:
    """Child: datasketch MinHashLSH over the same texts, one process, no verification."""
    from datasketch import MinHash, MinHashLSH

    paths = dataroot.match(extracted(folder).pattern())
    texts = [row for p in paths for row in pq.read_table(p, columns=["doc_id", "text"]).to_pylist()]
    cpu0, started = cpu_seconds(), time.monotonic()
    lsh = MinHashLSH(threshold=0.8, num_perm=128)
    removed = 0
    for doc in texts:
        m = MinHash(num_perm=128)
        m.update_batch(minhash.shingles(doc["text"], 5))
        if lsh.query(m):
            removed += 1
        else:
            lsh.insert(doc["doc_id"], m)
    wall, cpu = time.monotonic() - started, cpu_seconds() - cpu0
    print(json.dumps({"wall_s": wall, "cpu_s": cpu, "removed": removed, "peak_mb": peak_mb()}))


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def stage(n: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        docs = corpus_files(n, Path(tmp))
        mean_kb = np.mean([len(d["text"].encode()) for d in docs]) / 1024
        del docs
        print(f"{n} documents (mean {mean_kb:.1f} KB), read from Parquet inside the pipeline")
        print("| | wall (s) | CPU (s) | documents / CPU-s | peak RSS (MB) | removed |")
        print("|---|---:|---:|---:|---:|---:|")
        for what in ("dedup", "datasketch"):
            command = [sys.executable, "-m", "bench.minhash_throughput", f"_{what}", "--dir", tmp]
            out = subprocess.run(command, cwd=REPO, check=True, capture_output=True, text=True)
            r = json.loads(out.stdout.strip().splitlines()[-1])
            print(f"| {what} | {r['wall_s']:.1f} | {r['cpu_s']:.1f} | {n / r['cpu_s']:,.0f} "
                  f"| {r['peak_mb']:,.0f} | {r['removed']:,} |", flush=True)  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "what", nargs="?", default="stage", choices=["signatures", "stage", "_dedup", "_datasketch"]
    )
    parser.add_argument("--docs", type=int, default=None)
    parser.add_argument("--dir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.what == "_dedup":
        dedup_child(args.dir)
    elif args.what == "_datasketch":
        run_datasketch(args.dir)
    elif args.what == "signatures":
        signatures(args.docs or 2000)
    else:
        stage(args.docs or 100_000)


if __name__ == "__main__":
    main()
