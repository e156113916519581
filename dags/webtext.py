"""The webtext DAG: links -> fetch -> build -> tokenize -> train, one Reddit month per run.

Each Beam stage runs as `<project python> -m pipeline.<stage>.stage --config=... --data-root=...
--set=... --runner=...` through the Apache Beam provider's BeamRunPythonPipelineOperator, so
the runner (DirectRunner here, DataflowRunner or FlinkRunner in production) is a run parameter.
Training runs as `<project python> -m training.train` with the same flags, in the `gpu` pool.

This file imports only Airflow and the standard library: the project's own packages live in
the project's virtual environment, which Airflow reaches through the `python` parameter.
Every stage resumes from the output its data root already holds, so retries and reruns are
safe. docs/airflow.md explains the parameters, backfills and the runner choice.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from airflow.providers.apache.beam.operators.beam import BeamRunPythonPipelineOperator
from airflow.providers.common.compat.sdk import AirflowException
from airflow.providers.standard.hooks.subprocess import SubprocessHook
from airflow.sdk import DAG, CronDataIntervalTimetable, Param, chain, get_current_context, task

# Where the project is checked out; dags/ sits inside it unless the DAG file was copied away
# (Cloud Composer's dags bucket), in which case WEBTEXT_PROJECT_DIR says where it is.
PROJECT_DIR = os.environ.get("WEBTEXT_PROJECT_DIR", str(Path(__file__).resolve().parent.parent))
BEAM_STAGES = ("links", "fetch", "build", "tokenize")
TASK_IDS = (*BEAM_STAGES, "train")
# Pool and retry settings are fixed when the DAG file is parsed, so they come from the
# environment of the Airflow deployment rather than from run parameters.
GPU_POOL = os.environ.get("WEBTEXT_GPU_POOL", "gpu")
RETRIES = int(os.environ.get("WEBTEXT_RETRIES", "2"))
RETRY_DELAY = timedelta(seconds=float(os.environ.get("WEBTEXT_RETRY_DELAY_S", "300")))
DATE_PATTERN = r"^(\d{4}-\d{2}-\d{2})?$"


@dataclass(frozen=True)
class RunPlan:
    """Everything one DAG run passes to the stages, worked out from its params and interval."""

    python: str
    config: str
    data_root: str
    date_from: str
    date_to: str
    runner: str
    overrides: tuple[str, ...]
    beam_options: Mapping[str, Any]

    def config_overrides(self) -> list[str]:
        """`section.key=value` overrides: the run's date range first, then the extra ones."""
        return [
            f'links.date_from="{self.date_from}"',
            f'links.date_to="{self.date_to}"',
            *self.overrides,
        ]

    def stage_pipeline_options(self) -> dict[str, Any]:
        """The operator's pipeline_options: the provider turns each into `--key=value`."""
        return {
            "config": self.config,
            "data-root": self.data_root,
            "set": self.config_overrides(),
            **self.beam_options,
        }

    def train_command(self) -> list[str]:
        """Training with the stages' flags; a retry continues from the latest checkpoint."""
        overrides = self.config_overrides()
        overrides.insert(2, "train.resume=true")  # before the extra ones, which may turn it off
        return [
            self.python,
            "-m",
            "training.train",
            f"--config={self.config}",
            f"--data-root={self.data_root}",
            *(f"--set={o}" for o in overrides),
        ]


def run_date_range(
    params: Mapping[str, Any], interval_start: datetime | None, interval_end: datetime | None
) -> tuple[str, str]:
    """[date_from, date_to) as ISO dates: the explicit params, else the run's data interval."""
    date_from, date_to = params.get("date_from") or "", params.get("date_to") or ""
    if not date_from:
        if interval_start is None:
            raise AirflowException("this run has no data interval: set the date_from param")
        date_from = interval_start.date().isoformat()
    if not date_to:
        if interval_end is None:
            raise AirflowException("this run has no data interval: set the date_to param")
        date_to = interval_end.date().isoformat()
    if date_from >= date_to:
        raise AirflowException(
            f"empty date range [{date_from}, {date_to}): date_from must be earlier"
        )
    return date_from, date_to


def in_project(path: str) -> str:
    """A relative path is relative to the project checkout; absolute and gs:// paths stay."""
    if "://" in path or os.path.isabs(path):
        return path
    return os.path.join(PROJECT_DIR, path)


def plan_run(
    params: Mapping[str, Any], interval_start: datetime | None, interval_end: datetime | None
) -> RunPlan:
    date_from, date_to = run_date_range(params, interval_start, interval_end)
    # One data root per date range: a stage refuses a data root made with other dates.
    data_root = params["data_root"].replace("{date_from}", date_from).replace("{date_to}", date_to)
    python = params["python"]
    return RunPlan(
        python=in_project(python) if os.sep in python else python,  # a bare name: from PATH
        config=in_project(params["config"]),
        data_root=in_project(data_root),
        date_from=date_from,
        date_to=date_to,
        runner=params["runner"],
        overrides=tuple(params.get("overrides") or ()),
        beam_options=dict(params.get("pipeline_options") or {}),
    )


def plan_from_context(context: Mapping[str, Any]) -> RunPlan:
    return plan_run(
        context["params"], context.get("data_interval_start"), context.get("data_interval_end")
    )


class WebtextStageOperator(BeamRunPythonPipelineOperator):
    """One Beam stage, `<python> -m pipeline.<stage>.stage`, with its flags taken from the run."""

    def __init__(self, *, stage: str, **kwargs: Any) -> None:
        super().__init__(
            task_id=stage, py_file=f"pipeline.{stage}.stage", py_options=["-m"], **kwargs
        )
        self.stage = stage

    def execute(self, context: Any) -> Any:
        run = plan_from_context(context)
        self.runner = run.runner
        self.py_interpreter = run.python
        self.pipeline_options = run.stage_pipeline_options()
        self.log.info(
            "webtext %s: %s to %s into %s", self.stage, run.date_from, run.date_to, run.data_root
        )
        return super().execute(context)


with DAG(
    dag_id="webtext",
    description="Rebuild WebText for one month of Reddit: links, fetch, build, tokenize, train",
    doc_md=__doc__,
    schedule=CronDataIntervalTimetable("0 0 1 * *", timezone="UTC"),
    start_date=datetime(2005, 6, 1, tzinfo=UTC),  # the first month of Reddit
    catchup=False,
    max_active_runs=int(os.environ.get("WEBTEXT_MAX_ACTIVE_RUNS", "1")),
    default_args={"retries": RETRIES, "retry_delay": RETRY_DELAY},
    tags=["webtext"],
    params={
        "config": Param("configs/webtext.toml", type="string", description="TOML config"),
        "data_root": Param(
            "data/{date_from}_{date_to}",
            type="string",
            description="folder, gs:// or s3:// URL; {date_from} and {date_to} are filled in",
        ),
        "date_from": Param(
            "", type="string", pattern=DATE_PATTERN, description="empty: data interval start"
        ),
        "date_to": Param(
            "", type="string", pattern=DATE_PATTERN, description="exclusive; empty: interval end"
        ),
        "runner": Param("DirectRunner", type="string", description="Beam runner"),
        "pipeline_options": Param(
            {},
            type="object",
            description='more Beam options, e.g. {"project": "p", "temp_location": "gs://b/t"}',
        ),
        "python": Param(
            ".venv/bin/python", type="string", description="the project's Python interpreter"
        ),
        "overrides": Param(
            [],
            type="array",
            items={"type": "string"},
            description='config overrides for every stage, e.g. ["train.max_steps=100"]',
        ),
    },
) as dag:
    beam_stages = [WebtextStageOperator(stage=stage) for stage in BEAM_STAGES]

    @task(task_id="train", pool=GPU_POOL)
    def train() -> None:
        """Train GPT-2 on the token shards; resumes from the latest checkpoint."""
        run = plan_from_context(get_current_context())
        command = run.train_command()
        result = SubprocessHook().run_command(command, cwd=os.getcwd())
        if result.exit_code != 0:
            raise AirflowException(f"{shlex.join(command)} exited with {result.exit_code}")

    chain(*beam_stages, train())
