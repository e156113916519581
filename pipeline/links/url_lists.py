"""Plain URL lists as a links source: .txt, .csv or .parquet, with a url and an optional score.

    .txt      one URL a line, optionally followed by whitespace and a score; "#" comments
    .csv      a header row naming a `url` column and optionally a `score` column
    .parquet  a `url` column and optionally a `score` column

A compression suffix (.gz, .bz2, .xz, .zst) on a .txt or .csv list is decompressed as a
stream. Each entry becomes a submission-like record whose source is the list's path and whose
score is the listed score, or `min_karma` when there is none: a curated list such as the
published OpenWebText URL lists was already filtered for karma. Entries carry no id,
subreddit, title or date, so the date and subreddit filters do not apply to them.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator

import pyarrow.parquet as pq
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from pipeline.links.submissions import MalformedSubmission, ReadEnd, Submission, iter_lines

COMPRESSION_SUFFIXES = (".gz", ".bz2", ".xz", ".lzma", ".zst", ".zstd")
PARQUET_BATCH_ROWS = 65536

Entry = tuple[int, str, Submission | MalformedSubmission]  # (line or row, raw, result)


def list_format(path: str) -> str:
    """ "txt", "csv" or "parquet", from the name with any compression suffix removed."""
    name = path.lower()
    for suffix in COMPRESSION_SUFFIXES:
        if name.endswith(suffix):
            name = name[: -len(suffix)]
            break
    if name.endswith(".parquet"):
        return "parquet"
    if name.endswith(".csv"):
        return "csv"
    return "txt"


def _entry(path: str, number: int, url: str, score_text: str | None, min_karma: int) -> Submission:
    url = url.strip()
    if not url:
        raise MalformedSubmission("missing_field", "no url")
    if score_text is None or score_text.strip() == "":
        score = min_karma
    else:
        try:
            score = int(float(score_text))
        except ValueError:
            raise MalformedSubmission(
                "wrong_type", f"score {score_text!r} is not a number"
            ) from None
    return Submission(
        id=None,
        subreddit=None,
        created_utc=None,
        score=score,
        title=None,
        url=url,
        domain=None,
        is_self=False,
        over_18=False,
        removed=False,
        crosspost_parent=None,
        source=path,
        source_line=number,
    )


def _guarded(
    path: str, number: int, raw: str, url: str, score: str | None, min_karma: int
) -> Entry:
    try:
        return number, raw, _entry(path, number, url, score, min_karma)
    except MalformedSubmission as e:
        return number, raw, e


def _iter_txt(path: str, min_karma: int, end: ReadEnd) -> Iterator[Entry]:
    for number, line in iter_lines(path, end):
        text = line.decode("utf-8", "replace").strip()
        if text.startswith("#"):
            continue
        parts = text.split()
        if len(parts) > 2:
            yield number, text, MalformedSubmission("malformed_entry", "expected: URL [SCORE]")
            continue
        yield _guarded(
            path, number, text, parts[0], parts[1] if len(parts) > 1 else None, min_karma
        )


def _iter_csv(path: str, min_karma: int, end: ReadEnd) -> Iterator[Entry]:
    numbered = ((n, line.decode("utf-8", "replace")) for n, line in iter_lines(path, end))
    line_numbers: list[int] = []

    def texts() -> Iterator[str]:
        for n, text in numbered:
            line_numbers.append(n)
            yield text

    reader = csv.reader(texts())
    header = [h.strip().lower() for h in next(reader, [])]
    if "url" not in header:
        yield 1, ",".join(header), MalformedSubmission("missing_field", "no url column in header")
        return
    url_at, score_at = header.index("url"), header.index("score") if "score" in header else None
    for row in reader:
        number = line_numbers[-1]
        raw = ",".join(row)
        if len(row) <= url_at:
            yield number, raw, MalformedSubmission("missing_field", "row has no url cell")
            continue
        score = row[score_at] if score_at is not None and score_at < len(row) else None
        yield _guarded(path, number, raw, row[url_at], score, min_karma)


def _iter_parquet(path: str, min_karma: int) -> Iterator[Entry]:
    with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as f:
        parquet = pq.ParquetFile(f)  # Beam's file objects seek, as Parquet needs
        names = parquet.schema_arrow.names
        if "url" not in names:
            yield 0, "", MalformedSubmission("missing_field", f"no url column in {names}")
            return
        columns = ["url", "score"] if "score" in names else ["url"]
        number = 0
        for batch in parquet.iter_batches(batch_size=PARQUET_BATCH_ROWS, columns=columns):
            urls = batch.column("url").to_pylist()
            scores = batch.column("score").to_pylist() if "score" in columns else [None] * len(urls)
            for url, score in zip(urls, scores, strict=True):
                number += 1
                raw = f"{url} {score}"
                if url is None:
                    yield number, raw, MalformedSubmission("missing_field", "null url")
                    continue
                score_text = None if score is None else str(score)
                yield _guarded(path, number, raw, str(url), score_text, min_karma)


def iter_url_list(path: str, min_karma: int, end: ReadEnd | None = None) -> Iterator[Entry]:
    """(line or row number, raw entry, Submission or MalformedSubmission) per list entry."""
    end = end if end is not None else ReadEnd()
    kind = list_format(path)
    if kind == "parquet":
        yield from _iter_parquet(path, min_karma)
    elif kind == "csv":
        yield from _iter_csv(path, min_karma, end)
    else:
        yield from _iter_txt(path, min_karma, end)
