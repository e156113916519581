"""`webtext rescore` against the loopback Reddit API with real PRAW, and its scores in links."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import signal
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import schemas
from pipeline.config import load
from pipeline.links import rescore
from pipeline.links import stage as links
from pipeline.links.scores import ScoreBook
from tests.conftest import DEMO_CONFIG, REPO
from tests.reddit_api_server import (
    CLIENT_SECRET,
    TOKEN,
    RedditApiServer,
    RedditState,
    make_submission,
)
from tests.reddit_dumps import write_dump

CREATED = 1_451_606_400  # 2016-01-01
N = 250


def sub_id(i: int) -> str:
    return f"s{i:05d}"


def dump_line(i: int, score: int = 1, lag_s: int = 60) -> bytes:
    """A link post as a snapshot dump has it: read `lag_s` after posting."""
    fields = {
        "id": sub_id(i),
        "created_utc": CREATED + i * 60,
        "retrieved_on": CREATED + i * 60 + lag_s,
        "score": score,
        "url": f"https://site-{i}.org/story",
        "subreddit": "news",
        "title": f"story {i}",
        "is_self": False,
        "over_18": False,
    }
    return json.dumps(fields).encode() + b"\n"


def api_submission(i: int) -> dict | None:
    """Today's state of submission i: i % 10 == 0 removed, 1 deleted, 2 gone (not returned),
    3 still below karma; the rest have climbed to 10-14 points."""
    kind = i % 10
    if kind == 2:
        return None
    extra: dict = {"created_utc": float(CREATED + i * 60)}
    if kind == 0:
        extra.update(removed_by_category="moderator")
    elif kind == 1:
        extra.update(removed_by_category="deleted", author="[deleted]")
    elif kind == 3:
        extra.update(score=2, ups=2)
    return make_submission(i, "news", **extra)


def serve(**state_kwargs) -> RedditState:
    things = [s for s in map(api_submission, range(N)) if s is not None]
    return RedditState(subreddits={"news": things}, **state_kwargs)


def config_for(dump: Path, **links_keys):
    config = load(DEMO_CONFIG)
    keys = {"dumps": [str(dump)], "date_to": "", **links_keys}
    return dataclasses.replace(config, links=dataclasses.replace(config.links, **keys))


@pytest.fixture
def dump(tmp_path: Path) -> Path:
    lines = [dump_line(i) for i in range(N)]
    lines.append(dump_line(N, score=40))  # above karma: never flippable
    lines.append(dump_line(N + 1, lag_s=86400 * 30))  # read a month later: settled, kept low
    return write_dump(tmp_path / "RS_2016-01.zst", lines)


def info_requests(state: RedditState, status: int | None = 200) -> list[list[str]]:
    return [
        [name.removeprefix("t3_") for name in r.params["id"].split(",")]
        for r in state.requests
        if r.path == "/api/info" and (status is None or r.status == status)
    ]


def rescore_fast(dump: Path, tmp_path: Path) -> str:
    """Rescore the dump's flippable ids against a fresh server; the scores' path."""
    with RedditApiServer(serve()) as server:
        summary = rescore.run(
            config_for(dump), str(tmp_path / "data"), calls_per_minute=6000,
            praw_settings=server.praw_settings(),
        )  # fmt: skip
    return summary["path"]


def read_scores(path: str) -> dict[str, dict]:
    table = pq.read_table(path)
    assert schemas.check_table(table.schema, schemas.SCORES) == []
    return {row["id"]: row for row in table.to_pylist()}


def test_flippable_ids_in_batches_of_100_within_the_rate_limit(tmp_path, dump, capsys):
    state = serve()
    with RedditApiServer(state) as server:
        summary = rescore.run(
            config_for(dump), str(tmp_path / "data"), calls_per_minute=600,
            praw_settings=server.praw_settings(),
        )  # fmt: skip
    out = capsys.readouterr().out
    assert "250 flippable ids, 0 already answered; 3 calls of 100" in out
    asked = info_requests(state)
    assert [len(ids) for ids in asked] == [100, 100, 50]
    assert sorted(i for ids in asked for i in ids) == [sub_id(i) for i in range(N)]
    # 600 a minute: the calls leave 0.1 s apart (Pacer, below); arrival times at the server
    # also carry PRAW's and the network's delays, so they only bound the whole run from below
    times = [r.at for r in state.requests if r.path == "/api/info"]
    assert times[2] - times[0] >= 0.1
    assert summary["calls"] == 3 and summary["scores"] == N
    scores = read_scores(summary["path"])
    assert scores[sub_id(4)]["score"] == 14 and scores[sub_id(4)]["state"] == "live"
    assert scores[sub_id(4)]["fetched_utc"] > CREATED


def test_removed_deleted_and_missing_posts(tmp_path, dump):
    path = rescore_fast(dump, tmp_path)
    scores = read_scores(path)
    assert {scores[sub_id(i)]["state"] for i in (10, 20)} == {"removed"}
    assert {scores[sub_id(i)]["state"] for i in (11, 21)} == {"deleted"}
    gone = scores[sub_id(12)]
    assert gone["state"] == "missing" and gone["score"] is None
    assert scores[sub_id(13)]["score"] == 2


def test_429_waits_for_retry_after_and_5xx_is_retried(tmp_path, dump):
    state = serve(retry_after_s=0.3)
    state.fail[("/api/info", 2)] = 429
    for n in (4, 5, 6):  # PRAW tries three times, then rescore retries the call itself
        state.fail[("/api/info", n)] = 503
    waits: list[float] = []
    policy = rescore.RetryPolicy(backoff_base_s=0.5)
    with RedditApiServer(state) as server:
        summary = rescore.run(
            config_for(dump), str(tmp_path / "data"), calls_per_minute=6000,
            praw_settings=server.praw_settings(), sleep=waits.append, policy=policy,
        )  # fmt: skip
    statuses = [r.status for r in state.requests if r.path == "/api/info"]
    assert statuses == [200, 429, 200, 503, 503, 503, 200]
    assert 0.3 in waits and 0.5 in waits  # Retry-After, then the first backoff
    answered = info_requests(state)
    assert sorted(i for ids in answered for i in ids) == [sub_id(i) for i in range(N)]
    assert summary["scores"] == N


def test_a_killed_run_resumes_and_asks_each_id_once(tmp_path, dump):
    state = serve()
    env = {**os.environ, "PYTHONPATH": str(REPO), "PRAW_ALLOW_ENDPOINT_OVERRIDE": "1"}
    data = tmp_path / "data"
    with RedditApiServer(state) as server:
        settings = server.praw_settings()
        (tmp_path / "praw.ini").write_text(
            "[webtext]\n" + "".join(f"{k}={v}\n" for k, v in settings.items())
        )
        command = [
            sys.executable, "-m", "pipeline.cli", "rescore", "--config", str(DEMO_CONFIG),
            "--data-root", str(data), "--set", f'links.dumps=["{dump}"]',
            "--set", 'links.date_to=""', "--calls-per-minute", "6000",
        ]  # fmt: skip
        first = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL)

        def kill_on_third(n: int) -> bool:
            if n == 3:
                os.kill(first.pid, signal.SIGKILL)
                return False
            return True

        state.on_info = kill_on_third
        first.wait(timeout=120)
        assert first.returncode == -signal.SIGKILL
        state.on_info = None
        second = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True)
    assert second.returncode == 0, second.stderr[-2000:]
    assert "250 flippable ids, 200 already answered; 1 calls" in second.stdout
    answered = [i for ids in info_requests(state) for i in ids]
    assert sorted(answered) == [sub_id(i) for i in range(N)]  # each exactly once
    (dropped,) = info_requests(state, status=0)
    assert info_requests(state)[-1] == dropped  # the rerun asked only the lost call's ids
    assert len(read_scores(str(data / "scores" / "scores.parquet"))) == N
    assert CLIENT_SECRET not in second.stdout + second.stderr


def test_all_candidates_and_the_estimate_without_calls(tmp_path, dump, capsys):
    state = serve()
    with RedditApiServer(state) as server:
        summary = rescore.run(
            config_for(dump), str(tmp_path / "data"), selection="all", estimate_only=True,
            praw_settings=server.praw_settings(),
        )  # fmt: skip
    assert summary == {"ids": N + 2, "answered_before": 0, "calls": 0}
    assert "252 all ids, 0 already answered; 3 calls of 100 to go, about 0.0 hours" in (
        capsys.readouterr().out
    )
    assert info_requests(state, status=None) == []


def test_fresher_scores_change_the_links_stages_decisions(tmp_path, dump, caplog):
    caplog.set_level(logging.DEBUG)
    path = rescore_fast(dump, tmp_path)
    assert CLIENT_SECRET not in caplog.text and TOKEN not in caplog.text
    before = links.run(config_for(dump), str(tmp_path / "before"), [])
    after = links.run(config_for(dump, scores=[path]), str(tmp_path / "after"), [])
    assert before["counters"]["kept"] == 1  # only the post that had 40 points
    kept = {
        row["normalized_url"]: row
        for p in (tmp_path / "after" / "links").glob("links-*.parquet")
        for row in pq.read_table(p).to_pylist()
    }
    climbed = [i for i in range(N) if i % 10 not in (2, 3)]  # removed and deleted count too
    assert set(kept) == {f"https://site-{i}.org/story" for i in [*climbed, N]}
    assert after["counters"]["rescored"] == N - N // 10  # missing ones keep the dump's score
    row = kept[f"https://site-{4}.org/story"]["submissions"][0]
    assert row["score"] == 14 and row["retrieved_utc"] > CREATED + 86400
    # the snapshot month was flagged before, and no longer is with today's scores
    assert before["warnings"] and not after["warnings"]


def test_an_older_score_does_not_replace_a_fresher_dump_score(tmp_path):
    from pipeline.links.submissions import parse_submission

    table = pa.Table.from_pylist(
        [{"id": "abc", "score": 1, "fetched_utc": 1000, "state": "live"}], schema=schemas.SCORES
    )
    book = ScoreBook(table)
    line = b'{"id":"abc","created_utc":10,"score":9,"url":"https://x.org","retrieved_on":5000}'
    sub = parse_submission(line, "t", 1)
    assert not book.refresh(sub) and sub.score == 9


def test_missing_credentials_say_what_to_set(tmp_path, dump, monkeypatch):
    for var in ("praw_client_id", "praw_client_secret"):
        monkeypatch.delenv(var, raising=False)
    config = config_for(dump, reddit_site="no-such-site")
    with pytest.raises(rescore.RescoreError, match="praw_client_id"):
        rescore.run(config, str(tmp_path / "data"), praw_settings={"oauth_url": "http://x:9"})


def test_the_pacer_spaces_calls_to_the_rate():
    now, slept = [100.0], []

    def sleep(seconds: float) -> None:
        slept.append(round(seconds, 6))
        now[0] += seconds

    pacer = rescore.Pacer(600, clock=lambda: now[0], sleep=sleep)
    pacer.wait()  # the first call goes at once
    now[0] += 0.03  # the call took 30 ms
    pacer.wait()
    now[0] += 0.25  # a slow call: the next one need not wait
    pacer.wait()
    pacer.wait()
    assert slept == [0.07, 0.1]
