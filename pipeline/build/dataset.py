"""The released dataset: document Parquet shards, the removed-documents shards, the manifest,
the dataset card, and `validate`, which checks a dataset folder against its manifest.

The folder is laid out as a Hugging Face Hub dataset, so `datasets.load_dataset(folder)` and
every Parquet reader pointed at data/ open it without options:

    documents/README.md                              the card; its YAML names the configs
    documents/manifest.json                          config, versions, inputs, funnel, shards
    documents/data/documents-SSSSS-of-NNNNN.parquet  the kept documents (schemas.DOCUMENT)
    documents/removed/removed-SSSSS-of-NNNNN.parquet what filters and dedup removed
                                                     (schemas.REMOVED; config "removed")
    documents/plots/*.png                            the card's plots
    documents/_shards/*.json                         one record per shard: rows, bytes, sha256

Shards are deterministic: a document goes to shard xxh64(doc_id) mod N and rows are sorted by
doc_id inside a shard, so the same documents and config give byte-identical files. Each
shard is written whole by one worker (sorted in memory: a shard is a few hundred MB) into the
scratch folder beside the dataset (dataroot.scratch_dir) and renamed into place, and records its
own checksum, so `finish` never rereads data. `finish` deletes the scratch folder.
"""

from __future__ import annotations

import hashlib
import io
import logging
import math
import platform
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from importlib import metadata
from typing import Any

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems

import schemas
from pipeline import beamio, dataroot
from pipeline.build import parts as part_kinds
from pipeline.build.dedup import convergence_problem
from pipeline.build.parts import ExtractedParts, filter_part
from pipeline.build.parts import shard_of as shard_of  # a document's shard is its part
from pipeline.config import Config
from pipeline.dataroot import DOCUMENT_SHARDS
from schemas.records import SCHEMA_VERSION_KEY, removed_row

log = logging.getLogger("webtext")

DOCUMENTS = "documents"
REMOVED = "removed"
DATA, _ = DOCUMENT_SHARDS.split("/")  # the document shards sit under data/
SHARD_RECORDS = "_shards"
MANIFEST = "manifest.json"
CARD = "README.md"
VERSIONED_PACKAGES = (
    "webtext", "apache-beam", "pyarrow", "numpy", "datasketch", "trafilatura", "tiktoken",
    "xxhash", "py3langid", "ftfy",
)  # fmt: skip
_KINDS = {
    DOCUMENTS: (schemas.DOCUMENT, DATA),
    REMOVED: (schemas.REMOVED, REMOVED),
}
# The Hub's size_categories buckets: (upper bound, label).
SIZE_CATEGORIES = [
    (10**3, "n<1K"), (10**4, "1K<n<10K"), (10**5, "10K<n<100K"), (10**6, "100K<n<1M"),
    (10**7, "1M<n<10M"), (10**8, "10M<n<100M"), (10**9, "100M<n<1B"),
]  # fmt: skip


def shard_name(kind: str, index: int, num_shards: int) -> str:
    """Path of a shard relative to the dataset folder, e.g. data/documents-00003-of-00008.parquet."""
    return f"{_KINDS[kind][1]}/{kind}-{index:05d}-of-{num_shards:05d}.parquet"


def stored_schema(schema: pa.Schema) -> pa.Schema:
    """The schema as Parquet gives it back: Parquet has no seconds unit, so timestamp[s]
    columns are stored (and read back by every reader) as timestamp[ms]."""
    fields = [
        f.with_type(pa.timestamp("ms", tz=f.type.tz))
        if pa.types.is_timestamp(f.type) and f.type.unit == "s"
        else f
        for f in schema
    ]
    return pa.schema(fields, metadata=schema.metadata)


def _sort_key(row: dict[str, Any]) -> tuple:
    return (row["doc_id"], row.get("stage") or "", row.get("reason") or "")


def sha256_of(path: str) -> str:
    digest = hashlib.sha256()
    with FileSystems.open(path) as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


# ---------------------------------------------------------------- Beam: writing shards


class WritePart(beam.DoFn):
    """(part, {"removal": schemas.REMOVAL rows of the part}) -> the part's document shard
    (the extracted part without its removals, streamed a row group at a time), its removed
    shard (what the filters and dedup removed), its dead letters; one record per shard.

    Shard i of N is extracted part i, so each is written whole by one worker, into the
    scratch folder beside the dataset (dataroot.scratch_dir) and renamed into place."""

    def __init__(self, data_root: str, config: Config, parts: ExtractedParts):
        self.docs_dir = dataroot.stage_dir(data_root, "build")
        self.scratch = dataroot.scratch_dir(data_root, "build")
        self.build, self.parts = config.build, parts

    def process(self, item: tuple[int, dict[str, Iterable[Any]]]) -> Iterator[dict]:
        index, joined = item
        removals = {r["doc_id"]: r for r in joined["removal"]}
        kept = filter_part(
            self.parts.path(part_kinds.DOCUMENTS, index),
            removals,
            schemas.DOCUMENT,
            self.build.row_group_rows,
        )
        beamio.counter("build", "documents_written").inc(kept.rows)
        yield self._shard(DOCUMENTS, index, kept.data, kept.rows)
        removed = _read_rows(self.parts.path(part_kinds.REMOVED, index))
        for doc in kept.removed:
            removal = removals[doc["doc_id"]]
            detail = f"cluster of {removal['cluster_size']} documents"
            row = removed_row(
                doc["doc_id"], doc["normalized_url"], doc["final_url"], "dedup",
                removal["reason"], detail, doc["text"], kept_doc_id=removal["kept_doc_id"],
            )  # fmt: skip
            removed.append(row if self.build.write_rejected else {**row, "text": None})
        removed.sort(key=_sort_key)
        data = beamio.parquet_bytes(removed, schemas.REMOVED, self.build.row_group_rows)
        yield self._shard(REMOVED, index, data, len(removed))
        dead = self.parts.path(part_kinds.DEAD_LETTER, index)
        if _read_rows(dead):
            target = dataroot.join(self.docs_dir, FileSystems.split(dead)[1])
            dataroot.write_bytes_atomic(target, dataroot.read_bytes(dead), self.scratch)

    def _shard(self, kind: str, index: int, data: bytes, rows: int) -> dict:
        name = shard_name(kind, index, self.parts.count)
        dataroot.write_bytes_atomic(dataroot.join(self.docs_dir, name), data, self.scratch)
        record = {
            "kind": kind,
            "path": name,
            "index": index,
            "num_shards": self.parts.count,
            "rows": rows,
            "bytes": len(data),
            "sha256": hashlib.sha256(data).hexdigest(),
        }
        record_name = name.replace("/", "__").removesuffix(".parquet") + ".json"
        record_path = dataroot.join(self.docs_dir, SHARD_RECORDS, record_name)
        dataroot.write_json(record_path, record, self.scratch)
        beamio.counter("build", f"{kind}_shards").inc()
        return record


def _read_rows(path: str) -> list[dict]:
    with FileSystems.open(path) as f:
        return pq.read_table(io.BytesIO(f.read())).to_pylist()


class WriteDocuments(beam.PTransform):
    """schemas.REMOVAL rows -> every part's shards under documents/ (WritePart); a part
    without removals is written too. Output: one record per shard written."""

    def __init__(self, data_root: str, config: Config, parts: ExtractedParts):
        super().__init__()
        self.data_root, self.config, self.parts = data_root, config, parts

    def expand(self, removals: beam.PCollection) -> beam.PCollection:
        every_part = removals.pipeline | "EveryPart" >> beam.Create(
            [(i, i) for i in range(self.parts.count)]
        )
        by_part = removals | "KeyByPart" >> beam.Map(lambda r: (r["part"], r))
        return (
            {"part": every_part, "removal": by_part}
            | "JoinRemovalsByPart" >> beam.CoGroupByKey()
            | "WritePart" >> beam.ParDo(WritePart(self.data_root, self.config, self.parts))
        )


# ---------------------------------------------------------------- after the pipeline


def _shard_records(docs_dir: str, counters: dict[str, int]) -> dict[str, list[dict]]:
    """This run's shard records, by kind; stale shards of an earlier layout are deleted."""
    records: dict[str, list[dict]] = {DOCUMENTS: [], REMOVED: []}
    for path in dataroot.match(dataroot.join(docs_dir, SHARD_RECORDS, "*.json")):
        record = dataroot.read_json(path)
        records.setdefault(record["kind"], []).append({**record, "_record": path})
    out = {}
    for kind, items in records.items():
        layouts = {r["num_shards"] for r in items}
        current = counters.get(f"{kind}_shards")
        if current is None and len(layouts) > 1:
            raise dataroot.StageError(
                f"{docs_dir} holds {kind} shards of {len(layouts)} runs "
                f"({sorted(layouts)} shards); delete the folder and rerun build"
            )
        keep = [r for r in items if current is None or r["num_shards"] == current]
        stale = [r for r in items if r not in keep]
        for r in stale:
            log.info("build: deleting stale shard %s", r["path"])
            for path in (dataroot.join(docs_dir, r["path"]), r["_record"]):
                if dataroot.exists(path):
                    FileSystems.delete([path])
        keep.sort(key=lambda r: r["index"])
        if current is not None and len(keep) != current:
            raise dataroot.StageError(
                f"{docs_dir}: {len(keep)} of {current} {kind} shards were recorded; rerun build"
            )
        out[kind] = [{k: v for k, v in r.items() if not k.startswith("_")} for r in keep]
    return out


def package_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in VERSIONED_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def _input_fingerprint(data_root: str, stage: str) -> dict[str, Any]:
    """What an upstream stage's output was: its files' count and bytes, its summary's hash."""
    folder = dataroot.stage_dir(data_root, stage)
    if not dataroot.exists(folder):
        return {"present": False}
    files = FileSystems.match([dataroot.join(folder, "**")])[0].metadata_list
    summary = dataroot.join(folder, dataroot.SUMMARY)
    config = dataroot.join(folder, dataroot.CONFIG_RECORD)
    return {
        "present": True,
        "files": len(files),
        "bytes": sum(m.size_in_bytes for m in files),
        "summary_sha256": sha256_of(summary) if dataroot.exists(summary) else None,
        "config_sha256": sha256_of(config) if dataroot.exists(config) else None,
    }


def _document_stats(docs_dir: str, shards: list[dict]) -> dict[str, Any]:
    hosts: Counter[str] = Counter()
    languages: Counter[str] = Counter()
    tokens: list[np.ndarray] = []
    for shard in shards:
        with FileSystems.open(dataroot.join(docs_dir, shard["path"])) as f:
            table = pq.read_table(io.BytesIO(f.read()), columns=["host", "language", "token_count"])
        hosts.update(table.column("host").to_pylist())
        languages.update(lang or "unknown" for lang in table.column("language").to_pylist())
        tokens.append(table.column("token_count").to_numpy(zero_copy_only=False))
    token_counts = np.concatenate(tokens) if tokens else np.empty(0, dtype=np.int64)
    return {
        "hosts": hosts,
        "languages": languages,
        "token_counts": token_counts,
    }


def build_funnel(counters: dict[str, int], documents: int) -> list[tuple[str, int]]:
    """The dedup end of the funnel; the extraction counters come before it."""
    return [
        ("dedup: exact duplicates removed", counters.get("exact_duplicate", 0)),
        ("dedup: near duplicates removed", counters.get("near_duplicate", 0)),
        ("documents written", documents),
    ]


def _save_plot(figure: Any, path: str, scratch: str) -> None:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    dataroot.write_bytes_atomic(path, buffer.getvalue(), scratch)


def _plots(docs_dir: str, scratch: str, stats: dict[str, Any]) -> dict[str, str]:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    paths = {"length": "plots/length.png", "language": "plots/language.png"}
    fig, ax = plt.subplots(figsize=(7, 3.5))
    counts = stats["token_counts"]
    if counts.size:
        bins = np.logspace(0, math.log10(max(10, counts.max()) + 1), 40)
        ax.hist(np.maximum(counts, 1), bins=bins, color="#4477aa")
    ax.set_xscale("log")
    ax.set_xlabel("GPT-2 tokens per document")
    ax.set_ylabel("documents")
    ax.set_title("Document length")
    _save_plot(fig, dataroot.join(docs_dir, paths["length"]), scratch)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(7, 3.5))
    top = stats["languages"].most_common(15)
    ax.bar([k for k, _ in top], [v for _, v in top], color="#228833")
    ax.set_ylabel("documents")
    ax.set_title("Language (py3langid)")
    _save_plot(fig, dataroot.join(docs_dir, paths["language"]), scratch)
    plt.close(fig)
    return paths


def size_category(rows: int) -> str:
    return next((label for bound, label in SIZE_CATEGORIES if rows < bound), "n>1B")


def _front_matter(manifest: dict[str, Any]) -> list[str]:
    """The card's YAML header as the Hub reads it: the documents are the default config,
    the removed documents a second one; the rest of the folder is no config's data."""
    languages = manifest["config"]["build"]["languages"]
    lines = ["---", "pretty_name: webtext", "license: unknown"]
    if languages:
        lines += ["language:", *(f'- "{lang}"' for lang in languages)]  # YAML reads no as false
    lines += [
        "multilinguality: " + ("monolingual" if len(languages) == 1 else "multilingual"),
        "task_categories:", "- text-generation",
        "task_ids:", "- language-modeling",
        "size_categories:", f"- {size_category(manifest['totals']['documents'])}",
        "configs:",
    ]  # fmt: skip
    for kind, name in ((DOCUMENTS, "default"), (REMOVED, REMOVED)):
        lines += [f"- config_name: {name}"]
        lines += ["  default: true"] if kind == DOCUMENTS else []
        lines += ["  data_files:", "  - split: train", f"    path: {_KINDS[kind][1]}/*.parquet"]
    return [*lines, "---"]


def _card(manifest: dict[str, Any], stats: dict[str, Any], plots: dict[str, str]) -> str:
    totals = manifest["totals"]
    lines = [
        *_front_matter(manifest),
        "",
        "# webtext: a rebuild of WebText",
        "",
        f"{totals['documents']:,} documents in {len(manifest['shards'][DOCUMENTS])} zstd Parquet "
        f"shards ({totals['document_bytes'] / 1e6:,.1f} MB), columns as in `schemas.DOCUMENT` "
        f"(version {manifest['schemas'][DOCUMENTS]['version']}). Made by webtext "
        f"{manifest['versions'].get('webtext')} on {manifest['created_utc']}; config "
        f"fingerprint `{manifest['config_fingerprint']}`. `webtext validate` checks this "
        "folder against `manifest.json`.",
        "",
    ]
    for warning in manifest["warnings"]:
        lines += [f"> **Warning:** {warning}", ""]
    lines += ["## Funnel", "", "| step | count |", "|---|---:|"]
    lines += [f"| {name} | {value:,} |" for name, value in manifest["funnel"]]
    lines += ["", "## Top domains", "", "| host | documents | share |", "|---|---:|---:|"]
    total = max(1, totals["documents"])
    for host, n in stats["hosts"].most_common(25):
        lines.append(f"| {host} | {n:,} | {n / total:.1%} |")
    counts = stats["token_counts"]
    lines += ["", "## Length", ""]
    if counts.size:
        p50, p90, p99 = np.percentile(counts, [50, 90, 99])
        lines.append(
            f"GPT-2 tokens per document: median {p50:,.0f}, 90th percentile {p90:,.0f}, "
            f"99th {p99:,.0f}; {int(counts.sum()):,} tokens in all."
        )
    lines += ["", f"![length]({plots['length']})", "", "## Language", ""]
    lines += [f"![language]({plots['language']})", ""]
    lines += ["| language | documents |", "|---|---:|"]
    lines += [f"| {lang} | {n:,} |" for lang, n in stats["languages"].most_common(10)]
    lines += [
        "",
        "## Files",
        "",
        "- `data/documents-SSSSS-of-NNNNN.parquet`: the documents (config `default`), sorted "
        "by `doc_id`; a document's shard is xxh64(doc_id) mod N.",
        "- `removed/removed-*.parquet`: documents removed by filters and by deduplication "
        "(config `removed`), with the reason and, for duplicates, the `doc_id` of the copy "
        "that was kept. The text is kept only with `build.write_rejected`.",
        "- `manifest.json`: config, package versions, input fingerprints, the funnel, and every "
        "shard's row count and SHA-256.",
        "",
    ]
    return "\n".join(lines)


def finish(config: Config, data_root: str, counters: dict[str, int]) -> dict[str, Any]:
    """After the build pipeline: write manifest.json and the dataset card, delete the scratch
    folder; return the manifest."""
    docs_dir = dataroot.stage_dir(data_root, "build")
    scratch = dataroot.scratch_dir(data_root, "build")
    shards = _shard_records(docs_dir, counters)
    documents = sum(s["rows"] for s in shards[DOCUMENTS])
    funnel: list[tuple[str, Any]] = []
    for stage in ("links", "fetch"):
        funnel.extend(
            (name, value)
            for name, value in (dataroot.read_summary(data_root, stage) or {}).get("funnel", [])
        )
    funnel.extend(build_funnel(counters, documents))
    warnings = [w for w in (convergence_problem(counters),) if w]
    for warning in warnings:
        log.warning("%s", warning)
    manifest = {
        "dataset": "webtext",
        "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "config": config.to_dict(),
        "config_fingerprint": config.fingerprint(*dataroot.STAGE_INPUTS["build"]),
        "versions": package_versions(),
        "inputs": {stage: _input_fingerprint(data_root, stage) for stage in ("links", "fetch")},
        "funnel": [[name, value] for name, value in funnel],
        "counters": dict(sorted(counters.items())),
        "warnings": warnings,
        "schemas": {
            kind: {
                "name": schemas.schema_name(schema),
                "version": int(schema.metadata[SCHEMA_VERSION_KEY]),
            }
            for kind, (schema, _) in _KINDS.items()
        },
        "shards": shards,
        "totals": {
            "documents": documents,
            "removed": sum(s["rows"] for s in shards[REMOVED]),
            "document_bytes": sum(s["bytes"] for s in shards[DOCUMENTS]),
        },
    }
    stats = _document_stats(docs_dir, shards[DOCUMENTS])
    plots = _plots(docs_dir, scratch, stats)
    dataroot.write_json(dataroot.join(docs_dir, MANIFEST), manifest, scratch)
    card = _card(manifest, stats, plots).encode()
    dataroot.write_bytes_atomic(dataroot.join(docs_dir, CARD), card, scratch)
    dataroot.delete_folder(scratch)
    return manifest


def validate(dataset_dir: str) -> list[str]:
    """What is wrong with a dataset folder compared with its manifest; empty when nothing is.

    Raises StageError for a build output under its old folder name (see dataroot.OLD_STAGE_DIRS).
    """
    parent, name = FileSystems.split(dataset_dir.rstrip("/"))
    if name == dataroot.OLD_STAGE_DIRS["build"]:
        dataroot.check_not_renamed(parent, "build")
    manifest_path = dataroot.join(dataset_dir, MANIFEST)
    if not dataroot.exists(manifest_path):
        return [f"no {MANIFEST}: not a webtext documents folder, or build did not finish"]
    try:
        manifest = dataroot.read_json(manifest_path)
        listed = manifest["shards"]
    except (ValueError, KeyError) as e:
        return [f"{MANIFEST} is unreadable: {e}"]
    problems = []
    for kind, (schema, subdir) in _KINDS.items():
        entries = listed.get(kind, [])
        names = {e["path"] for e in entries}
        for path in dataroot.match(dataroot.join(dataset_dir, subdir, f"{kind}-*.parquet")):
            relative = f"{subdir}/{FileSystems.split(path)[1]}"
            if relative not in names:
                problems.append(f"{relative}: shard not in the manifest")
        for entry in entries:
            problems.extend(_check_shard(dataset_dir, entry, schema))
    total = sum(e["rows"] for e in listed.get(DOCUMENTS, []))
    if manifest.get("totals", {}).get("documents") != total:
        problems.append(
            f"manifest totals say {manifest.get('totals', {}).get('documents')} documents, its shards {total}"
        )
    return problems


def _check_shard(dataset_dir: str, entry: dict[str, Any], schema: pa.Schema) -> list[str]:
    path = dataroot.join(dataset_dir, entry["path"])
    name = entry["path"]
    if not dataroot.exists(path):
        return [f"{name}: missing"]
    problems = []
    digest = sha256_of(path)
    if digest != entry["sha256"]:
        problems.append(
            f"{name}: checksum {digest[:12]}… differs from the manifest's {entry['sha256'][:12]}…"
        )
    try:
        with FileSystems.open(path) as f:
            parquet = pq.ParquetFile(io.BytesIO(f.read()))
        rows = parquet.metadata.num_rows
        file_schema = parquet.schema_arrow
    except (pa.ArrowException, OSError) as e:
        return [*problems, f"{name}: not a readable Parquet file ({str(e).splitlines()[0]})"]
    if rows != entry["rows"]:
        problems.append(f"{name}: {rows} rows, the manifest says {entry['rows']}")
    problems.extend(f"{name}: {p}" for p in schemas.check_table(file_schema, stored_schema(schema)))
    return problems
