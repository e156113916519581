"""The dedup phase's plain pieces, without Beam: packed band keys, their collisions, and the
resolution of one candidate component."""

from __future__ import annotations

import dataclasses
import random

import numpy as np

from pipeline.build import lsh
from pipeline.build.dedup import Member, Rank, resolve_component, verification_sketch
from pipeline.build.minhash import MinHasher
from pipeline.build.parts import DOCUMENTS, ExtractedParts, write_documents
from pipeline.build.textnorm import text_hash
from pipeline.config import load
from tests.conftest import DEMO_CONFIG

CONFIG = load(DEMO_CONFIG).dedup


def test_doc_numbers_round_trip():
    for part, row in [(0, 0), (3, 17), (255, 2**32 - 1), (70_000, 5)]:
        assert lsh.part_and_row(lsh.doc_number(part, row)) == (part, row)


def test_shards_split_records_and_collisions_find_every_shared_key():
    rng = random.Random(4)
    pairs = [(rng.getrandbits(64), doc) for doc in range(2_000)]
    pairs += [(pairs[5][0], 9_000), (pairs[5][0], 9_001), (pairs[77][0], 9_002)]
    blobs = list(lsh.shard_blobs(pairs, first_shard=lsh.SHARDS))
    shards = [shard for shard, _ in blobs]
    assert len(set(shards)) == len(shards) and all(s >= lsh.SHARDS for s in shards)
    records = np.frombuffer(b"".join(blob for _, blob in blobs), dtype=lsh.RECORD)
    assert sorted(records.tolist()) == sorted(pairs)
    # each shard's consumer sees only its shard: groups come out whole per shard
    groups = [g for _, blob in blobs for g in lsh.colliding_groups([blob])]
    assert sorted(groups) == [[5, 9_000, 9_001], [77, 9_002]]


def test_collisions_do_not_depend_on_how_records_were_split_into_blobs():
    rng = random.Random(8)
    keys = [rng.randrange(50) for _ in range(400)]
    records = np.array(list(zip(keys, range(400), strict=True)), dtype=lsh.RECORD)
    whole = list(lsh.colliding_groups([records.tobytes()]))
    cut = [records[i : i + 37].tobytes() for i in range(0, 400, 37)]
    assert list(lsh.colliding_groups(reversed(cut))) == whole
    assert sum(len(g) for g in whole) == 400


def _docs() -> list[dict]:
    words = [f"w{i}" for i in range(3000)]
    rng = random.Random(2)
    text = " ".join(rng.choice(words) for _ in range(300))
    rows = [
        ("a", text),
        ("b", text),  # an exact copy: meets "a" in every band, needs no exact key
        ("c", "!!! ..."),  # no words: no signature, so an exact key
        ("d", "!!! ..."),
        ("e", " ".join(rng.choice(words) for _ in range(300))),
    ]
    return [
        {"doc_id": doc_id, "text": t, "text_hash": text_hash(t), "karma": 1} for doc_id, t in rows
    ]


def test_part_keys_give_band_keys_and_exact_keys_only_without_a_signature(tmp_path):
    parts = ExtractedParts(str(tmp_path), 1)
    write_documents(parts, [_full_row(d) for d in _docs()], row_group_rows=2)
    signed = lsh.sign_part(parts.path(DOCUMENTS, 0), 0, CONFIG)
    assert signed.no_shingles == 2
    near = [g for s, b in signed.blobs if s < lsh.SHARDS for g in lsh.colliding_groups([b])]
    exact = [g for s, b in signed.blobs if s >= lsh.SHARDS for g in lsh.colliding_groups([b])]
    assert exact == [[2, 3]]  # rows sorted by doc_id: a b c d e
    assert near and all(g == [0, 1] for g in near)
    without_near = lsh.sign_part(
        parts.path(DOCUMENTS, 0), 0, dataclasses.replace(CONFIG, near=False)
    )
    assert all(s >= lsh.SHARDS for s, _ in without_near.blobs)
    assert sum(len(b) for _, b in without_near.blobs) == 5 * lsh.RECORD.itemsize


def _full_row(doc: dict) -> dict:
    return {
        **doc,
        "first_created_utc": 0,
        "normalized_url": f"http://x/{doc['doc_id']}",
        "final_url": f"http://x/{doc['doc_id']}",
        "host": "x",
        "word_count": 1,
        "token_count": 1,
        "submissions": [],
        "extractor": "test",
    }


def test_a_component_keeps_one_per_cluster_and_checks_near_duplicates_against_it():
    config = dataclasses.replace(CONFIG, verify="exact", threshold=0.8)
    hasher = MinHasher(config.num_perm, config.seed, config.scheme)
    words = [f"w{i}" for i in range(3000)]
    rng = random.Random(6)
    base = [rng.choice(words) for _ in range(400)]
    far = [rng.choice(words) for _ in range(400)]
    texts = {
        1: " ".join(base),  # kept: highest karma
        2: " ".join(base),  # an exact copy
        3: " ".join(base[:395] + ["x1", "x2", "x3", "x4", "x5"]),  # a near-duplicate
        4: " ".join(far),  # a false candidate
    }
    karma = {1: 50, 2: 3, 3: 3, 4: 3}
    members = [
        Member(
            n, Rank(f"doc{n}", karma[n], 0, text_hash(t)), verification_sketch(t, hasher, config)
        )
        for n, t in texts.items()
    ]
    out = resolve_component(members, [], [(1, 2), (1, 3), (2, 4), (3, 4)], config)
    assert out.verified_pairs == 2 and out.clusters == 1 and out.below_threshold == 0
    assert sorted((r["doc_id"], r["reason"], r["kept_doc_id"]) for r in out.removals) == [
        ("doc2", "exact_duplicate", "doc1"),
        ("doc3", "near_duplicate", "doc1"),
    ]
    assert {r["cluster_size"] for r in out.removals} == {3}
    unchecked = resolve_component(members, [], [(2, 4)], dataclasses.replace(config, verify="none"))
    assert [r["doc_id"] for r in unchecked.removals] == ["doc4"]  # "none" trusts candidates
