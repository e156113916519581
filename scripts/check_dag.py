"""Load dags/ the way Airflow does and print what the DAG-integrity test checks, as JSON.

Runs in the Airflow virtual environment (.airflow-venv), never in the project's:
    .airflow-venv/bin/python scripts/check_dag.py DAGS_FOLDER REPORT_JSON

It writes (to a file, since Airflow logs to stdout) the import errors, each task in dependency order with its operator, retries and
pool, and the stage command lines that dags/webtext.py builds for a few sample runs, with the
flags rendered by the Beam provider itself, so the project-side test can parse them.
"""

from __future__ import annotations

import importlib.util
import json
import sys
import warnings
from datetime import UTC, datetime
from pathlib import Path


def task_report(dag) -> list[dict]:
    from airflow.providers.apache.beam.operators.beam import BeamRunPythonPipelineOperator

    return [
        {
            "task_id": t.task_id,
            "operator": type(t).__name__,
            "is_beam_operator": isinstance(t, BeamRunPythonPipelineOperator),
            "py_file": getattr(t, "py_file", None),
            "py_options": getattr(t, "py_options", None),
            "retries": t.retries,
            "retry_delay_s": t.retry_delay.total_seconds(),
            "pool": t.pool,
            "upstream": sorted(t.upstream_task_ids),
        }
        for t in dag.topological_sort()
    ]


def sample_runs(module) -> dict:
    """The command lines the DAG builds for a monthly run and for explicit dates."""
    from airflow.providers.apache.beam.hooks.beam import beam_options_to_args

    params = {
        "config": "configs/demo.toml",
        "data_root": "data/{date_from}_{date_to}",
        "date_from": "",
        "date_to": "",
        "runner": "DirectRunner",
        "pipeline_options": {"temp_location": "/tmp/beam"},
        "python": ".venv/bin/python",
        "overrides": ["train.max_steps=5"],
    }
    january = (datetime(2017, 1, 1, tzinfo=UTC), datetime(2017, 2, 1, tzinfo=UTC))
    explicit = {**params, "date_from": "2016-03-01", "date_to": "2016-05-01"}
    reports = {}
    for name, run_params in (("monthly", params), ("explicit", explicit)):
        plan = module.plan_run(run_params, *january)
        reports[name] = {
            "data_root": plan.data_root,
            "python": plan.python,
            "stage_args": beam_options_to_args(plan.stage_pipeline_options()),
            "train_command": plan.train_command(),
        }
    errors = {}
    for name, run_params, interval in (
        ("no_interval", params, (None, None)),
        ("empty_range", {**params, "date_from": "2017-02-01"}, january),
    ):
        try:
            module.plan_run(run_params, *interval)
            errors[name] = None
        except Exception as e:  # noqa: BLE001 - the test reads the message
            errors[name] = f"{type(e).__name__}: {e}"
    reports["errors"] = errors
    return reports


def main(dags_folder: str, report_path: str) -> int:
    warnings.simplefilter("ignore")
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=dags_folder)
    report: dict = {"import_errors": bag.import_errors, "dag_ids": sorted(bag.dags)}
    dag = bag.dags.get("webtext")
    if dag is not None:
        report["schedule"] = str(dag.timetable)
        report["params"] = sorted(dag.params.keys())
        report["tasks"] = task_report(dag)
        spec = importlib.util.spec_from_file_location("webtext_dag", Path(dag.fileloc))
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # dataclasses look their module up while it loads
        spec.loader.exec_module(module)
        report["samples"] = sample_runs(module)
        report["project_dir"] = module.PROJECT_DIR
    Path(report_path).write_text(json.dumps(report, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
