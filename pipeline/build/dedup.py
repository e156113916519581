"""Exact and MinHash near-duplicate removal as Beam shuffles, on any runner, at any scale.

    ReadParts ─┬─ ExactGroups:   GroupByKey(text_hash) ──────────── star edges to the group's best
               ├─ Signatures ─ LshBuckets: GroupByKey(band, band hash) ─ CandidatePairs
               │     ─ Sketches: the candidates' texts read back from their parts
               │     ─ Verify: join both ends with their sketches ─ Jaccard >= t
               │       exact edges + verified edges ─ Components (large-star / small-star)
               ├─ KeepRule:      GroupByKey(component) ─ one kept per cluster, the rest removed
               ├─ VerifyAgainstKept: CoGroupByKey(removed id), CoGroupByKey(kept id) ─ J >= t
               └─ RemovalRows:   schemas.REMOVAL rows, ids only, for the write phase

Text is shingled where it is read and never shuffled: the shuffles carry ranks, band keys,
ids, and the sketches of candidate pairs' documents.

Both kinds of duplicate become edges of one graph, and one document is kept per connected
component, by the keep rule: highest karma (the link's aggregate karma under the links
stage's karma rule), then earliest first submission, then smallest doc_id. A removed
document whose text hash equals the kept one's is an "exact_duplicate", otherwise a
"near_duplicate"; its cluster is named by the kept doc_id. This gives the same clusters as
exact dedup followed by near dedup of the survivors (copies have equal signatures).

Components chain variants (A~B~C with J(A,C) below the threshold), so each would-be-removed
near-duplicate is checked against its cluster's kept document with the same verification
as candidate pairs; one below the threshold is kept (`dedup_kept_below_threshold`). Exact
duplicates of the kept document always pass; verify = "none" skips the check.

Nothing is collected on one worker: every step is keyed by a text hash, a band, a node or
a doc_id. The largest group is a component's centre after convergence (its member ids).

Connected components alternate large-star and small-star (Kiveris et al., "Connected
Components in MapReduce and Beyond", 2014), unrolled over `max_rounds` rounds. A round in
which no node changes an edge leaves every component a star around its smallest id; the
edges then bypass the later rounds' shuffles (a side input of that round's change count),
so unused rounds cost next to nothing. A final check counts the nodes not in star shape
(`dedup_unconverged`): they keep a label inside their component, so an unconverged run
removes fewer duplicates, never a non-duplicate.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import apache_beam as beam
import numpy as np
from apache_beam.pvalue import TaggedOutput

from pipeline import beamio, dataroot
from pipeline.build.graph import Edge, bucket_pairs, edge, large_star, small_star, star_label
from pipeline.build.minhash import (
    LshParams,
    MinHasher,
    band_keys,
    estimated_jaccard,
    exact_jaccard,
    optimal_params,
    shingle_hashes,
    shingle_set,
)
from pipeline.build.parts import DOCUMENTS, ExtractedParts, texts_of
from pipeline.config import DedupConfig

log = logging.getLogger("webtext")

VERIFY_MODES = ("none", "estimate", "exact")
EXACT_DUPLICATE = "exact_duplicate"
# What dedup reads of each extracted document; "text" only where it is shingled.
DEDUP_COLUMNS = ("doc_id", "karma", "first_created_utc", "text_hash", "text")
NEAR_DUPLICATE = "near_duplicate"


@dataclass(frozen=True)
class Rank:
    """What the keep rule needs to know about a document."""

    doc_id: str
    karma: int
    first_created_utc: int
    text_hash: str

    @classmethod
    def of(cls, doc: dict[str, Any]) -> Rank:
        return cls(doc["doc_id"], doc["karma"], doc["first_created_utc"], doc["text_hash"])

    def keep_key(self) -> tuple[int, int, str]:
        """Smallest is kept: highest karma, then earliest submission, then smallest doc_id."""
        return (-self.karma, self.first_created_utc, self.doc_id)


def best(ranks: Iterable[Rank]) -> Rank:
    return min(ranks, key=Rank.keep_key)


def removal_reason(removed: Rank, kept: Rank) -> str:
    return EXACT_DUPLICATE if removed.text_hash == kept.text_hash else NEAR_DUPLICATE


def verify_pair(sketch_a: np.ndarray, sketch_b: np.ndarray, mode: str, threshold: float) -> bool:
    if mode == "exact":
        return exact_jaccard(sketch_a, sketch_b) >= threshold
    return estimated_jaccard(sketch_a, sketch_b) >= threshold


def passes_kept_check(
    removed_sketch: np.ndarray | None, kept_sketch: np.ndarray | None, mode: str, threshold: float
) -> bool:
    """Whether a near-duplicate may be removed in favour of its cluster's kept document.

    A document without a sketch (no shingles) cannot be shown similar, so it is kept.
    """
    if removed_sketch is None or kept_sketch is None:
        return False
    return verify_pair(removed_sketch, kept_sketch, mode, threshold)


def _counter(name: str) -> Any:
    return beamio.counter("build", name)


# ---------------------------------------------------------------- DoFns: wiring only


def verification_sketch(text: str, hasher: MinHasher, config: DedupConfig) -> bytes | None:
    """What verify compares for one document: its shingle set ("exact") or its signature
    ("estimate"); None without shingles."""
    hashes = shingle_hashes(text, config.ngram)
    if config.verify == "exact":
        return shingle_set(hashes).tobytes() if len(hashes) else None
    signature = hasher.signature_from_hashes(hashes)
    return None if signature is None else signature.tobytes()


class _SignDocuments(beam.DoFn):
    """doc -> (band key, doc_id) per band; the doc's text goes no further."""

    def __init__(self, config: DedupConfig, params: LshParams):
        self.config, self.params = config, params

    def setup(self) -> None:
        self.hasher = MinHasher(self.config.num_perm, self.config.seed, self.config.scheme)
        self.no_shingles = _counter("dedup_no_shingles")

    def process(self, doc: dict[str, Any]) -> Iterator[Any]:
        hashes = shingle_hashes(doc["text"], self.config.ngram)
        signature = self.hasher.signature_from_hashes(hashes)
        if signature is None:
            self.no_shingles.inc()
            return
        for key in band_keys(signature, self.params):
            yield key, doc["doc_id"]


class _SketchCandidates(beam.DoFn):
    """(part, candidate doc_ids) -> (doc_id, sketch bytes): the part's texts of those
    documents only, read back from the extracted part a row group at a time."""

    def __init__(self, config: DedupConfig, parts: ExtractedParts):
        self.config, self.parts = config, parts

    def setup(self) -> None:
        self.hasher = MinHasher(self.config.num_perm, self.config.seed, self.config.scheme)
        self.sketched = _counter("dedup_sketched_documents")

    def process(self, item: tuple[int, Iterable[str]]) -> Iterator[tuple[str, bytes]]:
        index, doc_ids = item
        for doc_id, text in texts_of(self.parts.path(DOCUMENTS, index), doc_ids):
            sketch = verification_sketch(text, self.hasher, self.config)
            if sketch is not None:
                self.sketched.inc()
                yield doc_id, sketch


def _sketch_array(blob: bytes, mode: str) -> np.ndarray:
    return np.frombuffer(blob, dtype=np.uint64 if mode == "exact" else np.uint32)


def _exact_group_edges(item: tuple[str, Iterable[Rank]]) -> Iterator[Edge]:
    _, ranks = item
    ranks = list(ranks)
    if len(ranks) < 2:
        return
    kept = best(ranks)
    for rank in ranks:
        if rank.doc_id != kept.doc_id:
            yield edge(kept.doc_id, rank.doc_id)


def _bucket_pairs(item: tuple[bytes, Iterable[str]]) -> Iterator[Edge]:
    yield from bucket_pairs(item[1])


def _first_end_with_sketch(item: tuple[str, dict[str, list]]) -> Iterator[tuple[str, Any]]:
    doc_id, joined = item
    for sketch in joined["sketch"][:1]:
        for other in joined["pair"]:
            yield other, (doc_id, sketch)


class _VerifyPairs(beam.DoFn):
    def __init__(self, mode: str, threshold: float):
        self.mode, self.threshold = mode, threshold

    def setup(self) -> None:
        self.verified = _counter("dedup_verified_pairs")

    def process(self, item: tuple[str, dict[str, list]]) -> Iterator[Edge]:
        doc_id, joined = item
        for sketch in joined["sketch"][:1]:
            mine = _sketch_array(sketch, self.mode)
            for other_id, other_sketch in joined["half"]:
                if verify_pair(
                    _sketch_array(other_sketch, self.mode), mine, self.mode, self.threshold
                ):
                    self.verified.inc()
                    yield edge(other_id, doc_id)


def _both_directions(e: Edge) -> Iterator[tuple[str, str]]:
    yield e
    yield e[1], e[0]


def _count(name: str) -> Callable[[Any], Any]:
    def count(element: Any) -> Any:
        _counter(name).inc()
        return element

    return count


class _DirectedUnlessSettled(beam.DoFn):
    """Edges in both directions for this round's shuffle, or tagged "settled" when the
    previous round changed nothing (the edges are at their fixpoint)."""

    def process(self, e: Edge, previous_changes: int) -> Iterator[Any]:
        if previous_changes:
            yield from _both_directions(e)
        else:
            yield TaggedOutput("settled", e)


class _StarStep(beam.DoFn):
    """One large-star or small-star step at one node; tags "changed" with the round number."""

    def __init__(self, step: Callable[[str, Iterable[str]], tuple[list[Edge], int]], round_: int):
        self.step, self.round = step, round_

    def process(self, item: tuple[str, Iterable[str]]) -> Iterator[Any]:
        edges, changes = self.step(*item)
        yield from edges
        if changes:
            yield TaggedOutput("changed", self.round)


class _Label(beam.DoFn):
    def setup(self) -> None:
        self.unconverged = _counter("dedup_unconverged")

    def process(self, item: tuple[str, Iterable[str]]) -> Iterator[tuple[str, str]]:
        node, neighbors = item
        label, converged = star_label(node, neighbors)
        if not converged:
            self.unconverged.inc()
        yield node, label


def _record_rounds(last_round: int) -> None:
    _counter("dedup_rounds").inc(last_round)


def _ranks_by_label(item: tuple[str, dict[str, list]]) -> Iterator[tuple[str, Rank]]:
    _, joined = item
    for label in joined["label"][:1]:
        for rank in joined["rank"]:
            yield label, rank


def _cluster_removals(item: tuple[str, Iterable[Rank]]) -> Iterator[tuple[str, tuple]]:
    _, ranks = item
    ranks = list(ranks)
    kept = best(ranks)
    _counter("dedup_clusters").inc()
    for rank in ranks:
        if rank.doc_id != kept.doc_id:
            yield rank.doc_id, (kept.doc_id, removal_reason(rank, kept), len(ranks))


def _key_by_kept_doc(item: tuple[str, dict[str, list]]) -> Iterator[Any]:
    """(removed id, {removal, sketch}) -> (kept id, (removed id, reason, size, sketch)).

    Exact duplicates of the kept document need no check and go straight to "exact".
    """
    removed_id, joined = item
    sketch = joined["sketch"][0] if joined["sketch"] else None
    for kept_id, reason, size in joined["removal"][:1]:
        if reason == EXACT_DUPLICATE:
            yield TaggedOutput("exact", (removed_id, (kept_id, reason, size)))
        else:
            yield kept_id, (removed_id, reason, size, sketch)


class _VerifyAgainstKept(beam.DoFn):
    """(kept id, {member, sketch}) -> (removed id, removal) for members at or above t."""

    def __init__(self, mode: str, threshold: float):
        self.mode, self.threshold = mode, threshold

    def setup(self) -> None:
        self.below = _counter("dedup_kept_below_threshold")

    def process(self, item: tuple[str, dict[str, list]]) -> Iterator[tuple[str, tuple]]:
        kept_id, joined = item
        kept = _sketch_array(joined["sketch"][0], self.mode) if joined["sketch"] else None
        for removed_id, reason, size, sketch in joined["member"]:
            mine = None if sketch is None else _sketch_array(sketch, self.mode)
            if passes_kept_check(mine, kept, self.mode, self.threshold):
                yield removed_id, (kept_id, reason, size)
            else:
                self.below.inc()


def removal_row(removed_id: str, removal: tuple[str, str, int], parts: ExtractedParts) -> dict:
    """A schemas.REMOVAL row: ids only; the write phase finds the document in its part."""
    kept_doc_id, reason, size = removal
    _counter(reason).inc()
    return {
        "doc_id": removed_id,
        "kept_doc_id": kept_doc_id,
        "reason": reason,
        "cluster_size": size,
        "part": parts.part_of(removed_id),
    }


# ---------------------------------------------------------------- composite transforms


def _star_step(directed: beam.PCollection, name: str, step: Callable, k: int) -> Any:
    """Group directed edges by node and apply one star step: outputs edges and changed."""
    return (
        directed
        | f"{name}{k}Group" >> beam.GroupByKey()
        | f"{name}{k}" >> beam.ParDo(_StarStep(step, k)).with_outputs("changed", main="edges")
    )


class ConnectedComponents(beam.PTransform):
    """Edges (a, b) -> (node, label), label = the component's smallest node once converged.

    Alternates large-star and small-star for at most `max_rounds` rounds; after a round
    that changed no edge, the edges skip the later rounds' shuffles. Counters: dedup_rounds
    (the last round that changed an edge) and dedup_unconverged (nodes not in star shape
    at the end; zero when converged).
    """

    def __init__(self, max_rounds: int):
        super().__init__()
        self.max_rounds = max_rounds

    def expand(self, edges: beam.PCollection) -> beam.PCollection:
        changed, settled, previous_changes = [], [], None
        for k in range(1, self.max_rounds + 1):
            if previous_changes is None:
                directed = edges | f"LargeStar{k}Directed" >> beam.FlatMap(_both_directions)
            else:
                routed = edges | f"LargeStar{k}Directed" >> beam.ParDo(
                    _DirectedUnlessSettled(), beam.pvalue.AsSingleton(previous_changes)
                ).with_outputs("settled", main="directed")
                directed = routed.directed
                settled.append(routed.settled)
            large = _star_step(directed, "LargeStar", large_star, k)
            directed = large.edges | f"SmallStar{k}Directed" >> beam.FlatMap(_both_directions)
            small = _star_step(directed, "SmallStar", small_star, k)
            edges = small.edges
            changed += [large.changed, small.changed]
            if k < self.max_rounds:
                previous_changes = (
                    (large.changed, small.changed)
                    | f"Round{k}Changes" >> beam.Flatten()
                    | f"Round{k}CountChanges" >> beam.combiners.Count.Globally()
                )
        (
            changed
            | "AllChanges" >> beam.Flatten()
            | "LastRoundWithChanges" >> beam.CombineGlobally(lambda rounds: max(rounds, default=0))
            | "CountRounds" >> beam.Map(_record_rounds)
        )
        return (
            [*settled, edges]
            | "FinalEdges" >> beam.Flatten()
            | "FinalDirected" >> beam.FlatMap(_both_directions)
            | "FinalGroup" >> beam.GroupByKey()
            | "CheckConvergedAndLabel" >> beam.ParDo(_Label())
        )


class Deduplicate(beam.PTransform):
    """The extracted parts (pipeline.build.parts) -> schemas.REMOVAL rows, one per document
    to remove. Reads the parts itself: text is shingled where it is read and never shuffled,
    and read again only for the documents of candidate pairs (their sketches)."""

    def __init__(self, config: DedupConfig, parts: ExtractedParts):
        super().__init__()
        if config.verify not in VERIFY_MODES:
            raise dataroot.StageError(
                f"[dedup] verify = {config.verify!r}: use one of {', '.join(VERIFY_MODES)}"
            )
        if config.max_rounds < 1:
            raise dataroot.StageError("[dedup] max_rounds must be at least 1")
        self.config, self.parts = config, parts
        self.params = optimal_params(config.threshold, config.num_perm)

    def expand(self, pipeline: beam.pvalue.PBegin) -> beam.PCollection:
        config = self.config
        if not (config.exact or config.near):
            return pipeline | "NoRemovals" >> beam.Create([])
        columns = list(DEDUP_COLUMNS if config.near else DEDUP_COLUMNS[:-1])
        docs = pipeline | "ReadParts" >> beam.io.ReadFromParquet(
            self.parts.pattern(), columns=columns
        )
        ranks = docs | "Ranks" >> beam.Map(lambda d: (d["doc_id"], Rank.of(d)))
        edge_sets = []
        if config.exact:
            edge_sets.append(
                ranks
                | "KeyByTextHash" >> beam.Map(lambda kv: (kv[1].text_hash, kv[1]))
                | "ExactGroups" >> beam.GroupByKey()
                | "ExactEdges" >> beam.FlatMap(_exact_group_edges)
            )
        sketches = None
        if config.near:
            near = docs | "NearDuplicates" >> _NearDuplicateEdges(config, self.params, self.parts)
            edge_sets.append(near["edges"])
            sketches = near["sketch"]
        labels = (
            edge_sets
            | "AllEdges" >> beam.Flatten()
            | "Components" >> ConnectedComponents(config.max_rounds)
        )
        removals = (
            {"rank": ranks, "label": labels}
            | "JoinRanksWithLabels" >> beam.CoGroupByKey()
            | "KeyByCluster" >> beam.FlatMap(_ranks_by_label)
            | "Clusters" >> beam.GroupByKey()
            | "KeepRule" >> beam.FlatMap(_cluster_removals)
        )
        if sketches is not None and config.verify != "none":
            removals = removals | "VerifyAgainstKept" >> _VerifyRemovals(
                sketches, config.verify, config.threshold
            )
        parts = self.parts
        return removals | "RemovalRows" >> beam.MapTuple(
            lambda removed_id, removal: removal_row(removed_id, removal, parts)
        )


class _VerifyRemovals(beam.PTransform):
    """Removals (removed id, (kept id, reason, size)) -> those that pass the kept check.

    Two joins, keyed by the removed doc_id then by the kept doc_id, bring each removed
    near-duplicate's sketch to its kept document's sketch; nothing meets on one worker
    beyond one cluster's members.
    """

    def __init__(self, sketches: beam.PCollection, mode: str, threshold: float):
        super().__init__()
        self.sketches, self.mode, self.threshold = sketches, mode, threshold

    def expand(self, removals: beam.PCollection) -> beam.PCollection:
        members = (
            {"removal": removals, "sketch": self.sketches}
            | "JoinRemovedSketch" >> beam.CoGroupByKey()
            | "KeyByKeptDoc" >> beam.FlatMap(_key_by_kept_doc).with_outputs("exact", main="near")
        )
        verified = (
            {"member": members.near, "sketch": self.sketches}
            | "JoinKeptSketch" >> beam.CoGroupByKey()
            | "CheckAgainstKept" >> beam.ParDo(_VerifyAgainstKept(self.mode, self.threshold))
        )
        return (members.exact, verified) | "PassedRemovals" >> beam.Flatten()


class _NearDuplicateEdges(beam.PTransform):
    """Documents -> {"edges": verified near-duplicate edges (a, b), a < b,
    "sketch": (doc_id, sketch bytes) of the candidates' documents; empty when verify = "none"}."""

    def __init__(self, config: DedupConfig, params: LshParams, parts: ExtractedParts):
        super().__init__()
        self.config, self.params, self.parts = config, params, parts

    def expand(self, docs: beam.PCollection) -> beam.PCollection:
        candidates = (
            docs
            | "Signatures" >> beam.ParDo(_SignDocuments(self.config, self.params))
            | "LshBuckets" >> beam.GroupByKey()
            | "BucketPairs" >> beam.FlatMap(_bucket_pairs)
            | "CandidatePairs" >> beam.Distinct()
            | "CountCandidates" >> beam.Map(_count("dedup_candidate_pairs"))
        )
        mode = self.config.verify
        if mode == "none":
            edges = candidates | "CountVerified" >> beam.Map(_count("dedup_verified_pairs"))
            return {"edges": edges, "sketch": docs.pipeline | "NoSketches" >> beam.Create([])}
        parts = self.parts
        sketches = (
            candidates
            | "CandidateDocs" >> beam.FlatMap(lambda pair: pair)
            | "EachCandidateOnce" >> beam.Distinct()
            | "KeyByPart" >> beam.Map(lambda doc_id: (parts.part_of(doc_id), doc_id))
            | "CandidatesByPart" >> beam.GroupByKey()
            | "Sketches" >> beam.ParDo(_SketchCandidates(self.config, parts))
        )
        half = (
            {"sketch": sketches, "pair": candidates}
            | "JoinFirstEnd" >> beam.CoGroupByKey()
            | "CarryFirstSketch" >> beam.FlatMap(_first_end_with_sketch)
        )
        edges = (
            {"sketch": sketches, "half": half}
            | "JoinSecondEnd" >> beam.CoGroupByKey()
            | "Verify" >> beam.ParDo(_VerifyPairs(mode, self.config.threshold))
        )
        return {"edges": edges, "sketch": sketches}


def convergence_problem(counters: dict[str, int]) -> str | None:
    """A one-line warning when connected components did not converge, else None."""
    unconverged = counters.get("dedup_unconverged", 0)
    if not unconverged:
        return None
    return (
        f"dedup: connected components did not converge in [dedup] max_rounds "
        f"({unconverged} nodes not settled); some near-duplicates were kept: raise max_rounds"
    )
