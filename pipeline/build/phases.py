"""The build stage's dedup and write phases, each a Beam pipeline with one persisted output
(the extract phase is pipeline/build/stage.py, which runs all three):

    extracted/part-*.parquet --Deduplicate--> dedup/removals-*.parquet   (schemas.REMOVAL)
    extracted/ + dedup/      --WriteDocuments--> documents/ (pipeline.build.dataset)

Each phase records its counters in its folder's _summary.json, so the write phase's funnel
and manifest are whole when it runs alone.
"""

from __future__ import annotations

from typing import Any

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems

import schemas
from pipeline import beamio, dataroot
from pipeline.build import dataset
from pipeline.build.dedup import Deduplicate
from pipeline.build.parts import ExtractedParts
from pipeline.config import Config

STAGE = "build"
REMOVALS = "removals"
DEAD_LETTER_PATTERN = "dead-letter-*.parquet"
# The config sections each phase's folder follows; dedup's follow the whole build's.
EXTRACT_INPUTS = ("links", "fetch", "build", "tokenizer")
DEDUP_INPUTS = dataroot.STAGE_INPUTS[STAGE]
PHASE_OF_FOLDER = {dataroot.EXTRACTED_DIR: "extract", dataroot.DEDUP_DIR: "dedup"}


def extracted_parts(config: Config, data_root: str) -> ExtractedParts:
    return ExtractedParts(dataroot.join(data_root, dataroot.EXTRACTED_DIR), config.build.partitions)


def write_phase_summary(data_root: str, folder: str, counters: dict[str, int]) -> None:
    summary = {"stage": STAGE, "phase": folder, "counters": counters}
    dataroot.write_json(dataroot.join(data_root, folder, dataroot.SUMMARY), summary)


def phase_counters(data_root: str, folder: str, needed_by: str) -> dict[str, int]:
    """The counters a finished phase recorded; a one-line error when it has not finished."""
    path = dataroot.join(data_root, folder, dataroot.SUMMARY)
    if not dataroot.exists(path):
        raise dataroot.StageError(
            f"no finished {folder} phase under {data_root}: run `webtext build` (or "
            f'--set build.phase="{PHASE_OF_FOLDER[folder]}") before the {needed_by} phase'
        )
    return dataroot.read_json(path)["counters"]


def run_dedup(config: Config, data_root: str, beam_args: list[str]) -> dict[str, int]:
    """extracted/ -> dedup/removals-*.parquet: which documents to remove, by id."""
    phase_counters(data_root, dataroot.EXTRACTED_DIR, "dedup")
    dataroot.check_folder_config(config, data_root, dataroot.DEDUP_DIR, DEDUP_INPUTS, "build dedup")
    parts = extracted_parts(config, data_root)
    folder = dataroot.join(data_root, dataroot.DEDUP_DIR)
    scratch = dataroot.scratch_beside(data_root, dataroot.DEDUP_DIR)
    for stale in (dataroot.join(folder, dataroot.SUMMARY), *removal_files(data_root)):
        if dataroot.exists(stale):
            FileSystems.delete([stale])
    dataroot.delete_folder(scratch)
    prefix = dataroot.join(scratch, REMOVALS)

    def build_pipeline(pipeline: beam.Pipeline) -> None:
        (
            pipeline
            | "Deduplicate" >> Deduplicate(config.dedup, parts)
            | "WriteRemovals"
            >> beamio.WriteParquet(prefix, schemas.REMOVAL, 0, config.build.row_group_rows)
        )

    counters = beamio.run_pipeline(STAGE, build_pipeline, beam_args)
    dataroot.move_into(dataroot.match(f"{prefix}-*.parquet"), folder)
    dataroot.delete_folder(scratch)
    write_phase_summary(data_root, dataroot.DEDUP_DIR, counters)
    return counters


def removal_files(data_root: str) -> list[str]:
    return dataroot.match(dataroot.join(data_root, dataroot.DEDUP_DIR, f"{REMOVALS}-*.parquet"))


def run_write(config: Config, data_root: str, beam_args: list[str]) -> dict[str, Any]:
    """extracted/ filtered by dedup/ -> the dataset under documents/; returns the summary."""
    counters = {
        **phase_counters(data_root, dataroot.EXTRACTED_DIR, "write"),
        **phase_counters(data_root, dataroot.DEDUP_DIR, "write"),
    }
    dataroot.check_data_root(config, data_root, STAGE)
    parts = extracted_parts(config, data_root)
    docs_dir = dataroot.stage_dir(data_root, STAGE)
    stale = dataroot.match(dataroot.join(docs_dir, DEAD_LETTER_PATTERN))
    if stale:
        FileSystems.delete(stale)
    dataroot.delete_folder(dataroot.scratch_dir(data_root, STAGE))
    removals = removal_files(data_root)

    def build_pipeline(pipeline: beam.Pipeline) -> None:
        _read_removals(pipeline, removals) | "WriteDocuments" >> dataset.WriteDocuments(
            data_root, config, parts
        )

    written = beamio.run_pipeline(STAGE, build_pipeline, beam_args)
    counters = dict(sorted({**counters, **written}.items()))
    manifest = dataset.finish(config, data_root, counters)
    return {"counters": counters, "manifest": manifest}


def _read_removals(pipeline: beam.Pipeline, files: list[str]) -> beam.PCollection:
    if not files:
        return pipeline | "NoRemovals" >> beam.Create([])
    return (
        pipeline
        | "RemovalFiles" >> beam.Create(files)
        | "ReadRemovals" >> beam.io.ReadAllFromParquet()
    )
