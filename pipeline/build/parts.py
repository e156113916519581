"""The extracted documents, persisted between the build's phases as N parts.

    extracted/part-PPPPP-of-NNNNN.parquet         documents that passed the filters (schemas.DOCUMENT)
    extracted/removed-PPPPP-of-NNNNN.parquet      pages removed before dedup (schemas.REMOVED)
    extracted/dead-letter-PPPPP-of-NNNNN.parquet  fetch-log rows that could not be used
    extracted/_parts/part-PPPPP-of-NNNNN.json     the part's counters, written last: the part
                                                  is complete when this record exists

A document is in part xxh64(doc_id) mod N (dataset.shard_of), rows sorted by doc_id, so a
part holds the same rows whichever worker wrote it. Parts are read back a row group at a
time: nothing here holds more than one part's documents.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import xxhash
from apache_beam.io.filesystems import CompressionTypes, FileSystems

import schemas
from pipeline import beamio, dataroot

DOCUMENTS = "part"
REMOVED = "removed"
DEAD_LETTER = "dead-letter"
RECORDS = "_parts"


def shard_of(doc_id: str, num_shards: int) -> int:
    return xxhash.xxh64_intdigest(doc_id.encode("utf-8")) % num_shards


def part_file(kind: str, index: int, count: int) -> str:
    return f"{kind}-{index:05d}-of-{count:05d}.parquet"


@dataclass(frozen=True)
class ExtractedParts:
    """The parts folder and how many parts it is cut into."""

    folder: str
    count: int

    def path(self, kind: str, index: int) -> str:
        return dataroot.join(self.folder, part_file(kind, index, self.count))

    def record_path(self, index: int) -> str:
        name = part_file(DOCUMENTS, index, self.count).removesuffix(".parquet") + ".json"
        return dataroot.join(self.folder, RECORDS, name)

    def pattern(self, kind: str = DOCUMENTS) -> str:
        return dataroot.join(self.folder, f"{kind}-*-of-{self.count:05d}.parquet")

    def part_of(self, doc_id: str) -> int:
        return shard_of(doc_id, self.count)

    def is_written(self, index: int) -> bool:
        return dataroot.exists(self.record_path(index))

    def read_record(self, index: int) -> dict[str, Any]:
        return dataroot.read_json(self.record_path(index))

    def write(
        self,
        index: int,
        rows: dict[str, list[dict]],
        counters: dict[str, int],
        scratch: str | None,
        row_group_rows: int,
    ) -> None:
        """Write one part's three files, each atomically, then its record."""
        for kind, schema in ((DOCUMENTS, schemas.DOCUMENT), (REMOVED, schemas.REMOVED)):
            ordered = sorted(rows.get(kind, []), key=lambda r: (r["doc_id"], r.get("reason") or ""))
            data = beamio.parquet_bytes(ordered, schema, row_group_rows)
            dataroot.write_bytes_atomic(self.path(kind, index), data, scratch)
        dead = sorted(rows.get(DEAD_LETTER, []), key=lambda r: (r["source"], r["raw"] or ""))
        data = beamio.parquet_bytes(dead, schemas.DEAD_LETTER, row_group_rows)
        dataroot.write_bytes_atomic(self.path(DEAD_LETTER, index), data, scratch)
        dataroot.write_json(self.record_path(index), {"counters": counters}, scratch)


def write_documents(extracted: ExtractedParts, docs: Iterable[dict], row_group_rows: int) -> None:
    """Documents as an extract phase would have left them, for benchmarks and tests that
    start at dedup: every part, with no removed rows or dead letters."""
    by_part: list[list[dict]] = [[] for _ in range(extracted.count)]
    for doc in docs:
        by_part[extracted.part_of(doc["doc_id"])].append(doc)
    for index, rows in enumerate(by_part):
        extracted.write(index, {DOCUMENTS: rows}, {}, None, row_group_rows)


def _open(path: str) -> pq.ParquetFile:
    f = FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED)
    return pq.ParquetFile(f)


def batches(path: str, columns: list[str] | None = None) -> Iterator[pa.RecordBatch]:
    """A Parquet file a row group at a time."""
    parquet = _open(path)
    for group in range(parquet.num_row_groups):
        yield from parquet.read_row_group(group, columns=columns).to_batches()


def rows_at(path: str, rows: Iterable[int], columns: list[str]) -> Iterator[tuple[int, dict]]:
    """(row number, row) of the given rows of one part, ascending, read a row group at a time."""
    wanted = np.unique(np.fromiter(rows, dtype=np.int64))
    offset = 0
    for batch in batches(path, columns):
        end = offset + batch.num_rows
        lo, hi = np.searchsorted(wanted, [offset, end])
        if hi > lo:
            taken = batch.take(pa.array(wanted[lo:hi] - offset))
            yield from zip(wanted[lo:hi].tolist(), taken.to_pylist(), strict=True)
        offset = end


@dataclass
class Written:
    """What filter_part wrote: the kept rows and the removed documents' rows."""

    rows: int
    data: bytes
    removed: list[dict]


def filter_part(
    path: str, removed_ids: Iterable[str], schema: pa.Schema, row_group_rows: int
) -> Written:
    """One part without the removed documents, as zstd Parquet in row groups of
    `row_group_rows` (as beamio.parquet_bytes writes them), and the removed rows.

    Streams the part a row group at a time; the output is compressed in memory (a shard).
    """
    drop = pa.array(sorted(set(removed_ids)), pa.string())
    buffer = io.BytesIO()
    removed: list[dict] = []
    pending: list[pa.RecordBatch] = []
    rows = 0
    with pq.ParquetWriter(buffer, schema, compression="zstd", write_statistics=True) as writer:
        for batch in batches(path):
            batch = pa.Table.from_batches([batch]).cast(schema).to_batches()
            if not batch:
                continue
            gone = pc.is_in(batch[0].column("doc_id"), value_set=drop)
            removed.extend(batch[0].filter(gone).to_pylist())
            pending.append(batch[0].filter(pc.invert(gone)))
            rows += _flush(writer, pending, row_group_rows, final=False)
        rows += _flush(writer, pending, row_group_rows, final=True)
    return Written(rows, buffer.getvalue(), removed)


def _flush(writer: pq.ParquetWriter, pending: list[pa.RecordBatch], size: int, final: bool) -> int:
    """Write whole row groups of `size` from `pending` (and the rest when final)."""
    table = pa.Table.from_batches(pending, schema=writer.schema)
    pending.clear()
    written = 0
    while table.num_rows >= size or (final and table.num_rows):
        writer.write_table(table.slice(0, size), row_group_size=size)
        written += min(size, table.num_rows)
        table = table.slice(size)
    pending.extend(table.to_batches())
    return written
