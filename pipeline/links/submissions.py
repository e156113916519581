"""Reddit submissions from Pushshift / Arctic Shift dumps, normalized across field eras.

A dump is newline-delimited JSON, one submission a line, compressed as .zst, .bz2, .xz or
.gz, or plain. Files are opened through Beam's FileSystems (local, gs://, s3://) and
decompressed as a stream: memory stays flat whatever the file's size.

Field eras (docs/links.md has the table):
- `score` is absent from the oldest dumps, which carry `ups`: score = `score`, else `ups`.
- `is_self`, `domain` and `over_18` are absent from early months. is_self is derived (domain
  "self.*", or the URL is the post's own comments page), domain from the URL's host, and
  over_18 defaults to False (those months had no NSFW flag to read).
- `url_overridden_by_dest` (2020 on) is the link's destination when present.
- `created_utc` is an integer, a float, or a numeric string, depending on the month.
- A removed or deleted post (`[removed]` / `[deleted]` markers, `removed_by_category`) is kept
  and flagged: its link still received its karma.
- When the score was read: Pushshift wrote `retrieved_on` (to 2019) or `retrieved_utc`
  (2019-2023), and `updated_utc` / `updated_on` where it read a record again; Arctic Shift
  writes `retrieved_on` (its first read, seconds after posting) and, from 2023-11,
  `_meta.retrieved_2nd_on` (its second read, about 36 hours later, whose score the record
  carries). `retrieved_utc` of a Submission is the latest of those present, None when none is.
"""

from __future__ import annotations

import bz2
import lzma
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import msgspec
import zstandard
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from pipeline.urls import host_of

READ_CHUNK = 1 << 20  # compressed bytes read at a time
ZSTD_MAX_WINDOW = 2**31  # the Pushshift dumps use long-distance windows beyond zstd's default
REMOVED_MARKERS = frozenset({"[removed]", "[deleted]", "[deleted by user]"})


@dataclass(slots=True)
class Submission:
    """One submission in flight; `to_record` gives its schemas.SUBMISSION row."""

    id: str | None  # None for URL-list entries
    subreddit: str | None
    created_utc: int | None  # None for URL-list entries without a date
    score: int
    title: str | None
    url: str | None
    domain: str | None  # early dumps have none: to_record derives it from the URL
    is_self: bool
    over_18: bool
    removed: bool
    crosspost_parent: str | None
    source: str
    source_line: int | None
    retrieved_utc: int | None = None  # when `score` was read; None when the record does not say

    def to_record(self) -> dict[str, Any]:
        return {
            "id": self.id or "",
            "subreddit": self.subreddit,
            "created_utc": self.created_utc or 0,
            "score": self.score,
            "retrieved_utc": self.retrieved_utc,
            "title": self.title,
            "url": self.url,
            "domain": self.domain or (host_of(self.url) if self.url else None),
            "is_self": self.is_self,
            "over_18": self.over_18,
            "removed": self.removed,
            "crosspost_parent": self.crosspost_parent,
            "source": self.source,
            "source_line": self.source_line,
        }


class MalformedSubmission(ValueError):
    """A dump line that is not a usable submission; `reason` is its dead-letter reason."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason, self.detail = reason, detail


class TruncatedInput(EOFError):
    """A compressed file that ends before its end-of-stream marker."""


class ArchiveMeta(msgspec.Struct):
    """Arctic Shift's `_meta` object (2023-11 on): the time of its second read."""

    retrieved_2nd_on: int | float | str | None = None


class DumpFields(msgspec.Struct):
    """The fields of a dump line the stage reads, with every type any era uses.

    Decoding into this struct skips the other ~70 fields of a modern line without building
    them, and checks types in C: several times faster than decoding the whole object.
    """

    id: str | None = None
    created_utc: int | float | str | None = None
    created: int | float | str | None = None  # some early months lack created_utc
    score: int | float | str | None = None
    ups: int | float | str | None = None
    title: str | None = None
    url: str | None = None
    url_overridden_by_dest: str | None = None
    subreddit: str | None = None
    domain: str | None = None
    is_self: bool | int | None = None
    over_18: bool | int | None = None
    selftext: str | None = None
    removed_by_category: str | None = None
    crosspost_parent: str | None = None
    retrieved_on: int | float | str | None = None
    retrieved_utc: int | float | str | None = None
    updated_utc: int | float | str | None = None
    updated_on: int | float | str | None = None
    meta: ArchiveMeta | None = msgspec.field(default=None, name="_meta")


_DECODER = msgspec.json.Decoder(DumpFields)


def _int(value: Any, field: str) -> int:
    if type(value) is int:
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        try:
            return int(float(value))
        except ValueError:
            pass
    raise MalformedSubmission("wrong_type", f"{field} is {value!r}, expected a number")


def _latest_time(*values: Any) -> int | None:
    """The latest of the timestamps given; None and unreadable values are skipped."""
    latest = None
    for value in values:
        if value is None:
            continue
        try:
            t = _int(value, "retrieved")
        except MalformedSubmission:
            continue
        if latest is None or t > latest:
            latest = t
    return latest


def _bool(value: Any, field: str) -> bool:
    if value in (0, 1):
        return bool(value)
    raise MalformedSubmission("wrong_type", f"{field} is {value!r}, expected a boolean")


def _validation_error(e: msgspec.ValidationError) -> MalformedSubmission:
    message = str(e)
    if "at `$." in message:
        return MalformedSubmission("wrong_type", message)
    return MalformedSubmission("not_object", message)


def submission_from_struct(f: DumpFields, source: str, line: int | None) -> Submission:
    """Normalize one decoded submission (any dump era, or the API) to a Submission."""
    sub_id = f.id
    if not sub_id:
        raise MalformedSubmission("missing_field", "no id")
    if sub_id.startswith("t3_"):
        sub_id = sub_id[3:]

    created = f.created_utc
    if type(created) is not int:
        if created is None:
            created = f.created
            if created is None:
                raise MalformedSubmission("missing_field", "no created_utc")
        created = _int(created, "created_utc")

    score = f.score
    if score is None:
        score = f.ups
        if score is None:
            raise MalformedSubmission("missing_field", "no score or ups")
    if type(score) is not int:
        score = _int(score, "score")

    url = f.url_overridden_by_dest or f.url
    domain = f.domain
    is_self = f.is_self
    if type(is_self) is not bool:
        if is_self is None:
            is_self = (
                not url
                or (domain is not None and domain.startswith("self."))
                or f"/comments/{sub_id}" in url
            )
        else:
            is_self = _bool(is_self, "is_self")
    if domain is None and is_self:
        domain = f"self.{f.subreddit}"
    over_18 = f.over_18
    if type(over_18) is not bool:
        over_18 = False if over_18 is None else _bool(over_18, "over_18")

    title = f.title
    removed = (
        bool(f.removed_by_category) or f.selftext in REMOVED_MARKERS or title in REMOVED_MARKERS
    )
    meta = f.meta
    retrieved = f.retrieved_on
    if (
        (retrieved is not None and type(retrieved) is not int)
        or f.retrieved_utc is not None
        or f.updated_utc is not None
        or f.updated_on is not None
        or meta is not None
    ):
        retrieved = _latest_time(
            retrieved,
            f.retrieved_utc,
            f.updated_utc,
            f.updated_on,
            meta.retrieved_2nd_on if meta is not None else None,
        )
    return Submission(
        sub_id,
        f.subreddit,
        created,
        score,
        title,
        url,
        domain,
        is_self,
        over_18,
        removed,
        f.crosspost_parent,
        source,
        line,
        retrieved,
    )


def submission_from_fields(fields: dict[str, Any], source: str, line: int | None) -> Submission:
    """Like parse_submission, for a submission already decoded into a dict (the API)."""
    try:
        decoded = msgspec.convert(fields, DumpFields)
    except msgspec.ValidationError as e:
        raise _validation_error(e) from None
    return submission_from_struct(decoded, source, line)


def parse_submission(line: bytes | str, source: str, line_number: int | None) -> Submission:
    """One dump line -> Submission; raises MalformedSubmission with the reason."""
    try:
        decoded = _DECODER.decode(line)
    except msgspec.ValidationError as e:
        raise _validation_error(e) from None
    except msgspec.DecodeError as e:
        raise MalformedSubmission("not_json", str(e)) from None
    return submission_from_struct(decoded, source, line_number)


# --- streaming readers ---------------------------------------------------------------


def _decompressor_factory(path: str) -> Callable[[], Any] | None:
    lower = path.lower()
    if lower.endswith((".zst", ".zstd")):
        zstd = zstandard.ZstdDecompressor(max_window_size=ZSTD_MAX_WINDOW)
        return zstd.decompressobj
    if lower.endswith(".bz2"):
        return bz2.BZ2Decompressor
    if lower.endswith((".xz", ".lzma")):
        return lzma.LZMADecompressor
    if lower.endswith(".gz"):
        return lambda: zlib.decompressobj(wbits=47)  # gzip header, any window
    return None


def _raw_chunks(path: str) -> Iterator[bytes]:
    with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as f:
        while chunk := f.read(READ_CHUNK):
            yield chunk


def iter_chunks(path: str) -> Iterator[bytes]:
    """The decompressed bytes of a file, chunk by chunk; raises TruncatedInput at a cut end.

    Concatenated frames / members / streams (pbzip2, pigz, multi-frame zstd) are read one
    after another; a file that stops inside one is truncated.
    """
    factory = _decompressor_factory(path)
    if factory is None:
        yield from _raw_chunks(path)
        return
    decompressor = factory()
    pending = False  # the current member has received input but not reached its end
    for chunk in _raw_chunks(path):
        while chunk:
            try:
                out = decompressor.decompress(chunk)
            except (OSError, EOFError, ValueError, zlib.error, zstandard.ZstdError) as e:
                raise TruncatedInput(f"corrupt compressed data: {e}") from None
            pending = True
            if out:
                yield out
            if decompressor.eof:
                chunk = decompressor.unused_data
                decompressor, pending = factory(), False
            else:
                chunk = b""
    if pending:
        raise TruncatedInput("the file ends inside a compressed frame (truncated download?)")


@dataclass
class ReadEnd:
    """How a file's reading ended: `truncated` carries the reason, `tail` the cut-off bytes."""

    lines: int = 0
    truncated: str | None = None
    tail: bytes = b""


def iter_line_batches(path: str, end: ReadEnd | None = None) -> Iterator[tuple[int, list[bytes]]]:
    """(number of the batch's first line, lines) per decompressed chunk, blank lines included.

    Never raises on truncation: a truncated file stops at its last complete line, and `end`
    records the reason and the partial line for the caller's dead-letter output.
    """
    end = end if end is not None else ReadEnd()
    number = 0
    tail = b""
    try:
        for chunk in iter_chunks(path):
            lines = (tail + chunk).split(b"\n") if tail else chunk.split(b"\n")
            tail = lines.pop()
            if lines:
                yield number + 1, lines
                number += len(lines)
    except TruncatedInput as e:
        end.lines, end.truncated, end.tail = number, str(e), tail
        return
    if tail:
        yield number + 1, [tail]
        number += 1
    end.lines = number


def iter_lines(path: str, end: ReadEnd | None = None) -> Iterator[tuple[int, bytes]]:
    """(1-based line number, line) for each non-blank line; truncation as iter_line_batches."""
    for first, lines in iter_line_batches(path, end):
        for number, line in enumerate(lines, first):
            if line.strip():
                yield number, line
