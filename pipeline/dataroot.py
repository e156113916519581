"""The data root every stage shares: each stage's folder, its config record and summary, JSON
and whole files written atomically, and the guard against mixing runs made with different
configs.

Imports no Beam, so the trainer runs where Beam is not installed. Local paths use plain file
operations; a path with a scheme (gs://, s3://) goes through Beam's FileSystems, imported then.
"""

from __future__ import annotations

import glob
import json
import os
import time
from collections.abc import Iterable
from typing import Any

from pipeline.config import Config

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
    "build": "docs",
    "tokenize": "tokens",
    "train": "runs",
}
CONFIG_RECORD = "_config.json"
SUMMARY = "_summary.json"


class StageError(RuntimeError):
    """A stage cannot run: the message is one line that says what to do."""


def _is_remote(path: str) -> bool:
    """True for a path with a scheme (gs://, s3://), which only Beam's FileSystems can reach."""
    return "://" in path


def _filesystems() -> Any:
    try:
        from apache_beam.io.filesystems import FileSystems
    except ImportError:
        raise StageError(
            "gs:// and s3:// paths need apache-beam installed; use a local or mounted data root"
        ) from None
    return FileSystems


def join(*parts: str) -> str:
    if _is_remote(parts[0]):
        return _filesystems().join(*parts)
    return os.path.join(*parts)


def stage_dir(data_root: str, stage: str) -> str:
    return join(data_root, STAGE_DIRS[stage])


def exists(path: str) -> bool:
    if _is_remote(path):
        return _filesystems().exists(path)
    return os.path.exists(path)


def read_bytes(path: str) -> bytes:
    if _is_remote(path):
        with _filesystems().open(path) as f:
            return f.read()
    with open(path, "rb") as f:
        return f.read()


def read_json(path: str) -> Any:
    return json.loads(read_bytes(path).decode("utf-8"))


def write_bytes_atomic(path: str, data: bytes) -> None:
    """Write under a temporary name, then rename, so readers never see a partial file."""
    tmp = f"{path}.tmp-{time.time_ns()}"
    if _is_remote(path):
        filesystems = _filesystems()
        with filesystems.create(tmp) as f:
            f.write(data)
        if filesystems.exists(path):
            filesystems.delete([path])
        filesystems.rename([tmp], [path])
        return
    folder = os.path.dirname(path)
    if folder:
        os.makedirs(folder, exist_ok=True)
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def write_json(path: str, obj: Any) -> None:
    write_bytes_atomic(path, json.dumps(obj, indent=2, sort_keys=True, default=str).encode())


def make_dirs(path: str) -> None:
    if _is_remote(path):
        _filesystems().mkdirs(path)
    else:
        os.makedirs(path, exist_ok=True)


def match(pattern: str) -> list[str]:
    """Files matching a glob, sorted; empty when nothing matches."""
    if _is_remote(pattern):
        result = _filesystems().match([pattern])[0]
        return sorted(m.path for m in result.metadata_list)
    found = glob.glob(pattern, recursive=True, include_hidden=True)
    return sorted(p for p in found if os.path.isfile(p))


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
        make_dirs(stage_dir(data_root, stage))
    write_json(record_path, current)


def write_summary(data_root: str, stage: str, summary: dict[str, Any]) -> None:
    write_json(join(stage_dir(data_root, stage), SUMMARY), summary)


def read_summary(data_root: str, stage: str) -> dict[str, Any] | None:
    path = join(stage_dir(data_root, stage), SUMMARY)
    return read_json(path) if exists(path) else None


def format_summary(title: str, rows: Iterable[tuple[str, Any]]) -> str:
    rows = list(rows)
    width = max((len(k) for k, _ in rows), default=0)
    lines = [title, "-" * len(title)]
    for key, value in rows:
        shown = f"{value:,}" if isinstance(value, int) else str(value)
        lines.append(f"  {key:<{width}}  {shown:>12}")
    return "\n".join(lines)
