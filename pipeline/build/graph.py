"""The duplicate graph's plain logic: candidate pairs of an LSH bucket, and the large-star and
small-star steps of connected components (Kiveris et al., "Connected Components in MapReduce
and Beyond", 2014) that `dedup.ConnectedComponents` runs as Beam shuffles; union-find as the
in-memory reference the tests and benchmarks check them against.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable

# Buckets up to this size emit every pair, so a verified pair is never lost because the
# bucket's smallest id is a false positive; bigger buckets (mass-copied pages) emit a star
# to the smallest id, which keeps candidate pairs linear in the bucket size.
ALL_PAIRS_MAX_BUCKET = 16

# A node is a document's number in dedup (pipeline.build.lsh); any ordered id works.
Node = int | str
Edge = tuple[Node, Node]  # (smaller id, larger id)


def bucket_pairs(members: Iterable[Node]) -> list[Edge]:
    """Candidate pairs of one LSH bucket: every pair when small, else a star to the min."""
    ids = sorted(set(members))
    if len(ids) <= ALL_PAIRS_MAX_BUCKET:
        return list(itertools.combinations(ids, 2))
    return [(ids[0], other) for other in ids[1:]]


def large_star(node: Node, neighbors: Iterable[Node]) -> tuple[list[Edge], int]:
    """Link every larger neighbor to the smallest of the node and its neighbors.

    Returns the new edges and how many of them differ from the edges they replace.
    """
    nbrs = set(neighbors)
    nbrs.discard(node)
    smallest = min(nbrs | {node})
    larger = [v for v in nbrs if v > node]
    return [(smallest, v) for v in larger], (len(larger) if smallest < node else 0)


def small_star(node: Node, neighbors: Iterable[Node]) -> tuple[list[Edge], int]:
    """Link the node and its smaller neighbors to the smallest of them."""
    smaller = {v for v in neighbors if v < node}
    if not smaller:
        return [], 0
    smallest = min(smaller)
    return [(smallest, v) for v in smaller | {node} if v != smallest], len(smaller) - 1


def star_label(node: Node, neighbors: Iterable[Node]) -> tuple[Node, bool]:
    """The node's component label and whether its edges have the converged (star) shape."""
    nbrs = set(neighbors)
    smaller = [v for v in nbrs if v < node]
    if not smaller:
        return node, True
    return min(smaller), len(smaller) == 1 and len(nbrs) == 1


def union_find_components(edges: Iterable[Edge]) -> dict[Node, Node]:
    """Plain in-memory union-find: node -> smallest node of its component (for checks)."""
    parent: dict[Node, Node] = {}

    def find(x: Node) -> Node:
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for a, b in edges:
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    return {node: find(node) for node in list(parent)}
