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
import shutil
import time
from collections.abc import Iterable
from typing import Any

from pipeline.config import Config

# The config sections each stage's output depends on, upstream included. A data root that
# holds a stage made with other values for these is refused rather than silently mixed.
STAGE_INPUTS = {
    "links": ("links",),
    "fetch": ("links", "fetch"),
    "build": ("links", "fetch", "build", "decontaminate", "dedup", "tokenizer"),
    "tokenize": ("links", "fetch", "build", "decontaminate", "dedup", "tokenizer", "tokenize"),
    # A run keeps its own config in its checkpoints; runs/<run_name>/ separates runs.
    "train": ("links", "fetch", "build", "decontaminate", "dedup", "tokenizer", "tokenize"),
}
# Keys that change how a run reaches its data, or which failures a rerun tries again, not
# what it produces from a page: never compared.
# Keys that change how a stage runs, never what it writes: a rerun may change them.
RUN_ONLY_KEYS = {
    ("fetch", "resolve_overrides"),
    ("fetch", "concurrency"),
    ("fetch", "retry_failed"),
    ("build", "extract_workers"),
    ("dedup", "workers"),
}
STAGE_DIRS = {
    "links": "links",
    "fetch": "fetch",
    "build": "documents",
    "tokenize": "tokens",
    "train": "runs",
}
# Stage folders that earlier versions named otherwise: stage -> old name.
OLD_STAGE_DIRS = {"build": "docs"}
# The build stage's persisted phases, beside its dataset folder: the extracted documents in
# parts, and dedup's removals (docs/build.md).
EXTRACTED_DIR = "extracted"
DEDUP_DIR = "dedup"
# Inside the build stage's dataset folder, laid out as a Hugging Face dataset.
DOCUMENT_SHARDS = "data/documents-*.parquet"
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


def scratch_dir(data_root: str, stage: str) -> str:
    """Where a stage writes files before moving them into its folder (scratch_beside)."""
    return scratch_beside(data_root, STAGE_DIRS[stage])


def scratch_beside(data_root: str, folder: str) -> str:
    """The scratch folder of `folder`: beside it, not in it, so a killed run leaves nothing
    there that a reader of the folder would trip on."""
    return join(data_root, f"{folder}.tmp")


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


def write_bytes_atomic(path: str, data: bytes, scratch: str | None = None) -> None:
    """Write under a temporary name, then rename, so readers never see a partial file.

    The temporary file goes beside `path`, or into the folder `scratch` (on the same
    filesystem) so that a killed write leaves nothing beside `path`.
    """
    write_chunks_atomic(path, [data], scratch)


def write_chunks_atomic(path: str, chunks: Iterable[bytes], scratch: str | None = None) -> None:
    """write_bytes_atomic for a file streamed in chunks, never whole in memory."""
    if _is_remote(path):
        filesystems = _filesystems()
        folder, name = filesystems.split(path)
        tmp = join(scratch or folder, f"{name}.tmp-{time.time_ns()}")
        with filesystems.create(tmp) as f:
            for chunk in chunks:
                f.write(chunk)
        if filesystems.exists(path):
            filesystems.delete([path])
        filesystems.rename([tmp], [path])
        return
    folder, name = os.path.split(path)
    tmp = os.path.join(scratch or folder, f"{name}.tmp-{time.time_ns()}")
    for needed in {folder, scratch or folder} - {""}:
        os.makedirs(needed, exist_ok=True)
    with open(tmp, "wb") as f:
        for chunk in chunks:
            f.write(chunk)
    os.replace(tmp, path)


def write_json(path: str, obj: Any, scratch: str | None = None) -> None:
    data = json.dumps(obj, indent=2, sort_keys=True, default=str).encode()
    write_bytes_atomic(path, data, scratch)


def make_dirs(path: str) -> None:
    if _is_remote(path):
        _filesystems().mkdirs(path)
    else:
        os.makedirs(path, exist_ok=True)


def delete_folder(path: str) -> None:
    """Delete a folder and everything under it; nothing when it is not there."""
    if not _is_remote(path):
        shutil.rmtree(path, ignore_errors=True)
    elif files := match(join(path, "**")):  # objects under a prefix
        _filesystems().delete(files)


def move_into(paths: list[str], folder: str) -> None:
    """Move files into `folder` under their own names (a rename within one filesystem)."""
    if not paths:
        return
    if not exists(folder):
        make_dirs(folder)
    if _is_remote(folder):
        filesystems = _filesystems()
        filesystems.rename(paths, [join(folder, filesystems.split(p)[1]) for p in paths])
        return
    for path in paths:
        os.replace(path, os.path.join(folder, os.path.basename(path)))


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
    check_folder_config(config, data_root, STAGE_DIRS[stage], STAGE_INPUTS[stage], stage)


def check_folder_config(
    config: Config, data_root: str, folder: str, sections: Iterable[str], what: str
) -> None:
    """check_data_root for a folder of the data root whose files follow the config's
    `sections`; `what` names the run in the message."""
    sections = tuple(sections)
    folder = join(data_root, folder)
    record_path = join(folder, CONFIG_RECORD)
    stage = what
    current = {s: config.to_dict()[s] for s in sections}
    if exists(record_path):
        previous = read_json(record_path)
        for section in sections:
            for key, value in current[section].items():
                if (section, key) in RUN_ONLY_KEYS:
                    continue
                old = previous.get(section, {}).get(key, "<absent>")
                if old != value:
                    raise StageError(
                        f"{data_root} holds a {stage} run made with a different config "
                        f"([{section}] {key} was {old!r}, now {value!r}); "
                        "use another --data-root, or delete that stage's folder to redo it"
                    )
        return
    if not exists(folder):
        make_dirs(folder)
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
