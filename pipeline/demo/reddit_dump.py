"""The synthetic Reddit dump: one Pushshift-format file per month, each submission written
with the fields of its month's era, reposts as URL variants, a few malformed lines among
them, compressed with zstd and a 2 GiB window like the real dumps."""

from __future__ import annotations

import calendar
import io
import json
import random
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import zstandard

from pipeline.demo.site import Host
from pipeline.demo.text import slugify

DUMP_WINDOW_LOG = 31  # the Pushshift dumps were written with zstd --long=31

# Monthly dump files and their field era. The last two lie after WebText's cut-off.
MONTHS: tuple[tuple[str, str], ...] = (
    ("2008-11", "early"),
    ("2009-06", "early"),
    ("2010-02", "early"),
    ("2011-03", "middle-str"),  # created_utc as a string, as in some early Pushshift files
    ("2012-10", "middle-str"),
    ("2014-05", "middle"),
    ("2015-09", "middle"),
    ("2016-07", "late"),
    ("2017-05", "late"),
    ("2017-12", "late"),
    ("2018-01", "late"),
    ("2018-02", "late"),
)
# Months whose dump was read minutes after each post and never again (Pushshift's live
# ingest): the links stage's score health flags them. The scores are the planted ones.
SNAPSHOT_MONTHS = ("2017-12",)
CUTOFF = calendar.timegm((2018, 1, 1, 0, 0, 0))  # links.date_to of the demo config, exclusive
IN_RANGE = tuple(i for i, (m, _) in enumerate(MONTHS) if m < "2018-01")
AFTER_RANGE = tuple(i for i, (m, _) in enumerate(MONTHS) if m >= "2018-01")
FLAGGED = tuple(i for i in IN_RANGE if MONTHS[i][1] != "early")  # months that have over_18
MIDDLE = tuple(i for i in IN_RANGE if MONTHS[i][1] == "middle")

TRACKING_VARIANTS = (
    "utm_source=reddit&utm_medium=social",
    "utm_campaign=feed",
    "fbclid=IwAR0x{n}",
    "ref=reddit",
    "gclid=Cj0K{n}",
)


@dataclass
class Posting:
    """One submission before it becomes a dump line."""

    month: int  # index into MONTHS
    created_utc: int
    url: str | None  # None for self posts: their permalink needs the id
    score: int
    title: str
    subreddit: str
    reason: str  # qualifying, below_karma, nsfw, self, blocked_domain, wikipedia, out_of_dates
    over_18: bool = False
    removed: str | None = None  # "selftext", "author" or "moderator"
    crosspost_of: Posting | None = None
    id: str = ""


def month_bounds(month: int) -> tuple[int, int]:
    year, mon = map(int, MONTHS[month][0].split("-"))
    start = calendar.timegm((year, mon, 1, 0, 0, 0))
    days = calendar.monthrange(year, mon)[1]
    return start, start + days * 86400


def created_in(month: int, rng: random.Random, earliest_offset: int = 7200) -> int:
    start, end = month_bounds(month)
    return rng.randrange(start + earliest_offset, end)


def base36(n: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while n:
        n, r = divmod(n, 36)
        out = digits[r] + out
    return out or "0"


def high_score(rng: random.Random) -> int:
    return 3 + int(rng.expovariate(1 / 80))


def variant(url: str, rng: random.Random, n: int) -> str:
    """Another way of writing the same URL that link normalization must merge."""
    scheme, rest = url.split("://", 1)
    host, _, target = rest.partition("/")
    target = "/" + target
    path, _, query = target.partition("?")
    kind = rng.choice(("https", "www", "fragment", "tracking", "case", "port", "slash"))
    if kind == "https":
        return f"https://{host}{target}"
    if kind == "www" and not host.startswith("xn--"):
        return f"{scheme}://www.{host}{target}"
    if kind == "fragment":
        return f"{url}#{rng.choice(('comments', 'section-2', 'top', 'more'))}"
    if kind == "case":
        return f"{scheme}://{host.upper()}{target}"
    if kind == "port":
        return f"{scheme}://{host}:80{target}"
    if kind == "slash" and not query and not path.endswith((".html", ".php")):
        path = path.rstrip("/") if path.endswith("/") else path + "/"
        return f"{scheme}://{host}{path}"
    extra = rng.choice(TRACKING_VARIANTS).format(n=n)
    return f"{url}{'&' if query else '?'}{extra}"


def retrieval_lag(p: Posting) -> int:
    """Seconds from posting to the dump's read: 30 days, or minutes in a snapshot month (from
    the id, not the random stream, so that every other byte of the dump stays the same)."""
    if MONTHS[p.month][0] in SNAPSHOT_MONTHS:
        return 30 + int(p.id, 36) % 900
    return 86400 * 30


def submission_json(p: Posting) -> dict[str, Any]:
    """The submission as a dump of its month's era writes it."""
    era = MONTHS[p.month][1]
    author = "[deleted]" if p.removed in ("author", "moderator") else f"{p.subreddit[:4]}_{p.id}"
    is_self = p.reason == "self"
    permalink = f"/r/{p.subreddit}/comments/{p.id}/{slugify(p.title)}/"
    scheme = "https" if era == "late" else "http"
    url = f"{scheme}://www.reddit.com{permalink}" if is_self else p.url
    selftext = ""
    if is_self:
        selftext = {"selftext": "[removed]", "author": "[deleted]"}.get(
            p.removed or "", f"Discussion: {p.title}."
        )
    record: dict[str, Any] = {
        "id": p.id,
        "name": f"t3_{p.id}",
        "title": p.title,
        "url": url,
        "author": author,
        "subreddit": p.subreddit,
        "created_utc": p.created_utc,
        "num_comments": max(0, p.score // 3),
        "permalink": permalink,
        "selftext": selftext,
    }
    if era == "early":
        record["ups"] = p.score
        record["downs"] = max(0, p.score // 4)
        return record
    if era == "middle-str":
        record["created_utc"] = str(p.created_utc)
    domain = (
        f"self.{p.subreddit}" if is_self else re.sub(r"^https?://(www\.)?([^/:#?]+).*$", r"\2", url)
    )
    record.update(
        score=p.score,
        ups=p.score,
        is_self=is_self,
        over_18=p.over_18,
        domain=domain.lower(),
        retrieved_on=p.created_utc + retrieval_lag(p),
        stickied=False,
    )
    if era == "late":
        record.update(
            removed_by_category="moderator" if p.removed == "moderator" else None,
            subreddit_type="public",
            is_video=False,
            total_awards_received=0,
        )
        if not is_self:
            record["url_overridden_by_dest"] = p.url
        if p.crosspost_of is not None:
            parent = p.crosspost_of
            record["crosspost_parent"] = f"t3_{parent.id}"
            record["url"] = f"/r/{parent.subreddit}/comments/{parent.id}/{slugify(parent.title)}/"
    return record


# The dead-letter reason of each malformed line `malformed_line` writes, by its index.
MALFORMED_REASONS = (
    "not_json",
    "not_json",
    "not_object",
    "wrong_type",
    "wrong_type",
    "wrong_type",
    "missing_field",
)


def malformed_line(reason_index: int, created: int, rng: random.Random, url: str) -> str:
    """A line the links stage must send to its dead-letter output; never a submission."""
    good = {
        "id": f"zz{reason_index}{base36(rng.randrange(36**4))}",
        "title": "A line that must not become a link",
        "url": url,
        "subreddit": "news",
        "created_utc": created,
        "score": 50,
        "is_self": False,
        "over_18": False,
        "domain": url.split("/")[2],
    }
    if reason_index == 0:
        return json.dumps(good)[: rng.randint(30, 60)]  # cut mid-line: not JSON
    if reason_index == 1:
        return f"Pushshift ingest checkpoint {created}"
    if reason_index == 2:
        return json.dumps([good["id"], good["url"], good["score"]])
    if reason_index == 3:
        return json.dumps({**good, "score": "lots"})
    if reason_index == 4:
        return json.dumps({**good, "over_18": "maybe"})
    if reason_index == 5:
        return json.dumps({**good, "id": 123456})
    bad = dict(good)
    del bad["created_utc"]
    return json.dumps(bad)


def write_dump(path: Path, lines: list[str]) -> None:
    """Newline-delimited JSON, zstd with a 2 GiB window and no content size, as Pushshift."""
    params = zstandard.ZstdCompressionParameters.from_level(
        3, window_log=DUMP_WINDOW_LOG, write_content_size=False, write_checksum=True
    )
    buffer = io.BytesIO()
    with zstandard.ZstdCompressor(compression_params=params).stream_writer(
        buffer, closefd=False
    ) as writer:
        writer.write("".join(line + "\n" for line in lines).encode("utf-8"))
    path.write_bytes(buffer.getvalue())


def dump_lines(
    postings: list[Posting], hosts: list[Host], rng: random.Random
) -> tuple[dict[int, list[str]], Counter]:
    """Assign ids in time order, render each month's lines, and mix in malformed lines."""
    postings = sorted(postings, key=lambda p: (p.created_utc, p.month))
    start = 10_000_000
    for i, p in enumerate(postings):
        p.id = base36(start + i * 7 + rng.randrange(7))
    # a crosspost must come after its parent
    for p in postings:
        if p.crosspost_of is not None and p.crosspost_of.created_utc >= p.created_utc:
            p.crosspost_of = None
    timed: dict[int, list[tuple[int, str]]] = {i: [] for i in range(len(MONTHS))}
    for p in postings:
        line = json.dumps(submission_json(p), separators=(",", ":"))
        timed[p.month].append((p.created_utc, line))
    malformed: Counter = Counter()
    for index, reason in enumerate(MALFORMED_REASONS):
        month = rng.choice(MIDDLE)  # the field set of these lines is the middle era's
        host = rng.choice(hosts)
        url = f"http://{host.name}{host.new_path(f'malformed-{index}', rng, 2011)}"
        created = created_in(month, rng)
        timed[month].append((created, malformed_line(index, created, rng, url)))
        malformed[reason] += 1
    by_month = {
        month: [line for _, line in sorted(lines, key=lambda t: t[0])]  # stable: time order
        for month, lines in timed.items()
    }
    return by_month, malformed
