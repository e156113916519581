"""The links stage as a real Beam pipeline on the DirectRunner, and its plain-function core."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

import schemas
from pipeline import dataroot
from pipeline.config import load
from pipeline.links import linkset
from pipeline.links import stage as links
from tests.conftest import DEMO_CONFIG
from tests.reddit_api_server import RedditApiServer, RedditState, make_submission
from tests.reddit_dumps import DumpGenerator, write_dump

DAY = 86400
T2016 = 1_451_606_400  # 2016-01-01


def config_with(**links_keys):
    config = load(DEMO_CONFIG)
    return dataclasses.replace(config, links=dataclasses.replace(config.links, **links_keys))


def line(id_: str, url: str, score: int, created: int = T2016, **extra) -> bytes:
    fields = {
        "id": id_,
        "created_utc": created,
        "score": score,
        "url": url,
        "subreddit": extra.pop("subreddit", "news"),
        "title": f"title {id_}",
        "is_self": False,
        "over_18": False,
        **extra,
    }
    return json.dumps(fields).encode() + b"\n"


# URL A: three low-score posts in three spellings; B: one qualifying post and a low one;
# C: a single low post; D: one post, seen twice (overlapping dumps).
KARMA_LINES = [
    line("a1", "http://www.site-a.org/story?utm_source=reddit", 1, T2016 + 3 * DAY),
    line("a2", "https://site-a.org/story/", 1, T2016 + 1 * DAY),
    line("a3", "https://site-a.org/story#comments", 2, T2016 + 2 * DAY),
    line("b1", "https://site-b.org/x", 5, T2016 + 5 * DAY),
    line("b2", "http://site-b.org/x", 1, T2016 + 4 * DAY),
    line("c1", "https://site-c.org/", 1),
    line("d1", "https://site-d.org/", 4),
    line("d1", "https://site-d.org/", 6),
]


def read_links(data_root: Path) -> dict[str, dict]:
    paths = sorted((data_root / "links").glob("links-*.parquet"))
    assert paths, "no link shards written"
    rows = []
    for path in paths:
        table = pq.read_table(path)
        assert schemas.check_table(table.schema, schemas.LINK) == []
        rows.extend(table.to_pylist())
    return {row["normalized_url"]: row for row in rows}


def read_dead_letters(data_root: Path) -> list[dict]:
    rows = []
    for path in sorted((data_root / "links").glob("dead_letter-*.parquet")):
        table = pq.read_table(path)
        assert schemas.check_table(table.schema, schemas.DEAD_LETTER) == []
        rows.extend(table.to_pylist())
    return rows


def funnel_balances(counters: dict[str, int]) -> bool:
    return counters["read"] == sum(counters.get(r, 0) for r in linkset.SUBMISSION_REASONS)


@pytest.fixture(scope="module")
def karma_dump(tmp_path_factory) -> Path:
    return write_dump(tmp_path_factory.mktemp("dumps") / "RS_2016-01.zst", KARMA_LINES)


@pytest.mark.parametrize("rule", ["per_submission", "per_url"])
def test_karma_rules_on_urls_posted_several_times(tmp_path: Path, karma_dump: Path, rule: str):
    config = config_with(dumps=[str(karma_dump)], karma_rule=rule)
    summary = links.run(config, str(tmp_path), [])
    rows = read_links(tmp_path)
    counters = summary["counters"]
    assert funnel_balances(counters)
    assert counters["duplicate_submission"] == 1  # d1 twice
    assert rows["https://site-d.org/"]["karma"] == 6  # the higher of d1's two snapshots
    if rule == "per_submission":
        assert set(rows) == {"https://site-b.org/x", "https://site-d.org/"}
        b = rows["https://site-b.org/x"]
        assert b["karma"] == 5
        assert [s["id"] for s in b["submissions"]] == ["b1"]  # b2 was below karma itself
        assert counters["below_karma"] == 5  # a1 a2 a3 b2 c1
    else:
        assert set(rows) == {
            "https://site-a.org/story",
            "https://site-b.org/x",
            "https://site-d.org/",
        }
        a = rows["https://site-a.org/story"]
        assert a["karma"] == 4
        assert [s["id"] for s in a["submissions"]] == ["a2", "a3", "a1"]  # oldest first
        assert a["urls"] == sorted(
            [
                "http://www.site-a.org/story?utm_source=reddit",
                "https://site-a.org/story/",
                "https://site-a.org/story#comments",
            ]
        )
        assert a["first_created_utc"] == T2016 + DAY
        assert a["host"] == "site-a.org"
        assert rows["https://site-b.org/x"]["karma"] == 6
        assert counters["below_karma"] == 1  # c1, its URL's sum is 1
        assert counters["duplicate_url"] == 3  # a: 2 merged, b: 1 merged
    assert counters["kept"] == len(rows)


def test_generated_dumps_of_every_era_with_bad_input_and_a_url_list(tmp_path: Path):
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    gen = DumpGenerator(seed=11, popular=50)
    lines = list(gen.lines(1500))
    lines.insert(10, b"{this is not json\n")
    lines.insert(20, b'{"id": "x", "created_utc": "soon", "score": 4}\n')
    write_dump(inputs / "RS_2017-01.zst", lines)
    cut = write_dump(inputs / "RS_2017-02.gz", list(gen.lines(600, eras=("modern",))))
    cut.write_bytes(cut.read_bytes()[:-200])
    (inputs / "owt_urls.txt").write_text(
        "https://list-only.org/page 9\nhttps://en.wikipedia.org/wiki/X\n"
    )
    config = config_with(
        dumps=[str(inputs / "RS_*")],
        url_lists=[str(inputs / "*.txt")],
        date_from="",
        date_to="",
        num_shards=2,
    )
    summary = links.run(config, str(tmp_path / "data"), [])
    counters = summary["counters"]
    rows = read_links(tmp_path / "data")
    assert funnel_balances(counters)
    assert counters["read"] > 2000
    assert counters["malformed"] == 2
    assert counters["truncated_files"] == 1
    assert counters["kept"] == len(rows) > 50
    for reason in ("self", "nsfw", "below_karma", "blocked_domain", "wikipedia", "duplicate_url"):
        assert counters[reason] > 0, reason
    assert len(list((tmp_path / "data" / "links").glob("links-*-of-00002.parquet"))) == 2
    assert "https://list-only.org/page" in rows
    for row in rows.values():
        assert row["karma"] >= 3
        assert row["submissions"] and row["urls"]
        assert not row["host"].endswith(("wikipedia.org", "imgur.com", "youtube.com", "reddit.com"))

    dead = {(Path(d["source"]).name, d["reason"]): d for d in read_dead_letters(tmp_path / "data")}
    assert dead[("RS_2017-01.zst", "not_json")]["line"] == 11
    assert dead[("RS_2017-01.zst", "wrong_type")]["line"] == 21
    assert ("RS_2017-02.gz", "truncated") in dead
    written = json.loads((tmp_path / "data" / "links" / "_summary.json").read_text())
    assert written["counters"] == counters


def test_reddit_api_source_in_the_stage(tmp_path: Path):
    subs = [make_submission(i, "news", created_utc=T2016 + i) for i in range(130)]
    subs[0]["url"] = "https://i.imgur.com/cat.png"
    subs[1]["over_18"] = True
    state = RedditState(subreddits={"news": subs})
    config = config_with(reddit_subreddits=["news", "missing"], reddit_listings=["new"])
    with RedditApiServer(state) as server:
        summary = links.run(config, str(tmp_path), [], praw_settings=server.praw_settings())
    counters = summary["counters"]
    rows = read_links(tmp_path)
    assert counters["read"] == 130
    assert counters["blocked_domain"] == 1 and counters["nsfw"] == 1
    assert len(rows) == 128
    assert counters["api_errors"] == 1  # r/missing answers 404: dead-lettered, not fatal
    (dead,) = read_dead_letters(tmp_path)
    assert dead["reason"] == "api_error" and "r/missing" in dead["source"]


def test_a_glob_that_matches_nothing_is_a_stage_error(tmp_path: Path):
    config = config_with(dumps=[str(tmp_path / "nothing-*.zst")])
    with pytest.raises(dataroot.StageError, match="matches no file"):
        links.run(config, str(tmp_path / "data"), [])


def test_an_unknown_karma_rule_is_a_stage_error(tmp_path: Path, karma_dump: Path):
    config = config_with(dumps=[str(karma_dump)], karma_rule="per_vote")
    with pytest.raises(dataroot.StageError, match="karma_rule"):
        links.run(config, str(tmp_path), [])


def test_screening_order_and_date_bounds():
    from pipeline.links.submissions import parse_submission

    rules = linkset.SubmissionRules.from_config(
        config_with(date_from="2010-01-01", subreddit_blocklist=["r/Spam"]).links
    )

    def reason(raw: bytes) -> str | None:
        return rules.screen(parse_submission(raw, "t", 1))[0]

    assert reason(line("s", "https://reddit.com/r/x/comments/s/", 9, is_self=True)) == "self"
    assert reason(line("n", "https://x.org/", 9, over_18=True)) == "nsfw"
    assert reason(line("b", "https://x.org/", 9, subreddit="spam")) == "blocked_subreddit"
    assert reason(line("o", "https://x.org/", 9, created=1_200_000_000)) == "out_of_dates"
    assert reason(line("l", "https://x.org/", 9, created=1_514_764_800)) == "out_of_dates"
    assert reason(line("k", "https://x.org/", 2)) == "below_karma"
    assert reason(line("u", "ftp://x.org/", 9)) == "bad_url"
    assert reason(line("w", "https://de.m.wikipedia.org/wiki/Y", 9)) == "wikipedia"
    assert reason(line("m", "https://x.org/clip.mp4", 9)) == "blocked_domain"
    assert reason(line("g", "https://github.com/openai/gpt-2", 3)) is None


@pytest.mark.parametrize("rule", ["per_submission", "per_url"])
def test_counters_match_the_micro_webs_ground_truth(tmp_path: Path, rule: str):
    microweb = pytest.importorskip("pipeline.demo", reason="the micro-web generator is absent")
    from pipeline.demo.reddit_dump import SNAPSHOT_MONTHS

    truth = microweb.generate(str(tmp_path / "web"), seed=7, scale="tiny")
    config = config_with(dumps=[str(tmp_path / "web" / "dumps" / "*.zst")], karma_rule=rule)
    summary = links.run(config, str(tmp_path / "data"), [])
    counters = summary["counters"]
    (warning,) = summary["warnings"]  # the planted snapshot month, and no other
    flagged = [row["month"] for row in summary["score_health"] if row["snapshot_like"]]
    assert flagged == list(SNAPSHOT_MONTHS) and flagged[0] in warning
    assert counters["read"] == truth.dump_lines
    assert {
        k.split(".", 1)[1]: v for k, v in counters.items() if k.startswith("malformed.")
    } == truth.malformed_by_reason
    expected_kept = (
        truth.links_qualifying if rule == "per_submission" else truth.links_qualifying_per_url
    )
    assert counters["kept"] == expected_kept
    for reason, n in truth.submissions_by_reason.items():
        if reason == "qualifying" or (rule == "per_url" and reason == "below_karma"):
            continue
        assert counters.get(reason, 0) == n, reason
    if rule == "per_submission":
        assert counters["below_karma"] == truth.submissions_by_reason["below_karma"]
        assert (
            counters["kept"] + counters["duplicate_url"]
            == truth.submissions_by_reason["qualifying"]
        )
    assert funnel_balances(counters)


def test_api_source_without_credentials_is_a_stage_error(tmp_path: Path, monkeypatch):
    for var in ("praw_client_id", "praw_client_secret"):
        monkeypatch.delenv(var, raising=False)
    config = config_with(reddit_subreddits=["news"], reddit_site="no-such-site")
    with pytest.raises(dataroot.StageError, match="praw_client_id"):
        links.run(config, str(tmp_path), [])


# --- the plain functions, without a pipeline ---------------------------------------------


def rules_for(**links_keys) -> linkset.SubmissionRules:
    return linkset.SubmissionRules.from_config(config_with(**links_keys).links)


def test_screen_dump_yields_postings_dead_letters_and_a_truncation(tmp_path: Path):
    lines = [*KARMA_LINES, b"\n", b"{not json\n", line("s", "https://x.org/", 9, is_self=True)]
    cut = write_dump(tmp_path / "RS_2016-01.gz", lines * 40)
    cut.write_bytes(cut.read_bytes()[:-30])
    tally = linkset.Tally()
    out = list(linkset.screen_dump(str(cut), rules_for(date_to=""), tally))
    postings = [item for item in out if isinstance(item, tuple)]
    dead = [item for item in out if isinstance(item, dict)]
    assert postings[0] == (
        "https://site-b.org/x",
        linkset.Posting("https://site-b.org/x", "b1", "news", 5, T2016 + 5 * DAY, "title b1"),
    )
    assert {d["reason"] for d in dead} == {"not_json", "truncated"}
    assert dead[0]["line"] == 10 and dead[0]["raw"] == "{not json"
    assert dead[-1]["reason"] == "truncated" and dead[-1]["source"] == str(cut)
    assert tally.counts == {"truncated_files": 1}  # the rest was flushed after each chunk


def test_screen_one_counts_each_record_once():
    tally = linkset.Tally()
    rules = rules_for()
    listing = [
        {"id": "k", "created_utc": T2016, "score": 9, "url": "https://x.org/a", "is_self": False},
        {"id": "l", "created_utc": T2016, "score": 1, "url": "https://x.org/b", "is_self": False},
        {"id": "m", "score": 9},
    ]
    out = list(linkset.screen_listing(listing, "reddit-api r/news new", rules, tally))
    assert [type(item) for item in out] == [tuple, dict]
    assert out[0][1].id == "k" and out[1]["reason"] == "missing_field"
    assert tally.counts == {
        "read": 3,
        "below_karma": 1,
        "malformed": 1,
        "malformed.missing_field": 1,
    }


def test_build_link_merges_sightings_by_the_karma_rule():
    Posting = linkset.Posting
    postings = [
        Posting("http://site-a.org/s", "a1", "news", 2, T2016 + 2 * DAY, "t"),
        Posting("https://site-a.org/s/", "a2", "news", 1, T2016 + DAY, "t"),
        Posting("https://site-a.org/s/", "a2", "news", 3, T2016 + DAY, "t"),  # a later snapshot
        Posting("https://site-a.org/s", None, None, 3, None, None),  # a URL-list entry
    ]
    tally = linkset.Tally()
    row = linkset.build_link("https://site-a.org/s", postings, True, 3, tally)
    assert row is not None
    assert row["karma"] == 2 + 3 + 3
    assert [s["id"] for s in row["submissions"]] == ["a2", "a1", None]
    assert row["submissions"][0]["score"] == 3
    assert row["urls"] == ["http://site-a.org/s", "https://site-a.org/s", "https://site-a.org/s/"]
    assert row["first_created_utc"] == T2016 + DAY and row["host"] == "site-a.org"
    assert tally.counts == {"duplicate_submission": 1, "kept": 1, "duplicate_url": 2}

    per_submission = linkset.build_link("https://site-a.org/s", postings, False, 3, tally)
    assert per_submission is not None and per_submission["karma"] == 3
    short = linkset.Tally()
    assert linkset.build_link("https://site-a.org/s", postings[:2], True, 9, short) is None
    assert short.counts == {"duplicate_submission": 0, "below_karma": 2}


def test_funnel_rows_add_up_the_counters():
    counters = {"read": 20, "malformed": 1, "self": 2, "bad_url": 1, "wikipedia": 1}
    counters |= {"below_karma": 5, "duplicate_url": 3, "duplicate_submission": 1, "kept": 6}
    rows = dict(linkset.funnel_rows(counters))
    assert rows["self / NSFW / blocked / out of dates"] == 3
    assert rows["duplicate URLs merged"] == 4 and rows["links kept"] == 6


ONE_PROCESS = ["--direct_num_workers=1"]
TWO_PROCESSES = ["--direct_running_mode=multi_processing", "--direct_num_workers=2"]


def test_one_process_and_two_worker_processes_give_the_same_links(tmp_path: Path):
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    gen = DumpGenerator(seed=23, popular=80)  # popular URLs span files: groups cross workers
    for month in range(1, 7):
        write_dump(inputs / f"RS_2017-{month:02d}.zst", list(gen.lines(2500)))
    (inputs / "owt_urls.txt").write_text("https://list-only.org/page 9\nnot a url 4\n")
    config = config_with(
        dumps=[str(inputs / "RS_*")], url_lists=[str(inputs / "*.txt")], date_from="", date_to=""
    )
    outputs = []
    for name, args in (("one", ONE_PROCESS), ("two", TWO_PROCESSES)):
        summary = links.run(config, str(tmp_path / name), args)
        dead = sorted(read_dead_letters(tmp_path / name), key=lambda d: json.dumps(d))
        outputs.append((read_links(tmp_path / name), dead, summary["counters"]))
    assert outputs[0][2]["read"] == 6 * 2500 + 2 and outputs[0][2]["kept"] > 1000
    assert outputs[0] == outputs[1]
