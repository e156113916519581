"""The live Reddit API as a links source, through PRAW.

Each (subreddit, listing) pair is paged through PRAW's listing generator, 100 items a request
with `after`, up to `reddit_limit` items (Reddit stops near 1000). Credentials come from
praw.ini (the `reddit_site` section) or the environment (`praw_client_id`,
`praw_client_secret`, `praw_user_agent`); this module never reads, logs or stores them.

Rate limits: PRAW reads Reddit's `x-ratelimit-*` headers and sleeps before a request when the
window is spent, and retries a 5xx twice itself. A 429 surfaces as `TooManyRequests`: this
module waits for `Retry-After` (bounded) and resumes the listing after the last item it got.
"""

from __future__ import annotations

import configparser
import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

import praw
import prawcore

log = logging.getLogger("webtext")

LISTINGS = ("new", "hot", "top", "rising", "controversial")
TIME_FILTERS = ("all", "day", "hour", "month", "week", "year")
TIME_FILTERED = ("top", "controversial")  # the listings that take a time filter
DEFAULT_USER_AGENT = "webtext-links/0.1 (research corpus rebuild; +https://github.com/webtext)"
SOURCE = "reddit-api"
# Submission fields submissions.submission_from_fields reads, taken from PRAW's parsed JSON.
FIELDS = (
    "id",
    "created_utc",
    "score",
    "ups",
    "title",
    "url",
    "url_overridden_by_dest",
    "domain",
    "is_self",
    "over_18",
    "selftext",
    "removed_by_category",
    "crosspost_parent",
)


class RedditApiError(RuntimeError):
    """A listing that could not be read; the message says which and why, never credentials."""


def parse_listing(spec: str) -> tuple[str, str | None]:
    """ "new" -> ("new", None); "top:year" -> ("top", "year"). Raises ValueError when unknown."""
    name, _, time_filter = spec.partition(":")
    if name not in LISTINGS:
        raise ValueError(f"unknown listing {spec!r}: use one of {', '.join(LISTINGS)}")
    if time_filter and (name not in TIME_FILTERED or time_filter not in TIME_FILTERS):
        raise ValueError(
            f"listing {spec!r}: a time filter ({', '.join(TIME_FILTERS)}) goes with "
            f"{' or '.join(TIME_FILTERED)}"
        )
    return name, (time_filter or ("all" if name in TIME_FILTERED else None))


def make_reddit(site: str, settings: dict[str, Any] | None = None) -> praw.Reddit:
    """A read-only PRAW client for the praw.ini section `site` (falls back to the environment).

    `settings` are extra PRAW settings, e.g. oauth_url / reddit_url for a test server.
    """
    settings = {"check_for_updates": False, "check_for_async": False, **(settings or {})}
    try:
        reddit = _construct(site, settings)
    except praw.exceptions.MissingRequiredAttributeException as e:
        if "user_agent" not in str(e):
            raise RedditApiError(_missing_credentials(site)) from None
        reddit = _construct(site, {**settings, "user_agent": DEFAULT_USER_AGENT})
    if not reddit.config.client_id or not reddit.config.client_secret:
        raise RedditApiError(_missing_credentials(site))
    reddit.read_only = True
    return reddit


def _construct(site: str, settings: dict[str, Any]) -> praw.Reddit:
    try:
        return praw.Reddit(site_name=site, **settings)
    except configparser.NoSectionError:  # no praw.ini section: the environment only
        return praw.Reddit(site_name="DEFAULT", **settings)


def _missing_credentials(site: str) -> str:
    return (
        f"no Reddit API credentials: set praw_client_id and praw_client_secret in the "
        f"environment, or add a [{site}] section to praw.ini"
    )


def submission_fields(submission: Any) -> dict[str, Any]:
    """The JSON fields of a PRAW Submission, without triggering PRAW's lazy refetch."""
    data = vars(submission)
    fields = {key: data.get(key) for key in FIELDS}
    subreddit = data.get("subreddit")
    fields["subreddit"] = getattr(subreddit, "display_name", subreddit)
    fields["retrieved_utc"] = int(time.time())  # the live score is read now
    return fields


def _listing(reddit: praw.Reddit, subreddit: str, name: str, time_filter: str | None, **kw):
    sub = reddit.subreddit(subreddit)
    if time_filter is not None:
        return getattr(sub, name)(time_filter=time_filter, **kw)
    return getattr(sub, name)(**kw)


def retry_after_s(exc: prawcore.exceptions.TooManyRequests, default_s: float) -> float:
    header = exc.response.headers.get("retry-after") if exc.response is not None else None
    try:
        return float(header) if header is not None else default_s
    except ValueError:
        return default_s


def iter_listing(
    reddit: praw.Reddit,
    subreddit: str,
    listing: str,
    limit: int,
    max_429: int = 5,
    max_wait_s: float = 120.0,
    sleep: Callable[[float], None] = time.sleep,
) -> Iterator[dict[str, Any]]:
    """The fields of each submission of one listing, in the listing's order, up to `limit`.

    On a 429 it waits for Retry-After (at most `max_wait_s`) and resumes after the last
    submission received; after `max_429` of them it raises RedditApiError.
    """
    name, time_filter = parse_listing(listing)
    yielded, after, throttled = 0, None, 0
    while yielded < limit:
        params = {"after": after} if after else {}
        items = _listing(reddit, subreddit, name, time_filter, limit=limit - yielded, params=params)
        try:
            for submission in items:
                yielded += 1
                after = submission.fullname
                yield submission_fields(submission)
            return
        except prawcore.exceptions.TooManyRequests as e:
            throttled += 1
            if throttled > max_429:
                raise RedditApiError(
                    f"r/{subreddit} {listing}: still rate-limited after {max_429} waits"
                ) from None
            wait = min(retry_after_s(e, 10.0), max_wait_s)
            log.info("reddit-api: r/%s %s: 429, waiting %.1f s", subreddit, listing, wait)
            sleep(wait)
        except prawcore.exceptions.PrawcoreException as e:
            raise RedditApiError(f"r/{subreddit} {listing}: {type(e).__name__}: {e}") from None
