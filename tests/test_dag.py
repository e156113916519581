"""The Airflow DAG (dags/webtext.py), checked in a real Airflow.

Airflow pins its own dependencies, so it lives in its own venv (.airflow-venv, built by
`scripts/airflow-test.sh install`); these tests run in the project's venv and shell out to it.
The integrity tests read the report that scripts/check_dag.py writes after loading dags/ with
Airflow's DagBag. The last test runs `airflow dags test` over the demo config and the loopback
micro-web, then opens the Parquet and token shards that the run produced.

Without the Airflow venv the tests skip, except under CI (CI set), where they build it first.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from pipeline.cli import _parser as webtext_parser
from pipeline.config import load
from pipeline.dataroot import DOCUMENT_SHARDS
from schemas.records import DOCUMENT, check_table
from schemas.tokens import HEADER_BYTES, TokenShardHeader
from tests.conftest import REPO, require_shared

SCRIPT = REPO / "scripts" / "airflow-test.sh"
AIRFLOW_VENV = Path(os.environ.get("AIRFLOW_VENV", REPO / ".airflow-venv"))
TASK_ORDER = ["links", "fetch", "build", "tokenize", "train"]
BEAM_STAGES = TASK_ORDER[:-1]


def run_script(*args: str, timeout: int) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [str(SCRIPT), *args], capture_output=True, text=True, timeout=timeout, cwd=REPO
    )
    if result.returncode != 0:
        pytest.fail(f"scripts/airflow-test.sh {' '.join(args)} failed:\n{result.stderr[-4000:]}")
    return result


def require_airflow_venv() -> None:
    if (AIRFLOW_VENV / ".webtext-installed").exists():
        return
    if not os.environ.get("CI"):
        pytest.skip(f"{AIRFLOW_VENV} is absent: build it with `scripts/airflow-test.sh install`")
    run_script("install", timeout=1200)


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> dict:
    require_airflow_venv()
    path = tmp_path_factory.mktemp("dag") / "report.json"
    run_script("check", str(path), timeout=300)
    return json.loads(path.read_text())


@pytest.fixture(scope="module")
def tasks(report: dict) -> dict[str, dict]:
    return {t["task_id"]: t for t in report["tasks"]}


def parse_stage_flags(stage: str, flags: list[str]) -> tuple[argparse.Namespace, list[str]]:
    """Read the flags the DAG passes a stage the way `webtext STAGE` reads them."""
    return webtext_parser().parse_known_args([stage, *flags])


def test_dag_folder_imports_without_errors(report: dict) -> None:
    assert report["import_errors"] == {}
    assert report["dag_ids"] == ["webtext"]


def test_tasks_run_links_fetch_build_tokenize_train_in_order(report: dict) -> None:
    assert [t["task_id"] for t in report["tasks"]] == TASK_ORDER
    for previous, task in zip(report["tasks"], report["tasks"][1:], strict=False):
        assert task["upstream"] == [previous["task_id"]]


def test_task_graph_has_no_cycles(report: dict) -> None:
    upstream = {t["task_id"]: set(t["upstream"]) for t in report["tasks"]}
    done: set[str] = set()
    # Peel off the tasks whose upstream is all done; whatever is left sits on a cycle.
    while ready := {t for t, deps in upstream.items() if t not in done and deps <= done}:
        done |= ready
    assert done == set(upstream), f"tasks on a cycle: {set(upstream) - done}"


def test_every_task_retries_after_a_delay(report: dict) -> None:
    for task in report["tasks"]:
        assert task["retries"] >= 1, task["task_id"]
        assert task["retry_delay_s"] > 0, task["task_id"]


def test_beam_stages_run_as_project_modules_through_the_beam_operator(tasks: dict) -> None:
    for stage in BEAM_STAGES:
        task = tasks[stage]
        assert task["is_beam_operator"], stage
        assert task["py_options"] == ["-m"]
        assert task["py_file"] == f"pipeline.{stage}.stage"
        assert importlib.util.find_spec(task["py_file"]) is not None, (
            f"{task['py_file']} is missing"
        )


def test_training_runs_in_the_gpu_pool_outside_beam(tasks: dict) -> None:
    assert tasks["train"]["pool"] == "gpu"
    assert not tasks["train"]["is_beam_operator"]
    assert all(tasks[stage]["pool"] != "gpu" for stage in BEAM_STAGES)


def test_dag_is_parameterised_by_config_data_root_dates_and_runner(report: dict) -> None:
    expected = {"config", "data_root", "date_from", "date_to", "runner", "python", "overrides"}
    assert expected <= set(report["params"])
    assert "CronDataIntervalTimetable" in report["schedule"]  # one month per run


def test_monthly_run_takes_its_dates_from_the_data_interval(report: dict) -> None:
    monthly = report["samples"]["monthly"]
    args, beam_args = parse_stage_flags("links", monthly["stage_args"])
    config = load(args.config, args.overrides)
    assert (config.links.date_from, config.links.date_to) == ("2017-01-01", "2017-02-01")
    assert args.data_root == f"{REPO}/data/2017-01-01_2017-02-01"
    assert beam_args == ["--temp_location=/tmp/beam"]


def test_explicit_dates_override_the_data_interval(report: dict) -> None:
    explicit = report["samples"]["explicit"]
    args, _ = parse_stage_flags("build", explicit["stage_args"])
    config = load(args.config, args.overrides)
    assert (config.links.date_from, config.links.date_to) == ("2016-03-01", "2016-05-01")
    assert config.train.max_steps == 5


def test_training_gets_the_same_config_and_data_root_as_the_stages(report: dict) -> None:
    monthly = report["samples"]["monthly"]
    python, dash_m, module, *flags = monthly["train_command"]
    assert (python, dash_m, module) == (f"{REPO}/.venv/bin/python", "-m", "training.train")
    assert importlib.util.find_spec(module) is not None
    train_args, _ = parse_stage_flags("train", flags)
    stage_args, _ = parse_stage_flags("tokenize", monthly["stage_args"])
    assert (train_args.config, train_args.data_root) == (stage_args.config, stage_args.data_root)
    assert [o for o in train_args.overrides if o != "train.resume=true"] == stage_args.overrides
    # A retried or rerun train task continues from its checkpoint instead of refusing to start.
    assert load(train_args.config, train_args.overrides).train.resume is True


def test_a_run_without_dates_or_with_an_empty_range_is_refused(report: dict) -> None:
    errors = report["samples"]["errors"]
    assert "set the date_from param" in errors["no_interval"]
    assert "empty date range [2017-02-01, 2017-02-01)" in errors["empty_range"]


@pytest.mark.slow
def test_airflow_dags_test_builds_the_dataset_on_the_micro_web(tmp_path: Path) -> None:
    require_shared("tokenizers", "r50k_base.tiktoken")
    require_airflow_venv()
    run_script("run", str(tmp_path), timeout=1200)
    data = tmp_path / "data"

    shards = sorted((data / "documents").glob(DOCUMENT_SHARDS))
    assert shards, f"no document shards in {data / 'documents'}"
    rows = 0
    for shard in shards:
        table = pq.read_table(shard)
        assert check_table(table.schema, DOCUMENT) == [], shard.name
        rows += table.num_rows
    assert rows > 0

    token_shards = sorted((data / "tokens").glob("train-*.bin"))
    assert token_shards, f"no token shards in {data / 'tokens'}"
    for shard in token_shards:
        raw = shard.read_bytes()
        header = TokenShardHeader.from_bytes(raw, str(shard))
        assert header.token_count > 0
        assert len(raw) == HEADER_BYTES + 2 * header.token_count

    assert list((data / "runs").rglob("*.pt")), "training wrote no checkpoint"
