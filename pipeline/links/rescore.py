"""`webtext rescore`: today's scores of dump submissions, through the Reddit API (PRAW).

    dumps (links.dumps) --candidate_ids--> rescore.sqlite: ids -----ask, 100 a call-----+
                                                          scores <- score, time, state -+
                                           scores.parquet (schemas.SCORES) <- write_scores

Candidates are the dump submissions that pass every `[links]` filter but karma ("all"), or
only those whose decision could flip ("flippable": below `min_karma`, read within
`snapshot_max_lag_hours` of posting). Progress lives in SQLite beside the output: the ids
to ask and, per id, the answer. Each call's answers are committed before the next call, so
a killed run loses at most the call in flight, and a rerun asks only what has no answer.

Calls are `reddit.info(fullnames=...)`, 100 ids each, spaced to `calls_per_minute`; PRAW
also sleeps by Reddit's x-ratelimit-* headers and retries a 5xx twice. A 429 is waited out
(Retry-After, bounded) and the same ids asked again; a 5xx that outlasts PRAW's retries is
retried with backoff. Credentials come from praw.ini or the environment, as for the links
stage's API source (reddit_api.make_reddit); nothing here reads, logs or stores them.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import prawcore
import pyarrow as pa
import pyarrow.parquet as pq

import schemas
from pipeline import dataroot
from pipeline.config import Config
from pipeline.links import reddit_api
from pipeline.links.linkset import SubmissionRules, Tally, screen_dump
from pipeline.links.scores import api_state

log = logging.getLogger("webtext")

BATCH = 100  # ids per call: the most /api/info takes
DEFAULT_CALLS_PER_MINUTE = 100  # Reddit's quota per OAuth client
SELECTIONS = ("all", "flippable")
PROGRESS_FILE = "rescore.sqlite"
SCORES_FILE = "scores.parquet"
INSERT_CHUNK = 10_000  # candidate ids committed at a time
WRITE_CHUNK = 100_000  # rows per Parquet row group

Sleep = Callable[[float], None]


class RescoreError(RuntimeError):
    """A rescore that cannot go on; progress so far is kept. Never names credentials."""


@dataclass(frozen=True)
class RetryPolicy:
    max_429: int = 10  # 429s in a row on one call before giving up
    max_wait_s: float = 300.0  # the longest Retry-After honoured
    max_5xx: int = 5  # failed calls in a row (after PRAW's own retries) before giving up
    backoff_base_s: float = 2.0


@dataclass(frozen=True)
class Estimate:
    ids: int
    answered: int
    calls_per_minute: float

    @property
    def calls(self) -> int:
        return -(-(self.ids - self.answered) // BATCH)

    @property
    def hours(self) -> float:
        return self.calls / self.calls_per_minute / 60

    def line(self, selection: str) -> str:
        return (
            f"rescore: {self.ids:,} {selection} ids, {self.answered:,} already answered; "
            f"{self.calls:,} calls of {BATCH} to go, about {self.hours:,.1f} hours at "
            f"{self.calls_per_minute:g} calls a minute"
        )


class Progress:
    """The ids to ask and the answers so far, in one SQLite file (local disk)."""

    def __init__(self, path: str):
        self.db = sqlite3.connect(path)
        # WAL without a sync per commit: a committed call survives a killed process (not a
        # power cut, which at worst asks its ids again); a sync per call would cost more
        # than the call's own work (docs/benchmarks.md).
        self.db.executescript(
            """
            PRAGMA journal_mode = WAL;
            PRAGMA synchronous = NORMAL;
            CREATE TABLE IF NOT EXISTS ids (id TEXT PRIMARY KEY, answered INTEGER DEFAULT 0);
            CREATE TABLE IF NOT EXISTS scores (
                id TEXT PRIMARY KEY, score INTEGER, fetched_utc INTEGER, state TEXT);
            CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
            """
        )

    def close(self) -> None:
        self.db.close()

    def has(self, key: str) -> bool:
        return self.db.execute("SELECT 1 FROM meta WHERE key = ?", (key,)).fetchone() is not None

    def add_ids(self, ids: Iterable[str], done_key: str) -> None:
        """Add candidate ids (repeats are ignored), then mark `done_key` as gathered."""
        chunk: list[tuple[str, str]] = []
        for sub_id in ids:
            chunk.append((sub_id, sub_id))
            if len(chunk) >= INSERT_CHUNK:
                self._insert(chunk)
                chunk = []
        self._insert(chunk)
        with self.db:
            self.db.execute("INSERT OR IGNORE INTO meta VALUES (?, '')", (done_key,))

    def _insert(self, chunk: list[tuple[str, str]]) -> None:
        with self.db:  # an id answered in an earlier run (cached by id) is not asked again
            self.db.executemany(
                "INSERT OR IGNORE INTO ids (id, answered) "
                "SELECT ?, EXISTS (SELECT 1 FROM scores WHERE id = ?)",
                chunk,
            )

    def counts(self) -> tuple[int, int]:
        """(ids, ids answered)."""
        total, answered = self.db.execute("SELECT COUNT(*), SUM(answered) FROM ids").fetchone()
        return total, answered or 0

    def unanswered(self) -> Iterator[list[str]]:
        """Batches of up to BATCH ids without an answer, in the order they were added."""
        last = 0
        while rows := self.db.execute(
            "SELECT rowid, id FROM ids WHERE rowid > ? AND answered = 0 ORDER BY rowid LIMIT ?",
            (last, BATCH),
        ).fetchall():
            last = rows[-1][0]
            yield [sub_id for _, sub_id in rows]

    def record(self, ids: list[str], answers: dict[str, tuple[int, str]], fetched: int) -> None:
        """One call's answers, in one transaction; an id the API did not return is missing."""
        rows = [(i, *answers.get(i, (None, "missing")), fetched) for i in ids]
        with self.db:
            self.db.executemany(
                "INSERT OR REPLACE INTO scores (id, score, state, fetched_utc) VALUES (?,?,?,?)",
                rows,
            )
            self.db.executemany("UPDATE ids SET answered = 1 WHERE id = ?", [(i,) for i in ids])

    def score_batches(self) -> Iterator[pa.RecordBatch]:
        cursor = self.db.execute("SELECT id, score, fetched_utc, state FROM scores ORDER BY id")
        while rows := cursor.fetchmany(WRITE_CHUNK):
            columns = dict(zip(schemas.SCORES.names, zip(*rows, strict=True), strict=True))
            yield pa.RecordBatch.from_pydict(
                {k: list(v) for k, v in columns.items()}, schema=schemas.SCORES
            )


class Pacer:
    """Spaces calls to at most `calls_per_minute`."""

    def __init__(
        self, calls_per_minute: float, clock: Callable[[], float] = time.monotonic, sleep=time.sleep
    ):
        self.interval = 60.0 / calls_per_minute
        self.clock, self.sleep = clock, sleep
        self.next_at: float | None = None

    def wait(self) -> None:
        now = self.clock()
        if self.next_at is not None and now < self.next_at:
            self.sleep(self.next_at - now)
            now = self.next_at
        self.next_at = now + self.interval


def _is_flippable(score: int, created: int | None, retrieved: int | None, config: Config) -> bool:
    if score >= config.links.min_karma or created is None or retrieved is None:
        return False
    return retrieved - created < config.links.snapshot_max_lag_hours * 3600


def candidate_ids(config: Config, dump_paths: list[str], selection: str) -> Iterator[str]:
    """The ids of the dumps' link posts that pass every filter but karma (`selection` "all"),
    or only those whose decision could flip ("flippable"); repeats are left to the caller."""
    rules = dataclasses.replace(SubmissionRules.from_config(config.links), per_url=True)
    for path in dump_paths:
        for item in screen_dump(path, rules, Tally()):
            if isinstance(item, dict):
                continue  # malformed: the links stage reports it
            posting = item[1]
            if posting.id is None:
                continue
            if selection == "all" or _is_flippable(
                posting.score, posting.created_utc, posting.retrieved_utc, config
            ):
                yield posting.id


def fetch_batch(reddit: Any, ids: list[str]) -> dict[str, tuple[int, str]]:
    """One /api/info call: id -> (score, state) for each submission the API returned."""
    answers = {}
    for thing in reddit.info(fullnames=[f"t3_{i}" for i in ids]):
        fields = vars(thing)
        answers[fields["id"]] = (fields.get("score"), api_state(fields))
    return answers


def ask(
    reddit: Any, ids: list[str], pacer: Pacer, policy: RetryPolicy, sleep: Sleep
) -> dict[str, tuple[int, str]]:
    """fetch_batch within the rate limit, waiting out 429s and retrying 5xx."""
    throttled = failed = 0
    while True:
        pacer.wait()
        try:
            return fetch_batch(reddit, ids)
        except prawcore.exceptions.TooManyRequests as e:
            throttled += 1
            if throttled > policy.max_429:
                raise RescoreError(f"still rate-limited after {policy.max_429} waits") from None
            wait = min(reddit_api.retry_after_s(e, 10.0), policy.max_wait_s)
            log.info("rescore: 429, waiting %.1f s", wait)
            sleep(wait)
        except (prawcore.exceptions.ServerError, prawcore.exceptions.RequestException) as e:
            failed += 1
            if failed > policy.max_5xx:
                raise RescoreError(f"the API keeps failing: {type(e).__name__}: {e}") from None
            wait = policy.backoff_base_s * 2 ** (failed - 1)
            log.info("rescore: %s, retrying in %.1f s", type(e).__name__, wait)
            sleep(wait)
        except prawcore.exceptions.PrawcoreException as e:
            raise RescoreError(f"{type(e).__name__}: {e}") from None


def ask_all(
    reddit: Any,
    progress: Progress,
    pacer: Pacer,
    policy: RetryPolicy = RetryPolicy(),
    sleep: Sleep = time.sleep,
    clock: Callable[[], float] = time.time,
) -> int:
    """Ask every unanswered id, committing each call's answers; returns the calls made."""
    calls = 0
    for ids in progress.unanswered():
        answers = ask(reddit, ids, pacer, policy, sleep)
        progress.record(ids, answers, int(clock()))
        calls += 1
    return calls


def write_scores(progress: Progress, path: str) -> int:
    """Every answer so far as schemas.SCORES Parquet at `path` (atomically); returns rows."""
    partial, rows = f"{path}.partial", 0
    with pq.ParquetWriter(partial, schemas.SCORES) as writer:
        for batch in progress.score_batches():
            writer.write_batch(batch)
            rows += batch.num_rows
    os.replace(partial, path)
    return rows


def _out_dir(data_root: str, out: str | None) -> str:
    folder = out or dataroot.join(data_root, "scores")
    if "://" in folder:
        raise RescoreError(
            f"{folder}: rescore keeps its progress in SQLite on local disk; give --out a "
            "local folder and copy scores.parquet where the links stage reads it"
        )
    os.makedirs(folder, exist_ok=True)
    return folder


def run(
    config: Config,
    data_root: str,
    selection: str = "flippable",
    calls_per_minute: float = DEFAULT_CALLS_PER_MINUTE,
    out: str | None = None,
    estimate_only: bool = False,
    praw_settings: dict[str, Any] | None = None,
    sleep: Sleep = time.sleep,
    policy: RetryPolicy = RetryPolicy(),
) -> dict[str, Any]:
    """Gather the candidates, print the estimate, ask, write scores.parquet; returns a summary.

    `praw_settings` (extra PRAW settings, e.g. a test server's URLs) and `sleep` are for tests.
    """
    if selection not in SELECTIONS:
        raise RescoreError(f"--ids {selection!r}: use one of {', '.join(SELECTIONS)}")
    if calls_per_minute <= 0:
        raise RescoreError("--calls-per-minute must be positive")
    dump_paths = sorted({p for pattern in config.links.dumps for p in dataroot.match(pattern)})
    if not dump_paths:
        raise RescoreError("[links] dumps matches no file: rescore needs the dumps it rescores")
    folder = _out_dir(data_root, out)
    progress = Progress(os.path.join(folder, PROGRESS_FILE))
    try:
        gathered = json.dumps(
            [selection, dump_paths, config.links.min_karma, config.links.snapshot_max_lag_hours]
        )
        if not progress.has(gathered):
            log.info("rescore: reading %d dump file(s) for candidate ids", len(dump_paths))
            progress.add_ids(candidate_ids(config, dump_paths, selection), gathered)
        estimate = Estimate(*progress.counts(), calls_per_minute)
        print(estimate.line(selection), flush=True)
        summary: dict[str, Any] = {"ids": estimate.ids, "answered_before": estimate.answered}
        if estimate_only:
            return {**summary, "calls": 0}
        try:
            reddit = reddit_api.make_reddit(config.links.reddit_site, praw_settings)
        except reddit_api.RedditApiError as e:
            raise RescoreError(str(e)) from None
        calls = ask_all(reddit, progress, Pacer(calls_per_minute, sleep=sleep), policy, sleep)
        path = os.path.join(folder, SCORES_FILE)
        rows = write_scores(progress, path)
        print(f"rescore: {calls:,} calls; {rows:,} scores in {path}", flush=True)
        print(f"rescore: use them with --set 'links.scores=[\"{path}\"]'", flush=True)
        return {**summary, "calls": calls, "scores": rows, "path": path}
    finally:
        progress.close()
