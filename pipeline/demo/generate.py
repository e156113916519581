"""Generate the micro-web: a synthetic Reddit dump, the web it links to, and the ground truth.

    truth = generate("demo-data/microweb", seed=1234)

writes, all derived from the seed (and the installed Python's documentation, the text):

    OUT/dumps/RS_YYYY-MM.zst    Pushshift-format monthly submission dumps, zstd with a 2 GiB
                                window (readers need max_window_size=2**31, like the real ones)
    OUT/site/routes.json        every host + path the server answers, with status, headers,
                                delay, redirect target and body file
    OUT/site/bodies/...         the bodies: HTML pages, a PDF, JPEGs, robots.txt files
    OUT/ground_truth.json       what was planted (`GroundTruth`), for tests to compare with

Every non-qualifying submission is planted with exactly one reason to drop it, so the links
stage's per-reason counters can be compared with `GroundTruth.submissions_by_reason`
whatever order the filters run in. docs/microweb.md lists the rules the truth assumes.
"""

from __future__ import annotations

import calendar
import dataclasses
import html
import io
import json
import random
import re
import shutil
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import zstandard

from pipeline.demo.text import (
    FOREIGN_TEXTS,
    WORDS,
    Article,
    NotEnoughText,
    documentation_paragraphs,
    pack_articles,
)

GROUND_TRUTH_FILE = "ground_truth.json"
ROUTES_FILE = "routes.json"
DUMP_WINDOW_LOG = 31  # the Pushshift dumps were written with zstd --long=31
SLOW_DELAY_S = 8.0  # longer than the demo's fetch.total_timeout_s of 5 s
TOO_LONG_CHAIN = 12  # hops; more than any sane fetch.max_redirects (the demo's is 5)
ARTICLE_WORDS = (250, 380)  # over 128 GPT-2 tokens with a wide margin
SHORT_WORDS = (40, 75)  # under 128 GPT-2 tokens, over trafilatura's 250-character minimum
NEAR_DUP_MIN_JACCARD = 0.94  # word 5-gram Jaccard of each near copy to its original
SHINGLE = 5

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
CUTOFF = calendar.timegm((2018, 1, 1, 0, 0, 0))  # links.date_to of the demo config, exclusive
IN_RANGE = tuple(i for i, (m, _) in enumerate(MONTHS) if m < "2018-01")
AFTER_RANGE = tuple(i for i, (m, _) in enumerate(MONTHS) if m >= "2018-01")
FLAGGED = tuple(i for i in IN_RANGE if MONTHS[i][1] != "early")  # months that have over_18
MIDDLE = tuple(i for i in IN_RANGE if MONTHS[i][1] == "middle")

SUBREDDITS = (
    "programming python technology science worldnews news linux askscience history books "
    "space economics todayilearned TrueReddit DepthHub learnprogramming philosophy"
).split()
NSFW_SUBREDDITS = ("nsfw_stories", "afterdark_reads")
TRACKING_VARIANTS = (
    "utm_source=reddit&utm_medium=social",
    "utm_campaign=feed",
    "fbclid=IwAR0x{n}",
    "ref=reddit",
    "gclid=Cj0K{n}",
)


@dataclass(frozen=True)
class Scale:
    hosts: int
    articles: int  # plain articles, each its own qualifying link
    near_clusters: tuple[int, ...]  # sizes: an original plus near copies on other hosts
    exact_clusters: tuple[int, ...]  # sizes: an original plus exact copies on other hosts
    redirects: int  # links that redirect (1-3 hops) to an article
    query_pages: int  # ?t=N pages of a forum: a query that selects content
    idn_pages: int  # pages on an internationalized host name
    short_pages: int
    non_english: int  # at most len(FOREIGN_TEXTS)
    robots_disallowed: int
    slow: int
    not_found: int
    gone: int
    server_error: int
    pdf: int
    jpeg: int
    redirect_wikipedia: int
    redirect_blocked: int  # into an image host
    redirect_loops: int
    redirect_too_long: int
    wikipedia_pages: int  # pages served on Wikipedia hosts and linked directly
    # submissions that must not qualify, one reason each
    below_karma: int
    split_karma: int  # URLs posted twice with score 2: qualify only under karma_rule=per_url
    nsfw: int
    self_posts: int
    media: int
    reddit_internal: int
    wikipedia: int
    after_date: int


SCALES: dict[str, Scale] = {
    "demo": Scale(
        hosts=64,
        articles=190,
        near_clusters=(3, 3, 2, 2, 2, 2, 2, 4, 2, 3),
        exact_clusters=(2, 2, 3, 2, 2),
        redirects=16,
        query_pages=3,
        idn_pages=2,
        short_pages=4,
        non_english=3,
        robots_disallowed=4,
        slow=2,
        not_found=6,
        gone=3,
        server_error=3,
        pdf=3,
        jpeg=2,
        redirect_wikipedia=4,
        redirect_blocked=1,
        redirect_loops=1,
        redirect_too_long=1,
        wikipedia_pages=3,
        below_karma=2200,
        split_karma=3,
        nsfw=80,
        self_posts=200,
        media=150,
        reddit_internal=50,
        wikipedia=60,
        after_date=120,
    ),
    "tiny": Scale(
        hosts=10,
        articles=12,
        near_clusters=(3,),
        exact_clusters=(2,),
        redirects=2,
        query_pages=2,
        idn_pages=1,
        short_pages=1,
        non_english=1,
        robots_disallowed=1,
        slow=1,
        not_found=1,
        gone=1,
        server_error=1,
        pdf=1,
        jpeg=1,
        redirect_wikipedia=1,
        redirect_blocked=1,
        redirect_loops=1,
        redirect_too_long=1,
        wikipedia_pages=1,
        below_karma=120,
        split_karma=1,
        nsfw=8,
        self_posts=10,
        media=10,
        reddit_internal=4,
        wikipedia=5,
        after_date=8,
    ),
}


# --- ground truth ----------------------------------------------------------------------


@dataclass
class PlantedLink:
    """One qualifying link: what the fetch and build stages should make of it."""

    url: str  # as planted: http, lowercase host, no www., no fragment or tracking
    outcome: str  # fetch: ok, not_found, gone, server_error, non_html, timeout, robots,
    # redirect_wikipedia, redirect_blocked, redirect_loop, too_many_redirects
    fate: str  # build: kept, duplicate, too_short, non_english, not_fetched, wikipedia
    final_url: str | None  # after redirects, when the chain ends in a page
    redirects: int = 0
    cluster: str | None = None  # "near-3" / "exact-1"
    jaccard: float | None = None  # word 5-gram Jaccard to the cluster's kept page


@dataclass
class GroundTruth:
    """What the generator planted. Counts assume the demo config's rules (docs/microweb.md)."""

    seed: int
    scale: str
    python: str  # the text comes from this Python's documentation
    dump_files: list[str]  # relative to the output folder
    dump_lines: int  # every line, malformed ones included
    submissions_total: int  # well-formed submissions
    malformed_lines: int
    malformed_by_reason: dict[str, int]  # not_json, not_object, wrong_type, missing_field
    submissions_by_reason: dict[str, int]  # qualifying, below_karma, nsfw, self, ...
    removed_marked: int  # submissions with a [removed]/[deleted] marker (none is dropped)
    crossposts: int
    links_qualifying: int  # distinct normalized URLs with a qualifying submission
    links_qualifying_per_url: int  # the same under karma_rule = "per_url" (summed)
    fetch_outcomes: dict[str, int]  # over the qualifying links
    pages_ok: int  # HTML 200 after redirects, not Wikipedia, not robots-disallowed, in time
    wikipedia_after_redirect: int
    short_pages: int
    non_english_pages: int
    exact_clusters: list[list[str]]  # planted URLs, the page dedup keeps first
    near_clusters: list[list[str]]
    removed_as_duplicates: int
    documents_written: int
    pages_total: int  # routes that answer 200 with a body
    hosts_total: int
    links: list[PlantedLink] = field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=1, sort_keys=True, ensure_ascii=False)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> GroundTruth:
        raw = dict(raw)
        raw["links"] = [PlantedLink(**link) for link in raw.get("links", [])]
        return cls(**raw)


def load_ground_truth(out_dir: str | Path) -> GroundTruth:
    path = Path(out_dir) / GROUND_TRUTH_FILE
    return GroundTruth.from_dict(json.loads(path.read_text(encoding="utf-8")))


# --- text helpers ----------------------------------------------------------------------


def shingles(text: str, n: int = SHINGLE) -> set[tuple[str, ...]]:
    words = text.lower().split()
    return {tuple(words[i : i + n]) for i in range(max(len(words) - n + 1, 1))}


def jaccard(a: str, b: str) -> float:
    sa, sb = shingles(a), shingles(b)
    return len(sa & sb) / len(sa | sb) if sa or sb else 1.0


def slugify(text: str, max_words: int = 6) -> str:
    words = re.findall(r"[a-z0-9]+", text.lower())
    return "-".join(words[:max_words]) or "page"


def near_copy(article: Article, rng: random.Random) -> Article:
    """The article with a few words changed, the way a syndicated copy drifts."""
    while True:
        paragraphs = [p.split() for p in article.paragraphs]
        positions = [(i, j) for i, p in enumerate(paragraphs) for j in range(len(p))]
        edits = max(1, article.words // 200)
        for i, j in rng.sample(positions[SHINGLE:-SHINGLE], edits):
            paragraphs[i][j] = rng.choice(WORDS)
        copy = Article(article.title, tuple(" ".join(p) for p in paragraphs))
        if jaccard(body_text(copy), body_text(article)) >= NEAR_DUP_MIN_JACCARD:
            return copy


def body_text(article: Article) -> str:
    return "\n\n".join(article.paragraphs)


# --- hosts and page templates ----------------------------------------------------------


@dataclass
class Host:
    name: str  # as served: lowercase, punycode for IDN
    site: str  # the site's display name
    family: str  # news, blog or journal: which template
    path_style: str
    nav: list[str]
    taken: set[str] = field(default_factory=set)

    def new_path(self, slug: str, rng: random.Random, year: int) -> str:
        for attempt in range(100):
            s = slug if attempt == 0 else f"{slug}-{attempt + 1}"
            month = rng.randint(1, 12)
            path = {
                "dated": f"/{year}/{month:02d}/{s}",
                "dated-slash": f"/{year}/{month:02d}/{s}/",
                "posts": f"/posts/{s}",
                "story": f"/story/{rng.randint(10_000, 99_999)}/{s}",
                "html": f"/articles/{s}.html",
                "tilde": f"/~{self.nav[0].lower()}/{s}",
            }[self.path_style]
            if path not in self.taken:
                self.taken.add(path)
                return path
        raise RuntimeError(f"no free path for {slug} on {self.name}")


HOST_PATTERNS = (
    ("news-{w}.example", "news", "story"),
    ("blog.{w}.test", "blog", "dated-slash"),
    ("{w}-times.example", "news", "dated"),
    ("{w}.example.org", "journal", "html"),
    ("the{w}review.example", "journal", "posts"),
    ("{w}-journal.test", "journal", "dated"),
    ("people.{w}.test", "blog", "tilde"),
    ("{w}notes.example", "blog", "posts"),
)


def make_hosts(rng: random.Random, count: int) -> list[Host]:
    words = rng.sample(WORDS, count)
    hosts = []
    for i, word in enumerate(words):
        pattern, family, style = HOST_PATTERNS[i % len(HOST_PATTERNS)]
        name = pattern.format(w=word)
        site = {
            "news": f"The {word.title()} Post",
            "blog": f"{word.title()} Notes",
            "journal": f"{word.title()} Review",
        }[family]
        nav = [w.title() for w in rng.sample(WORDS, 6)]
        hosts.append(Host(name, site, family, style, nav))
    return hosts


def _headlines(rng: random.Random, n: int) -> list[str]:
    forms = (
        "The {a} of {b}: what we know",
        "Why {a} and {b} matter this year",
        "A week at {a} {b}",
        "{a} {b} opens to visitors",
        "Letters: on {a} and {b}",
    )
    return [rng.choice(forms).format(a=rng.choice(WORDS), b=rng.choice(WORDS)) for _ in range(n)]


def render_page(
    host: Host,
    title: str,
    paragraphs: tuple[str, ...],
    byline: str,
    date: str,
    rng: random.Random,
    lang: str = "en",
    charset: str = "utf-8",
) -> str:
    """An article page in the host's template: navigation, sidebar and footer around it."""
    e = html.escape
    body = "\n".join(f"<p>{e(p)}</p>" for p in paragraphs)
    nav_links = "".join(f'<li><a href="/section/{n.lower()}">{n}</a></li>' for n in host.nav)
    side = "".join(
        f'<li><a href="/{slugify(h)}">{e(h)}</a></li>' for h in _headlines(rng, rng.randint(4, 7))
    )
    head = (
        f'<!DOCTYPE html>\n<html lang="{lang}">\n<head>\n<meta charset="{charset}">\n'
        f"<title>{e(title)} | {e(host.site)}</title>\n"
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n</head>\n<body>\n'
    )
    year = date[:4]
    if host.family == "news":
        page = (
            f'<header class="masthead"><a class="logo" href="/">{e(host.site)}</a>\n'
            f"<nav><ul>{nav_links}</ul></nav></header>\n"
            f"<main><article>\n<h1>{e(title)}</h1>\n"
            f'<p class="byline">By {e(byline)} &middot; <time datetime="{date}">{date}</time></p>\n'
            f"{body}\n</article></main>\n"
            f'<aside class="sidebar"><h2>Most read</h2><ul>{side}</ul></aside>\n'
            f'<footer><p class="legal">&copy; {year} {e(host.site)}. All rights reserved.</p>\n'
            '<p class="links"><a href="/about">About us</a> | <a href="/contact">Contact</a> | '
            '<a href="/terms">Terms of use</a></p></footer>\n'
        )
    elif host.family == "blog":
        archive = "".join(
            f'<li><a href="/{year}/{m:02d}/">{calendar.month_name[m]} {year}</a></li>'
            for m in range(12, 6, -1)
        )
        page = (
            f'<div id="wrapper">\n<div id="header"><h2 class="site-title"><a href="/">'
            f"{e(host.site)}</a></h2>\n"
            f'<p class="tagline">Thoughts on {host.nav[1].lower()} and {host.nav[2].lower()}</p>'
            f'</div>\n<div id="menu"><ul>{nav_links}</ul></div>\n'
            f'<div id="content"><div class="post">\n<h1 class="entry-title">{e(title)}</h1>\n'
            f'<div class="entry-meta">Posted on {date} by {e(byline)}</div>\n'
            f'<div class="entry-content">\n{body}\n</div></div></div>\n'
            f'<div id="sidebar"><h3>Archives</h3><ul>{archive}</ul>\n'
            f"<h3>Blogroll</h3><ul>{side}</ul></div>\n"
            f'<div id="footer">Proudly powered by the {host.nav[3]} theme. '
            f"Copyright {year} {e(host.site)}.</div>\n</div>\n"
        )
    else:
        page = (
            f'<div class="top"><a href="/">{e(host.site)}</a> &mdash; independent writing on '
            f"{host.nav[4].lower()}</div>\n"
            f'<div class="breadcrumbs"><a href="/">Home</a> &rsaquo; '
            f'<a href="/section/{host.nav[0].lower()}">{host.nav[0]}</a></div>\n'
            f'<div class="menu"><ul>{nav_links}</ul></div>\n'
            f'<div class="article-body">\n<h1>{e(title)}</h1>\n'
            f'<div class="meta">{e(byline)}, {date}</div>\n{body}\n</div>\n'
            f'<div class="related"><h4>Related</h4><ul>{side}</ul></div>\n'
            f'<div class="bottom">{e(host.site)} &middot; {year} &middot; '
            '<a href="/subscribe">Subscribe</a> &middot; <a href="/contact">Contact</a></div>\n'
        )
    return head + page + "</body>\n</html>\n"


def render_wikipedia(title: str, paragraphs: tuple[str, ...], lang: str) -> str:
    e = html.escape
    body = "\n".join(f"<p>{e(p)}</p>" for p in paragraphs)
    return (
        f'<!DOCTYPE html>\n<html lang="{lang}">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{e(title)} - Wikipedia</title>\n</head>\n<body>\n"
        f'<div id="content"><h1 id="firstHeading">{e(title)}</h1>\n'
        '<div id="siteSub">From Wikipedia, the free encyclopedia</div>\n'
        f'<div id="mw-content-text">\n{body}\n</div></div>\n'
        '<div id="footer">Text is available under the Creative Commons Attribution-ShareAlike '
        "License; additional terms may apply.</div>\n</body>\n</html>\n"
    )


def status_page(status: int) -> bytes:
    text = {
        404: ("Page not found", "The page you are looking for does not exist."),
        410: ("Gone", "This article has been removed by its publisher."),
        500: ("Internal Server Error", "The server could not complete your request."),
    }[status]
    return (
        f"<!DOCTYPE html>\n<html><head><title>{text[0]}</title></head>\n"
        f"<body><h1>{text[0]}</h1><p>{text[1]}</p></body></html>\n"
    ).encode()


def pdf_bytes(title: str) -> bytes:
    stream = f"BT /F1 18 Tf 72 720 Td ({title}) Tj ET".encode("latin-1", "replace")
    return (
        b"%PDF-1.4\n1 0 obj << /Type /Catalog /Pages 2 0 R >> endobj\n"
        b"2 0 obj << /Type /Pages /Kids [3 0 R] /Count 1 >> endobj\n"
        b"3 0 obj << /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R >> endobj\n"
        + f"4 0 obj << /Length {len(stream)} >> stream\n".encode()
        + stream
        + b"\nendstream endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"
    )


def jpeg_bytes(rng: random.Random) -> bytes:
    header = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
    return header + rng.randbytes(2048) + b"\xff\xd9"


# --- the site: routes and bodies -------------------------------------------------------


class Site:
    """Routes by (host, target); bodies are written as files beside the route index."""

    def __init__(self) -> None:
        self.routes: dict[tuple[str, str], dict[str, Any]] = {}
        self.bodies: dict[str, bytes] = {}

    def _add(self, host: str, target: str, route: dict[str, Any], body: bytes | None) -> None:
        key = (host, target)
        if key in self.routes:
            raise RuntimeError(f"route planted twice: http://{host}{target}")
        if body is not None:
            name = f"bodies/{host}/{len(self.bodies):05d}{route.pop('ext')}"
            self.bodies[name] = body
            route["body"] = name
        else:
            route.pop("ext", None)
        self.routes[key] = {"host": host, "target": target, "delay_s": 0.0, **route}

    def page(
        self,
        host: str,
        target: str,
        body: bytes,
        content_type: str = "text/html; charset=utf-8",
        status: int = 200,
        delay_s: float = 0.0,
    ) -> None:
        ext = {"application/pdf": ".pdf", "image/jpeg": ".jpg", "text/plain": ".txt"}.get(
            content_type.split(";")[0], ".html"
        )
        route = {"status": status, "content_type": content_type, "ext": ext}
        self._add(host, target, route, body)
        self.routes[(host, target)]["delay_s"] = delay_s

    def redirect(self, host: str, target: str, location: str, status: int) -> None:
        self._add(host, target, {"status": status, "location": location}, None)

    @property
    def pages_total(self) -> int:
        return sum(1 for r in self.routes.values() if r["status"] == 200 and "body" in r)

    def write(self, site_dir: Path) -> None:
        for name, body in self.bodies.items():
            path = site_dir / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(body)
        routes = [self.routes[k] for k in sorted(self.routes)]
        index = {"version": 1, "routes": routes}
        (site_dir / ROUTES_FILE).write_text(json.dumps(index, indent=1, sort_keys=True))


# --- submissions -----------------------------------------------------------------------


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
        retrieved_on=p.created_utc + 86400 * 30,
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


# --- the plan --------------------------------------------------------------------------


class Planter:
    """Plants pages, links and submissions; `generate` drives it."""

    def __init__(self, seed: int, scale: Scale):
        self.rng = random.Random(seed)
        self.scale = scale
        self.site = Site()
        self.links: list[PlantedLink] = []
        self.postings: list[Posting] = []
        self.exact_clusters: list[list[str]] = []
        self.near_clusters: list[list[str]] = []
        self.articles, leftovers = self._articles(seed)
        self.rng.shuffle(self.articles)
        self.short_texts = self._short_texts(leftovers)
        self.hosts = make_hosts(self.rng, scale.hosts)

    def _articles(self, seed: int) -> tuple[list[Article], list[str]]:
        """The articles' text, and paragraphs left over for the short pages."""
        needed = self.articles_needed()
        words = needed * sum(ARTICLE_WORDS) // 2 + 6000
        while True:
            rng = random.Random(f"{seed}-text")  # its own stream: retries change nothing else
            try:
                paragraphs = documentation_paragraphs(words)
                return pack_articles(paragraphs, rng, needed, *ARTICLE_WORDS)
            except NotEnoughText:
                words = words * 5 // 4

    def articles_needed(self) -> int:
        s = self.scale
        return (
            s.articles
            + len(s.near_clusters)
            + len(s.exact_clusters)
            + s.redirects
            + s.query_pages
            + s.idn_pages
            + s.robots_disallowed
            + s.slow
            + s.redirect_wikipedia
            + s.redirect_too_long
            + s.wikipedia_pages
        )

    def _short_texts(self, leftovers: list[str]) -> list[tuple[str, ...]]:
        """Pairs of leftover paragraphs of SHORT_WORDS words in all."""
        out = []
        pool = sorted(p for p in leftovers if len(p.split()) <= SHORT_WORDS[1] // 2)
        self.rng.shuffle(pool)
        while len(pool) >= 2 and len(out) < self.scale.short_pages:
            a, b = pool.pop(), pool.pop()
            words = len(a.split()) + len(b.split())
            if SHORT_WORDS[0] <= words <= SHORT_WORDS[1] and len(a) + len(b) >= 280:
                out.append((a, b))
        if len(out) < self.scale.short_pages:
            raise RuntimeError("not enough short paragraphs for the short pages")
        return out

    def take_article(self) -> Article:
        return self.articles.pop()

    def byline(self) -> str:
        a, b = self.rng.sample(WORDS, 2)
        return f"{a.title()} {b.title()}"

    # -- postings ---------------------------------------------------------------------

    def post(
        self,
        url: str | None,
        reason: str,
        month: int,
        score: int,
        title: str,
        created: int | None = None,
        **extra: Any,
    ) -> Posting:
        nsfw = extra.pop("over_18", False)
        sub = self.rng.choice(NSFW_SUBREDDITS if nsfw else SUBREDDITS)
        posting = Posting(
            month=month,
            created_utc=created if created is not None else created_in(month, self.rng),
            url=url,
            score=score,
            title=title,
            subreddit=sub,
            reason=reason,
            over_18=nsfw,
            **extra,
        )
        self.postings.append(posting)
        return posting

    def post_link(self, url: str, title: str, first_month: int | None = None) -> list[Posting]:
        """A qualifying link: its canonical http URL first, then reposts as URL variants."""
        rng = self.rng
        month = first_month if first_month is not None else rng.choice(IN_RANGE)
        first = self.post(url, "qualifying", month, high_score(rng), title)
        postings = [first]
        for n in range(min(int(rng.expovariate(0.9)), 5)):
            later = [m for m in IN_RANGE if m >= month]
            repost_month = rng.choice(later)
            low = rng.random() < 0.5
            score = rng.randint(0, 2) if low else high_score(rng)
            reason = "below_karma" if low else "qualifying"
            removed = None
            if not low and rng.random() < 0.15:
                removed = "moderator" if MONTHS[repost_month][1] == "late" else "author"
            crosspost = first if MONTHS[repost_month][1] == "late" and rng.random() < 0.3 else None
            postings.append(
                self.post(
                    variant(url, rng, n),
                    reason,
                    repost_month,
                    score,
                    title,
                    removed=removed,
                    crosspost_of=crosspost,
                )
            )
        if rng.random() < 0.1:  # a repost after the cut-off: dropped by date, link still in
            postings.append(
                self.post(variant(url, rng, 9), "out_of_dates", AFTER_RANGE[-1], 10, title)
            )
        return postings

    # -- pages ------------------------------------------------------------------------

    def article_page(
        self, host: Host, article: Article, year: int, path: str | None = None
    ) -> tuple[str, str]:
        path = path or host.new_path(slugify(article.title), self.rng, year)
        date = f"{year}-{self.rng.randint(1, 12):02d}-{self.rng.randint(1, 28):02d}"
        page = render_page(host, article.title, article.paragraphs, self.byline(), date, self.rng)
        self.site.page(host.name, path, page.encode("utf-8"))
        return f"http://{host.name}{path}", path

    def link(self, url: str, outcome: str, fate: str, final_url: str | None, **kw: Any) -> None:
        self.links.append(PlantedLink(url, outcome, fate, final_url, **kw))

    def random_host(self) -> Host:
        return self.rng.choice(self.hosts)

    def year_of(self, month: int) -> int:
        return int(MONTHS[month][0][:4])

    def plant_articles(self) -> None:
        for i in range(self.scale.articles):
            article = self.take_article()
            month = self.rng.choice(IN_RANGE)
            url, _ = self.article_page(self.random_host(), article, self.year_of(month))
            if i == 0:  # the last second before the cut-off is still in
                last = IN_RANGE[-1]
                self.post(url, "qualifying", last, high_score(self.rng), article.title, CUTOFF - 1)
            else:
                self.post_link(url, article.title, month)
            self.link(url, "ok", "kept", url)

    def plant_cluster(self, size: int, kind: str, index: int) -> None:
        rng = self.rng
        original = self.take_article()
        hosts = rng.sample(self.hosts, size)
        month = rng.choice(IN_RANGE[:-1])
        year = self.year_of(month)
        byline, date = self.byline(), f"{year}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
        members: list[tuple[str, list[Posting], float]] = []
        for i, host in enumerate(hosts):
            copy = original if i == 0 or kind == "exact" else near_copy(original, rng)
            page = render_page(host, copy.title, copy.paragraphs, byline, date, rng)
            path = host.new_path(slugify(copy.title), rng, year)
            self.site.page(host.name, path, page.encode("utf-8"))
            url = f"http://{host.name}{path}"
            member_month = month if i == 0 else rng.choice([m for m in IN_RANGE if m >= month])
            postings = self.post_link(url, copy.title, member_month)
            members.append((url, postings, jaccard(body_text(copy), body_text(original))))
        # The kept page wins under either keep rule: most karma (max or sum), earliest post.
        kept_first = members[0][1][0]
        others = [p for _, postings, _ in members[1:] for p in postings]
        others += members[0][1][1:]
        kept_first.score = 1000 + sum(p.score for p in others)
        kept_first.created_utc = month_bounds(month)[0] + rng.randrange(3600)
        cluster = f"{kind}-{index}"
        for i, (url, _, similarity) in enumerate(members):
            fate = "kept" if i == 0 else "duplicate"
            self.link(url, "ok", fate, url, cluster=cluster, jaccard=round(similarity, 4))
        (self.exact_clusters if kind == "exact" else self.near_clusters).append(
            [url for url, _, _ in members]
        )

    def plant_redirects(self) -> None:
        rng = self.rng
        shorteners = [f"go-{w}.example" for w in rng.sample(WORDS, 3)]
        statuses = (301, 302, 303, 307, 308)
        for i in range(self.scale.redirects):
            article = self.take_article()
            month = rng.choice(IN_RANGE)
            final_host = self.random_host()
            final_url, final_path = self.article_page(final_host, article, self.year_of(month))
            hops = rng.randint(1, 3)
            location = final_url
            for hop in range(hops):
                if hop == hops - 1 or rng.random() < 0.5:
                    host = rng.choice(shorteners)
                    target = f"/{base36(rng.randrange(36**5, 36**6))}"
                else:
                    host = final_host.name
                    target = f"/old/{i}/{hop}{final_path}"
                    if location.startswith(f"http://{host}/"):
                        location = location[len(f"http://{host}") :]  # a relative Location
                self.site.redirect(host, target, location, rng.choice(statuses))
                location = f"http://{host}{target}"
            self.post_link(location, article.title, month)
            self.link(location, "ok", "kept", final_url, redirects=hops)

    def plant_redirects_away(self) -> None:
        rng = self.rng
        editions = ("en.wikipedia.org", "de.m.wikipedia.org", "en.m.wikipedia.org")
        for i in range(self.scale.redirect_wikipedia):
            article = self.take_article()
            edition = editions[i % len(editions)]
            wiki_path = f"/wiki/{slugify(article.title, 4).replace('-', '_').title()}_{i}"
            lang = edition.split(".")[0]
            page = render_wikipedia(article.title, article.paragraphs, lang)
            self.site.page(edition, wiki_path, page.encode("utf-8"))
            host = self.random_host()
            path = host.new_path(f"wiki-{i}", rng, 2015)
            self.site.redirect(host.name, path, f"http://{edition}{wiki_path}", 301)
            url = f"http://{host.name}{path}"
            self.post_link(url, article.title)
            final = f"http://{edition}{wiki_path}"
            self.link(url, "redirect_wikipedia", "wikipedia", final, redirects=1)
        for i in range(self.scale.redirect_blocked):
            image = f"/{base36(rng.randrange(36**6, 36**7))}.jpg"
            self.site.page("i.imgur.com", image, jpeg_bytes(rng), "image/jpeg")
            host = self.random_host()
            path = host.new_path(f"photo-of-the-day-{i}", rng, 2014)
            self.site.redirect(host.name, path, f"http://i.imgur.com{image}", 302)
            url = f"http://{host.name}{path}"
            self.post_link(url, f"Photo of the day {i}")
            self.link(url, "redirect_blocked", "not_fetched", None, redirects=1)
        for i in range(self.scale.redirect_loops):
            host = self.random_host()
            a, b = f"/moved/{i}/a", f"/moved/{i}/b"
            self.site.redirect(host.name, a, b, 302)
            self.site.redirect(host.name, b, a, 302)
            url = f"http://{host.name}{a}"
            self.post_link(url, f"Moved {i}")
            self.link(url, "redirect_loop", "not_fetched", None)
        for i in range(self.scale.redirect_too_long):
            article = self.take_article()
            host = self.random_host()
            final_url, _ = self.article_page(host, article, 2016)
            location = final_url
            for hop in range(TOO_LONG_CHAIN, 0, -1):
                target = f"/hop/{i}/{hop}"
                self.site.redirect(host.name, target, location, 302)
                location = f"http://{host.name}{target}"
            self.post_link(location, article.title)
            self.link(location, "too_many_redirects", "not_fetched", None)

    def plant_special_pages(self) -> None:
        rng, s = self.rng, self.scale
        # robots.txt on two hosts; links under the disallowed path
        robots_hosts = rng.sample(self.hosts, 2)
        for host in robots_hosts:
            rules = "User-agent: *\nDisallow: /private/\n"
            self.site.page(host.name, "/robots.txt", rules.encode(), "text/plain")
        for i in range(s.robots_disallowed):
            article = self.take_article()
            host = robots_hosts[i % 2]
            path = f"/private/{slugify(article.title)}"
            url, _ = self.article_page(host, article, 2013, path)
            self.post_link(url, article.title)
            self.link(url, "robots", "not_fetched", None)
        for _ in range(s.slow):
            article = self.take_article()
            host = self.random_host()
            path = host.new_path(slugify(article.title), rng, 2016)
            page = render_page(
                host, article.title, article.paragraphs, self.byline(), "2016-03-04", rng
            )
            self.site.page(host.name, path, page.encode(), delay_s=SLOW_DELAY_S)
            url = f"http://{host.name}{path}"
            self.post_link(url, article.title)
            self.link(url, "timeout", "not_fetched", None)
        dead = [(404, "not_found")] * s.not_found + [(410, "gone")] * s.gone
        dead += [(500, "server_error")] * s.server_error
        for status, outcome in dead:
            host = self.random_host()
            title = _headlines(rng, 1)[0]
            path = host.new_path(slugify(title), rng, 2012)
            self.site.page(host.name, path, status_page(status), status=status)
            url = f"http://{host.name}{path}"
            self.post_link(url, title)
            self.link(url, outcome, "not_fetched", None)
        files = [("application/pdf", "report")] * s.pdf + [("image/jpeg", "photo")] * s.jpeg
        for content_type, kind in files:
            host = self.random_host()
            title = f"{kind.title()}: {_headlines(rng, 1)[0]}"
            path = f"/download/{kind}-{rng.randrange(10**6)}"  # no file extension to filter
            body = pdf_bytes(title) if kind == "report" else jpeg_bytes(rng)
            self.site.page(host.name, path, body, content_type)
            url = f"http://{host.name}{path}"
            self.post_link(url, title)
            self.link(url, "non_html", "not_fetched", None)
        for texts in self.short_texts:
            host = self.random_host()
            title = "Briefly: " + " ".join(texts[0].split()[:5]).rstrip(",.;:")
            path = host.new_path(slugify(title), rng, 2014)
            page = render_page(host, title, texts, self.byline(), "2014-06-01", rng)
            self.site.page(host.name, path, page.encode("utf-8"))
            url = f"http://{host.name}{path}"
            self.post_link(url, title)
            self.link(url, "ok", "too_short", url)
        for i, key in enumerate(sorted(FOREIGN_TEXTS)[: s.non_english]):
            title, text = FOREIGN_TEXTS[key]
            host = self.random_host()
            path = host.new_path(slugify(key), rng, 2015)
            paragraphs = tuple(text.split("\n\n"))
            charset = "windows-1252" if i == 0 else "utf-8"
            page = render_page(
                host, title, paragraphs, self.byline(), "2015-09-09", rng, key[:2], charset
            )
            self.site.page(host.name, path, page.encode(charset), f"text/html; charset={charset}")
            url = f"http://{host.name}{path}"
            self.post_link(url, title)
            self.link(url, "ok", "non_english", url)

    def plant_query_and_idn_pages(self) -> None:
        rng = self.rng
        word = rng.choice(WORDS)
        forum = Host(f"forum.{word}.test", f"{word.title()} Forum", "journal", "posts", ["Board"])
        forum.nav = [w.title() for w in rng.sample(WORDS, 6)]
        for i in range(self.scale.query_pages):
            article = self.take_article()
            target = f"/viewtopic.php?t={1001 + i}"
            url, _ = self.article_page(forum, article, 2012, target)
            self.post_link(url, article.title)
            self.link(url, "ok", "kept", url)
        idn_name = f"bücher-{rng.choice(WORDS)}.example"
        idn = Host(idn_name.encode("idna").decode(), "Bücherecke", "blog", "posts", [])
        idn.nav = [w.title() for w in rng.sample(WORDS, 6)]
        for _ in range(self.scale.idn_pages):
            article = self.take_article()
            url, path = self.article_page(idn, article, 2016)
            postings = self.post_link(url, article.title)
            self.post(f"http://{idn_name}{path}", "qualifying", postings[0].month, 7, article.title)
            self.link(url, "ok", "kept", url)

    def plant_wikipedia_pages(self) -> None:
        for i in range(self.scale.wikipedia_pages):
            article = self.take_article()
            edition = ("en.wikipedia.org", "de.m.wikipedia.org")[i % 2]
            path = f"/wiki/{slugify(article.title, 3).replace('-', '_').title()}_{i}"
            page = render_wikipedia(article.title, article.paragraphs, edition[:2])
            self.site.page(edition, path, page.encode())
            month = self.rng.choice(IN_RANGE)
            self.post(f"http://{edition}{path}", "wikipedia", month, 40, article.title)

    def plant_non_qualifying(self) -> None:
        """Submissions that fail exactly one rule each."""
        rng, s = self.rng, self.scale

        def unique_link() -> tuple[str, str]:
            host = self.random_host()
            title = _headlines(rng, 1)[0]
            return f"http://{host.name}{host.new_path(slugify(title), rng, 2013)}", title

        def title() -> str:
            return _headlines(rng, 1)[0]

        for _ in range(s.below_karma):
            url, t = unique_link()
            self.post(url, "below_karma", rng.choice(IN_RANGE), rng.randint(0, 2), t)
        for _ in range(s.split_karma):
            url, t = unique_link()
            for month in sorted(rng.sample(IN_RANGE, 2)):
                self.post(url, "below_karma", month, 2, t)
        for _ in range(s.nsfw):
            url, t = unique_link()
            self.post(url, "nsfw", rng.choice(FLAGGED), high_score(rng), t, over_18=True)
        for i in range(s.self_posts):
            removed = ("selftext", "author")[i % 2] if i % 10 < 2 else None
            self.post(None, "self", rng.choice(IN_RANGE), high_score(rng), title(), removed=removed)
        for i in range(s.media):
            host = self.random_host()
            slug = slugify(title())
            key = base36(rng.randrange(36**6, 36**7))
            url = (
                f"http://imgur.com/{key}",
                f"http://i.imgur.com/{key}.jpg",
                f"https://www.youtube.com/watch?v={key}",
                f"https://youtu.be/{key}",
                f"https://gfycat.com/{key.title()}",
                f"http://{host.name}/images/{slug}.png",
                f"http://{host.name}/media/{slug}.mp4",
                f"http://{host.name}/files/{slug}.pdf",
            )[i % 8]
            self.post(url, "blocked_domain", rng.choice(IN_RANGE), high_score(rng), title())
        for i in range(s.reddit_internal):
            other = base36(rng.randrange(36**5, 36**6))
            sub = rng.choice(SUBREDDITS)
            url = (
                f"http://www.reddit.com/r/{sub}/comments/{other}/{slugify(title())}/",
                f"https://redd.it/{other}",
                f"https://old.reddit.com/r/{sub}/wiki/index",
            )[i % 3]
            self.post(url, "blocked_domain", rng.choice(IN_RANGE), high_score(rng), title())
        for i in range(s.wikipedia):
            page = slugify(title(), 3).replace("-", "_").title()
            url = (
                f"http://en.wikipedia.org/wiki/{page}",
                f"https://de.m.wikipedia.org/wiki/{page}",
                f"https://en.m.wikipedia.org/wiki/{page}",
                f"http://fr.wikipedia.org/wiki/{page}",
                f"https://commons.wikimedia.org/wiki/Category:{page}",
                f"https://en.wiktionary.org/wiki/{rng.choice(WORDS)}",
            )[i % 6]
            self.post(url, "wikipedia", rng.choice(IN_RANGE), high_score(rng), title())
        for i in range(s.after_date):
            month = rng.choice(AFTER_RANGE)
            created = CUTOFF if i == 0 else None  # the cut-off itself is out
            url, t = unique_link()
            self.post(url, "out_of_dates", month, high_score(rng), t, created)


def _dump_lines(planter: Planter) -> tuple[dict[int, list[str]], Counter]:
    """Assign ids in time order, render each month's lines, and mix in malformed lines."""
    rng = planter.rng
    postings = sorted(planter.postings, key=lambda p: (p.created_utc, p.month))
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
        host = planter.random_host()
        url = f"http://{host.name}{host.new_path(f'malformed-{index}', rng, 2011)}"
        created = created_in(month, rng)
        timed[month].append((created, malformed_line(index, created, rng, url)))
        malformed[reason] += 1
    by_month = {
        month: [line for _, line in sorted(lines, key=lambda t: t[0])]  # stable: time order
        for month, lines in timed.items()
    }
    return by_month, malformed


def generate(out_dir: str, seed: int, scale: str = "demo") -> GroundTruth:
    """Write the dump, the site and the ground truth under out_dir (a local folder)."""
    if scale not in SCALES:
        raise ValueError(f"unknown scale {scale!r}; choose one of {', '.join(SCALES)}")
    out = Path(out_dir)
    for sub in ("dumps", "site"):
        shutil.rmtree(out / sub, ignore_errors=True)
    (out / "dumps").mkdir(parents=True, exist_ok=True)
    (out / "site").mkdir(parents=True, exist_ok=True)

    planter = Planter(seed, SCALES[scale])
    planter.plant_articles()
    for i, size in enumerate(planter.scale.near_clusters):
        planter.plant_cluster(size, "near", i)
    for i, size in enumerate(planter.scale.exact_clusters):
        planter.plant_cluster(size, "exact", i)
    planter.plant_redirects()
    planter.plant_redirects_away()
    planter.plant_special_pages()
    planter.plant_query_and_idn_pages()
    planter.plant_wikipedia_pages()
    planter.plant_non_qualifying()

    by_month, malformed = _dump_lines(planter)
    dump_files = []
    for index, lines in by_month.items():
        name = f"dumps/RS_{MONTHS[index][0]}.zst"
        write_dump(out / name, lines)
        dump_files.append(name)
    planter.site.write(out / "site")

    truth = _ground_truth(planter, seed, scale, dump_files, by_month, malformed)
    (out / GROUND_TRUTH_FILE).write_text(truth.to_json(), encoding="utf-8")
    return truth


def _ground_truth(
    planter: Planter,
    seed: int,
    scale: str,
    dump_files: list[str],
    by_month: dict[int, list[str]],
    malformed: Counter,
) -> GroundTruth:
    links = planter.links
    outcomes = Counter(link.outcome for link in links)
    fates = Counter(link.fate for link in links)
    reasons = Counter(p.reason for p in planter.postings)
    hosts = {route["host"] for route in planter.site.routes.values()}
    return GroundTruth(
        seed=seed,
        scale=scale,
        python=sys.version.split()[0],
        dump_files=dump_files,
        dump_lines=sum(len(lines) for lines in by_month.values()),
        submissions_total=len(planter.postings),
        malformed_lines=sum(malformed.values()),
        malformed_by_reason=dict(sorted(malformed.items())),
        submissions_by_reason=dict(sorted(reasons.items())),
        removed_marked=sum(1 for p in planter.postings if p.removed),
        crossposts=sum(1 for p in planter.postings if p.crosspost_of is not None),
        links_qualifying=len(links),
        links_qualifying_per_url=len(links) + planter.scale.split_karma,
        fetch_outcomes=dict(sorted(outcomes.items())),
        pages_ok=outcomes["ok"],
        wikipedia_after_redirect=outcomes["redirect_wikipedia"],
        short_pages=fates["too_short"],
        non_english_pages=fates["non_english"],
        exact_clusters=planter.exact_clusters,
        near_clusters=planter.near_clusters,
        removed_as_duplicates=fates["duplicate"],
        documents_written=fates["kept"],
        pages_total=planter.site.pages_total,
        hosts_total=len(hosts),
        links=sorted(links, key=lambda link: link.url),
    )
