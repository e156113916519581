"""What every stage's Beam job shares: counters read back from the job's metrics, running a
pipeline, Parquet output, dead-letter rows and progress logging. The data root itself (stage
folders, summaries, the config guard) is pipeline/dataroot.py, which imports no Beam.
"""

from __future__ import annotations

import io
import logging
import os
import time
from collections.abc import Callable
from typing import Any

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.metrics import Metrics
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.runners.portability.fn_api_runner import worker_handlers

log = logging.getLogger("webtext")


def counter(stage: str, name: str) -> Metrics.DelegatingCounter:
    """A Beam counter in the stage's namespace; the stage summary reads them back."""
    return Metrics.counter(f"webtext.{stage}", name)


def pipeline_options(beam_args: list[str]) -> PipelineOptions:
    return PipelineOptions(list(beam_args))


LOCAL_RUNNERS = ("DirectRunner", "BundleBasedDirectRunner", "FnApiRunner")


def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity mask, not the machine's count)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def with_local_workers(beam_args: list[str], inputs: int) -> list[str]:
    """On the local runner, one worker process per input file up to the machine's cores.

    Beam's local runner otherwise runs every DoFn on one core. Arguments that choose another
    runner, or the local runner's mode or worker count, are left as they are.
    """
    options = PipelineOptions(list(beam_args)).get_all_options()
    runner = options.get("runner") or "DirectRunner"
    chosen = any(a.startswith(("--direct_running_mode", "--direct_num_workers")) for a in beam_args)
    workers = min(usable_cpus(), inputs)
    if chosen or workers < 2 or runner not in LOCAL_RUNNERS:
        return list(beam_args)
    return [*beam_args, "--direct_running_mode=multi_processing", f"--direct_num_workers={workers}"]


def send_local_runner_inputs_whole() -> None:
    """Turn off the timed flush of Beam's local runner, which can drop bundle inputs.

    In multi_processing/multi_threading mode the FnApiRunner flushes each runner->worker data
    stream every second from another thread; a write landing while that flush is between
    copying and clearing the buffer is lost, and a stage silently sees fewer inputs (dedup
    lost verified pairs at 100k documents). With the time limit at 0 the streams flush by
    size only, from the writing thread. Other runners never read this setting.
    """
    worker_handlers.DATA_BUFFER_TIME_LIMIT_MS = 0


def run_pipeline(
    stage: str, build: Callable[[beam.Pipeline], None], beam_args: list[str]
) -> dict[str, int]:
    """Build and run one stage's pipeline, wait for it, and return its counters."""
    send_local_runner_inputs_whole()
    pipeline = beam.Pipeline(options=pipeline_options(beam_args))
    build(pipeline)
    result = pipeline.run()
    result.wait_until_finish()
    return read_counters(result, stage)


def read_counters(result: Any, stage: str) -> dict[str, int]:
    namespace = f"webtext.{stage}"
    counters: dict[str, int] = {}
    for c in result.metrics().query(MetricsFilter().with_namespace(namespace))["counters"]:
        value = c.committed if c.committed is not None else c.attempted
        counters[c.key.metric.name] = counters.get(c.key.metric.name, 0) + int(value or 0)
    return dict(sorted(counters.items()))


class WriteParquet(beam.PTransform):
    """Write dicts as zstd Parquet shards named PREFIX-SSSSS-of-NNNNN.parquet.

    Beam's file sink writes to a temporary folder and renames on finalize, so shards appear
    only when complete. A transform of its own, so one pipeline labels each output it writes.
    """

    def __init__(
        self, path_prefix: str, schema: pa.Schema, num_shards: int = 0, row_group_rows: int = 10_000
    ):
        super().__init__()
        self.path_prefix, self.schema = path_prefix, schema
        self.num_shards, self.row_group_rows = num_shards, row_group_rows

    def expand(self, rows: beam.PCollection) -> beam.PCollection:
        return rows | beam.io.WriteToParquet(
            self.path_prefix,
            self.schema,
            codec="zstd",
            file_name_suffix=".parquet",
            num_shards=self.num_shards,
            row_group_buffer_size=64 * 1024 * 1024,
            record_batch_size=min(self.row_group_rows, 10_000),
        )


def parquet_bytes(rows: list[dict[str, Any]], schema: pa.Schema, row_group_rows: int) -> bytes:
    """One zstd Parquet file in memory, row groups of `row_group_rows`, statistics kept."""
    table = pa.Table.from_pylist(rows, schema=schema)
    buffer = io.BytesIO()
    pq.write_table(
        table, buffer, compression="zstd", row_group_size=max(1, row_group_rows),
        write_statistics=True,
    )  # fmt: skip
    return buffer.getvalue()


def dead_letter(source: str, line: int | None, reason: str, detail: str, raw: Any) -> dict:
    """A dead-letter row (schemas.DEAD_LETTER) with the raw input cut to 4 KB."""
    if isinstance(raw, bytes):
        raw = raw.decode("utf-8", "replace")
    return {
        "source": source,
        "line": line,
        "reason": reason,
        "detail": detail[:1000] if detail else detail,
        "raw": None if raw is None else str(raw)[:4096],
    }


class ProgressLog:
    """Logs `stage: N records (R/s)` every `every` records; one per DoFn instance."""

    def __init__(self, stage: str, what: str, every: int):
        self.stage, self.what, self.every = stage, what, every
        self.count = 0
        self.start = time.monotonic()

    def tick(self, n: int = 1) -> None:
        if self.every <= 0:
            return
        before = self.count // self.every
        self.count += n
        if self.count // self.every > before:
            rate = self.count / max(time.monotonic() - self.start, 1e-9)
            log.info("%s: %d %s (%.0f/s)", self.stage, self.count, self.what, rate)
