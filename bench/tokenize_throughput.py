"""Tokenize stage throughput on one core, against tiktoken alone on the same documents.

    python -m bench.tokenize_throughput [--tokens 4000000] [--cores 1]

Builds a document Parquet from the readability pages in ../shared (real English web text,
paragraphs shuffled into documents of a few KB), then times, pinned to the same cores:
  anchor: tiktoken's encode_ordinary_batch(num_threads=1) over the texts already in memory;
  stage:  `pipeline.tokenize.stage.run` on the DirectRunner, Parquet reading and shard writing included.
"""

from __future__ import annotations

import argparse
import html
import os
import random
import re
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.bpe import load_gpt2
from pipeline.config import load
from pipeline.tokenize import stage as tokenize

REPO = Path(__file__).resolve().parent.parent
PAGES = REPO.parent / "shared" / "pages" / "readability"
RANKS = REPO.parent / "shared" / "tokenizers" / "r50k_base.tiktoken"


def paragraphs() -> list[str]:
    out = []
    for page in sorted(PAGES.glob("*/expected.html")):
        text = html.unescape(
            re.sub(r"<[^>]+>", " ", page.read_text(encoding="utf-8", errors="replace"))
        )
        out.extend(p.strip() for p in re.split(r"\n\s*\n", text) if len(p.strip()) > 80)
    if not out:
        raise SystemExit(f"{PAGES} is absent: the benchmark needs ../shared beside the checkout")
    return [re.sub(r"\s+", " ", p) for p in out]


def make_documents(target_tokens: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    paras = paragraphs()
    docs, chars = [], 0
    while chars < target_tokens * 4.3:  # ~4.3 characters per GPT-2 token in English prose
        doc = "\n\n".join(rng.choice(paras) for _ in range(rng.randint(3, 12)))
        docs.append(doc)
        chars += len(doc)
    return docs


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tokens", type=int, default=4_000_000, help="about this many tokens")
    parser.add_argument("--cores", type=int, default=1, help="pin both runs to this many cores")
    parser.add_argument("--repeat", type=int, default=3, help="interleaved runs of each")
    args = parser.parse_args()
    os.sched_setaffinity(0, set(range(args.cores)))

    texts = make_documents(args.tokens)
    with tempfile.TemporaryDirectory() as root:
        for attempt in range(args.repeat):
            (Path(root) / f"run{attempt}" / "documents" / "data").mkdir(parents=True)
        ids = [f"{i:08x}" for i in range(len(texts))]
        for attempt in range(args.repeat):
            pq.write_table(
                pa.table({"doc_id": ids, "text": texts}),
                Path(root)
                / f"run{attempt}"
                / "documents"
                / "data"
                / "documents-00000-of-00001.parquet",
                row_group_size=1000,
                compression="zstd",
            )
        config = load(
            REPO / "configs" / "demo.toml",
            [f'tokenizer.ranks_file="{RANKS}"', "tokenize.num_shards=4", "tokenize.batch_docs=256"],
        )
        encoding = load_gpt2(config.tokenizer)
        encoding.encode_ordinary_batch(texts[:50], num_threads=1)  # warm the cache

        anchor, stage = [], []
        for attempt in range(args.repeat):  # interleaved, best of each: the machine is shared
            wall, cpu = time.perf_counter(), time.process_time()
            n_anchor = sum(len(t) for t in encoding.encode_ordinary_batch(texts, num_threads=1))
            anchor.append((time.perf_counter() - wall, time.process_time() - cpu))

            wall, cpu = time.perf_counter(), time.process_time()
            summary = tokenize.run(config, os.path.join(root, f"run{attempt}"), [])
            stage.append((time.perf_counter() - wall, time.process_time() - cpu))
            n_stage = summary["tokens_train"] + summary["tokens_val"] - len(texts)  # no separators
            assert n_stage == n_anchor, (n_stage, n_anchor)

    print(
        f"documents {len(texts):,}, tokens {n_anchor:,}, pinned to {args.cores} core(s), best of {args.repeat}"
    )
    for label, times in (("tiktoken alone", anchor), ("tokenize stage", stage)):
        wall = min(t[0] for t in times)
        cpu = min(t[1] for t in times)
        print(
            f"{label}:  wall {wall:6.2f} s = {n_anchor / wall / args.cores:11,.0f} tokens/s/core   "
            f"CPU {cpu:6.2f} s = {n_anchor / cpu:11,.0f} tokens/CPU-s"
        )
    print(
        f"stage / tiktoken: {min(t[0] for t in anchor) / min(t[0] for t in stage):.2f} (wall), "
        f"{min(t[1] for t in anchor) / min(t[1] for t in stage):.2f} (CPU)"
    )


if __name__ == "__main__":
    main()
