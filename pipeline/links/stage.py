"""The links stage: Reddit submissions -> the filtered, deduplicated link set (links/).

    dumps (.zst/.bz2/.xz/.gz/plain) --ReadDumps-------\\
    URL lists (.txt/.csv/.parquet) ---ReadUrlLists----+--> (normalized URL, submission)
    live API (PRAW) ------------------ReadRedditApi---/         |
                                                      GroupByUrl (GroupByKey)
                                                                |
                                                      BuildLinks: one schemas.LINK row per URL
    links/links-SSSSS-of-NNNNN.parquet, links/dead_letter-*.parquet, links/_summary.json

Each source reads a whole file (or listing) in one DoFn call: parsing and every
per-submission filter run in a tight loop, and only surviving submissions become Beam
elements. Counters (docs/links.md) are per submission, so that

    read = malformed + self + nsfw + blocked_subreddit + out_of_dates + below_karma
           + bad_url + wikipedia + blocked_domain + duplicate_submission + duplicate_url + kept

where `kept` is the number of link rows and `duplicate_url` the submissions merged into
another submission's row.
"""

from __future__ import annotations

import datetime as dt
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems

import schemas
from pipeline import beamio, dataroot
from pipeline.config import Config, LinksConfig
from pipeline.links import reddit_api
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
DEAD_LETTER_TAG = "dead_letter"
LINKS_PREFIX = "links"
DEAD_LETTER_PREFIX = "dead_letter"

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

# A surviving submission in flight: (original url, id, subreddit, score, created_utc, title).
Posting = tuple[str, str | None, str | None, int, int | None, str | None]


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

    @classmethod
    def from_config(cls, links: LinksConfig) -> SubmissionRules:
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
    return (sub.url or "", sub.id, sub.subreddit, sub.score, sub.created_utc, sub.title)


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
    path: str, rules: SubmissionRules, tally: Tally, progress: beamio.ProgressLog | None = None
) -> Iterator[tuple[str, Posting] | dict[str, Any]]:
    """Parse and filter one dump: yields (normalized URL, posting) per surviving submission,
    and a dead-letter dict per malformed line and for a truncated file.

    The hot loop of the stage: one pass per line, counts kept in locals and a dict.
    """
    end = ReadEnd()
    screen = rules.screen
    counts = tally.counts
    for first, lines in iter_line_batches(path, end):
        read = 0
        for number, line in enumerate(lines, first):
            if len(line) < 3 and not line.strip():  # blank; a JSON object needs 2+ bytes
                continue
            read += 1
            try:
                sub = parse_submission(line, path, number)
            except MalformedSubmission as e:
                tally.add("malformed")
                tally.add(f"malformed.{e.reason}")
                yield beamio.dead_letter(path, number, e.reason, e.detail, line)
                continue
            reason, normalized = screen(sub)
            if reason is None:
                yield (
                    normalized,
                    (sub.url, sub.id, sub.subreddit, sub.score, sub.created_utc, sub.title),
                )
            else:
                counts[reason] = counts.get(reason, 0) + 1
        tally.add("read", read)
        tally.flush()
        if progress is not None:
            progress.tick(read)
    if end.truncated:
        tally.add("truncated_files")
        yield beamio.dead_letter(path, end.lines + 1, "truncated", end.truncated, end.tail)


def screen_url_list(
    path: str, rules: SubmissionRules, tally: Tally
) -> Iterator[tuple[str, Posting] | dict[str, Any]]:
    """Like screen_dump, for one URL list (entries count as karma = score or min_karma)."""
    end = ReadEnd()
    for number, raw, result in iter_url_list(path, rules.min_karma, end):
        yield from _screen_one(result, rules, tally, path, number, raw)
    if end.truncated:
        tally.add("truncated_files")
        yield beamio.dead_letter(path, end.lines + 1, "truncated", end.truncated, end.tail)


def screen_listing(
    fields: Iterable[dict[str, Any]], source: str, rules: SubmissionRules, tally: Tally
) -> Iterator[tuple[str, Posting] | dict[str, Any]]:
    """Like screen_dump, for submissions from the live API."""
    for fields_one in fields:
        try:
            result = submission_from_fields(fields_one, reddit_api.SOURCE, None)
        except MalformedSubmission as e:
            result = e
        yield from _screen_one(result, rules, tally, source, None, repr(fields_one))


def _screen_one(
    result: Submission | MalformedSubmission,
    rules: SubmissionRules,
    tally: Tally,
    source: str,
    line: int | None,
    raw: str,
) -> Iterator[tuple[str, Posting] | dict[str, Any]]:
    """Count one parsed record, and yield its posting or its dead letter."""
    tally.add("read")
    if isinstance(result, MalformedSubmission):
        tally.add("malformed")
        tally.add(f"malformed.{result.reason}")
        yield beamio.dead_letter(source, line, result.reason, result.detail, raw)
        return
    reason, normalized = rules.screen(result)
    if reason is None:
        yield normalized, posting(result)
    else:
        tally.add(reason)


def _posting_order(p: Posting) -> tuple:
    # Oldest first; list entries (no date) last; ties by id, then URL.
    return (p[4] is None, p[4] or 0, p[1] or "", p[0])


def build_link(
    normalized_url: str, postings: Iterable[Posting], per_url: bool, min_karma: int, tally: Tally
) -> dict[str, Any] | None:
    """One schemas.LINK row for a URL's postings, or None when per-URL karma falls short.

    A submission seen twice (overlapping dumps, or a dump and the API) counts once, with its
    highest score. Karma is the highest submission score (per_submission: the submissions
    here already passed the threshold) or the sum of scores (per_url, OpenWebText2).
    """
    by_id: dict[Any, Posting] = {}
    unnamed: list[Posting] = []
    total = 0
    for p in postings:
        total += 1
        if p[1] is None:  # URL-list entries have no id
            unnamed.append(p)
        elif p[1] not in by_id or p[3] > by_id[p[1]][3]:
            by_id[p[1]] = p
    unique = sorted([*by_id.values(), *unnamed], key=_posting_order)
    tally.add("duplicate_submission", total - len(unique))
    karma = sum(p[3] for p in unique) if per_url else max(p[3] for p in unique)
    if per_url and karma < min_karma:
        tally.add("below_karma", len(unique))
        return None
    tally.add("kept")
    tally.add("duplicate_url", len(unique) - 1)
    dated = [p[4] for p in unique if p[4] is not None]
    return {
        "normalized_url": normalized_url,
        "host": host_of_normalized(normalized_url),
        "urls": sorted({p[0] for p in unique}),
        "karma": karma,
        "first_created_utc": min(dated) if dated else 0,
        "submissions": [
            {"id": p[1], "subreddit": p[2], "score": p[3], "created_utc": p[4], "title": p[5]}
            for p in unique
        ],
    }


# --- Beam wiring -----------------------------------------------------------------------


class _ScreenFn(beam.DoFn):
    """Base for the source DoFns: rules built once per worker, counters flushed per input."""

    def __init__(self, links: LinksConfig, progress_every: int = 0):
        self.links, self.progress_every = links, progress_every

    def setup(self) -> None:
        self.rules = SubmissionRules.from_config(self.links)
        self.progress = beamio.ProgressLog(STAGE, "submissions", self.progress_every)

    def emit(self, items: Iterable[Any], tally: Tally) -> Iterator[Any]:
        try:
            for item in items:
                if isinstance(item, dict):
                    yield beam.pvalue.TaggedOutput(DEAD_LETTER_TAG, item)
                else:
                    yield item
        finally:
            tally.flush()


class ScreenDumpFn(_ScreenFn):
    def process(self, path: str) -> Iterator[Any]:
        tally = Tally()
        tally.add("dump_files")
        yield from self.emit(screen_dump(path, self.rules, tally, self.progress), tally)


class ScreenUrlListFn(_ScreenFn):
    def process(self, path: str) -> Iterator[Any]:
        tally = Tally()
        tally.add("url_list_files")
        yield from self.emit(screen_url_list(path, self.rules, tally), tally)


class ScreenRedditListingFn(_ScreenFn):
    def __init__(self, links: LinksConfig, praw_settings: dict[str, Any] | None = None):
        super().__init__(links)
        self.praw_settings = praw_settings or {}

    def setup(self) -> None:
        super().setup()
        self.reddit = None

    def process(self, job: tuple[str, str]) -> Iterator[Any]:
        subreddit, listing = job
        source = f"{reddit_api.SOURCE} r/{subreddit} {listing}"
        tally = Tally()
        tally.add("api_listings")
        try:
            if self.reddit is None:
                self.reddit = reddit_api.make_reddit(self.links.reddit_site, self.praw_settings)
            fields = reddit_api.iter_listing(
                self.reddit, subreddit, listing, self.links.reddit_limit
            )
            yield from self.emit(screen_listing(fields, source, self.rules, tally), tally)
        except reddit_api.RedditApiError as e:
            beamio.counter(STAGE, "api_errors").inc()
            yield beam.pvalue.TaggedOutput(
                DEAD_LETTER_TAG, beamio.dead_letter(source, None, "api_error", str(e), None)
            )


class BuildLinkFn(beam.DoFn):
    def __init__(self, per_url: bool, min_karma: int):
        self.per_url, self.min_karma = per_url, min_karma

    def setup(self) -> None:
        self.tally = Tally()

    def process(self, element: tuple[str, Iterable[Posting]]) -> Iterator[dict[str, Any]]:
        row = build_link(element[0], element[1], self.per_url, self.min_karma, self.tally)
        if row is not None:
            yield row

    def finish_bundle(self) -> None:
        self.tally.flush()


class ReadSubmissions(beam.PTransform):
    """Every configured source -> (normalized URL, posting), plus a dead-letter output."""

    def __init__(
        self,
        links: LinksConfig,
        dump_paths: list[str],
        list_paths: list[str],
        praw_settings: dict[str, Any] | None = None,
        progress_every: int = 0,
    ):
        super().__init__()
        self.links, self.dump_paths, self.list_paths = links, dump_paths, list_paths
        self.praw_settings, self.progress_every = praw_settings, progress_every

    def expand(self, pbegin: beam.pvalue.PBegin) -> beam.pvalue.DoOutputsTuple:
        links = self.links
        branches = []
        if self.dump_paths:
            branches.append(
                pbegin
                | "DumpPaths" >> beam.Create(self.dump_paths)
                | "SpreadDumps" >> beam.Reshuffle()
                | "ReadDumps"
                >> beam.ParDo(ScreenDumpFn(links, self.progress_every)).with_outputs(
                    DEAD_LETTER_TAG, main="postings"
                )
            )
        if self.list_paths:
            branches.append(
                pbegin
                | "ListPaths" >> beam.Create(self.list_paths)
                | "ReadUrlLists"
                >> beam.ParDo(ScreenUrlListFn(links)).with_outputs(DEAD_LETTER_TAG, main="postings")
            )
        jobs = [(s, listing) for s in links.reddit_subreddits for listing in links.reddit_listings]
        if jobs:
            branches.append(
                pbegin
                | "ApiListings" >> beam.Create(jobs)
                | "SpreadListings" >> beam.Reshuffle()
                | "ReadRedditApi"
                >> beam.ParDo(ScreenRedditListingFn(links, self.praw_settings)).with_outputs(
                    DEAD_LETTER_TAG, main="postings"
                )
            )
        postings = [b.postings for b in branches] or [pbegin | "NoInput" >> beam.Create([])]
        dead = [b[DEAD_LETTER_TAG] for b in branches] or [pbegin | "NoDead" >> beam.Create([])]
        return (
            postings | "MergePostings" >> beam.Flatten(),
            dead | "MergeDeadLetters" >> beam.Flatten(),
        )


class BuildLinkSet(beam.PTransform):
    """(normalized URL, posting) -> one schemas.LINK row per URL, by the karma rule."""

    def __init__(self, links: LinksConfig):
        super().__init__()
        self.links = links

    def expand(self, postings: beam.PCollection) -> beam.PCollection:
        per_url = self.links.karma_rule == "per_url"
        return (
            postings
            | "GroupByUrl" >> beam.GroupByKey()
            | "BuildLinks" >> beam.ParDo(BuildLinkFn(per_url, self.links.min_karma))
        )


class WriteParquet(beam.PTransform):
    """beamio.write_parquet under its own label, so one pipeline can write two outputs."""

    def __init__(self, prefix: str, schema: Any, num_shards: int):
        super().__init__()
        self.prefix, self.schema, self.num_shards = prefix, schema, num_shards

    def expand(self, pcoll: beam.PCollection) -> beam.PCollection:
        return beamio.write_parquet(pcoll, self.prefix, self.schema, num_shards=self.num_shards)


def _resolve(patterns: list[str], key: str) -> list[str]:
    paths: list[str] = []
    for pattern in patterns:
        found = dataroot.match(pattern)
        if not found:
            raise dataroot.StageError(
                f"[links] {key}: {pattern!r} matches no file; fix the path or glob"
            )
        paths.extend(found)
    return sorted(set(paths))


def _check_listings(links: LinksConfig) -> None:
    for spec in links.reddit_listings:
        try:
            reddit_api.parse_listing(spec)
        except ValueError as e:
            raise dataroot.StageError(f"[links] reddit_listings: {e}") from None


def _remove_old_outputs(out_dir: str) -> None:
    old = [
        *dataroot.match(dataroot.join(out_dir, f"{LINKS_PREFIX}-*.parquet")),
        *dataroot.match(dataroot.join(out_dir, f"{DEAD_LETTER_PREFIX}-*.parquet")),
    ]
    if old:
        FileSystems.delete(old)


def funnel_rows(counters: dict[str, int]) -> list[list[Any]]:
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


def run(
    config: Config,
    data_root: str,
    beam_args: list[str],
    praw_settings: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Run the links stage; returns (and writes) its summary. `praw_settings` is for tests."""
    dataroot.check_data_root(config, data_root, STAGE)
    links = config.links
    SubmissionRules.from_config(links)  # config errors surface here, not on a worker
    _check_listings(links)
    dump_paths = _resolve(links.dumps, "dumps")
    list_paths = _resolve(links.url_lists, "url_lists")
    if not (dump_paths or list_paths or links.reddit_subreddits):
        raise dataroot.StageError(
            "[links] has no source: set dumps, url_lists or reddit_subreddits "
            "(e.g. --set 'links.dumps=[\"RS_2017-*.zst\"]')"
        )
    if links.reddit_subreddits:
        try:  # builds the client only (no request): missing credentials fail here, not per listing
            reddit_api.make_reddit(links.reddit_site, praw_settings)
        except reddit_api.RedditApiError as e:
            raise dataroot.StageError(f"[links] reddit_subreddits is set but {e}") from None
    out_dir = dataroot.stage_dir(data_root, STAGE)
    _remove_old_outputs(out_dir)

    def build(pipeline: beam.Pipeline) -> None:
        postings, dead = pipeline | "ReadSubmissions" >> ReadSubmissions(
            links, dump_paths, list_paths, praw_settings, config.run.progress_every
        )
        rows = postings | "BuildLinkSet" >> BuildLinkSet(links)
        rows | "WriteLinks" >> WriteParquet(
            dataroot.join(out_dir, LINKS_PREFIX), schemas.LINK, links.num_shards
        )
        dead | "WriteDeadLetters" >> WriteParquet(
            dataroot.join(out_dir, DEAD_LETTER_PREFIX), schemas.DEAD_LETTER, 1
        )

    counters = beamio.run_pipeline(STAGE, build, beam_args)
    summary = {
        "stage": STAGE,
        "counters": counters,
        "funnel": funnel_rows(counters),
        "karma_rule": links.karma_rule,
        "min_karma": links.min_karma,
        "inputs": {
            "dumps": dump_paths,
            "url_lists": list_paths,
            "reddit_subreddits": list(links.reddit_subreddits),
        },
        "outputs": {
            "links": dataroot.match(dataroot.join(out_dir, f"{LINKS_PREFIX}-*.parquet")),
            "dead_letter": dataroot.match(
                dataroot.join(out_dir, f"{DEAD_LETTER_PREFIX}-*.parquet")
            ),
        },
    }
    dataroot.write_summary(data_root, STAGE, summary)
    return summary


if __name__ == "__main__":
    from pipeline.cli import main

    sys.exit(main([STAGE, *sys.argv[1:]]))
