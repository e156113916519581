"""WARC writing (atomic, offsets recorded) and reading back, ours and another crawler's."""

from __future__ import annotations

import io
import time

import pytest
from warcio.archiveiterator import ArchiveIterator
from warcio.statusandheaders import StatusAndHeaders
from warcio.warcwriter import WARCWriter

from pipeline.fetch.records import Exchange, FetchResult, FetchTask
from pipeline.warc import WarcFile, read_response
from tests.conftest import require_shared

BODY = "<html><body>Grüße</body></html>".encode()


def exchange(url: str, status: int, body: bytes, **kwargs) -> Exchange:
    return Exchange(
        url=url,
        ip="127.0.0.1",
        method="GET",
        request_headers=[("Host", url.split("/")[2]), ("User-Agent", "webtext-bot/0.1")],
        status=status,
        reason="OK" if status == 200 else "Found",
        http_version="HTTP/1.1",
        response_headers=[
            ("Content-Type", "text/html; charset=utf-8"),
            ("Content-Length", str(len(body))),
        ],
        body=body,
        **kwargs,
    )


def result(url: str, hops: list[Exchange]) -> FetchResult:
    return FetchResult(
        task=FetchTask(url, url), outcome="ok", exchanges=hops, fetched_at=time.time()
    )


def test_records_are_readable_at_their_recorded_offsets(tmp_path):
    path = str(tmp_path / "a.warc.gz")
    warc = WarcFile(path, {"operator": "test"})
    first = warc.write_result(
        result(
            "http://a.test/r",
            [exchange("http://a.test/r", 302, b""), exchange("http://a.test/p?q=1", 200, BODY)],
        )
    )
    second = warc.write_result(
        result(
            "http://b.test/", [exchange("http://b.test/", 200, b"<html>b</html>", truncated=True)]
        )
    )
    warc.commit()
    headers, body, target = read_response(path, first[0])
    assert (headers.get_statuscode(), body, target) == ("200", BODY, "http://a.test/p?q=1")
    headers, body, target = read_response(path, second[0])
    assert body == b"<html>b</html>" and target == "http://b.test/"
    with open(path, "rb") as f:
        records = [
            (r.rec_type, r.rec_headers.get_header("WARC-Target-URI")) for r in ArchiveIterator(f)
        ]
    assert records == [
        ("warcinfo", None),
        ("response", "http://a.test/r"),
        ("request", "http://a.test/r"),
        ("response", "http://a.test/p?q=1"),
        ("request", "http://a.test/p?q=1"),
        ("response", "http://b.test/"),
        ("request", "http://b.test/"),
    ]
    with open(path, "rb") as f:
        truncated = [r.rec_headers.get_header("WARC-Truncated") for r in ArchiveIterator(f)]
    assert truncated[-2] == "length"


def test_a_file_appears_only_when_committed(tmp_path):
    path = tmp_path / "b.warc.gz"
    warc = WarcFile(str(path))
    warc.write_result(result("http://a.test/", [exchange("http://a.test/", 200, BODY)]))
    assert not path.exists() and len(list(tmp_path.iterdir())) == 1
    warc.commit()
    assert path.exists() and list(tmp_path.iterdir()) == [path]
    aborted = WarcFile(str(tmp_path / "c.warc.gz"))
    aborted.abort()
    assert list(tmp_path.iterdir()) == [path]


def test_a_record_reads_the_same_with_its_length_without_it_and_uncompressed(tmp_path):
    big = b"<html><body>" + bytes(range(32, 127)) * 3000 + b"</body></html>"  # > one read
    gzipped = str(tmp_path / "a.warc.gz")
    warc = WarcFile(gzipped)
    located = [
        warc.write_result(result(url, [exchange(url, 200, body)]))
        for url, body in [("http://a.test/", big), ("http://b.test/", BODY)]
    ]
    warc.commit()
    plain = tmp_path / "a.warc"
    with open(plain, "wb") as out:
        writer = WARCWriter(out, gzip=False)
        plain_offsets = []
        for url, body in [("http://a.test/", big), ("http://b.test/", BODY)]:
            plain_offsets.append(out.tell())
            http = StatusAndHeaders("200 OK", [("Content-Type", "text/html")], "HTTP/1.1")
            record = writer.create_warc_record(url, "response", io.BytesIO(body), http_headers=http)
            writer.write_record(record)
    for (offset, length), plain_offset, body in zip(
        located, plain_offsets, [big, BODY], strict=True
    ):
        assert read_response(gzipped, offset, length)[1] == body
        assert read_response(gzipped, offset)[1] == body
        assert read_response(str(plain), plain_offset)[1] == body


def test_a_record_cut_short_is_an_error_not_a_short_body(tmp_path):
    path = tmp_path / "a.warc.gz"
    warc = WarcFile(str(path))
    offset, length = warc.write_result(
        result("http://a.test/", [exchange("http://a.test/", 200, BODY)])
    )
    warc.commit()
    path.write_bytes(path.read_bytes()[: offset + length - 20])
    with pytest.raises(ValueError, match="cut short"):
        read_response(str(path), offset)


def warcio_responses(path) -> list[tuple[int, tuple]]:
    """(offset, what warcio reads: status line, protocol, headers, body, target) per response."""
    found = []
    with open(path, "rb") as f:
        iterator = ArchiveIterator(f)
        for record in iterator:
            if record.rec_type == "response":
                http = record.http_headers
                body = record.content_stream().read()  # before the offset: it ends the record
                target = record.rec_headers.get_header("WARC-Target-URI")
                read = (http.statusline, http.protocol, http.headers, body, target)
                found.append((iterator.get_record_offset(), read))
    return found


def read_as_warcio_would(path, offset: int) -> tuple:
    headers, body, target = read_response(str(path), offset)
    return headers.statusline, headers.protocol, headers.headers, body, target


def test_read_response_reads_another_crawlers_warcs_as_warcio_does():
    folder = require_shared("warc")
    for path in sorted(folder.glob("*.warc.gz")):
        expected = warcio_responses(path)
        assert len(expected) >= 10
        for offset, want in expected:
            assert read_as_warcio_would(path, offset) == want


def test_our_records_read_as_warcio_does(tmp_path):
    path = tmp_path / "a.warc.gz"
    out = WarcFile(str(path))
    for i, body in enumerate([BODY, b"", b"<html>\r\n\r\n</html>"]):
        url = f"http://a.test/{i}?q=<1>"
        out.write_result(result(url, [exchange(url, 200, body)]))
    out.commit()
    expected = warcio_responses(path)
    assert len(expected) == 3
    for offset, want in expected:
        assert read_as_warcio_would(path, offset) == want
