"""The token shard format that the tokenize stage writes and the trainer reads.

A shard is a TokenShardHeader (schemas/tokens.py) then uint16 tokens: its documents in doc_id
order, each followed by <|endoftext|> (50256). Which split and shard a document goes to
depends only on its doc_id, so the stage on any runner and the trainer's own Parquet mode
agree. Imports no Beam: the trainer uses it where Beam is not installed.
"""

from __future__ import annotations

import hashlib
import itertools
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np

from pipeline import dataroot
from schemas.tokens import EOT_TOKEN, HEADER_BYTES, TOKEN_DTYPE, TokenShardHeader

VAL = "val"
TRAIN = "train"


def doc_hash(doc_id: str) -> tuple[float, int]:
    """Two independent stable draws from a doc_id: a uniform in [0, 1) and a 64-bit integer."""
    digest = hashlib.blake2b(doc_id.encode("utf-8"), digest_size=16).digest()
    return int.from_bytes(digest[:8], "little") / 2.0**64, int.from_bytes(digest[8:], "little")


def split_of(doc_id: str, val_fraction: float) -> str:
    """ "val" for about val_fraction of doc_ids, "train" for the rest; stable forever."""
    return VAL if doc_hash(doc_id)[0] < val_fraction else TRAIN


def shard_key(doc_id: str, val_fraction: float, num_shards: int) -> tuple[str, int]:
    """The (split, shard index) a document goes to."""
    u, h = doc_hash(doc_id)
    if u < val_fraction:
        return VAL, 0
    return TRAIN, h % num_shards


def shard_name(split: str, index: int, count: int) -> str:
    return f"{split}-{index:05d}-of-{count:05d}.bin"


def all_shard_keys(num_shards: int) -> list[tuple[str, int]]:
    return [(TRAIN, i) for i in range(num_shards)] + [(VAL, 0)]


@dataclass
class PackedDocs:
    """Some documents bound for one shard: their ids, token counts and concatenated tokens."""

    doc_ids: list[str]
    lengths: np.ndarray  # int64
    tokens: np.ndarray  # uint16, no separators

    def documents(self) -> Iterator[tuple[str, np.ndarray]]:
        ends = np.cumsum(self.lengths)
        starts = ends - self.lengths
        for doc_id, start, end in zip(self.doc_ids, starts, ends, strict=True):
            yield doc_id, self.tokens[start:end]


def pack(doc_ids: list[str], token_lists: list[list[int]]) -> PackedDocs:
    lengths = np.fromiter((len(t) for t in token_lists), dtype=np.int64, count=len(token_lists))
    total = int(lengths.sum())
    tokens = np.fromiter(itertools.chain.from_iterable(token_lists), dtype=TOKEN_DTYPE, count=total)
    return PackedDocs(doc_ids, lengths, tokens)


def concat_documents(packs: Iterable[PackedDocs], eot: int = EOT_TOKEN) -> tuple[np.ndarray, int]:
    """Documents in any order -> (their tokens in doc_id order, each followed by eot; count).

    Ties on doc_id, which dedup should have removed, are ordered by their tokens.
    """
    docs = [doc for p in packs for doc in p.documents()]
    repeated = {d for d, n in Counter(d for d, _ in docs).items() if n > 1}
    docs.sort(key=lambda d: (d[0], d[1].tobytes() if d[0] in repeated else b""))
    separator = np.array([eot], dtype=TOKEN_DTYPE)
    pieces = [piece for _, tokens in docs for piece in (tokens, separator)]
    tokens = np.concatenate(pieces) if pieces else np.zeros(0, dtype=TOKEN_DTYPE)
    return tokens.astype(TOKEN_DTYPE, copy=False), len(docs)


def read_shard(path: str) -> tuple[TokenShardHeader, np.ndarray]:
    """A whole token shard, local or remote (for checks and tests; the trainer memory-maps)."""
    raw = dataroot.read_bytes(path)
    header = TokenShardHeader.from_bytes(raw, source=path)
    tokens = np.frombuffer(raw, dtype=TOKEN_DTYPE, offset=HEADER_BYTES)
    if len(tokens) != header.token_count:
        raise ValueError(f"{path}: header says {header.token_count} tokens, file has {len(tokens)}")
    return header, tokens


def open_shard(path: str) -> np.ndarray:
    """A local token shard's tokens as a read-only memory map (nothing is read until indexed)."""
    with open(path, "rb") as f:
        header = TokenShardHeader.from_bytes(f.read(HEADER_BYTES), source=path)
    if header.token_count == 0:
        return np.zeros(0, dtype=TOKEN_DTYPE)
    return np.memmap(
        path, dtype=TOKEN_DTYPE, mode="r", offset=HEADER_BYTES, shape=(header.token_count,)
    )
