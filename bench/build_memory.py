"""Peak memory of the build stage's dedup and write phases, over synthetic extracted documents.

    python -m bench.build_memory --docs 20000 [--partitions 8] [--root DIR]

Writes `--docs` documents (bench.dedup_quality's corpus: ~4 KB articles, 1% cluster
originals with 10 variants each) as the extract phase leaves them, then runs
`webtext build --set build.phase="dedup"` and `... "write"` with configs/webtext.toml, each
in a process of its own. For each phase it prints wall time, CPU of the whole process tree
and the peak of the summed PSS of that tree (sampled every 0.2 s from /proc).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.dedup_quality import make_corpus
from pipeline import dataroot
from pipeline.build import phases
from pipeline.build.parts import ExtractedParts, write_documents

REPO = Path(__file__).resolve().parent.parent
SAMPLE_S = 0.2


def process_tree(pid: int) -> list[int]:
    """pid and every process below it."""
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            parents.setdefault(ppid, []).append(int(entry))
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        todo.extend(parents.get(current, []))
    return tree


def _proc_kb(path: str, field: str) -> int | None:
    """The kB figure on the `field` line of a /proc file; None when unreadable."""
    try:
        with open(path) as f:
            for line in f:
                if line.startswith(field):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def memory_kb(pid: int) -> int:
    """PSS of one process (RSS where smaps_rollup is not readable)."""
    pss = _proc_kb(f"/proc/{pid}/smaps_rollup", "Pss:")
    if pss is None:
        pss = _proc_kb(f"/proc/{pid}/status", "VmRSS:")
    return pss or 0


def measure(command: list[str]) -> dict[str, float]:
    """Run `command`; its wall seconds, CPU seconds (children included), peak summed PSS MB."""
    before = os.times()
    started = time.perf_counter()
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL)
    peak = 0
    while process.poll() is None:
        peak = max(peak, sum(memory_kb(pid) for pid in process_tree(process.pid)))
        time.sleep(SAMPLE_S)
    if process.returncode:
        raise SystemExit(f"{' '.join(command)} failed ({process.returncode})")
    after = os.times()
    cpu = (after.children_user - before.children_user) + (
        after.children_system - before.children_system
    )
    return {"wall_s": time.perf_counter() - started, "cpu_s": cpu, "peak_mb": peak / 1024}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--docs", type=int, default=20_000)
    parser.add_argument("--partitions", type=int, default=8)
    parser.add_argument("--root", help="data root to use (default: a temporary folder)")
    args = parser.parse_args()
    root = Path(args.root or tempfile.mkdtemp(prefix="build-memory-"))
    clusters = max(1, args.docs // 100)
    docs, _ = make_corpus(clusters=clusters, singles=args.docs - 10 * clusters, seed=2)
    parts = ExtractedParts(str(root / dataroot.EXTRACTED_DIR), args.partitions)
    write_documents(parts, docs, row_group_rows=10_000)
    phases.write_phase_summary(str(root), dataroot.EXTRACTED_DIR, {"kept": len(docs)})
    del docs
    print(f"{args.docs} documents in {args.partitions} extracted parts under {root}")
    for phase in ("dedup", "write"):
        command = [
            sys.executable, "-m", "pipeline.cli", "build", "--config", "configs/webtext.toml",
            "--data-root", str(root), "-q", "--set", f'build.phase="{phase}"',
            "--set", f"build.partitions={args.partitions}",
        ]  # fmt: skip
        result = measure(command)
        print(
            f"  {phase:<6} wall {result['wall_s']:6.1f} s  CPU {result['cpu_s']:6.1f} s  "
            f"peak PSS {result['peak_mb']:7.0f} MB"
        )


if __name__ == "__main__":
    main()
