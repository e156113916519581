"""Archive fallback for links that are dead today: Common Crawl first, the Wayback Machine second.

A page whose live fetch failed in a way the archives can help with (`WORTH_ASKING`) gets a
`Fallback`: the sources to try in order, each in two phases, LOOKUP (ask the source's index
for a capture) then GET (fetch that capture). `find_capture` and `fetch_capture` run one
phase each through the crawler's `Transport`; the crawler schedules them as steps behind its
politeness gates. The archived page passes the same content checks as a live one.

Common Crawl: the CDX index API (`commoncrawl_index?url=U&output=json`) lists captures, each
naming a WARC file with the byte offset and length of its record; a `Range` request to
`commoncrawl_data + filename` returns that one gzip member, a complete WARC record.

Wayback: `wayback_endpoint/wayback/available?url=U` names the closest snapshot's timestamp;
`wayback_endpoint/web/<timestamp>id_/U` replays the page as archived, without the toolbar.
A snapshot of a redirect replays as that 3xx with a Location into the replay of its target;
`fetch_capture` returns the target's capture, and the crawler follows it after the checks
a live redirect gets (loop, `max_redirects`, scheme, the links filter; the address check
is the transport's).
"""

from __future__ import annotations

import io
import json
import re
from dataclasses import dataclass, field
from enum import Enum
from urllib.parse import quote, urljoin

from warcio.archiveiterator import ArchiveIterator

from pipeline import content
from pipeline.config import FetchConfig
from pipeline.fetch.records import Exchange, FetchResult, Page, StepFailure
from pipeline.fetch.transport import (
    RequestContext,
    Transport,
    drain,
    let_go,
    read_limited,
    stored_headers,
)

SOURCES = ("commoncrawl", "wayback")
WAYBACK_ORIG_PREFIX = "x-archive-orig-"
# Live failures after which the archive is worth asking: the page may simply be gone.
WORTH_ASKING = {"dns_error", "connection_error", "timeout", "http_4xx", "http_5xx", "tls_error"}
LOOKUP_MAX_BYTES = 4 * 1024 * 1024
# A Wayback replay URL: .../web/<timestamp>[id_ or another mode]/<the archived URL>
WAYBACK_REPLAY = re.compile(r"/web/(\d{1,14})[a-z_]*/(.+)$")


@dataclass(frozen=True)
class Capture:
    """One archived copy of a URL and how to fetch it."""

    fetch_url: str
    request_headers: dict[str, str] = field(default_factory=dict)
    length: int = 0  # bytes expected; 0 when unknown
    source_uri: str = ""  # recorded in our WARC so the copy can be traced
    target: str = ""  # the archived URL, when it is not the page looked up (a redirect's)


@dataclass
class ArchivedResponse:
    status: int
    reason: str
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        name = name.lower()
        return next((v for k, v in self.headers if k.lower() == name), None)


class Phase(Enum):
    LOOKUP = "lookup"  # ask the source's index for a capture
    GET = "get"  # fetch the capture


@dataclass
class Fallback:
    """A dead page's way through the archives, one source at a time."""

    live_failure: FetchResult  # what is logged when no source has the page
    sources: list[str]  # still to try, in order
    source: str = ""
    phase: Phase = Phase.LOOKUP
    capture: Capture | None = None  # set in the GET phase

    @property
    def url(self) -> str:
        """The page looked up: the URL first requested."""
        return self.live_failure.task.url

    def next_source(self) -> bool:
        """Move on to the next source's lookup; False when none is left."""
        if not self.sources:
            return False
        self.source = self.sources.pop(0)
        self.phase, self.capture = Phase.LOOKUP, None
        return True

    def found(self, capture: Capture) -> None:
        self.phase, self.capture = Phase.GET, capture


def parse_sources(archive_fallback: str) -> list[str]:
    """`fetch.archive_fallback` as an ordered list: "" (off), "commoncrawl", "wayback", or
    both comma-separated in the order to try them."""
    sources = [s.strip() for s in archive_fallback.split(",") if s.strip()]
    for source in sources:
        if source not in SOURCES:
            raise ValueError(
                f"[fetch] archive_fallback: unknown source {source!r}; use "
                f'"", "commoncrawl", "wayback" or "commoncrawl,wayback"'
            )
    return sources


def lookup_url(config: FetchConfig, source: str, url: str) -> str:
    if source == "commoncrawl":
        return f"{config.commoncrawl_index}?url={quote(url, safe='')}&output=json"
    return f"{config.wayback_endpoint.rstrip('/')}/wayback/available?url={quote(url, safe='')}"


def pick_capture(source: str, answer: bytes, config: FetchConfig, url: str) -> Capture | None:
    """The capture to fetch from a lookup answer, or None when there is no usable one."""
    if source == "commoncrawl":
        return _pick_cdx(answer, config)
    return _pick_wayback(answer, config, url)


def _pick_cdx(answer: bytes, config: FetchConfig) -> Capture | None:
    best = None
    for line in answer.decode("utf-8", "replace").splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if not isinstance(row, dict) or str(row.get("status")) != "200":
            continue
        mime = str(row.get("mime-detected") or row.get("mime") or "").lower()
        if mime not in content.HTML_TYPES:
            continue
        try:
            offset, length = int(row["offset"]), int(row["length"])
            filename = str(row["filename"])
        except (KeyError, ValueError):
            continue
        # The latest capture: closest to when the link was alive in a recent index.
        if best is None or str(row.get("timestamp", "")) > best[0]:
            best = (str(row.get("timestamp", "")), filename, offset, length)
    if best is None:
        return None
    _, filename, offset, length = best
    return Capture(
        fetch_url=config.commoncrawl_data.rstrip("/") + "/" + filename.lstrip("/"),
        request_headers={"Range": f"bytes={offset}-{offset + length - 1}"},
        length=length,
        source_uri=f"{filename}#{offset}:{length}",
    )


def _pick_wayback(answer: bytes, config: FetchConfig, url: str) -> Capture | None:
    try:
        closest = json.loads(answer)["archived_snapshots"]["closest"]
    except (json.JSONDecodeError, KeyError, TypeError):
        return None
    if not closest or not closest.get("available"):
        return None
    status = str(closest.get("status"))
    if status != "200" and not re.fullmatch(r"3\d\d", status):  # a page, or a redirect
        return None
    timestamp = str(closest.get("timestamp", ""))
    if not timestamp.isdigit():
        return None
    fetch_url = f"{config.wayback_endpoint.rstrip('/')}/web/{timestamp}id_/{url}"
    return Capture(fetch_url=fetch_url, source_uri=fetch_url)


def parse_capture(
    source: str, capture: Capture, raw: bytes, response_headers: list[tuple[str, str]]
) -> ArchivedResponse:
    """The archived HTTP response. Raises ValueError when the bytes are not a usable record."""
    if source == "commoncrawl":
        return parse_warc_record(raw)
    orig = [
        (k[len(WAYBACK_ORIG_PREFIX) :], v)
        for k, v in response_headers
        if k.lower().startswith(WAYBACK_ORIG_PREFIX)
    ]
    content_type = next((v for k, v in response_headers if k.lower() == "content-type"), None)
    headers = [(k, v) for k, v in orig if k.lower() not in ("content-type", "content-encoding")]
    if content_type:
        headers.append(("Content-Type", content_type))
    return ArchivedResponse(200, "OK", headers, raw)


def parse_warc_record(raw: bytes) -> ArchivedResponse:
    """The HTTP response inside one (gzipped) WARC response record."""
    for record in ArchiveIterator(io.BytesIO(raw)):
        if record.rec_type != "response" or record.http_headers is None:
            raise ValueError(f"not a response record: {record.rec_type}")
        http = record.http_headers
        status_text = http.get_statuscode() or "0"
        reason = http.statusline.split(" ", 1)[1] if " " in http.statusline else ""
        body = record.content_stream().read()
        return ArchivedResponse(int(status_text), reason, list(http.headers), body)
    raise ValueError("no WARC record in the archived bytes")


def find_capture(
    transport: Transport, fallback: Fallback, ctx: RequestContext, config: FetchConfig
) -> Capture:
    """The LOOKUP phase: ask the current source's index for a capture of the page."""
    response, _ = transport.open(lookup_url(config, fallback.source, fallback.url), ctx)
    if response.status_code != 200:
        let_go(response, drain(response))
        raise StepFailure("archive_miss", f"lookup HTTP {response.status_code}")
    text = read_limited(response, LOOKUP_MAX_BYTES, ctx)
    capture = pick_capture(fallback.source, text, config, fallback.url)
    if capture is None:
        raise StepFailure("archive_miss", "no capture")
    return capture


def fetch_capture(
    transport: Transport, fallback: Fallback, ctx: RequestContext, config: FetchConfig
) -> tuple[Exchange, Page] | Capture:
    """The GET phase: fetch the capture and accept it as the page, or, for an archived
    redirect, the capture of its target."""
    capture = fallback.capture
    response, _ = transport.open(capture.fetch_url, ctx, capture.request_headers)
    if fallback.source == "wayback" and response.is_redirect:
        location = response.headers.get("Location", "")
        let_go(response, drain(response))
        target = redirect_capture(config, capture, location)
        if target is None:
            raise StepFailure("archive_miss", "archived redirect without a target")
        return target
    if response.status_code not in (200, 206):
        let_go(response, drain(response))
        raise StepFailure("archive_miss", f"get HTTP {response.status_code}")
    limit = capture.length + 1024 if capture.length else config.max_body_bytes * 2
    headers = list(response.raw.headers.items())
    raw = read_limited(response, limit, ctx)
    archived = parse_capture(fallback.source, capture, raw, headers)
    return archived_page(archived, capture, capture.target or fallback.url, config)


def redirect_capture(config: FetchConfig, capture: Capture, location: str) -> Capture | None:
    """The capture an archived Wayback redirect points to: its Location is the target's
    replay URL (or, from some captures, the target itself, replayed at the same time)."""
    here = WAYBACK_REPLAY.search(capture.fetch_url)
    location = urljoin(capture.fetch_url, location.strip())
    if not here or not location.strip():
        return None
    there = WAYBACK_REPLAY.search(location)
    endpoint = config.wayback_endpoint.rstrip("/")
    if there and location.startswith(endpoint + "/web/"):
        timestamp, target = there.group(1), there.group(2)
    else:
        timestamp, target = here.group(1), location
    fetch_url = f"{endpoint}/web/{timestamp}id_/{target}"
    return Capture(fetch_url=fetch_url, source_uri=fetch_url, target=target)


def archived_page(
    archived: ArchivedResponse, capture: Capture, url: str, config: FetchConfig
) -> tuple[Exchange, Page]:
    """The archived response stored as the page of `url`, if it passes the checks a live
    page passes; an `archive_miss` if not."""
    if archived.status != 200:
        raise StepFailure("archive_miss", f"archived HTTP {archived.status}")
    content_type = archived.header("Content-Type")
    mime = content.mime_of(content_type)
    verdict = content.judge_content_type(mime, archived.body[: content.SNIFF_BYTES])
    if verdict is not None:
        raise StepFailure("archive_miss", f"archived not_html:{verdict}")
    body = archived.body[: config.max_body_bytes]
    truncated = len(archived.body) > len(body)
    if truncated and config.oversize == "drop":
        raise StepFailure("archive_miss", "archived too_large")
    charset, where = content.choose_charset(body, content.charset_param(content_type))
    if where == "undetected" and body:
        raise StepFailure("archive_miss", "archived undecodable")
    stored_mime = mime if mime in content.HTML_TYPES else "text/html"
    page = Page(body, truncated, stored_mime, charset, complete=True)
    exchange = Exchange(
        url=url,
        ip=None,
        method="GET",
        request_headers=[],
        status=archived.status,
        reason=archived.reason,
        http_version="HTTP/1.1",
        response_headers=stored_headers(archived.headers, len(body)),
        body=body,
        truncated=truncated,
        source_uri=capture.source_uri,
    )
    return exchange, page
