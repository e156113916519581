"""Which submissions make the link set, and the row each URL gets: the links stage's logic.

Each source is screened whole in one call (screen_dump, screen_url_list, screen_listing):
parsing and every per-submission filter run in a tight loop, and only surviving
submissions come out, as (normalized URL, Posting). build_link merges one URL's postings
into its schemas.LINK row. Counters (docs/links.md) are per submission, so that

    read = malformed + self + nsfw + blocked_subreddit + out_of_dates + below_karma
           + bad_url + wikipedia + blocked_domain + duplicate_submission + duplicate_url + kept

where `kept` is the number of link rows and `duplicate_url` the submissions merged into
another submission's row.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, NamedTuple

from pipeline import beamio, dataroot
from pipeline.config import LinksConfig
from pipeline.links import reddit_api
from pipeline.links.score_health import ScoreHealth
from pipeline.links.scores import ScoreBook
from pipeline.links.submissions import (
    MalformedSubmission,
    ReadEnd,
    Submission,
    iter_line_batches,
    parse_submission,
    submission_from_fields,
)
from pipeline.links.url_lists import iter_url_list
from pipeline.urls import LinkFilter, host_of_normalized

STAGE = "links"
KARMA_RULES = ("per_submission", "per_url")

# Per-submission counters, in funnel order; a submission lands in exactly one.
SUBMISSION_REASONS = (
    "malformed",
    "self",
    "nsfw",
    "blocked_subreddit",
    "out_of_dates",
    "below_karma",
    "bad_url",
    "wikipedia",
    "blocked_domain",
    "duplicate_submission",
    "duplicate_url",
    "kept",
)


class Posting(NamedTuple):
    """A surviving submission in flight: the fields its link row needs."""

    url: str  # as posted
    id: str | None  # None for URL-list entries
    subreddit: str | None
    score: int
    created_utc: int | None  # None for URL-list entries without a date
    title: str | None
    retrieved_utc: int | None = None  # when the score was read, when the source says


# What a screen yields: a surviving submission keyed by its normalized URL, or a dead letter.
Screened = tuple[str, Posting] | dict[str, Any]


def _epoch(date: str, key: str) -> int | None:
    if not date:
        return None
    try:
        day = dt.date.fromisoformat(date)
    except ValueError:
        raise dataroot.StageError(
            f'[links] {key} = {date!r} is not an ISO date (YYYY-MM-DD); fix it or use ""'
        ) from None
    return int(dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC).timestamp())


@dataclass(frozen=True)
class SubmissionRules:
    """Every per-submission filter of `[links]`, precomputed once per worker."""

    min_karma: int
    per_url: bool
    exclude_nsfw: bool
    blocked_subreddits: frozenset[str]
    created_from: int | None  # inclusive, epoch seconds
    created_to: int | None  # exclusive
    urls: LinkFilter
    scores: ScoreBook | None = None  # fresher scores (links.scores), applied before the filters

    @classmethod
    def from_config(cls, links: LinksConfig, scores: ScoreBook | None = None) -> SubmissionRules:
        if links.karma_rule not in KARMA_RULES:
            raise dataroot.StageError(
                f'[links] karma_rule = {links.karma_rule!r}: use "per_submission" or "per_url"'
            )
        return cls(
            min_karma=links.min_karma,
            per_url=links.karma_rule == "per_url",
            exclude_nsfw=links.exclude_nsfw,
            blocked_subreddits=frozenset(
                s.lower().removeprefix("r/") for s in links.subreddit_blocklist
            ),
            created_from=_epoch(links.date_from, "date_from"),
            created_to=_epoch(links.date_to, "date_to"),
            urls=LinkFilter.from_config(links),
            scores=scores,
        )

    def screen(self, sub: Submission) -> tuple[str | None, str | None]:
        """(reason to drop, normalized URL): the reason is None for a submission to keep.

        The cheap checks run first, so most submissions never have their URL parsed.
        """
        if sub.is_self:
            return "self", None
        if sub.over_18 and self.exclude_nsfw:
            return "nsfw", None
        if sub.subreddit is not None and sub.subreddit.lower() in self.blocked_subreddits:
            return "blocked_subreddit", None
        created = sub.created_utc
        if created is not None and (
            (self.created_from is not None and created < self.created_from)
            or (self.created_to is not None and created >= self.created_to)
        ):
            return "out_of_dates", None
        if not self.per_url and sub.score < self.min_karma:
            return "below_karma", None
        normalized, reason = self.urls.check(sub.url)
        return reason, normalized


def posting(sub: Submission) -> Posting:
    return Posting(
        sub.url or "",
        sub.id,
        sub.subreddit,
        sub.score,
        sub.created_utc,
        sub.title,
        sub.retrieved_utc,
    )


class Tally:
    """Counts by name in a plain dict; `flush` adds them to the stage's Beam counters.

    Incrementing a Beam counter per element costs more than parsing a line, so the hot
    loops count here and flush now and then.
    """

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}
        self._counters: dict[str, Any] = {}

    def add(self, name: str, n: int = 1) -> None:
        self.counts[name] = self.counts.get(name, 0) + n

    def flush(self) -> None:
        for name, n in self.counts.items():
            if n:
                if name not in self._counters:
                    self._counters[name] = beamio.counter(STAGE, name)
                self._counters[name].inc(n)
        self.counts.clear()


def screen_dump(
    path: str,
    rules: SubmissionRules,
    tally: Tally,
    progress: beamio.ProgressLog | None = None,
    health: ScoreHealth | None = None,
) -> Iterator[Screened]:
    """Parse and filter one dump: yields (normalized URL, posting) per surviving submission,
    and a dead-letter dict per malformed line and for a truncated file. `health` gathers
    the scores of its link posts by month.

    The hot loop of the stage: one pass per line; counts are flushed once per chunk.
    """
    end = ReadEnd()
    for first, lines in iter_line_batches(path, end):
        for number, line in enumerate(lines, first):
            if len(line) < 3 and not line.strip():  # blank; a JSON object needs 2+ bytes
                continue
            try:
                result = parse_submission(line, path, number)
            except MalformedSubmission as e:
                result = e
            screened = _screen_one(result, rules, tally, path, number, line, health)
            if screened is not None:
                yield screened
        read = tally.counts.get("read", 0)  # this chunk's: a flush starts the counts afresh
        tally.flush()
        if progress is not None:
            progress.tick(read)
    yield from _truncated_file(path, end, tally)


def screen_url_list(path: str, rules: SubmissionRules, tally: Tally) -> Iterator[Screened]:
    """Like screen_dump, for one URL list (entries count as karma = score or min_karma)."""
    end = ReadEnd()
    for number, raw, result in iter_url_list(path, rules.min_karma, end):
        screened = _screen_one(result, rules, tally, path, number, raw)
        if screened is not None:
            yield screened
    yield from _truncated_file(path, end, tally)


def screen_listing(
    listing: Iterable[dict[str, Any]],
    source: str,
    rules: SubmissionRules,
    tally: Tally,
    health: ScoreHealth | None = None,
) -> Iterator[Screened]:
    """Like screen_dump, for the submissions of one live API listing, as field dicts."""
    for fields in listing:
        try:
            result = submission_from_fields(fields, reddit_api.SOURCE, None)
        except MalformedSubmission as e:
            result = e
        screened = _screen_one(result, rules, tally, source, None, repr(fields), health)
        if screened is not None:
            yield screened


def _screen_one(
    result: Submission | MalformedSubmission,
    rules: SubmissionRules,
    tally: Tally,
    source: str,
    line: int | None,
    raw: bytes | str,
    health: ScoreHealth | None = None,
) -> Screened | None:
    """Count one parsed record: its posting, its dead letter, or None when a filter drops it.

    A fresher score from `rules.scores` replaces the record's before the filters and the
    score health see it.
    """
    tally.add("read")
    if isinstance(result, MalformedSubmission):
        tally.add("malformed")
        tally.add(f"malformed.{result.reason}")
        return beamio.dead_letter(source, line, result.reason, result.detail, raw)
    if rules.scores is not None and rules.scores.refresh(result):
        tally.add("rescored")
    if health is not None:
        health.add(result)
    reason, normalized = rules.screen(result)
    if reason is not None:
        tally.add(reason)
        return None
    return normalized, posting(result)


def _truncated_file(path: str, end: ReadEnd, tally: Tally) -> Iterator[dict[str, Any]]:
    """The dead letter of a file whose reading stopped at a cut end; nothing otherwise."""
    if end.truncated:
        tally.add("truncated_files")
        yield beamio.dead_letter(path, end.lines + 1, "truncated", end.truncated, end.tail)


def _posting_order(p: Posting) -> tuple:
    # Oldest first; list entries (no date) last; ties by id, then URL.
    return (p.created_utc is None, p.created_utc or 0, p.id or "", p.url)


def build_link(
    normalized_url: str, postings: Iterable[Posting], per_url: bool, min_karma: int, tally: Tally
) -> dict[str, Any] | None:
    """One schemas.LINK row for a URL's postings, or None when per-URL karma falls short.

    A submission seen twice (overlapping dumps, or a dump and the API) counts once, with its
    highest score. Karma is the highest submission score (per_submission: the submissions
    here already passed the threshold) or the sum of scores (per_url, OpenWebText2).
    """
    by_id: dict[str, Posting] = {}
    unnamed: list[Posting] = []
    total = 0
    for p in postings:
        total += 1
        if p.id is None:  # URL-list entries have no id
            unnamed.append(p)
        elif p.id not in by_id or p.score > by_id[p.id].score:
            by_id[p.id] = p
    unique = sorted([*by_id.values(), *unnamed], key=_posting_order)
    tally.add("duplicate_submission", total - len(unique))
    scores = [p.score for p in unique]
    karma = sum(scores) if per_url else max(scores)
    if per_url and karma < min_karma:
        tally.add("below_karma", len(unique))
        return None
    tally.add("kept")
    tally.add("duplicate_url", len(unique) - 1)
    dated = [p.created_utc for p in unique if p.created_utc is not None]
    return {
        "normalized_url": normalized_url,
        "host": host_of_normalized(normalized_url),
        "urls": sorted({p.url for p in unique}),
        "karma": karma,
        "first_created_utc": min(dated) if dated else 0,
        "submissions": [
            {
                "id": p.id,
                "subreddit": p.subreddit,
                "score": p.score,
                "created_utc": p.created_utc,
                "title": p.title,
                "retrieved_utc": p.retrieved_utc,
            }
            for p in unique
        ],
    }


def funnel_rows(counters: dict[str, int]) -> list[list[Any]]:
    """The summary's funnel table: (step, submissions) rows from the stage's counters."""
    return [
        ["reddit submissions read", counters.get("read", 0)],
        ["malformed (dead-letter)", counters.get("malformed", 0)],
        ["below karma", counters.get("below_karma", 0)],
        [
            "self / NSFW / blocked / out of dates",
            sum(
                counters.get(k, 0)
                for k in (
                    "self",
                    "nsfw",
                    "blocked_subreddit",
                    "out_of_dates",
                    "bad_url",
                    "blocked_domain",
                )
            ),
        ],
        ["wikipedia", counters.get("wikipedia", 0)],
        [
            "duplicate URLs merged",
            counters.get("duplicate_url", 0) + counters.get("duplicate_submission", 0),
        ],
        ["links kept", counters.get("kept", 0)],
    ]
