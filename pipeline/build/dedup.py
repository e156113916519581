"""Exact and MinHash near-duplicate removal as Beam shuffles, on any runner, at any scale.

    PartNumbers ─ SignParts: each part's keys, packed (pipeline.build.lsh; a process pool)
      ─ KeyShards: GroupByKey(shard) ─ Collisions ─┬─ near: CandidatePairs (Distinct)
                                                   └─ exact: star edges of equal text hashes
      candidate pairs + exact edges ─ Components (large-star / small-star, ids only)
      ─ NodesByPart ─ ReadMembers: each graph document's rank and sketch, read back
      pairs ─ JoinPairsWithLabels ─┐
      members ─────────────────────┴─ GatherComponents: CoGroupByKey(component)
      ─ ResolveComponents: verify the candidate pairs, cluster, keep one per cluster, check
        each removed near-duplicate against the kept one; schemas.REMOVAL rows

Text is shingled where it is read and never shuffled. The one shuffle that grows with the
corpus carries packed 16-byte (key, document number) records, a few large blobs per part;
every later shuffle carries only the graph's documents (candidates and exact copies): their
numbers and, once, their ranks and sketches.

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

Nothing is collected on one worker: every step is keyed by a shard, a part, a document or a
component of the candidate graph. The largest group is one such component's members, with
their sketches: a page copied to N sites makes one group of N sketches.

Connected components alternate large-star and small-star (Kiveris et al., "Connected
Components in MapReduce and Beyond", 2014), unrolled over `max_rounds` rounds. A round in
which no node changes an edge leaves every component a star around its smallest id; the
edges then bypass the later rounds' shuffles (a side input of that round's change count),
so unused rounds cost next to nothing. A final check counts the nodes not in star shape
(`dedup_unconverged`): they keep a label inside their component, so an unconverged run
removes fewer duplicates, never a non-duplicate.
"""

from __future__ import annotations

import multiprocessing
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import apache_beam as beam
import numpy as np
from apache_beam.pvalue import TaggedOutput
from apache_beam.transforms.window import GlobalWindows
from apache_beam.utils.windowed_value import WindowedValue

from pipeline import beamio, dataroot
from pipeline.build import lsh
from pipeline.build.graph import (
    Edge,
    Node,
    bucket_pairs,
    large_star,
    small_star,
    star_label,
    union_find_components,
)
from pipeline.build.minhash import (
    MinHasher,
    estimated_jaccard,
    exact_jaccard,
    shingle_hashes,
    shingle_set,
)
from pipeline.build.parts import DOCUMENTS, ExtractedParts, rows_at
from pipeline.config import DedupConfig

VERIFY_MODES = ("none", "estimate", "exact")
EXACT_DUPLICATE = "exact_duplicate"
# What the keep rule reads of each graph document; "text" only where sketches are needed.
NODE_COLUMNS = ("doc_id", "karma", "first_created_utc", "text_hash", "text")
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


def similar(
    sketch_a: np.ndarray | None, sketch_b: np.ndarray | None, mode: str, threshold: float
) -> bool:
    """Whether two documents' sketches are at or above the threshold: exact Jaccard of
    shingle sets ("exact") or signature agreement ("estimate"). A document without a
    sketch (no shingles) cannot be shown similar."""
    if sketch_a is None or sketch_b is None:
        return False
    if mode == "exact":
        return exact_jaccard(sketch_a, sketch_b) >= threshold
    return estimated_jaccard(sketch_a, sketch_b) >= threshold


def verification_sketch(text: str, hasher: MinHasher, config: DedupConfig) -> bytes | None:
    """What verify compares for one document: its shingle set ("exact") or its signature
    ("estimate"); None without shingles."""
    hashes = shingle_hashes(text, config.ngram)
    if config.verify == "exact":
        return shingle_set(hashes).tobytes() if len(hashes) else None
    signature = hasher.signature_from_hashes(hashes)
    return None if signature is None else signature.tobytes()


def removal_row(
    removed: Rank, kept: Rank, reason: str, cluster_size: int, part: int
) -> dict[str, Any]:
    """A schemas.REMOVAL row: ids only; the write phase finds the document in its part."""
    return {
        "doc_id": removed.doc_id,
        "kept_doc_id": kept.doc_id,
        "reason": reason,
        "cluster_size": cluster_size,
        "part": part,
    }


@dataclass(frozen=True)
class Member:
    """A document of the candidate graph: its number (pipeline.build.lsh), rank and sketch."""

    number: int
    rank: Rank
    sketch: bytes | None


@dataclass
class Resolution:
    """What one component of the candidate graph comes to."""

    removals: list[dict[str, Any]] = field(default_factory=list)
    verified_pairs: int = 0
    clusters: int = 0
    below_threshold: int = 0


def resolve_component(
    members: Iterable[Member],
    exact_edges: Iterable[Edge],
    candidate_pairs: Iterable[Edge],
    config: DedupConfig,
) -> Resolution:
    """One connected component of the candidate graph -> the documents it removes.

    Candidate pairs at or above the threshold (all of them with verify = "none") and exact
    edges link members into clusters; each cluster keeps one member by the keep rule and
    removes the others, less the near-duplicates below the threshold against the kept one.
    Works in memory: one component's members and their sketches.
    """
    mode, threshold = config.verify, config.threshold
    by_number = {m.number: m for m in members}
    arrays = {n: _sketch_array(m.sketch) for n, m in by_number.items()}
    out = Resolution()
    edges = list(exact_edges)
    for a, b in candidate_pairs:
        if mode == "none" or similar(arrays[a], arrays[b], mode, threshold):
            out.verified_pairs += 1
            edges.append((a, b))
    clusters: dict[Node, list[Member]] = {}
    for node, label in union_find_components(edges).items():
        clusters.setdefault(label, []).append(by_number[node])
    check = config.near and mode != "none"
    for cluster in clusters.values():
        out.clusters += 1
        kept_rank = best(m.rank for m in cluster)
        kept = next(m for m in cluster if m.rank is kept_rank)
        for member in cluster:
            if member is kept:
                continue
            reason = removal_reason(member.rank, kept_rank)
            if reason == NEAR_DUPLICATE and check:
                if not similar(arrays[member.number], arrays[kept.number], mode, threshold):
                    out.below_threshold += 1
                    continue
            part = lsh.part_and_row(member.number)[0]
            out.removals.append(removal_row(member.rank, kept_rank, reason, len(cluster), part))
    return out


def _counter(name: str) -> Any:
    return beamio.counter("build", name)


def _sketch_array(blob: bytes | None) -> np.ndarray | None:
    """A sketch back from bytes: a shingle set or a signature, uint32 either way."""
    return None if blob is None else np.frombuffer(blob, dtype=np.uint32)


# ---------------------------------------------------------------- DoFns: wiring only


class _SignParts(beam.DoFn):
    """part number -> (shard, packed records): the part's band keys and text-hash keys.

    Signing (shingling and MinHash) is the phase's CPU cost, so parts are signed in a pool
    of `dedup.workers` child processes (0: one per CPU), a few parts in flight per child;
    with one worker, in this process.
    """

    def __init__(self, config: DedupConfig, parts: ExtractedParts):
        self.config, self.parts = config, parts

    def setup(self) -> None:
        self.workers = self.config.workers or beamio.usable_cpus()
        self.pool = None
        if self.workers > 1:
            spawn = multiprocessing.get_context("spawn")  # no fork of a process with gRPC threads
            self.pool = ProcessPoolExecutor(self.workers, mp_context=spawn)
        self.no_shingles = _counter("dedup_no_shingles")

    def start_bundle(self) -> None:
        self.pending: deque[Future] = deque()

    def process(self, part: int) -> Iterator[tuple[int, bytes]]:
        path = self.parts.path(DOCUMENTS, part)
        if self.pool is None:
            yield from self._emit(lsh.sign_part(path, part, self.config))
            return
        self.pending.append(self.pool.submit(lsh.sign_part, path, part, self.config))
        while len(self.pending) > 2 * self.workers:
            yield from self._emit(self.pending.popleft().result())

    def finish_bundle(self) -> Iterator[WindowedValue]:
        while self.pending:
            for shard_blob in self._emit(self.pending.popleft().result()):
                yield GlobalWindows.windowed_value(shard_blob)

    def teardown(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(cancel_futures=True)

    def _emit(self, signed: lsh.SignedPart) -> list[tuple[int, bytes]]:
        self.no_shingles.inc(signed.no_shingles)
        return signed.blobs


def _collisions(item: tuple[int, Iterable[bytes]]) -> Iterator[Any]:
    """One shard's records -> candidate pairs ("near" shards) or exact edges ("exact")."""
    shard, blobs = item
    for group in lsh.colliding_groups(blobs):
        if shard < lsh.SHARDS:
            yield from bucket_pairs(group)
        else:  # equal texts: a star is enough to connect them
            for other in group[1:]:
                yield TaggedOutput(lsh.EXACT, (group[0], other))


class _ReadMembers(beam.DoFn):
    """(part, [(number, label)]) -> (label, Member): the graph's documents of one part, read
    back from it; sketches only when candidates are verified."""

    def __init__(self, config: DedupConfig, parts: ExtractedParts):
        self.config, self.parts = config, parts
        self.sketches = config.near and config.verify != "none"

    def setup(self) -> None:
        self.hasher = MinHasher(self.config.num_perm, self.config.seed, self.config.scheme)
        self.sketched = _counter("dedup_sketched_documents")

    def process(self, item: tuple[int, Iterable[tuple[int, int]]]) -> Iterator[tuple[int, Member]]:
        part, labelled = item
        label_of = dict(labelled)
        columns = list(NODE_COLUMNS if self.sketches else NODE_COLUMNS[:-1])
        rows = (lsh.part_and_row(number)[1] for number in label_of)
        for row, doc in rows_at(self.parts.path(DOCUMENTS, part), rows, columns):
            sketch = None
            if self.sketches:
                sketch = verification_sketch(doc["text"], self.hasher, self.config)
                self.sketched.inc()
            number = lsh.doc_number(part, row)
            yield label_of[number], Member(number, Rank.of(doc), sketch)


def _pairs_by_label(item: tuple[int, dict[str, list]]) -> Iterator[tuple[int, tuple]]:
    _, joined = item
    for label in joined["label"][:1]:
        for pair in joined["pair"]:
            yield label, pair


class _ResolveComponents(beam.DoFn):
    """(label, {member, pair}) -> schemas.REMOVAL rows (resolve_component)."""

    def __init__(self, config: DedupConfig):
        self.config = config

    def setup(self) -> None:
        names = ("dedup_verified_pairs", "dedup_clusters", "dedup_kept_below_threshold")
        self.counters = {name: _counter(name) for name in names}
        self.reasons = {r: _counter(r) for r in (EXACT_DUPLICATE, NEAR_DUPLICATE)}

    def process(self, item: tuple[int, dict[str, list]]) -> Iterator[dict[str, Any]]:
        _, joined = item
        pairs = {lsh.EXACT: [], lsh.NEAR: []}
        for kind, pair in joined["pair"]:
            pairs[kind].append(pair)
        out = resolve_component(joined["member"], pairs[lsh.EXACT], pairs[lsh.NEAR], self.config)
        self.counters["dedup_verified_pairs"].inc(out.verified_pairs)
        self.counters["dedup_clusters"].inc(out.clusters)
        self.counters["dedup_kept_below_threshold"].inc(out.below_threshold)
        for row in out.removals:
            self.reasons[row["reason"]].inc()
            yield row


def _both_directions(e: Edge) -> Iterator[Edge]:
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

    def __init__(self, step: Callable[[Node, Iterable[Node]], tuple[list[Edge], int]], round_: int):
        self.step, self.round = step, round_

    def process(self, item: tuple[Node, Iterable[Node]]) -> Iterator[Any]:
        edges, changes = self.step(*item)
        yield from edges
        if changes:
            yield TaggedOutput("changed", self.round)


class _Label(beam.DoFn):
    def setup(self) -> None:
        self.unconverged = _counter("dedup_unconverged")

    def process(self, item: tuple[Node, Iterable[Node]]) -> Iterator[Edge]:
        node, neighbors = item
        label, converged = star_label(node, neighbors)
        if not converged:
            self.unconverged.inc()
        yield node, label


def _record_rounds(last_round: int) -> None:
    _counter("dedup_rounds").inc(last_round)


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
    and read again only for the graph's documents (their ranks and sketches)."""

    def __init__(self, config: DedupConfig, parts: ExtractedParts):
        super().__init__()
        if config.verify not in VERIFY_MODES:
            raise dataroot.StageError(
                f"[dedup] verify = {config.verify!r}: use one of {', '.join(VERIFY_MODES)}"
            )
        if config.max_rounds < 1:
            raise dataroot.StageError("[dedup] max_rounds must be at least 1")
        self.config, self.parts = config, parts

    def expand(self, pipeline: beam.pvalue.PBegin) -> beam.PCollection:
        config, parts = self.config, self.parts
        if not (config.exact or config.near):
            return pipeline | "NoRemovals" >> beam.Create([])
        collisions = (
            pipeline
            | "PartNumbers" >> beam.Create(range(parts.count))
            | "SignParts" >> beam.ParDo(_SignParts(config, parts))
            | "KeyShards" >> beam.GroupByKey()
            | "Collisions" >> beam.FlatMap(_collisions).with_outputs(lsh.EXACT, main=lsh.NEAR)
        )
        exact_edges = collisions[lsh.EXACT]
        candidates = (
            collisions[lsh.NEAR]
            | "CandidatePairs" >> beam.Distinct()
            | "CountCandidates" >> beam.Map(_count("dedup_candidate_pairs"))
        )
        labels = (
            (exact_edges, candidates)
            | "CandidateGraph" >> beam.Flatten()
            | "Components" >> ConnectedComponents(config.max_rounds)
        )
        members = (
            labels
            | "KeyByPart" >> beam.Map(lambda nl: (lsh.part_and_row(nl[0])[0], nl))
            | "NodesByPart" >> beam.GroupByKey()
            | "ReadMembers" >> beam.ParDo(_ReadMembers(config, parts))
        )
        pairs = (
            exact_edges | "TagExact" >> beam.Map(lambda e: (e[0], (lsh.EXACT, e))),
            candidates | "TagNear" >> beam.Map(lambda e: (e[0], (lsh.NEAR, e))),
        ) | "AllPairs" >> beam.Flatten()
        pairs_by_label = (
            {"label": labels, "pair": pairs}
            | "JoinPairsWithLabels" >> beam.CoGroupByKey()
            | "KeyPairsByLabel" >> beam.FlatMap(_pairs_by_label)
        )
        return (
            {"member": members, "pair": pairs_by_label}
            | "GatherComponents" >> beam.CoGroupByKey()
            | "ResolveComponents" >> beam.ParDo(_ResolveComponents(config))
        )


def convergence_problem(counters: dict[str, int]) -> str | None:
    """A one-line warning when connected components did not converge, else None."""
    unconverged = counters.get("dedup_unconverged", 0)
    if not unconverged:
        return None
    return (
        f"dedup: connected components did not converge in [dedup] max_rounds "
        f"({unconverged} nodes not settled); some near-duplicates were kept: raise max_rounds"
    )
