"""Archive fallback for links that are dead today: Common Crawl first, the Wayback Machine second.

Plain functions that build the lookup URLs and read the answers; the crawler runs the HTTP
requests through its own politeness gates and address checks.

Common Crawl: the CDX index API (`commoncrawl_index?url=U&output=json`) lists captures, each
naming a WARC file with the byte offset and length of its record; a `Range` request to
`commoncrawl_data + filename` returns that one gzip member, a complete WARC record.

Wayback: `wayback_endpoint/wayback/available?url=U` names the closest snapshot's timestamp;
`wayback_endpoint/web/<timestamp>id_/U` replays the page as archived, without the toolbar.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from urllib.parse import quote

from warcio.archiveiterator import ArchiveIterator

from pipeline.config import FetchConfig

SOURCES = ("commoncrawl", "wayback")
HTML_MIMES = {"text/html", "application/xhtml+xml"}
WAYBACK_ORIG_PREFIX = "x-archive-orig-"


@dataclass(frozen=True)
class Capture:
    """One archived copy of a URL and how to fetch it."""

    fetch_url: str
    request_headers: dict[str, str] = field(default_factory=dict)
    length: int = 0  # bytes expected; 0 when unknown
    source_uri: str = ""  # recorded in our WARC so the copy can be traced


@dataclass
class ArchivedResponse:
    status: int
    reason: str
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        name = name.lower()
        return next((v for k, v in self.headers if k.lower() == name), None)


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
        if mime not in HTML_MIMES:
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
    if not closest or not closest.get("available") or str(closest.get("status")) != "200":
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
