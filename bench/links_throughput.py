"""Links stage throughput and peak memory on generated Pushshift-format .zst dumps.

    python -m bench.links_throughput                       # 250k and 1M lines
    python -m bench.links_throughput --lines 100000        # a quick look
    python -m bench.links_throughput --num-shards 0        # links.num_shards (default 1)

For each size it generates (once, cached under --workdir) a dump of mixed field eras with
about 70% of submissions below 3 karma, then runs the whole links stage on the DirectRunner
in a fresh process, so each peak RSS is that run's own. Per-core throughput is submissions
per CPU second of that process (user + sys): on a shared machine CPU time is what a core
delivered, where wall time also counts waiting for other people's work.

Anchors measured in the same run, on the same file: decompressing and splitting the lines
only, and decompress + split + stdlib `json.loads` of every line (what a naive reader pays
before any filtering). The stage's rate is reported as a ratio to each.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

DEFAULT_SIZES = (250_000, 1_000_000)


def generate(path: Path, lines: int, seed: int) -> None:
    from tests.reddit_dumps import DumpGenerator, write_dump

    tmp = path.with_suffix(".tmp.zst")
    write_dump(tmp, DumpGenerator(seed=seed).lines(lines), threads=2)
    tmp.rename(path)


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def child(dump: str, data_root: str, num_shards: int) -> None:
    """Run the stage once in this process and print its figures as JSON."""
    import shutil

    from pipeline.config import load
    from pipeline.links import stage as links
    from tests.conftest import DEMO_CONFIG

    shutil.rmtree(data_root, ignore_errors=True)
    config = load(DEMO_CONFIG)
    config = dataclasses.replace(
        config,
        links=dataclasses.replace(config.links, dumps=[dump], date_to="", num_shards=num_shards),
    )
    cpu0, wall0 = cpu_seconds(), time.monotonic()
    summary = links.run(config, data_root, [])
    cpu, wall = cpu_seconds() - cpu0, time.monotonic() - wall0
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"cpu_s": cpu, "wall_s": wall, "peak_rss_mb": peak_mb,
                      "counters": summary["counters"]}))  # fmt: skip


def anchors(dump: str) -> dict[str, float]:
    """CPU seconds for: decompress + split; decompress + split + json.loads per line."""
    from pipeline.links.submissions import iter_lines

    cpu0 = cpu_seconds()
    n = sum(1 for _ in iter_lines(dump))
    split_s = cpu_seconds() - cpu0
    cpu0 = cpu_seconds()
    for _, line in iter_lines(dump):
        json.loads(line)
    json_s = cpu_seconds() - cpu0
    return {"lines": n, "split_s": split_s, "stdlib_json_s": json_s}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, nargs="+", default=list(DEFAULT_SIZES))
    parser.add_argument("--workdir", default="bench-data/links")
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument(
        "--num-shards", type=int, default=1, help="links.num_shards (0: per bundle)"
    )
    parser.add_argument("--child", nargs=2, metavar=("DUMP", "DATA_ROOT"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(*args.child, args.num_shards)
        return 0

    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    rows = []
    for lines in args.lines:
        dump = workdir / f"RS_bench_{lines}_{args.seed}.zst"
        if not dump.exists():
            print(f"generating {dump} ({lines:,} lines) ...", flush=True)
            generate(dump, lines, args.seed)
        out = subprocess.run(
            [
                sys.executable,
                "-m",
                "bench.links_throughput",
                "--child",
                str(dump),
                str(workdir / f"data_{lines}"),
                "--num-shards",
                str(args.num_shards),
            ],  # fmt: skip
            check=True,
            capture_output=True,
            text=True,
        )
        run = json.loads(out.stdout.strip().splitlines()[-1])
        anchor = anchors(str(dump))
        read = run["counters"]["read"]
        row = {
            "lines": lines,
            "dump_mb": dump.stat().st_size / 1e6,
            "per_core_per_s": read / run["cpu_s"],
            "wall_per_s": read / run["wall_s"],
            "cpu_s": run["cpu_s"],
            "wall_s": run["wall_s"],
            "peak_rss_mb": run["peak_rss_mb"],
            "links_kept": run["counters"]["kept"],
            "split_per_s": anchor["lines"] / anchor["split_s"],
            "stdlib_json_per_s": anchor["lines"] / anchor["stdlib_json_s"],
        }
        rows.append(row)
        print(json.dumps(row), flush=True)

    print()
    print("| lines | dump (MB, zst) | stage: subs/s per core (CPU) | subs/s (wall) | peak RSS (MB) "
          "| links kept | anchor: split only (lines/s) | anchor: split + json.loads (lines/s) "
          "| stage / json.loads anchor |")  # fmt: skip
    print("|" + "---|" * 9)
    for r in rows:
        print(
            f"| {r['lines']:,} | {r['dump_mb']:.0f} | {r['per_core_per_s']:,.0f} "
            f"| {r['wall_per_s']:,.0f} | {r['peak_rss_mb']:.0f} | {r['links_kept']:,} "
            f"| {r['split_per_s']:,.0f} | {r['stdlib_json_per_s']:,.0f} "
            f"| {r['per_core_per_s'] / r['stdlib_json_per_s']:.2f} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
