"""Token pieces: the tokenize stage's scratch between encoding and writing shards.

A worker encodes one document file and holds its documents' tokens by shard key only until
PIECE_TOKENS of them are held; then each key's documents are written, sorted by (doc_id,
tokens), as one piece (schemas.TOKEN_PIECE) under tokens/_pieces/<shard>/. Only the piece's
path and counts cross the shuffle. A shard is then streamed out of a k-way merge of its
pieces, so no worker holds more than PIECE_TOKENS tokens plus one row group per piece, and
the shard's bytes are those of sorting all its documents at once, on any runner.
"""

from __future__ import annotations

import heapq
import posixpath
from collections.abc import Iterable, Iterator
from typing import NamedTuple

import numpy as np
import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems

from pipeline import beamio, dataroot
from schemas import TOKEN_PIECE
from schemas.tokens import EOT_TOKEN, TOKEN_DTYPE, TokenShardHeader

PIECES_DIR = "_pieces"
PIECE_TOKENS = 1 << 25  # held per worker before a flush: 64 MB of uint16
PIECE_ROW_GROUP = 1024  # rows a reader holds per open piece
WRITE_CHUNK = 1 << 22  # bytes gathered before one write to the shard

ShardKey = tuple[str, int]


class PieceRef(NamedTuple):
    """A written piece, as it crosses the shuffle: where it is and what it holds."""

    path: str
    documents: int
    tokens: int  # without separators


def piece_folder(pieces_dir: str, key: ShardKey) -> str:
    split, index = key
    return dataroot.join(pieces_dir, f"{split}-{index:05d}")


class PieceBuffer:
    """One document file's encoded documents by shard key, flushed to pieces as they grow."""

    def __init__(self, pieces_dir: str, source: str, flush_tokens: int = PIECE_TOKENS):
        self.pieces_dir, self.flush_tokens = pieces_dir, flush_tokens
        self.stem = posixpath.basename(source).removesuffix(".parquet")
        self.by_key: dict[ShardKey, list[tuple[str, bytes]]] = {}
        self.held = 0
        self.flushes = 0

    def add(self, key: ShardKey, doc_id: str, tokens: list[int]) -> None:
        packed = np.fromiter(tokens, dtype=TOKEN_DTYPE, count=len(tokens)).tobytes()
        self.by_key.setdefault(key, []).append((doc_id, packed))
        self.held += len(tokens)

    @property
    def full(self) -> bool:
        return self.held >= self.flush_tokens

    def flush(self) -> Iterator[tuple[ShardKey, PieceRef]]:
        """Write every held key's piece; yields (shard key, piece) for each."""
        for key, docs in sorted(self.by_key.items()):
            docs.sort()
            name = f"{self.stem}-{self.flushes:05d}.parquet"
            path = dataroot.join(piece_folder(self.pieces_dir, key), name)
            rows = [{"doc_id": d, "tokens": t} for d, t in docs]
            data = beamio.parquet_bytes(rows, TOKEN_PIECE, PIECE_ROW_GROUP)
            dataroot.write_bytes_atomic(path, data)
            tokens = sum(len(t) for _, t in docs) // TOKEN_DTYPE.itemsize
            yield key, PieceRef(path, len(docs), tokens)
        self.by_key.clear()
        self.held = 0
        self.flushes += 1


def iter_piece(path: str) -> Iterator[tuple[str, bytes]]:
    """A piece's (doc_id, token bytes) in its stored order, one row group at a time."""
    with FileSystems.open(path) as f:
        for batch in pq.ParquetFile(f).iter_batches(batch_size=PIECE_ROW_GROUP):
            yield from zip(batch.column(0).to_pylist(), batch.column(1).to_pylist(), strict=True)


def shard_chunks(pieces: Iterable[PieceRef], eot: int = EOT_TOKEN) -> Iterator[bytes]:
    """A token shard's bytes, header first, from its pieces: documents in (doc_id, tokens)
    order, each followed by eot. Streams: memory does not grow with the shard."""
    pieces = sorted(pieces)
    documents = sum(p.documents for p in pieces)
    tokens = sum(p.tokens for p in pieces) + documents
    header = TokenShardHeader(token_count=tokens, document_count=documents, eot_token=eot)
    yield header.to_bytes()
    separator = np.array([eot], dtype=TOKEN_DTYPE).tobytes()
    buffer, size = [], 0
    for _, packed in heapq.merge(*(iter_piece(p.path) for p in pieces)):
        buffer += (packed, separator)
        size += len(packed) + len(separator)
        if size >= WRITE_CHUNK:
            yield b"".join(buffer)
            buffer, size = [], 0
    if buffer:
        yield b"".join(buffer)
