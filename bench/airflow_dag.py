"""What Airflow adds: the webtext DAG under `airflow dags test`, against the same run without it.

    python -m bench.airflow_dag [--work bench-data/airflow]

  airflow: `scripts/airflow-test.sh run`: a fresh SQLite Airflow (db migrate, the gpu pool), the
           micro-web generated and served, and `airflow dags test webtext` over the demo config;
  anchor:  the micro-web generated and served, then the same five commands the DAG runs (`python -m pipeline.<stage>` ..., `python -m
           training.train`), with the same flags and micro-web, run one after another directly.
Also times `scripts/airflow-test.sh install` when the Airflow venv is already built (the cost
every `make test` pays). Wall seconds and CPU seconds of all child processes are reported;
the ratio airflow / anchor is what Airflow costs on top of the work.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

from pipeline.dataroot import DOCUMENT_SHARDS
from pipeline.demo.server import MicroWeb

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "scripts" / "airflow-test.sh"
MODULES = (
    "pipeline.links.stage",
    "pipeline.fetch.stage",
    "pipeline.build.stage",
    "pipeline.tokenize.stage",
)


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed(command: list[str]) -> tuple[float, float]:
    """(wall s, CPU s of the command and everything it waited for)."""
    cpu, started = children_cpu(), time.monotonic()
    subprocess.run(command, check=True, cwd=REPO, stdout=subprocess.DEVNULL)
    return time.monotonic() - started, children_cpu() - cpu


def direct_commands(conf: dict, data_root: Path, web_address: str) -> list[list[str]]:
    """The DAG's five commands for this conf, without Airflow (see dags/webtext.py)."""
    overrides = [
        f'links.date_from="{conf["date_from"]}"',
        f'links.date_to="{conf["date_to"]}"',
        *(
            f'fetch.resolve_overrides={{"*" = "{web_address}"}}'
            if o.startswith("fetch.resolve_overrides")
            else o
            for o in conf["overrides"]
        ),
    ]
    flags = [f"--config={conf['config']}", f"--data-root={data_root}"]
    stages = [
        [
            conf["python"],
            "-m",
            m,
            "--runner=DirectRunner",
            *flags,
            *(f"--set={o}" for o in overrides),
        ]
        for m in MODULES
    ]
    train_sets = [*overrides[:2], "train.resume=true", *overrides[2:]]
    train = [conf["python"], "-m", "training.train", *flags, *(f"--set={o}" for o in train_sets)]
    return [*stages, train]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--work", default=str(REPO / "bench-data" / "airflow"))
    args = parser.parse_args()
    work = Path(args.work).resolve()
    shutil.rmtree(work, ignore_errors=True)
    airflow_dir, anchor_dir = work / "airflow", work / "anchor"

    install_wall, _ = timed([str(SCRIPT), "install"])
    airflow_wall, airflow_cpu = timed([str(SCRIPT), "run", str(airflow_dir)])

    conf = json.loads((airflow_dir / "conf.json").read_text())
    cpu, started = children_cpu(), time.monotonic()
    microweb = anchor_dir / "microweb"
    subprocess.run(
        [conf["python"], "-m", "pipeline.demo", "generate", str(microweb), "--seed", "1234"],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    with MicroWeb(microweb / "site") as web:
        for command in direct_commands(conf, anchor_dir / "data", web.address):
            subprocess.run(command, check=True, cwd=REPO, stdout=subprocess.DEVNULL)
    anchor_wall, anchor_cpu = time.monotonic() - started, children_cpu() - cpu

    docs = {
        name: len(list((d / "data" / "documents").glob(DOCUMENT_SHARDS)))
        for name, d in (("airflow", airflow_dir), ("anchor", anchor_dir))
    }
    print(f"install (venv already built): {install_wall:.2f} s wall")
    print(
        f"airflow: {airflow_wall:.1f} s wall, {airflow_cpu:.1f} s CPU ({docs['airflow']} doc shards)"
    )
    print(
        f"anchor:  {anchor_wall:.1f} s wall, {anchor_cpu:.1f} s CPU ({docs['anchor']} doc shards)"
    )
    print(
        f"airflow / anchor: {airflow_wall / anchor_wall:.2f}x wall, "
        f"{airflow_cpu / anchor_cpu:.2f}x CPU"
    )


if __name__ == "__main__":
    sys.exit(main())
