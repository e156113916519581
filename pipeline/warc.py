"""WARC files: the fetch stage writes every response it keeps, the build stage reads them back.

Each file is gzipped record by record (one gzip member per record, as Common Crawl does), so
a record can be read on its own from its offset. A fetch writes a request and a response
record per HTTP exchange (redirect hops included), linked by WARC-Concurrent-To; the fetch
log points at the final response record by file, offset and length.

Bodies are stored decoded: the Content-Encoding, Content-Length and Transfer-Encoding the
server sent are kept as X-Crawler-* headers (Common Crawl's convention) and Content-Length
is the stored length. A body cut at `max_body_bytes` carries `WARC-Truncated: length`.

Files are written under a temporary name through Beam's FileSystems (local, gs://, s3://)
and renamed only when complete, so a reader never sees half a file.
"""

from __future__ import annotations

import io
import time
import uuid
from datetime import UTC, datetime
from urllib.parse import urlsplit

from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from warcio.archiveiterator import ArchiveIterator
from warcio.statusandheaders import StatusAndHeaders
from warcio.warcwriter import WARCWriter
from zlib_ng import zlib_ng

from pipeline.fetch.records import Exchange, FetchResult

SOFTWARE = "webtext fetch (warcio)"
_GZIP_MAGIC = b"\x1f\x8b"
_READ_BYTES = 1 << 16


class _CountingStream:
    """A write-only stream that knows its position, whatever the file system's stream does."""

    def __init__(self, raw: io.RawIOBase):
        self.raw = raw
        self.position = 0

    def write(self, data: bytes) -> int:
        self.raw.write(data)
        self.position += len(data)
        return len(data)

    def tell(self) -> int:
        return self.position

    def flush(self) -> None:
        pass


class WarcFile:
    """One WARC file being written; `commit` renames it into place, `abort` removes it."""

    def __init__(self, path: str, warcinfo: dict[str, str] | None = None):
        self.path = path
        self.tmp_path = f"{path}.tmp-{uuid.uuid4().hex[:12]}"
        self._raw = FileSystems.create(
            self.tmp_path, compression_type=CompressionTypes.UNCOMPRESSED
        )
        self._out = _CountingStream(self._raw)
        self._writer = WARCWriter(self._out, gzip=True)
        self.records = 0
        info = {"software": SOFTWARE, "format": "WARC File Format 1.1", **(warcinfo or {})}
        filename = path.rsplit("/", 1)[-1]
        self._writer.write_record(self._writer.create_warcinfo_record(filename, info))

    @property
    def size(self) -> int:
        return self._out.position

    def write_result(self, result: FetchResult) -> tuple[int, int]:
        """Write every exchange of a fetched page; returns the final response's (offset, length)."""
        if not result.exchanges:
            raise ValueError(f"{result.task.url}: nothing to write (outcome {result.outcome})")
        when = datetime.fromtimestamp(result.fetched_at or time.time(), UTC)
        date = when.strftime("%Y-%m-%dT%H:%M:%SZ")
        location = (0, 0)
        for exchange in result.exchanges:
            location = self._write_exchange(exchange, date)
        self.records += 1
        return location

    def _write_exchange(self, exchange: Exchange, date: str) -> tuple[int, int]:
        writer = self._writer
        response_headers = {"WARC-Date": date}
        if exchange.ip:
            response_headers["WARC-IP-Address"] = exchange.ip
        if exchange.truncated:
            response_headers["WARC-Truncated"] = "length"
        if exchange.source_uri:
            response_headers["WARC-Source-URI"] = exchange.source_uri
        http = StatusAndHeaders(
            f"{exchange.status} {exchange.reason}".strip(),
            exchange.response_headers,
            protocol=exchange.http_version,
        )
        response = writer.create_warc_record(
            exchange.url,
            "response",
            payload=io.BytesIO(exchange.body),
            length=len(exchange.body),
            http_headers=http,
            warc_headers_dict=response_headers,
        )
        offset = self._out.position
        writer.write_record(response)
        length = self._out.position - offset
        if exchange.request_headers:
            parts = urlsplit(exchange.url)
            target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
            request_http = StatusAndHeaders(
                f"{exchange.method} {target} {exchange.http_version}",
                exchange.request_headers,
                is_http_request=True,
            )
            request = writer.create_warc_record(
                exchange.url,
                "request",
                payload=io.BytesIO(b""),
                length=0,
                http_headers=request_http,
                warc_headers_dict={
                    "WARC-Date": date,
                    "WARC-Concurrent-To": response.rec_headers.get_header("WARC-Record-ID"),
                },
            )
            writer.write_record(request)
        return offset, length

    def commit(self) -> None:
        self._raw.close()
        if FileSystems.exists(self.path):
            FileSystems.delete([self.path])
        FileSystems.rename([self.tmp_path], [self.path])

    def abort(self) -> None:
        try:
            self._raw.close()
        finally:
            if FileSystems.exists(self.tmp_path):
                FileSystems.delete([self.tmp_path])


def read_response(
    path: str, offset: int, length: int | None = None
) -> tuple[StatusAndHeaders, bytes, str]:
    """The HTTP headers, the body and the WARC-Target-URI of the response record at `offset`.

    Works on any WARC gzipped per record (ours, Common Crawl's, most crawlers') or not
    compressed at all; the body has chunked transfer and any Content-Encoding still on it
    removed. `length`, the record's stored (compressed) length as the fetch log gives it,
    lets the record be read and gunzipped in one call; without it the gzip member is read
    until it ends. `headers` is warcio's StatusAndHeaders: `get_statuscode()`,
    `get_header(name)`, `headers`.
    """
    with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as f:
        f.seek(offset)
        start = f.read(length or _READ_BYTES)
        if start[:2] == _GZIP_MAGIC:
            stream: io.RawIOBase = io.BytesIO(_gunzip_member(start, f))
        else:
            f.seek(offset)
            stream = f
        for record in ArchiveIterator(stream):
            if record.rec_type != "response" or record.http_headers is None:
                raise ValueError(f"{path} at {offset}: a {record.rec_type} record, not a response")
            body = record.content_stream().read()
            target = record.rec_headers.get_header("WARC-Target-URI") or ""
            return record.http_headers, body, target
    raise ValueError(f"{path} at {offset}: no WARC record there")


def _gunzip_member(start: bytes, rest: io.RawIOBase) -> bytes:
    """The gzip member that begins `start`, reading more from `rest` until it ends; an error
    if the member is cut short. One inflate call for the whole member (zlib-ng's, faster than
    zlib's; docs/benchmarks.md) when `start` holds all of it."""
    inflate = zlib_ng.decompressobj(31)  # 31: a gzip header and trailer
    parts = [inflate.decompress(start)]
    while not inflate.eof:
        more = rest.read(_READ_BYTES)
        if not more:
            raise ValueError("the gzip member is cut short")
        parts.append(inflate.decompress(more))
    return b"".join(parts)
