"""The one content policy: is a response HTML, and which charset decodes it.

The fetch stage uses it to decide what to store and to record each page's charset in the fetch
log; the build stage uses it again on every stored response, including those of WARC files
written by other crawlers. Both therefore agree on what a page is and how it reads.

    judge_content_type(mime_of(content_type), body[:SNIFF_BYTES])  -> None if HTML, else why not
    choose_charset(body, declared)                                  -> (codec, where it came from)
    decode_html(body, declared)                                     -> str
"""

from __future__ import annotations

import codecs
import re

HTML_TYPES = frozenset({"text/html", "application/xhtml+xml"})
# Types that say nothing about the body: the first bytes decide.
AMBIGUOUS_TYPES = frozenset(
    {"", "application/octet-stream", "binary/octet-stream", "application/unknown"}
)
SNIFF_BYTES = 1024
BINARY_MAGIC = (
    b"\x89PNG",
    b"GIF8",
    b"\xff\xd8\xff",
    b"%PDF",
    b"PK\x03\x04",
    b"\x1f\x8b",
    b"ID3",
    b"OggS",
    b"RIFF",
    b"\x00\x00\x01\x00",
    b"fLaC",
    b"BM",
    b"\x7fELF",
    b"MZ",
)
HTML_MARKERS = re.compile(
    rb"<(!doctype\s+html|html|head|body|title|meta|script|div|p|a\s|table|h1|br|!--)", re.I
)
META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([a-zA-Z0-9_.:-]+)""", re.I)
META_SCAN_BYTES = 4096
DETECT_BYTES = 65536

# WHATWG: these labels are decoded as windows-1252, which is what servers send under them.
_CP1252_LABELS = frozenset(
    {"iso-8859-1", "iso8859-1", "latin1", "latin-1", "l1", "us-ascii", "ascii"}
)
# Single-byte Western code pages: telling one from another by statistics is guesswork.
_LATIN_SINGLE_BYTE = frozenset(
    codecs.lookup(n).name
    for n in (
        "latin-1",
        "iso8859-2",
        "iso8859-3",
        "iso8859-4",
        "iso8859-9",
        "iso8859-10",
        "iso8859-13",
        "iso8859-14",
        "iso8859-15",
        "iso8859-16",
        "cp1250",
        "cp1252",
        "cp1254",
        "cp1257",
        "cp1258",
        "mac-roman",
        "mac-latin2",
        "mac-iceland",
        "mac-turkish",
        "cp437",
        "cp850",
    )
)


def mime_of(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


def charset_param(content_type: str | None) -> str | None:
    for part in (content_type or "").split(";")[1:]:
        key, _, value = part.partition("=")
        if key.strip().lower() == "charset":
            return value.strip().strip("\"'") or None
    return None


def sniff_html(head: bytes) -> bool | None:
    """True for HTML, False for a known binary format, None when the bytes do not say."""
    head = head[:SNIFF_BYTES].lstrip(b"\xef\xbb\xbf \t\r\n")
    if head.startswith(BINARY_MAGIC) or b"\x00" in head:
        return False
    if HTML_MARKERS.search(head):
        return True
    return None


def judge_content_type(header_mime: str, head: bytes) -> str | None:
    """None when the body is HTML by header and sniffing, else the reason it is not."""
    sniffed = sniff_html(head)
    if header_mime in HTML_TYPES:
        return "sniffed_binary" if sniffed is False else None
    if header_mime in AMBIGUOUS_TYPES:
        return None if sniffed else "sniffed_not_html"
    return "header"


def codec_for(label: str | None) -> str | None:
    """Python's codec for a charset label, with WHATWG's windows-1252 for Latin-1 and ASCII."""
    if not label:
        return None
    label = label.strip().strip("\"'").lower()
    if label in _CP1252_LABELS:
        return "cp1252"
    try:
        return codecs.lookup(label).name
    except LookupError:
        return None


def meta_charset(body: bytes) -> str | None:
    m = META_CHARSET.search(body[:META_SCAN_BYTES])
    return m.group(1).decode("ascii", "replace") if m else None


def _decodes(body: bytes, codec: str) -> bool:
    try:
        body.decode(codec)
    except UnicodeDecodeError as e:
        # A body cut at the size cap may end inside a multi-byte character.
        return e.start >= len(body) - 3 and e.reason == "unexpected end of data"
    return True


def choose_charset(body: bytes, declared: str | None = None) -> tuple[str, str]:
    """The codec that reads an HTML body, and where it came from.

    In order: a byte-order mark; UTF-8 if the body decodes as UTF-8 (a non-ASCII body that does
    almost never is anything else, while servers often declare ISO-8859-1 and send UTF-8); the
    declared charset (the HTTP header's, or the one the fetch log recorded), then the <meta>
    tag's, each only if it decodes the body; then charset_normalizer's guess when it is a
    non-Latin encoding (Shift_JIS, cp1251, ...). Otherwise windows-1252, as browsers read an
    undeclared Western page; `where` is "undetected" when the guesser found nothing at all.
    """
    if body.startswith(codecs.BOM_UTF8):
        return "utf-8", "bom"
    if body.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16", "bom"
    if _decodes(body, "utf-8"):
        return "utf-8", "utf-8"
    for where, label in (("declared", declared), ("meta", meta_charset(body))):
        name = codec_for(label)
        if name and _decodes(body, name):
            return name, where
    import charset_normalizer  # imported late: only bodies without a usable declaration

    guess = charset_normalizer.from_bytes(body[:DETECT_BYTES]).best()
    if guess is None:
        return "cp1252", "undetected"
    name = codec_for(guess.encoding)
    if name is None or name in _LATIN_SINGLE_BYTE:
        return "cp1252", "default"
    return name, "detected"


def decode_html(body: bytes, declared: str | None = None) -> str:
    """The body as text, read with `choose_charset`'s codec; bytes it cannot read become U+FFFD."""
    codec, where = choose_charset(body, declared)
    if where == "bom" and codec == "utf-8":
        body = body[len(codecs.BOM_UTF8) :]
    return body.decode(codec, errors="replace")
