"""Fresher scores from `webtext rescore` (schemas.SCORES), applied to dump submissions.

`links.scores` names the Parquet files. Each worker loads them into a ScoreBook: sorted numpy
arrays keyed by the base-36 id as an integer (about 25 bytes an id), looked up by binary
search. A score replaces the dump's when it was fetched after the dump read the submission
(or the dump does not say when it did); a removed or deleted state flags the submission
`removed`. A submission the API did not return ("missing") keeps the dump's score.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems

import schemas
from pipeline.links.submissions import REMOVED_MARKERS, Submission

STATES = ("live", "removed", "deleted", "missing")
DELETED_CATEGORIES = frozenset({"deleted", "author"})


def api_state(fields: dict[str, Any]) -> str:
    """ "live", "removed" or "deleted" for a submission's API fields."""
    category = fields.get("removed_by_category")
    selftext = fields.get("selftext")
    if category in DELETED_CATEGORIES or selftext == "[deleted]":
        return "deleted"
    if category or selftext in REMOVED_MARKERS:
        return "removed"
    if "author" in fields and fields["author"] in (None, "[deleted]"):
        return "deleted"  # PRAW gives a deleted author as None, the JSON as "[deleted]"
    return "live"


def id_key(sub_id: str) -> int | None:
    """A Reddit id as an integer (ids are base 36); None for an id that is not one."""
    if not (sub_id.isascii() and sub_id.isalnum()) or len(sub_id) > 12:
        return None  # int() would also take "_", signs and spaces
    key = int(sub_id, 36)
    return key if key < 2**63 else None


class ScoreBook:
    """The freshest fetched score of each id in a set of scores Parquet files."""

    def __init__(self, table: pa.Table):
        """From a schemas.SCORES table; an id fetched several times keeps its latest row."""
        keys = np.array([id_key(i) if i else -1 for i in table["id"].to_pylist()], dtype=object)
        valid = np.array([k is not None and k >= 0 for k in keys], dtype=bool)
        score = table["score"]
        valid &= ~np.asarray(score.is_null())
        valid &= np.asarray(pc.not_equal(table["state"], "missing").fill_null(False))
        keys = keys[valid].astype(np.int64)
        scores = np.asarray(score.fill_null(0))[valid].astype(np.int64)
        fetched = np.asarray(table["fetched_utc"])[valid].astype(np.int64)
        gone = np.asarray(pc.not_equal(table["state"], "live"))[valid]
        order = np.lexsort((fetched, keys))  # by id, then fetch time: an id's latest is last
        keys = keys[order]
        last = np.ones(len(keys), dtype=bool)
        last[:-1] = keys[1:] != keys[:-1]
        pick = order[last]
        self.keys = keys[last]
        self.scores, self.fetched, self.gone = scores[pick], fetched[pick], gone[pick]

    @classmethod
    def load(cls, paths: list[str]) -> ScoreBook:
        tables = []
        for path in paths:
            with FileSystems.open(path) as f:
                tables.append(pq.read_table(f, columns=list(schemas.SCORES.names)))
        empty = schemas.SCORES.empty_table()
        return cls(pa.concat_tables([t.cast(schemas.SCORES) for t in tables]) if tables else empty)

    def __len__(self) -> int:
        return len(self.keys)

    def refresh(self, sub: Submission) -> bool:
        """Give `sub` the fresher score when there is one; True when it did."""
        if sub.id is None or not len(self.keys):
            return False
        key = id_key(sub.id)
        if key is None:
            return False
        i = int(np.searchsorted(self.keys, key))
        if i == len(self.keys) or self.keys[i] != key:
            return False
        fetched = int(self.fetched[i])
        if sub.retrieved_utc is not None and fetched <= sub.retrieved_utc:
            return False
        sub.score = int(self.scores[i])
        sub.retrieved_utc = fetched
        sub.removed = sub.removed or bool(self.gone[i])
        return True
