"""The build's extract phase on real pages with 1 and then N extractor children.

    python -m bench.extract_scaling [--repeat 16] [--workers 1 2]

The readability pages of ../shared (130, repeated `--repeat` times) are written as WARC with a
fetch log and links (as bench.build_throughput does), then `webtext build --set
build.phase="extract"` runs on them once per worker count, each in a fresh process. Prints
the wall and CPU seconds of each run and the speed-up over the first.
"""

from __future__ import annotations

import argparse
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.build_throughput import RANKS, load_pages, write_data_root

REPO = Path(__file__).resolve().parent.parent


def run_extract(root: Path, workers: int) -> tuple[float, float]:
    """(wall, CPU) seconds of the extract phase with `workers` extractor children."""
    command = [
        sys.executable, "-m", "pipeline.cli", "build", "--config", "configs/webtext.toml",
        "--data-root", str(root), "-q", "--set", 'build.phase="extract"',
        "--set", "build.partitions=8", "--set", f"build.extract_workers={workers}",
        "--set", f'tokenizer.ranks_file="{RANKS}"',
    ]  # fmt: skip
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    subprocess.run(command, cwd=REPO, check=True, capture_output=True)
    wall = time.monotonic() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=16, help="times the 130 pages are used")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args(argv)
    pages = load_pages(args.repeat)
    print(f"{len(pages)} pages, extract phase, configs/webtext.toml")
    print("| extractor children | wall (s) | CPU (s) | speed-up |\n|---:|---:|---:|---:|")
    first = None
    for workers in args.workers:
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp) / "root"
            write_data_root(root, pages)
            wall, cpu = run_extract(root, workers)
            shutil.rmtree(root)
        first = first or wall
        print(f"| {workers} | {wall:.1f} | {cpu:.1f} | {first / wall:.2f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
