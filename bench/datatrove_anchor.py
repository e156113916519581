"""The anchor of bench.scale: Hugging Face datatrove's 4-stage MinHash on the same files.

    bench-data/datatrove-venv/bin/python bench/datatrove_anchor.py EXTRACTED_DIR WORK_DIR \
        --bands 9 --rows 13 --ngram 5 --workers 2

Runs in datatrove's own venv (built by bench.scale), so it imports nothing of webtext. Words
are `\\w+` of the lowercased, simplified text (datatrove's default is spaCy, far slower), so
both sides shingle alike. Stages: signatures, buckets, clusters, then the filter that writes
the kept documents as Parquet, as webtext's write phase does. Prints one JSON line: the
documents removed (the ids in the clusters' .remove files) and the seconds per stage.
"""

from __future__ import annotations

import argparse
import json
import re
import time
from pathlib import Path

from datatrove.executor.local import LocalPipelineExecutor
from datatrove.pipeline.dedup.minhash import (
    MinhashConfig,
    MinhashDedupBuckets,
    MinhashDedupCluster,
    MinhashDedupFilter,
    MinhashDedupSignature,
)
from datatrove.pipeline.readers import ParquetReader
from datatrove.pipeline.writers import ParquetWriter
from datatrove.utils.word_tokenizers import WordTokenizer

WORD = re.compile(r"\w+")


class RegexWords(WordTokenizer):
    """Words as webtext's shingler cuts them: runs of \\w."""

    def word_tokenize(self, text: str) -> list[str]:
        return WORD.findall(text)

    def sent_tokenize(self, text: str) -> list[str]:
        return [text]

    def span_tokenize(self, text: str) -> list[tuple[int, int]]:
        return [m.span() for m in WORD.finditer(text)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("extracted")
    parser.add_argument("work")
    parser.add_argument("--bands", type=int, required=True)
    parser.add_argument("--rows", type=int, required=True)
    parser.add_argument("--ngram", type=int, default=5)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    work = Path(args.work)
    files = len(list(Path(args.extracted).glob("*.parquet")))
    config = MinhashConfig(n_grams=args.ngram, num_buckets=args.bands, hashes_per_bucket=args.rows)

    def reader() -> ParquetReader:
        return ParquetReader(args.extracted, id_key="doc_id", glob_pattern="*.parquet")

    stages = {
        "signatures": (
            [reader(), MinhashDedupSignature(str(work / "sigs"), config, language=RegexWords())],
            files,
        ),
        "buckets": (
            [MinhashDedupBuckets(str(work / "sigs"), str(work / "buckets"), config=config)],
            args.bands,
        ),
        "clusters": (
            [MinhashDedupCluster(str(work / "buckets"), str(work / "remove"), config=config)],
            1,
        ),
        "filter": (
            [
                reader(),
                MinhashDedupFilter(str(work / "remove")),
                ParquetWriter(str(work / "kept")),
            ],
            files,
        ),
    }
    seconds = {}
    for name, (steps, tasks) in stages.items():
        started = time.monotonic()
        LocalPipelineExecutor(
            steps, tasks=tasks, workers=args.workers, logging_dir=str(work / "logs" / name)
        ).run()
        seconds[name] = time.monotonic() - started
    removed = sum(p.stat().st_size // 4 for p in (work / "remove").glob("*.remove"))
    print(json.dumps({"removed": removed, "seconds": seconds, "tasks": files}))


if __name__ == "__main__":
    main()
