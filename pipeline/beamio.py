"""What every stage shares: its folder under the data root, Parquet and JSON through Beam's
FileSystems (so gs:// and s3:// roots work), counters read back from the job's metrics,
the stage summary, and the guard against mixing runs made with different configs.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

import apache_beam as beam
import pyarrow as pa
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.options.pipeline_options import PipelineOptions

from pipeline.config import Config

log = logging.getLogger("webtext")

# The config sections each stage's output depends on, upstream included. A data root that
# holds a stage made with other values for these is refused rather than silently mixed.
STAGE_INPUTS = {
    "links": ("links",),
    "fetch": ("links", "fetch"),
    "build": ("links", "fetch", "build", "dedup", "tokenizer"),
    "tokenize": ("links", "fetch", "build", "dedup", "tokenizer", "tokenize"),
    # A run keeps its own config in its checkpoints; runs/<run_name>/ separates runs.
    "train": ("links", "fetch", "build", "dedup", "tokenizer", "tokenize"),
}
# Keys that change how a run reaches its data, not what it produces: never compared.
TRANSPORT_KEYS = {("fetch", "resolve_overrides"), ("fetch", "concurrency")}
STAGE_DIRS = {
    "links": "links",
    "fetch": "fetch",
    "build": "documents",
    "tokenize": "tokens",
    "train": "runs",
}
# Stage folders that earlier versions named otherwise: stage -> old name.
OLD_STAGE_DIRS = {"build": "docs"}
CONFIG_RECORD = "_config.json"
SUMMARY = "_summary.json"


class StageError(RuntimeError):
    """A stage cannot run: the message is one line that says what to do."""


def join(*parts: str) -> str:
    return FileSystems.join(*parts)


def stage_dir(data_root: str, stage: str) -> str:
    return join(data_root, STAGE_DIRS[stage])


def scratch_dir(data_root: str, stage: str) -> str:
    """Where a stage writes files before moving them into its folder: beside the folder, not
    in it, so a killed run leaves nothing there that a reader of the folder would trip on."""
    return join(data_root, f"{STAGE_DIRS[stage]}.tmp")


def check_not_renamed(data_root: str, stage: str) -> None:
    """Refuse a data root that holds a stage's output only under the folder's old name."""
    old_name = OLD_STAGE_DIRS.get(stage)
    if old_name is None:
        return
    old, new = join(data_root, old_name), stage_dir(data_root, stage)
    if exists(join(old, CONFIG_RECORD)) and not exists(new):
        raise StageError(
            f"{old} is the old name of the {stage} output; it is now {new}, laid out as a "
            f"Hugging Face dataset (shards under data/): move the old folder away "
            f"(mv {old} {old}.old) and rerun `webtext {stage}`"
        )


def exists(path: str) -> bool:
    return FileSystems.exists(path)


def delete_folder(path: str) -> None:
    """Delete a folder and everything under it; nothing when it is not there."""
    if exists(path):  # a local folder
        FileSystems.delete([path])
    elif files := match(join(path, "**")):  # objects under a prefix (gs://, s3://)
        FileSystems.delete(files)


def move_into(paths: list[str], folder: str) -> None:
    """Move files into `folder` under their own names (a rename within one filesystem)."""
    if not paths:
        return
    _make_folder(folder)
    FileSystems.rename(paths, [join(folder, FileSystems.split(p)[1]) for p in paths])


def _make_folder(folder: str) -> None:
    if not exists(folder):
        try:
            FileSystems.mkdirs(folder)
        except OSError:  # another worker made it first
            pass


def read_json(path: str) -> Any:
    with FileSystems.open(path) as f:
        return json.loads(f.read().decode("utf-8"))


def write_bytes_atomic(path: str, data: bytes, scratch: str | None = None) -> None:
    """Write under a temporary name, then rename, so readers never see a partial file.

    The temporary file goes beside `path`, or into the folder `scratch` (on the same
    filesystem) so that a killed write leaves nothing beside `path`.
    """
    folder, name = FileSystems.split(path)
    tmp = join(scratch or folder, f"{name}.tmp-{time.time_ns()}")
    with FileSystems.create(tmp) as f:
        f.write(data)
    if FileSystems.exists(path):
        FileSystems.delete([path])
    elif scratch:
        _make_folder(folder)
    FileSystems.rename([tmp], [path])


def write_json(path: str, obj: Any, scratch: str | None = None) -> None:
    data = json.dumps(obj, indent=2, sort_keys=True, default=str).encode()
    write_bytes_atomic(path, data, scratch)


def match(pattern: str) -> list[str]:
    """Paths matching a glob, sorted; empty when nothing matches."""
    result = FileSystems.match([pattern])[0]
    return sorted(m.path for m in result.metadata_list)


def check_data_root(config: Config, data_root: str, stage: str) -> None:
    """Refuse a data root whose earlier run of this stage used a different config.

    Records the relevant sections the first time, so a rerun with the same config resumes.
    """
    sections = STAGE_INPUTS[stage]
    record_path = join(stage_dir(data_root, stage), CONFIG_RECORD)
    current = {s: config.to_dict()[s] for s in sections}
    if exists(record_path):
        previous = read_json(record_path)
        for section in sections:
            for key, value in current[section].items():
                if (section, key) in TRANSPORT_KEYS:
                    continue
                old = previous.get(section, {}).get(key, "<absent>")
                if old != value:
                    raise StageError(
                        f"{data_root} holds a {stage} run made with a different config "
                        f"([{section}] {key} was {old!r}, now {value!r}); "
                        "use another --data-root, or delete that stage's folder to redo it"
                    )
        return
    if not exists(stage_dir(data_root, stage)):
        FileSystems.mkdirs(stage_dir(data_root, stage))
    write_json(record_path, current)


def counter(stage: str, name: str) -> Metrics.DelegatingCounter:
    """A Beam counter in the stage's namespace; the stage summary reads them back."""
    return Metrics.counter(f"webtext.{stage}", name)


def pipeline_options(beam_args: list[str]) -> PipelineOptions:
    return PipelineOptions(list(beam_args))


def run_pipeline(
    stage: str, build: Callable[[beam.Pipeline], None], beam_args: list[str]
) -> dict[str, int]:
    """Build and run one stage's pipeline, wait for it, and return its counters."""
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


def write_summary(data_root: str, stage: str, summary: dict[str, Any]) -> None:
    write_json(join(stage_dir(data_root, stage), SUMMARY), summary)


def read_summary(data_root: str, stage: str) -> dict[str, Any] | None:
    path = join(stage_dir(data_root, stage), SUMMARY)
    return read_json(path) if exists(path) else None


def write_parquet(
    pcoll: beam.PCollection,
    path_prefix: str,
    schema: pa.Schema,
    num_shards: int = 0,
    row_group_rows: int = 10_000,
) -> beam.PCollection:
    """Write dicts as zstd Parquet shards named PREFIX-SSSSS-of-NNNNN.parquet.

    Beam's file sink writes to a temporary folder and renames on finalize, so shards appear
    only when complete.
    """
    return pcoll | beam.io.WriteToParquet(
        path_prefix,
        schema,
        codec="zstd",
        file_name_suffix=".parquet",
        num_shards=num_shards,
        row_group_buffer_size=64 * 1024 * 1024,
        record_batch_size=min(row_group_rows, 10_000),
    )


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


def format_summary(title: str, rows: Iterable[tuple[str, Any]]) -> str:
    rows = list(rows)
    width = max((len(k) for k, _ in rows), default=0)
    lines = [title, "-" * len(title)]
    for key, value in rows:
        shown = f"{value:,}" if isinstance(value, int) else str(value)
        lines.append(f"  {key:<{width}}  {shown:>12}")
    return "\n".join(lines)
