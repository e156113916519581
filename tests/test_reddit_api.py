"""The live-API source end to end: real PRAW against a loopback Reddit API server."""

from __future__ import annotations

import logging

import pytest

from pipeline.links import reddit_api
from tests.reddit_api_server import (
    CLIENT_SECRET,
    TOKEN,
    RedditApiServer,
    RedditState,
    make_submission,
)


def serve(n: int = 250, **state_kwargs) -> RedditState:
    return RedditState(
        subreddits={"news": [make_submission(i, "news") for i in range(n)]}, **state_kwargs
    )


def listing_gets(state: RedditState, path: str = "/r/news/new") -> list:
    return [r for r in state.requests if r.method == "GET" and r.path == path]


def test_listing_is_paginated_with_after_up_to_the_limit():
    state = serve(250)
    with RedditApiServer(state) as server:
        reddit = reddit_api.make_reddit("webtext", server.praw_settings())
        got = list(reddit_api.iter_listing(reddit, "news", "new", limit=230))
    assert [f["id"] for f in got] == [f"s{i:05d}" for i in range(230)]
    gets = listing_gets(state)
    assert [g.params.get("after") for g in gets] == [None, "t3_s00099", "t3_s00199"]
    tokens = [r for r in state.requests if r.path == "/api/v1/access_token"]
    assert len(tokens) == 1 and tokens[0].params == {"grant_type": "client_credentials"}


def test_listing_stops_when_the_subreddit_runs_out():
    state = serve(120)
    with RedditApiServer(state) as server:
        reddit = reddit_api.make_reddit("webtext", server.praw_settings())
        got = list(reddit_api.iter_listing(reddit, "news", "hot", limit=1000))
    assert len(got) == 120


def test_top_listing_sends_its_time_filter():
    state = RedditState(subreddits={"science": [make_submission(i, "science") for i in range(5)]})
    with RedditApiServer(state) as server:
        reddit = reddit_api.make_reddit("webtext", server.praw_settings())
        got = list(reddit_api.iter_listing(reddit, "science", "top:week", limit=10))
    assert len(got) == 5
    assert listing_gets(state, "/r/science/top")[0].params["t"] == "week"


def test_a_5xx_is_retried_and_a_429_is_waited_out_without_losing_or_repeating_items():
    state = serve(250, retry_after_s=0.3)
    state.fail[("/r/news/new", 2)] = 503
    state.fail[("/r/news/new", 4)] = 429
    waits: list[float] = []
    with RedditApiServer(state) as server:
        reddit = reddit_api.make_reddit("webtext", server.praw_settings())
        got = list(reddit_api.iter_listing(reddit, "news", "new", limit=250, sleep=waits.append))
    assert [f["id"] for f in got] == [f"s{i:05d}" for i in range(250)]
    assert [g.status for g in listing_gets(state)] == [200, 503, 200, 429, 200]
    assert waits == [0.3]  # the server's Retry-After
    assert listing_gets(state)[-1].params["after"] == "t3_s00199"  # resumed, not restarted


def test_persistent_429_becomes_an_api_error():
    state = serve(50, retry_after_s=0.0)
    for n in range(1, 10):
        state.fail[("/r/news/new", n)] = 429
    with RedditApiServer(state) as server:
        reddit = reddit_api.make_reddit("webtext", server.praw_settings())
        with pytest.raises(reddit_api.RedditApiError, match="rate-limited"):
            list(
                reddit_api.iter_listing(reddit, "news", "new", 10, max_429=2, sleep=lambda s: None)
            )


def test_exhausted_rate_limit_window_makes_praw_wait_for_the_reset():
    state = serve(250, ratelimit_remaining=1.0, ratelimit_reset_s=1)
    with RedditApiServer(state) as server:
        reddit = reddit_api.make_reddit("webtext", server.praw_settings())
        list(reddit_api.iter_listing(reddit, "news", "new", limit=150))
    first, second = listing_gets(state)[:2]
    assert second.at - first.at >= 0.95  # remaining hit 0: PRAW slept until the reset


def test_submission_fields_feed_the_dump_normalizer():
    from pipeline.links.submissions import submission_from_fields

    state = RedditState(
        subreddits={"pics": [make_submission(1, "pics", over_18=True, is_self=False)]}
    )
    with RedditApiServer(state) as server:
        reddit = reddit_api.make_reddit("webtext", server.praw_settings())
        (fields,) = reddit_api.iter_listing(reddit, "pics", "new", limit=5)
    sub = submission_from_fields(fields, reddit_api.SOURCE, None)
    assert (sub.id, sub.subreddit, sub.over_18, sub.created_utc) == (
        "s00001",
        "pics",
        True,
        1500000060,
    )


def test_credentials_are_never_logged(caplog):
    caplog.set_level(logging.DEBUG)
    state = serve(150)
    with RedditApiServer(state) as server:
        reddit = reddit_api.make_reddit("webtext", server.praw_settings())
        list(reddit_api.iter_listing(reddit, "news", "new", limit=150))
    assert CLIENT_SECRET not in caplog.text
    assert TOKEN not in caplog.text


def test_missing_credentials_say_what_to_set(monkeypatch):
    for var in ("praw_client_id", "praw_client_secret"):
        monkeypatch.delenv(var, raising=False)
    with pytest.raises(reddit_api.RedditApiError, match="praw_client_id"):
        reddit_api.make_reddit("no-such-site", {"oauth_url": "http://127.0.0.1:9"})


@pytest.mark.parametrize("spec", ["newest", "hot:week", "top:decade"])
def test_unknown_listings_are_refused(spec):
    with pytest.raises(ValueError):
        reddit_api.parse_listing(spec)
