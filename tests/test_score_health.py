"""Score health: retrieval times of each archive's records, per-month histograms, the flag."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pyarrow.parquet as pq

from pipeline.config import load
from pipeline.links import stage as links
from pipeline.links.score_health import (
    MonthHealth,
    ScoreHealth,
    SnapshotThresholds,
    health_report,
    quantile,
)
from pipeline.links.submissions import parse_submission
from tests.conftest import DEMO_CONFIG
from tests.reddit_dumps import SECOND_READ_S, DumpGenerator, write_dump

THRESHOLDS = SnapshotThresholds.from_config(load(DEMO_CONFIG).links)


def parse(fields: dict) -> object:
    return parse_submission(json.dumps(fields).encode(), "RS_test", 1)


BASE = {"id": "k1", "created_utc": 1_700_000_000, "score": 7, "url": "https://x.org/a"}


def test_arctic_shift_record_was_read_at_its_second_retrieval():
    fields = {**BASE, "retrieved_on": 1_700_000_040}
    fields["_meta"] = {"retrieved_2nd_on": 1_700_000_000 + SECOND_READ_S, "is_edited": True}
    assert parse(fields).retrieved_utc == 1_700_000_000 + SECOND_READ_S


def test_arctic_shift_record_without_a_second_read_keeps_its_first():
    fields = {**BASE, "retrieved_on": 1_700_000_040, "_meta": {"note": "no_2nd_retrieval"}}
    assert parse(fields).retrieved_utc == 1_700_000_040


def test_pushshift_retrieval_fields_of_each_era():
    assert parse({**BASE, "retrieved_on": 1_700_100_000}).retrieved_utc == 1_700_100_000
    assert parse({**BASE, "retrieved_utc": "1700000030"}).retrieved_utc == 1_700_000_030
    later = {**BASE, "retrieved_utc": 1_700_000_030, "updated_utc": 1_700_500_000}
    assert parse(later).retrieved_utc == 1_700_500_000  # the score was read again
    assert parse({**BASE, "updated_on": 1_700_000_900}).retrieved_utc == 1_700_000_900
    assert parse(BASE).retrieved_utc is None  # early dumps do not say
    assert parse({**BASE, "retrieved_on": "soon"}).retrieved_utc is None  # unreadable: unknown


def test_generated_arctic_shift_records_parse_with_their_retrieval_times():
    gen = DumpGenerator(seed=5)
    for snapshot in (False, True):
        for _ in range(40):
            fields = gen.fields("arctic", snapshot)
            assert list(fields) == sorted(fields)  # Arctic Shift sorts its keys
            lag = parse(fields).retrieved_utc - fields["created_utc"]
            assert (lag < 3600) if snapshot else (SECOND_READ_S <= lag < SECOND_READ_S + 3600)


def test_histogram_quantiles_are_exact_and_pieces_merge():
    a, b = MonthHealth(), MonthHealth()
    for score in range(1, 51):
        a.add(score, 3600 * score)
    for score in range(51, 101):
        b.add(score, None)
    b.add(10**6, 10**12)  # beyond both caps: bounded buckets
    merged = MonthHealth().merge(a).merge(b)
    assert merged.posts == 101
    assert quantile(merged.scores, 0.5) == 51
    assert quantile(merged.scores, 0.1) == 11
    assert quantile(merged.scores, 0.9) == 91
    assert max(merged.scores) == 1000 and len(merged.lag_hours) == 51
    assert quantile(merged.lag_hours, 0.5) == 26


def month_of(era: str, snapshot: bool, n: int = 300, seed: int = 1) -> ScoreHealth:
    health = ScoreHealth()
    for line in DumpGenerator(seed=seed).lines(n, eras=(era,), snapshot=snapshot):
        health.add(parse_submission(line, "RS", 1))
    return health


def test_a_snapshot_month_is_flagged_and_a_settled_month_is_not():
    settled = month_of("modern", snapshot=False)
    snapshot = month_of("arctic", snapshot=True)
    pieces = [*settled.months.items(), *snapshot.months.items()]
    rows, warning = health_report(pieces, THRESHOLDS)
    by_month = {row["month"]: row for row in rows}
    assert set(by_month) == {"2017-03", "2023-11"}
    assert not by_month["2017-03"]["snapshot_like"]
    assert by_month["2017-03"]["lag_hours_median"] == 720  # read again 30 days later
    flagged = by_month["2023-11"]
    assert flagged["snapshot_like"] and flagged["score_le_1_share"] > 0.9
    assert flagged["short_lag_share"] == 1.0 and len(flagged["why"]) == 2
    assert warning is not None and "2023-11" in warning and "2017-03" not in warning
    assert "\n" not in warning


def test_settled_arctic_shift_month_is_not_flagged_by_its_36_hour_lag():
    rows, warning = health_report(month_of("arctic", snapshot=False).months.items(), THRESHOLDS)
    assert warning is None and rows[0]["lag_hours_median"] == 36


def test_mostly_ones_flags_a_month_without_retrieval_times():
    health = MonthHealth()
    for i in range(100):
        health.add(1 if i < 95 else 4, None)
    row = health.report("2009-06", THRESHOLDS)
    assert row["snapshot_like"] and row["short_lag_share"] is None
    assert row["score_quantiles"]["p90"] == 1


def test_the_stage_reports_score_health_per_month(tmp_path: Path):
    gen = DumpGenerator(seed=9, popular=40)
    write_dump(tmp_path / "RS_2017-03.zst", list(gen.lines(400, eras=("modern",))))
    write_dump(tmp_path / "RS_2023-11.zst", list(gen.lines(400, ("arctic",), snapshot=True)))
    config = load(DEMO_CONFIG)
    config = dataclasses.replace(
        config,
        links=dataclasses.replace(
            config.links, dumps=[str(tmp_path / "RS_*.zst")], date_from="", date_to=""
        ),
    )
    summary = links.run(config, str(tmp_path / "data"), [])
    months = {row["month"]: row for row in summary["score_health"]}
    assert not months["2017-03"]["snapshot_like"] and months["2023-11"]["snapshot_like"]
    counters = summary["counters"]
    assert sum(row["link_posts"] for row in months.values()) == counters["read"] - counters["self"]
    (warning,) = summary["warnings"]
    assert "2023-11" in warning
    step, posts = summary["funnel"][-1]
    assert "2023-11" in step and posts == months["2023-11"]["link_posts"]
    written = json.loads((tmp_path / "data" / "links" / "_summary.json").read_text())
    assert written["score_health"] == summary["score_health"]
    assert not (tmp_path / "data" / "links.tmp").exists()
    table = pq.read_table(next((tmp_path / "data" / "links").glob("links-*.parquet")))
    subs = [s for row in table.to_pylist() for s in row["submissions"]]
    assert subs and all(s["retrieved_utc"] > s["created_utc"] for s in subs)
