"""Exact + near-duplicate removal on DirectRunner, connected components, and the keep rule."""

from __future__ import annotations

import dataclasses
import json
import random
import time
from pathlib import Path

import apache_beam as beam
import pytest
from apache_beam.runners.portability.fn_api_runner import worker_handlers
from apache_beam.runners.worker.data_plane import ClosableOutputStream
from apache_beam.testing.util import assert_that, equal_to

from pipeline import beamio, dataroot
from pipeline.build.dedup import (
    ConnectedComponents,
    Deduplicate,
    Rank,
    best,
    convergence_problem,
)
from pipeline.build.graph import bucket_pairs, large_star, small_star, union_find_components
from pipeline.build.parts import ExtractedParts, write_documents
from pipeline.build.textnorm import text_hash
from pipeline.config import DedupConfig, load
from tests.conftest import DEMO_CONFIG

VOCAB = [f"w{i}" for i in range(5000)]
PARTS = 3


def _config(**changes) -> DedupConfig:
    return dataclasses.replace(load(DEMO_CONFIG).dedup, **changes)


def _doc(doc_id: str, text: str, karma: int = 3, created: int = 1000) -> dict:
    """A schemas.DOCUMENT row as the extract phase writes it."""
    return {
        "doc_id": doc_id,
        "text": text,
        "text_hash": text_hash(text),
        "karma": karma,
        "first_created_utc": created,
        "normalized_url": f"http://example.com/{doc_id}",
        "final_url": f"http://example.com/{doc_id}",
        "host": "example.com",
        "word_count": len(text.split()),
        "token_count": len(text.split()),
        "submissions": [],
        "extractor": "test",
    }


def _edit(words: list[str], rng: random.Random, edits: int) -> list[str]:
    out = list(words)
    for _ in range(edits):
        out[rng.randrange(len(out))] = rng.choice(VOCAB)
    return out


def _corpus(seed: int = 7):
    """Known clusters: name -> members, with the member the keep rule must keep first."""
    rng = random.Random(seed)
    docs, clusters = [], {}
    for c in range(6):
        base = [rng.choice(VOCAB) for _ in range(400)]
        # the kept one: highest karma; a tie on karma is broken by the earliest submission
        members = [
            _doc(f"c{c}-kept", " ".join(_edit(base, rng, 2)), karma=100, created=500),
            _doc(f"c{c}-a", " ".join(base), karma=100, created=900),  # same karma, later
            _doc(f"c{c}-b", " ".join(_edit(base, rng, 3)), karma=4),
            _doc(f"c{c}-copy", " ".join(base), karma=1),  # exact copy of c-a
        ]
        docs += members
        clusters[f"c{c}-kept"] = [m["doc_id"] for m in members]
    singles = [
        _doc(f"s{i:03d}", " ".join(rng.choice(VOCAB) for _ in range(300))) for i in range(40)
    ]
    docs += singles + [_doc("empty", "!!! ...")]  # no words: never a candidate
    rng.shuffle(docs)
    return docs, clusters


def _collect(pcoll: beam.PCollection, folder: Path, name: str) -> None:
    """Write a PCollection as JSON lines, to read back after the pipeline ran."""
    (
        pcoll
        | f"{name}Json" >> beam.Map(json.dumps)
        | f"{name}Write" >> beam.io.WriteToText(str(folder / name))
    )


def _read(folder: Path, name: str) -> list:
    return [
        json.loads(line) for f in folder.glob(f"{name}*") for line in f.read_text().splitlines()
    ]


def _run(docs: list[dict], config: DedupConfig, folder: Path):
    """Dedup over `docs` written as PARTS extracted parts: (kept ids, removal rows, counters)."""
    parts = ExtractedParts(str(folder / "extracted"), PARTS)
    write_documents(parts, docs, row_group_rows=7)

    def build(p: beam.Pipeline) -> None:
        _collect(p | Deduplicate(config, parts), folder, "removed")

    counters = beamio.run_pipeline("build", build, [])
    removed = sorted(_read(folder, "removed"), key=lambda r: r["doc_id"])
    for row in removed:
        assert row["part"] == parts.part_of(row["doc_id"])
    gone = {r["doc_id"] for r in removed}
    return sorted(d["doc_id"] for d in docs if d["doc_id"] not in gone), removed, counters


@pytest.mark.parametrize("verify", ["exact", "estimate", "none"])
def test_known_clusters_keep_one_document_each(verify, tmp_path):
    docs, clusters = _corpus()
    kept, removed, counters = _run(docs, _config(verify=verify), tmp_path)
    expected_removed = {m: k for k, members in clusters.items() for m in members if m != k}
    assert {r["doc_id"]: r["kept_doc_id"] for r in removed} == expected_removed
    assert kept == sorted(d["doc_id"] for d in docs if d["doc_id"] not in expected_removed)
    for row in removed:
        assert row["cluster_size"] == len(clusters[row["kept_doc_id"]])
        assert row["reason"] == "near_duplicate"  # every kept member is an edited copy
    assert counters["near_duplicate"] == len(expected_removed)
    assert counters["dedup_clusters"] == len(clusters)
    assert counters["dedup_no_shingles"] == 1
    assert counters.get("dedup_unconverged", 0) == 0
    assert counters.get("dedup_kept_below_threshold", 0) == 0  # every member J >= 0.8 of kept
    assert counters["dedup_verified_pairs"] <= counters["dedup_candidate_pairs"]


def _replace_spaced(words: list[str], positions: range, tag: str) -> list[str]:
    """Replace words at positions at least 5 apart: each changes 5 distinct 5-gram shingles."""
    out = list(words)
    for i in positions:
        out[i] = f"{tag}{i}"
    return out


@pytest.mark.parametrize("verify", ["exact", "none"])
def test_chain_member_below_threshold_to_the_kept_document_is_kept(verify, tmp_path):
    rng = random.Random(3)
    base = [rng.choice(VOCAB) for _ in range(400)]
    # 5 edits = 25 of 396 shingles: J(A,B) = J(B,C) = 371/421 = 0.88, J(A,C) = 346/446 = 0.78
    b_words = _replace_spaced(base, range(20, 70, 10), "b")
    c_words = _replace_spaced(b_words, range(220, 270, 10), "c")
    docs = [
        _doc("A", " ".join(base), karma=50),  # kept: highest karma, an end of the chain
        _doc("B", " ".join(b_words), karma=5),
        _doc("C", " ".join(c_words), karma=5),
    ]
    kept, removed, counters = _run(docs, _config(verify=verify), tmp_path)
    removed_ids = [r["doc_id"] for r in removed]
    if verify == "none":  # no check: the whole chain goes to A
        assert kept == ["A"] and removed_ids == ["B", "C"]
        assert counters.get("dedup_kept_below_threshold", 0) == 0
    else:
        assert kept == ["A", "C"] and removed_ids == ["B"]
        assert removed[0]["kept_doc_id"] == "A"
        assert counters["dedup_kept_below_threshold"] == 1
    assert counters["dedup_clusters"] == 1  # one component: the chain was found


def test_exact_copies_pass_the_kept_check_without_a_sketch_join(tmp_path):
    text = " ".join(VOCAB[:300])
    docs = [_doc("k", text, karma=9), _doc("k2", text, karma=1), _doc("k3", text, karma=2)]
    kept, removed, counters = _run(docs, _config(verify="exact"), tmp_path)
    assert kept == ["k"]
    assert [(r["doc_id"], r["reason"]) for r in removed] == [
        ("k2", "exact_duplicate"),
        ("k3", "exact_duplicate"),
    ]
    assert counters.get("dedup_kept_below_threshold", 0) == 0


def test_exact_duplicates_are_named_exact(tmp_path):
    text = " ".join(VOCAB[:200])
    docs = [_doc("x1", text, karma=5), _doc("x2", text, karma=9), _doc("x3", text, karma=9)]
    kept, removed, counters = _run(docs, _config(near=False), tmp_path)
    assert kept == ["x2"]  # highest karma, then the smaller doc_id on a full tie
    assert [(r["doc_id"], r["reason"], r["kept_doc_id"]) for r in removed] == [
        ("x1", "exact_duplicate", "x2"),
        ("x3", "exact_duplicate", "x2"),
    ]
    assert counters["exact_duplicate"] == 2


def test_dissimilar_documents_are_all_kept(tmp_path):
    rng = random.Random(1)
    docs = [_doc(f"d{i}", " ".join(rng.choice(VOCAB) for _ in range(200))) for i in range(30)]
    kept, removed, _ = _run(docs, _config(), tmp_path)
    assert removed == [] and len(kept) == 30


def test_keep_rule_orders_by_karma_then_submission_then_doc_id():
    ranks = [
        Rank("b", 10, 5, "h"),
        Rank("a", 10, 5, "h"),
        Rank("c", 10, 4, "h"),
        Rank("d", 2, 1, "h"),
    ]
    assert best(ranks).doc_id == "c"
    assert best(ranks[:2]).doc_id == "a"
    assert best([*ranks, Rank("z", 11, 99, "h")]).doc_id == "z"


def test_big_buckets_emit_a_star_small_ones_every_pair():
    assert bucket_pairs(["c", "a", "b", "a"]) == [("a", "b"), ("a", "c"), ("b", "c")]
    big = [f"n{i:02d}" for i in range(40)]
    assert bucket_pairs(big) == [("n00", n) for n in big[1:]]


def test_large_star_links_larger_neighbors_to_the_smallest():
    edges, changes = large_star("b", ["a", "c", "d", "c"])
    assert sorted(edges) == [("a", "c"), ("a", "d")] and changes == 2
    edges, changes = large_star("a", ["b", "c"])  # already a star around its minimum
    assert sorted(edges) == [("a", "b"), ("a", "c")] and changes == 0


def test_small_star_links_smaller_neighbors_to_the_smallest():
    edges, changes = small_star("d", ["a", "b", "e"])
    assert sorted(edges) == [("a", "b"), ("a", "d")] and changes == 1
    assert small_star("a", ["b", "c"]) == ([], 0)


def _graphs() -> dict[str, list[tuple[str, str]]]:
    rng = random.Random(11)
    chain_ids = [f"c{i:04d}" for i in range(400)]
    rng.shuffle(chain_ids)
    chain = [(chain_ids[i], chain_ids[i + 1]) for i in range(len(chain_ids) - 1)]
    sorted_chain = [(f"s{i:04d}", f"s{i + 1:04d}") for i in range(300)]
    star = [("tz-centre", f"t{i:04d}") for i in range(500)]  # the centre is not the min
    random_graph = [
        (f"r{rng.randrange(300):03d}", f"r{rng.randrange(300):03d}") for _ in range(200)
    ]
    random_graph = [(a, b) for a, b in random_graph if a != b]
    return {
        "long_chain": chain,
        "sorted_chain": sorted_chain,
        "large_star": star,
        "random": random_graph,
        "all": chain + sorted_chain + star + random_graph,
    }


@pytest.mark.parametrize("graph", ["long_chain", "large_star", "all"])
def test_components_equal_union_find(graph):
    edges = _graphs()[graph]
    expected = sorted(union_find_components(edges).items())

    def build(p: beam.Pipeline) -> None:
        labels = p | beam.Create(edges) | ConnectedComponents(max_rounds=20)
        assert_that(labels, equal_to(expected))

    counters = beamio.run_pipeline("build", build, [])
    assert counters.get("dedup_unconverged", 0) == 0
    assert 1 <= counters["dedup_rounds"] < 20  # rounds that changed an edge


def test_unconverged_components_are_flagged_and_stay_inside_their_component(tmp_path):
    edges = _graphs()["long_chain"]
    truth = union_find_components(edges)

    def build(p: beam.Pipeline) -> None:
        _collect(p | beam.Create(edges) | ConnectedComponents(max_rounds=1), tmp_path, "labels")

    counters = beamio.run_pipeline("build", build, [])
    labels = _read(tmp_path, "labels")
    assert len(labels) == len(truth)
    assert counters["dedup_unconverged"] > 0
    assert convergence_problem(counters) and "max_rounds" in convergence_problem(counters)
    assert all(truth[node] == truth[label] for node, label in labels)
    assert len({label for _, label in labels}) > 1


def test_bad_verify_mode_is_a_one_line_error():
    with pytest.raises(dataroot.StageError, match="verify"):
        Deduplicate(_config(verify="sometimes"), ExtractedParts("unused", PARTS))


MULTI_PROCESS = ["--direct_running_mode=multi_processing", "--direct_num_workers=2"]


def _run_with(docs: list[dict], folder: Path, beam_args: list[str]) -> list:
    """Dedup over `docs` written as extracted parts, on the runner `beam_args` name."""
    parts = ExtractedParts(str(folder / "extracted"), PARTS)
    write_documents(parts, docs, row_group_rows=7)

    def build(p: beam.Pipeline) -> None:
        _collect(p | Deduplicate(_config(), parts), folder, "removed")

    beamio.run_pipeline("build", build, beam_args)
    return sorted(tuple(sorted(r.items())) for r in _read(folder, "removed"))


def test_output_is_the_same_on_one_process_and_on_two(tmp_path):
    rng = random.Random(5)
    docs = []
    for c in range(12):
        base = [rng.choice(VOCAB) for _ in range(300)]
        docs += [_doc(f"c{c}-{v}", " ".join(_edit(base, rng, 2)), karma=v) for v in range(6)]
    docs += [_doc(f"s{i:03d}", " ".join(rng.choice(VOCAB) for _ in range(300))) for i in range(240)]
    rng.shuffle(docs)
    single = _run_with(docs, tmp_path / "single", [])
    multi = _run_with(docs, tmp_path / "multi", MULTI_PROCESS)
    assert len(single) == 12 * 5  # every cluster keeps one document
    assert multi == single


def test_the_local_runner_sends_stage_inputs_whole(monkeypatch):
    """Beam's runner->worker streams flush on a 1 s timer; writes made during a slow flush
    were dropped, losing stage inputs. Every stage's run_pipeline turns the timer off."""
    monkeypatch.setattr(worker_handlers, "DATA_BUFFER_TIME_LIMIT_MS", 1000)  # Beam's default
    beamio.run_pipeline("build", lambda p: p | beam.Create([]), [])
    received = []

    def slow_send(data: bytes) -> None:  # a full gRPC send queue makes the flush wait
        received.append(len(data))
        time.sleep(0.3)

    stream = ClosableOutputStream.create(
        lambda data: received.append(len(data)),
        slow_send,
        worker_handlers.DATA_BUFFER_TIME_LIMIT_MS,
    )
    chunk, written = b"x" * 65536, 0
    started = time.monotonic()
    while time.monotonic() - started < 1.8:
        stream.write(chunk)
        written += len(chunk)
        time.sleep(0.01)
    stream.close()
    assert sum(received) == written
