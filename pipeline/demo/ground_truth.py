"""What the generator planted (`GroundTruth`), saved beside the micro-web for tests to
compare the stages' counters and outputs with. docs/demo.md lists the rules it assumes."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

GROUND_TRUTH_FILE = "ground_truth.json"


@dataclass
class PlantedLink:
    """One qualifying link: what the fetch and build stages should make of it."""

    url: str  # as planted: http, lowercase host, no www., no fragment or tracking
    outcome: str  # fetch: ok, not_found, gone, server_error, non_html, timeout, robots,
    # redirect_wikipedia, redirect_blocked, redirect_loop, too_many_redirects
    fate: str  # build: kept, duplicate, too_short, non_english, not_fetched, wikipedia
    final_url: str | None  # after redirects, when the chain ends in a page
    redirects: int = 0
    cluster: str | None = None  # "near-3" / "exact-1"
    jaccard: float | None = None  # word 5-gram Jaccard to the cluster's kept page


@dataclass
class GroundTruth:
    """What the generator planted. Counts assume the demo config's rules (docs/demo.md)."""

    seed: int
    scale: str
    python: str  # the text comes from this Python's documentation
    dump_files: list[str]  # relative to the output folder
    dump_lines: int  # every line, malformed ones included
    submissions_total: int  # well-formed submissions
    malformed_lines: int
    malformed_by_reason: dict[str, int]  # not_json, not_object, wrong_type, missing_field
    submissions_by_reason: dict[str, int]  # qualifying, below_karma, nsfw, self, ...
    removed_marked: int  # submissions with a [removed]/[deleted] marker (none is dropped)
    crossposts: int
    links_qualifying: int  # distinct normalized URLs with a qualifying submission
    links_qualifying_per_url: int  # the same under karma_rule = "per_url" (summed)
    fetch_outcomes: dict[str, int]  # over the qualifying links
    pages_ok: int  # HTML 200 after redirects, not Wikipedia, not robots-disallowed, in time
    wikipedia_after_redirect: int
    short_pages: int
    non_english_pages: int
    exact_clusters: list[list[str]]  # planted URLs, the page dedup keeps first
    near_clusters: list[list[str]]
    removed_as_duplicates: int
    documents_written: int
    pages_total: int  # routes that answer 200 with a body
    hosts_total: int
    links: list[PlantedLink] = field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=1, sort_keys=True, ensure_ascii=False)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> GroundTruth:
        raw = dict(raw)
        raw["links"] = [PlantedLink(**link) for link in raw.get("links", [])]
        return cls(**raw)


def load_ground_truth(out_dir: str | Path) -> GroundTruth:
    path = Path(out_dir) / GROUND_TRUTH_FILE
    return GroundTruth.from_dict(json.loads(path.read_text(encoding="utf-8")))
