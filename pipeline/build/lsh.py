"""The dedup phase's bulk step, plain: every document's band keys, packed per part into
shards of 16-byte records, and the keys two or more documents share.

A document is named here by its number, part << 32 | row (its row in the extracted part,
whose rows are sorted by doc_id, so the number is the same whichever worker reads it). One
record is (key, document number), both uint64:

- "near" keys: xxh64 of each MinHash band (`minhash.band_hashes`), one per band;
- "exact" keys: the text hash of a document without a signature (no shingles, or near
  dedup off). A document with a signature meets its exact copies in every band anyway.

Records go to shard key % SHARDS of their kind. One part's records for one shard travel as
one bytes blob, so the shuffle that brings a shard together moves 16 bytes per key in a few
large elements (9 bands: ~144 MB at 1M documents) instead of one small Python element per
key.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import xxhash

from pipeline.build.minhash import (
    LshParams,
    MinHasher,
    band_hashes,
    optimal_params,
    shingle_hashes,
)
from pipeline.build.parts import batches
from pipeline.config import DedupConfig

NEAR, EXACT = "near", "exact"
# Shards per kind. Each shard's consumer holds 1/SHARDS of its kind's records: ~18 MB of
# band keys at 8M documents.
SHARDS = 64
RECORD = np.dtype([("key", "<u8"), ("doc", "<u8")])
_ROW_BITS = 32


def doc_number(part: int, row: int) -> int:
    return part << _ROW_BITS | row


def part_and_row(number: int) -> tuple[int, int]:
    return number >> _ROW_BITS, number & ((1 << _ROW_BITS) - 1)


def exact_key(text_hash: str) -> int:
    return xxhash.xxh64_intdigest(text_hash.encode("ascii"))


@dataclass
class PartKeys:
    """One part's keys: (key, document number) pairs per kind, and the documents that had
    no shingle (never near-duplicate candidates)."""

    near: list[tuple[int, int]]
    exact: list[tuple[int, int]]
    no_shingles: int = 0


def part_keys(
    path: str,
    part: int,
    hasher: MinHasher | None,
    params: LshParams,
    ngram: int,
    exact: bool,
) -> PartKeys:
    """Every key of one extracted part; `hasher` None: no near keys (no text is read)."""
    columns = ["text_hash"] + (["text"] if hasher else [])
    keys = PartKeys([], [])
    row = 0
    for batch in batches(path, columns):
        hashes = batch.column("text_hash").to_pylist()
        texts = batch.column("text").to_pylist() if hasher else [None] * len(hashes)
        for text_hash, text in zip(hashes, texts, strict=True):
            number = doc_number(part, row)
            row += 1
            signature = None
            if hasher is not None:
                signature = hasher.signature_from_hashes(shingle_hashes(text, ngram))
                if signature is None:
                    keys.no_shingles += 1
            if signature is not None:
                keys.near.extend((key, number) for key in band_hashes(signature, params))
            elif exact:
                keys.exact.append((exact_key(text_hash), number))
    return keys


@dataclass
class SignedPart:
    """One part's keys as (shard, packed records), and its documents without shingles."""

    blobs: list[tuple[int, bytes]]
    no_shingles: int


@lru_cache(maxsize=4)
def _hasher(num_perm: int, seed: int, scheme: str) -> MinHasher:
    return MinHasher(num_perm, seed, scheme)


def sign_part(path: str, part: int, config: DedupConfig) -> SignedPart:
    """Every key of one part, packed by shard: near shards first, then exact shards.

    A plain function of its arguments, so a pool of child processes can run it."""
    hasher = _hasher(config.num_perm, config.seed, config.scheme) if config.near else None
    params = optimal_params(config.threshold, config.num_perm)
    keys = part_keys(path, part, hasher, params, config.ngram, config.exact)
    blobs = [*shard_blobs(keys.near, 0), *shard_blobs(keys.exact, SHARDS)]
    return SignedPart(blobs, keys.no_shingles)


def shard_blobs(pairs: list[tuple[int, int]], first_shard: int) -> Iterator[tuple[int, bytes]]:
    """(shard, packed records) for each shard the pairs fall in: shard first_shard + key %
    SHARDS, the records in the order given."""
    if not pairs:
        return
    records = np.array(pairs, dtype=RECORD)
    shards = records["key"] % np.uint64(SHARDS)
    order = np.argsort(shards, kind="stable")
    records, shards = records[order], shards[order]
    starts = np.flatnonzero(np.r_[True, shards[1:] != shards[:-1]])
    for start, end in zip(starts, [*starts[1:], len(records)], strict=True):
        yield first_shard + int(shards[start]), records[start:end].tobytes()


def colliding_groups(blobs: Iterable[bytes]) -> Iterator[list[int]]:
    """The ascending document numbers of every key that two or more records share."""
    records = np.frombuffer(b"".join(blobs), dtype=RECORD)
    if len(records) < 2:
        return
    records = records[np.lexsort((records["doc"], records["key"]))]
    keys = records["key"]
    starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
    sizes = np.diff(np.r_[starts, len(keys)])
    docs = records["doc"]
    for start, size in zip(starts[sizes > 1].tolist(), sizes[sizes > 1].tolist(), strict=True):
        yield np.unique(docs[start : start + size]).tolist()
