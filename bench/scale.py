"""The scale benchmark: dedup, the final write and tokenize at 1M documents, and the whole build
from WARC, with datatrove's MinHash as the anchor in the same run.

    python -m bench.scale                                  # 1,000,000 documents, 100,000 pages
    python -m bench.scale --docs 100000 --pages 0          # a quicker look, no WARC build
    make bench-scale

1. Writes --docs synthetic documents as the build's extract phase leaves them:
   `extracted/part-XXXXX-of-NNNNN.parquet` (schemas.DOCUMENT rows, partitioned by
   pipeline.build.dataset.shard_of and sorted by doc_id). One document in 100 is a cluster's
   original with 8 relatives: 2 exact copies, a copy under other site boilerplate, edits of
   1 % and 3 % of words, 2 paragraphs swapped, a sentence inserted, and an edit of 15 % that
   is no duplicate. Every text is a pure function of (seed, index), so parts are generated
   independently, one per core.
2. Runs `webtext build --set build.phase="dedup"`, then `"write"`, then `webtext tokenize`,
   each in a fresh process, reporting wall, CPU and peak memory of that process tree (CPU of
   every process in it; memory is the peak of the tree's summed PSS, sampled every 0.2 s).
3. Runs datatrove's 4-stage MinHash (bench/datatrove_anchor.py, in bench-data/datatrove-venv,
   built on first use) on the same part files with the [dedup] config's bands, rows and
   shingle size, words by `\\w+`, 2 workers, and reports it the same way.
4. With --pages: writes that many HTML pages (the same texts in a page template, with the
   same duplicate structure) straight into gzipped WARC files with their fetch log and link
   set, runs the whole `webtext build` from them, and prints its funnel.

Every input is read from files inside the pipeline. Prints one JSON line per stage, then a
Markdown table for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import io
import json
import multiprocessing
import os
import re
import resource
import shutil
import subprocess
import sys
import threading
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import xxhash

from bench.build_memory import memory_kb, process_tree

REPO = Path(__file__).resolve().parent.parent
# datatrove imports regex and tokenizers without declaring them; xxhash 4 refuses str input,
# which datatrove 0.10.1 hashes.
DATATROVE_PINS = ["datatrove==0.10.1", "pyarrow", "regex", "tokenizers", "xxhash<4"]
CLUSTER_EVERY = 100  # one document in this many is a cluster's original
RELATIVES = (
    "exact",
    "exact",
    "other_boilerplate",
    "edit_1%",
    "edit_3%",
    "swap_paragraphs",
    "insert_sentence",
    "edit_15%_not_dup",
)
CLUSTER_SIZE = 1 + len(RELATIVES)
VOCAB = 30_000
WORD = re.compile(r"[A-Za-z]+")
ROW_GROUP = 2_000


# ---- synthetic texts ---------------------------------------------------------------------


class Texts:
    """Articles of English words, each a pure function of (seed, index): the words of the
    micro-web's documentation prose (pipeline.demo.text) drawn by a Zipf law on their
    frequency rank, in 3-5 sentence paragraphs, with site boilerplate around the body (so
    the build's English filter keeps them)."""

    def __init__(self, seed: int):
        from pipeline.demo.text import documentation_paragraphs

        counts = Counter(
            w.lower() for p in documentation_paragraphs(12) for w in WORD.findall(p.text)
        )
        self.words = np.array([w for w, _ in counts.most_common(VOCAB) if w.isalpha()])
        weights = 1.0 / np.arange(1, len(self.words) + 1) ** 1.05
        self.cdf = np.cumsum(weights / weights.sum())
        self.seed = seed
        self.boilerplate = [self._sentences(np.random.default_rng([seed, i]), 3) for i in range(50)]

    def _words(self, rng: np.random.Generator, n: int) -> list[str]:
        return self.words[np.searchsorted(self.cdf, rng.random(n))].tolist()

    def _sentences(self, rng: np.random.Generator, n: int) -> str:
        lengths = rng.integers(8, 23, n)
        words = self._words(rng, int(lengths.sum()))
        out, at = [], 0
        for length in lengths:
            sentence = words[at : at + length]
            at += length
            out.append(sentence[0].capitalize() + " " + " ".join(sentence[1:]) + ".")
        return " ".join(out)

    def article(self, index: int) -> tuple[str, list[str], str]:
        """(header, paragraphs, footer) of the article drawn for `index`."""
        rng = np.random.default_rng([self.seed, 1, index])
        paragraphs = [self._sentences(rng, int(rng.integers(3, 6))) for _ in range(8)]
        header, footer = rng.integers(0, len(self.boilerplate), 2)
        return self.boilerplate[header], paragraphs, self.boilerplate[footer]

    def document(self, index: int, n_docs: int) -> tuple[str, str, str]:
        """(kind, header, body paragraphs joined, footer) of document `index` of n_docs."""
        clusters = n_docs // CLUSTER_EVERY
        if index >= clusters * CLUSTER_SIZE:
            return ("single", *self._join(self.article(index)))
        cluster, member = divmod(index, CLUSTER_SIZE)
        header, paragraphs, footer = self.article(cluster)
        if member == 0:
            return ("original", *self._join((header, paragraphs, footer)))
        kind = RELATIVES[member - 1]
        rng = np.random.default_rng([self.seed, 2, index])
        if kind == "other_boilerplate":
            header, footer = (
                self.boilerplate[i] for i in rng.integers(0, len(self.boilerplate), 2)
            )
        elif kind.startswith("edit_"):
            rate = float(kind.split("_")[1].rstrip("%")) / 100
            paragraphs = [self._edit(p, rate, rng) for p in paragraphs]
        elif kind == "swap_paragraphs":
            paragraphs = list(paragraphs)
            paragraphs[2], paragraphs[5] = paragraphs[5], paragraphs[2]
        elif kind == "insert_sentence":
            paragraphs = list(paragraphs)
            paragraphs[3] += " " + self._sentences(rng, 1)
        return (kind, *self._join((header, paragraphs, footer)))

    def _edit(self, paragraph: str, rate: float, rng: np.random.Generator) -> str:
        words = paragraph.split(" ")
        changed = np.flatnonzero(rng.random(len(words)) < rate)
        for i, word in zip(changed, self._words(rng, len(changed)), strict=True):
            words[i] = word
        return " ".join(words)

    @staticmethod
    def _join(article: tuple[str, list[str], str]) -> tuple[str, str, str]:
        header, paragraphs, footer = article
        return header, "\n\n".join(paragraphs), footer


def doc_id_of(seed: int, index: int) -> str:
    return xxhash.xxh64_hexdigest(f"{seed}:{index}".encode())


def url_of(doc_id: str) -> str:
    return f"http://site{int(doc_id[:4], 16) % 997}.example/a/{doc_id}"


# ---- 1. extracted/ parts -----------------------------------------------------------------


def _write_part(job: tuple[str, int, int, int, int, list[int]]) -> int:
    from pipeline import dataroot
    from pipeline.build import parts as part_kinds
    from pipeline.build.parts import ExtractedParts
    from pipeline.build.textnorm import text_hash
    from schemas import DEAD_LETTER, DOCUMENT, REMOVED

    folder, part, parts, n_docs, seed, indices = job
    texts = Texts(seed)
    mine = sorted((doc_id_of(seed, i), i) for i in indices)
    fetched = datetime(2019, 6, 1, tzinfo=UTC)
    path = Path(folder) / f"part-{part:05d}-of-{parts:05d}.parquet"
    with pq.ParquetWriter(path, DOCUMENT, compression="zstd") as writer:
        for start in range(0, len(mine), ROW_GROUP):
            rows = []
            for doc_id, index in mine[start : start + ROW_GROUP]:
                _, header, body, footer = texts.document(index, n_docs)
                text = "\n\n".join((header, body, footer))
                url = url_of(doc_id)
                words = text.count(" ") + text.count("\n\n") + 1
                rows.append(
                    {
                        "doc_id": doc_id, "text": text, "title": body[:60], "date": None,
                        "language": "en", "language_score": 0.9, "word_count": words,
                        "token_count": int(words * 1.3), "normalized_url": url, "final_url": url,
                        "host": url.split("/")[2], "karma": 3 + index % 500,
                        "first_created_utc": 1_400_000_000 + index, "submissions": [],
                        "fetched_at": fetched, "warc_file": None, "warc_offset": None,
                        "extractor": "synthetic", "text_hash": text_hash(text),
                    }
                )  # fmt: skip
            writer.write_table(pa.Table.from_pylist(rows, schema=DOCUMENT))
    # The rest of a finished part, as the extract phase leaves it: no removed rows or dead
    # letters, then the part's record, written last.
    extracted = ExtractedParts(folder, parts)
    for kind, schema in ((part_kinds.REMOVED, REMOVED), (part_kinds.DEAD_LETTER, DEAD_LETTER)):
        pq.write_table(schema.empty_table(), extracted.path(kind, part), compression="zstd")
    dataroot.write_json(extracted.record_path(part), {"counters": {"kept": len(mine)}})
    return len(mine)


def write_extracted(root: Path, n_docs: int, parts: int, seed: int, workers: int) -> None:
    from pipeline.dataroot import EXTRACTED_DIR

    folder = root / EXTRACTED_DIR
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    from pipeline.build.dataset import shard_of

    indices: list[list[int]] = [[] for _ in range(parts)]
    for i in range(n_docs):
        indices[shard_of(doc_id_of(seed, i), parts)].append(i)
    jobs = [(str(folder), part, parts, n_docs, seed, indices[part]) for part in range(parts)]
    with multiprocessing.get_context("spawn").Pool(workers) as pool:
        assert sum(pool.imap_unordered(_write_part, jobs)) == n_docs
    from pipeline.build.phases import write_phase_summary

    write_phase_summary(str(root), EXTRACTED_DIR, {"kept": n_docs})


# ---- 4. WARC pages -----------------------------------------------------------------------

PAGE = (
    "<!DOCTYPE html><html><head><meta charset='utf-8'><title>{title}</title></head><body>"
    "<nav><a href='/'>Home</a> <a href='/news'>News</a> <a href='/about'>About</a></nav>"
    "<article><h1>{title}</h1><p class='lede'>{header}</p>{body}</article>"
    "<footer><p>{footer}</p><p>Copyright 2019. All rights reserved.</p></footer></body></html>"
)


def write_pages(root: Path, n_pages: int, seed: int, per_warc: int = 5_000) -> None:
    """links/ and fetch/ (gzipped WARCs and fetch logs) holding n_pages synthetic pages."""
    from warcio.statusandheaders import StatusAndHeaders
    from warcio.warcwriter import WARCWriter

    from schemas import FETCH, LINK

    for stage in ("links", "fetch"):
        shutil.rmtree(root / stage, ignore_errors=True)
        (root / stage).mkdir(parents=True)
    texts = Texts(seed)
    fetched = datetime(2019, 6, 1, tzinfo=UTC)
    links = []
    for first in range(0, n_pages, per_warc):
        warc = f"pages-{first // per_warc:05d}.warc.gz"
        log = []
        with open(root / "fetch" / warc, "wb") as out:
            writer = WARCWriter(out, gzip=True)
            for index in range(first, min(first + per_warc, n_pages)):
                _, header, body, footer = texts.document(index, n_pages)
                paragraphs = "".join(f"<p>{p}</p>" for p in body.split("\n\n"))
                html = PAGE.format(title=body[:60], header=header, body=paragraphs, footer=footer)
                url = url_of(doc_id_of(seed, index))
                headers = StatusAndHeaders(
                    "200 OK", [("Content-Type", "text/html; charset=utf-8")], "HTTP/1.1"
                )
                offset = out.tell()
                record = writer.create_warc_record(
                    url, "response", io.BytesIO(html.encode()), http_headers=headers
                )
                writer.write_record(record)
                row = dict.fromkeys(FETCH.names)
                row.update(url=url, normalized_url=url, outcome="ok", final_url=url, status=200)
                row.update(content_type="text/html", warc_file=warc, warc_offset=offset)
                row.update(warc_length=out.tell() - offset, fetched_at=fetched, source="live")
                log.append(row)
                links.append(
                    {"normalized_url": url, "host": url.split("/")[2], "urls": [url],
                     "karma": 3 + index % 500, "first_created_utc": 1_400_000_000 + index,
                     "submissions": []}
                )  # fmt: skip
        table = pa.Table.from_pylist(log, schema=FETCH)
        pq.write_table(table, root / "fetch" / f"log-{first // per_warc:05d}.parquet")
    pq.write_table(pa.Table.from_pylist(links, schema=LINK), root / "links" / "links-0.parquet")


# ---- measuring a process tree ------------------------------------------------------------


def _cpu_ticks(pid: int) -> int:
    """User + system clock ticks of one process so far."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0
    return int(fields[11]) + int(fields[12])


def measure(name: str, command: list[str], env: dict | None = None) -> dict:
    """Run command; wall, CPU of its whole tree and the peak of its summed PSS.

    CPU is what the reaped children report, or, where that is less (a pool under a forkserver
    that nobody waits for), the sum of each process's last sampled CPU time.
    """
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    process = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, text=True)
    peak, ticks, done = [0], {}, threading.Event()

    def sample() -> None:
        while not done.wait(0.2):
            tree = process_tree(process.pid)
            peak[0] = max(peak[0], sum(memory_kb(p) for p in tree))
            ticks.update({p: max(ticks.get(p, 0), _cpu_ticks(p)) for p in tree})

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    stdout, _ = process.communicate()
    done.set()
    sampler.join()
    wall = time.monotonic() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if process.returncode:
        raise SystemExit(f"{name}: {' '.join(command)} exited {process.returncode}")
    reaped = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    cpu = max(reaped, sum(ticks.values()) / os.sysconf("SC_CLK_TCK"))
    row = {"stage": name, "wall_s": round(wall, 1), "cpu_s": round(cpu, 1),
           "peak_gb": round(peak[0] / 2**20, 2), "stdout": stdout}  # fmt: skip
    print(json.dumps({k: v for k, v in row.items() if k != "stdout"}), flush=True)
    return row


def webtext(args: argparse.Namespace, root: Path, *command: str) -> list[str]:
    """The command line of one webtext stage or build phase, run by pipeline.cli.main."""
    sets = [f"build.partitions={args.parts}"] if command[0] == "build" else []
    sets += [s for s in args.set]
    return [
        sys.executable, "-c", "import sys; from pipeline.cli import main; sys.exit(main(sys.argv[1:]))",
        command[0], "--config", args.config, "--data-root", str(root), "-q",
        *(a for s in sets for a in ("--set", s)), *command[1:],
    ]  # fmt: skip


# ---- 3. the anchor -----------------------------------------------------------------------


def datatrove_python(workdir: Path) -> Path:
    """bench-data/datatrove-venv, built on first use (a minute; PyPI)."""
    venv = workdir.parent / "datatrove-venv"
    stamp = venv / ".webtext-installed"
    if not (stamp.exists() and stamp.read_text() == " ".join(DATATROVE_PINS)):
        print(f"building {venv} with {' '.join(DATATROVE_PINS)} ...", flush=True)
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
        pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q"]
        subprocess.run([*pip, "--disable-pip-version-check", *DATATROVE_PINS], check=True)
        stamp.write_text(" ".join(DATATROVE_PINS))
    return venv / "bin" / "python"


def run_anchor(args: argparse.Namespace, root: Path, workdir: Path) -> dict:
    from pipeline.build import minhash
    from pipeline.config import load
    from pipeline.dataroot import EXTRACTED_DIR

    dedup = load(args.config, args.set).dedup
    params = minhash.optimal_params(dedup.threshold, dedup.num_perm)
    work = workdir / "datatrove"
    shutil.rmtree(work, ignore_errors=True)
    command = [
        str(datatrove_python(workdir)), str(REPO / "bench" / "datatrove_anchor.py"),
        str(root / EXTRACTED_DIR), str(work), "--bands", str(params.bands),
        "--rows", str(params.rows), "--ngram", str(dedup.ngram), "--workers", str(args.workers),
    ]  # fmt: skip
    env = {**os.environ, "DATATROVE_COLORIZE_LOGS": "0", "LOGURU_LEVEL": "WARNING"}
    row = measure("datatrove MinHash (4 stages, \\w+ words)", command, env)
    result = json.loads(row["stdout"].strip().splitlines()[-1])
    row["removed"] = result["removed"]
    row["detail"] = result["seconds"]
    return row


# ---- report ------------------------------------------------------------------------------


def table(rows: list[dict], docs: int) -> str:
    lines = [
        f"| {docs:,} documents | wall (s) | CPU (s) | documents / CPU-s | peak memory (GB) "
        "| removed |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        rate = docs / r["cpu_s"] if r["cpu_s"] else 0
        lines.append(
            f"| {r['stage']} | {r['wall_s']:,.1f} | {r['cpu_s']:,.1f} | {rate:,.0f} "
            f"| {r['peak_gb']:.2f} | {r.get('removed', '')} |"
        )
    return "\n".join(lines)


def removed_by_dedup(root: Path) -> int | None:
    from pipeline.dataroot import DEDUP_DIR

    paths = sorted((root / DEDUP_DIR).glob("removals-*.parquet"))
    return sum(pq.ParquetFile(p).metadata.num_rows for p in paths) if paths else None


def funnel(root: Path) -> list:
    from pipeline import dataroot

    return (dataroot.read_summary(str(root), "build") or {}).get("funnel", [])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=1_000_000)
    parser.add_argument("--pages", type=int, default=100_000, help="0: no build from WARC")
    parser.add_argument("--parts", type=int, default=32, help="build.partitions")
    parser.add_argument("--config", default=str(REPO / "configs" / "webtext.toml"))
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE")
    parser.add_argument("--workdir", default=str(REPO / "bench-data" / "scale"))
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--skip", nargs="*", default=[], choices=["datatrove", "tokenize"])
    args = parser.parse_args(argv)
    workdir = Path(args.workdir).resolve()
    shared_ranks = REPO.parent / "shared" / "tokenizers" / "r50k_base.tiktoken"
    if shared_ranks.exists():  # offline: the tokenizer the tests use
        os.environ.setdefault("WEBTEXT_TIKTOKEN_RANKS", str(shared_ranks))
    rows = []
    if args.docs:
        root = workdir / f"docs-{args.docs}"
        started = time.monotonic()
        write_extracted(root, args.docs, args.parts, args.seed, args.workers)
        print(
            f"generated {args.docs:,} documents in {time.monotonic() - started:.0f} s", flush=True
        )
        rows.append(
            measure("dedup phase", webtext(args, root, "build", "--set", 'build.phase="dedup"'))
        )
        rows[-1]["removed"] = removed_by_dedup(root)
        rows.append(
            measure("write phase", webtext(args, root, "build", "--set", 'build.phase="write"'))
        )
        if "tokenize" not in args.skip:
            rows.append(measure("tokenize", webtext(args, root, "tokenize")))
        if "datatrove" not in args.skip:
            rows.append(run_anchor(args, root, workdir))
        print("\nfunnel:", json.dumps(funnel(root)))
        print("\n" + table(rows, args.docs))
    if args.pages:
        root = workdir / f"pages-{args.pages}"
        started = time.monotonic()
        write_pages(root, args.pages, args.seed)
        print(
            f"wrote {args.pages:,} pages as WARC in {time.monotonic() - started:.0f} s", flush=True
        )
        build = measure("build from WARC (all phases)", webtext(args, root, "build"))
        print("\n" + table([build], args.pages))
        print("\nfunnel:")
        for name, value in funnel(root):
            print(f"| {name} | {value:,} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
