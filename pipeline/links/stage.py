"""The links stage: Reddit submissions -> the filtered, deduplicated link set (links/).

    dumps (.zst/.bz2/.xz/.gz/plain) --ReadDumps-------\\
    URL lists (.txt/.csv/.parquet) ---ReadUrlLists----+--> (normalized URL, Posting)
    live API (PRAW) ------------------ReadRedditApi---/         |
                                                      GroupByUrl (GroupByKey)
                                                                |
                                                      BuildLinks: one schemas.LINK row per URL
    links/links-SSSSS-of-NNNNN.parquet, links/dead_letter-*.parquet, links/_summary.json

Each source reads a whole file (or listing) in one DoFn call, screened by linkset.py: only
surviving submissions become Beam elements. The counters and how they add up: linkset.py.
Each call also yields its link posts' score histograms by month (score_health.py); they are
combined per month (CombineHealthByMonth) into the summary's `score_health` and warning.
With `links.scores`, each worker loads the fresher scores once (scores.ScoreBook).
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterable, Iterator
from typing import Any

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems

import schemas
from pipeline import beamio, dataroot
from pipeline.config import Config, LinksConfig
from pipeline.links import reddit_api
from pipeline.links.linkset import (
    STAGE,
    Posting,
    SubmissionRules,
    Tally,
    build_link,
    funnel_rows,
    screen_dump,
    screen_listing,
    screen_url_list,
)
from pipeline.links.score_health import (
    MonthHealth,
    ScoreHealth,
    SnapshotThresholds,
    health_report,
    snapshot_funnel_rows,
)
from pipeline.links.scores import ScoreBook

log = logging.getLogger("webtext")

DEAD_LETTER_TAG = "dead_letter"
HEALTH_TAG = "score_health"
HEALTH_FILE = "score_health.jsonl"
LINKS_PREFIX = "links"
DEAD_LETTER_PREFIX = "dead_letter"

# Postings cross the GroupByKey as Beam rows: a NamedTuple would otherwise be pickled.
beam.coders.registry.register_coder(Posting, beam.coders.RowCoder)


class _ScreenFn(beam.DoFn):
    """Base for the source DoFns: rules built once per worker, counters flushed per input."""

    def __init__(self, links: LinksConfig, progress_every: int = 0):
        self.links, self.progress_every = links, progress_every

    def setup(self) -> None:
        scores = (
            ScoreBook.load(_resolve(self.links.scores, "scores")) if self.links.scores else None
        )
        self.rules = SubmissionRules.from_config(self.links, scores)
        self.progress = beamio.ProgressLog(STAGE, "submissions", self.progress_every)

    def emit(
        self, items: Iterable[Any], tally: Tally, health: ScoreHealth | None = None
    ) -> Iterator[Any]:
        try:
            for item in items:
                if isinstance(item, dict):
                    yield beam.pvalue.TaggedOutput(DEAD_LETTER_TAG, item)
                else:
                    yield item
        finally:
            tally.flush()
        for month, month_health in (health.months if health is not None else {}).items():
            yield beam.pvalue.TaggedOutput(HEALTH_TAG, (month, month_health))


class ScreenDumpFn(_ScreenFn):
    def process(self, path: str) -> Iterator[Any]:
        tally, health = Tally(), ScoreHealth()
        tally.add("dump_files")
        screened = screen_dump(path, self.rules, tally, self.progress, health)
        yield from self.emit(screened, tally, health)


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
        tally, health = Tally(), ScoreHealth()
        tally.add("api_listings")
        try:
            if self.reddit is None:
                self.reddit = reddit_api.make_reddit(self.links.reddit_site, self.praw_settings)
            fields = reddit_api.iter_listing(
                self.reddit, subreddit, listing, self.links.reddit_limit
            )
            screened = screen_listing(fields, source, self.rules, tally, health)
            yield from self.emit(screened, tally, health)
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
        normalized_url, postings = element
        row = build_link(normalized_url, postings, self.per_url, self.min_karma, self.tally)
        if row is not None:
            yield row

    def finish_bundle(self) -> None:
        self.tally.flush()


class ReadSubmissions(beam.PTransform):
    """Every configured source -> (normalized URL, posting), plus dead letters and
    (month, MonthHealth) pieces."""

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
        jobs = [(s, listing) for s in links.reddit_subreddits for listing in links.reddit_listings]
        sources = [
            ("Dumps", self.dump_paths, ScreenDumpFn(links, self.progress_every)),
            ("UrlLists", self.list_paths, ScreenUrlListFn(links)),
            ("RedditApi", jobs, ScreenRedditListingFn(links, self.praw_settings)),
        ]
        branches = [
            pbegin
            | f"List{name}" >> beam.Create(inputs)
            | f"Spread{name}" >> beam.Reshuffle()
            | f"Read{name}"
            >> beam.ParDo(screen).with_outputs(DEAD_LETTER_TAG, HEALTH_TAG, main="postings")
            for name, inputs, screen in sources
            if inputs
        ]
        postings = [b.postings for b in branches] or [pbegin | "NoInput" >> beam.Create([])]
        dead = [b[DEAD_LETTER_TAG] for b in branches] or [pbegin | "NoDead" >> beam.Create([])]
        health = [b[HEALTH_TAG] for b in branches] or [pbegin | "NoHealth" >> beam.Create([])]
        return (
            postings | "MergePostings" >> beam.Flatten().with_output_types(tuple[str, Posting]),
            dead | "MergeDeadLetters" >> beam.Flatten(),
            health | "MergeHealth" >> beam.Flatten(),
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


class MergeMonthHealthFn(beam.CombineFn):
    """MonthHealth pieces of one month (one per file or listing) -> their sum."""

    def create_accumulator(self) -> MonthHealth:
        return MonthHealth()

    def add_input(self, accumulator: MonthHealth, piece: MonthHealth) -> MonthHealth:
        return accumulator.merge(piece)

    def merge_accumulators(self, accumulators: Iterable[MonthHealth]) -> MonthHealth:
        merged = MonthHealth()
        for accumulator in accumulators:
            merged.merge(accumulator)
        return merged

    def extract_output(self, accumulator: MonthHealth) -> MonthHealth:
        return accumulator


class WriteScoreHealth(beam.PTransform):
    """(month, MonthHealth) pieces -> one JSON line per month in `path`, for the summary."""

    def __init__(self, path: str):
        super().__init__()
        self.path = path

    def expand(self, pieces: beam.PCollection) -> beam.PCollection:
        return (
            pieces
            | "CombineHealthByMonth" >> beam.CombinePerKey(MergeMonthHealthFn())
            | "HealthAsJson" >> beam.MapTuple(_health_line)
            | "WriteHealth" >> beam.io.WriteToText(self.path, num_shards=1, shard_name_template="")
        )


def _health_line(month: str, health: MonthHealth) -> str:
    return json.dumps([month, health.posts, health.scores, health.lag_hours])


def read_score_health(path: str) -> list[tuple[str, MonthHealth]]:
    """What WriteScoreHealth wrote, as (month, MonthHealth) pairs; empty when nothing was."""
    if not dataroot.exists(path):
        return []
    months = []
    for line in dataroot.read_bytes(path).decode().splitlines():
        month, posts, scores, lag_hours = json.loads(line)
        health = MonthHealth()
        health.posts = posts
        health.scores = {int(k): v for k, v in scores.items()}
        health.lag_hours = {int(k): v for k, v in lag_hours.items()}
        months.append((month, health))
    return months


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
    score_paths = _resolve(links.scores, "scores")
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
    scratch = dataroot.scratch_dir(data_root, STAGE)
    dataroot.delete_folder(scratch)
    health_path = dataroot.join(scratch, HEALTH_FILE)

    def build(pipeline: beam.Pipeline) -> None:
        postings, dead, health = pipeline | "ReadSubmissions" >> ReadSubmissions(
            links, dump_paths, list_paths, praw_settings, config.run.progress_every
        )
        rows = postings | "BuildLinkSet" >> BuildLinkSet(links)
        rows | "WriteLinks" >> beamio.WriteParquet(
            dataroot.join(out_dir, LINKS_PREFIX), schemas.LINK, links.num_shards
        )
        dead | "WriteDeadLetters" >> beamio.WriteParquet(
            dataroot.join(out_dir, DEAD_LETTER_PREFIX), schemas.DEAD_LETTER, 1
        )
        health | "WriteScoreHealth" >> WriteScoreHealth(health_path)

    workers_args = beamio.with_local_workers(beam_args, len(dump_paths) + len(list_paths))
    counters = beamio.run_pipeline(STAGE, build, workers_args)
    months = read_score_health(health_path)
    dataroot.delete_folder(scratch)
    score_health, warning = health_report(months, SnapshotThresholds.from_config(links))
    if warning:
        log.warning("links: %s", warning)
    summary = {
        "stage": STAGE,
        "counters": counters,
        "funnel": funnel_rows(counters) + snapshot_funnel_rows(score_health),
        "score_health": score_health,
        "warnings": [warning] if warning else [],
        "karma_rule": links.karma_rule,
        "min_karma": links.min_karma,
        "inputs": {
            "dumps": dump_paths,
            "url_lists": list_paths,
            "reddit_subreddits": list(links.reddit_subreddits),
            "scores": score_paths,
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
