"""Dump lines of every field era, each compression, malformed and truncated input, URL lists."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard

import schemas
from pipeline.links.submissions import (
    MalformedSubmission,
    ReadEnd,
    iter_lines,
    parse_submission,
)
from pipeline.links.url_lists import iter_url_list
from tests.reddit_dumps import DumpGenerator, write_dump


def parse(fields: dict) -> object:
    return parse_submission(json.dumps(fields).encode(), "RS_test", 7)


def test_early_era_uses_ups_and_derives_domain_is_self_and_over_18():
    sub = parse(
        {
            "id": "2x4",
            "created_utc": "1167609600",
            "ups": 12,
            "downs": 3,
            "title": "An early link",
            "url": "http://www.Example.com/story",
            "subreddit": "reddit.com",
        }
    )
    assert sub.score == 12
    assert sub.created_utc == 1167609600
    assert sub.to_record()["domain"] == "example.com"
    assert sub.is_self is False
    assert sub.over_18 is False
    assert (sub.source, sub.source_line) == ("RS_test", 7)


def test_early_era_self_post_is_derived_from_its_own_comments_url():
    sub = parse(
        {
            "id": "abc",
            "created_utc": 1200000000,
            "ups": 5,
            "url": "http://www.reddit.com/r/AskReddit/comments/abc/why/",
            "subreddit": "AskReddit",
        }
    )
    assert sub.is_self is True
    assert sub.domain == "self.AskReddit"


def test_score_wins_over_ups_when_both_are_present():
    sub = parse({"id": "a", "created_utc": 1, "score": 40, "ups": 2, "url": "https://x.org/"})
    assert sub.score == 40


def test_middle_era_fields_are_read_as_given():
    sub = parse(
        {
            "id": "t3_5abc",
            "created_utc": 1400000000.0,
            "score": 7,
            "domain": "self.news",
            "is_self": True,
            "over_18": True,
            "url": "https://www.reddit.com/r/news/comments/5abc/x/",
            "subreddit": "news",
            "title": "t",
        }
    )
    assert sub.id == "5abc"  # the t3_ prefix is not part of the id
    assert sub.is_self and sub.over_18
    assert sub.created_utc == 1400000000


def test_recent_era_prefers_url_overridden_by_dest_and_flags_removed():
    sub = parse(
        {
            "id": "hx1",
            "created_utc": 1600000000,
            "score": 3,
            "url": "https://www.reddit.com/gallery/hx1",
            "url_overridden_by_dest": "https://example.org/real",
            "is_self": False,
            "over_18": False,
            "removed_by_category": "moderator",
            "subreddit": "news",
        }
    )
    assert sub.url == "https://example.org/real"
    assert sub.removed is True


def test_deleted_marker_flags_removed_and_crosspost_parent_is_kept():
    sub = parse(
        {
            "id": "c1",
            "created_utc": 1550000000,
            "score": 9,
            "url": "https://example.org/a",
            "selftext": "[deleted]",
            "crosspost_parent": "t3_p1",
            "crosspost_parent_list": [{"id": "p1", "score": 999}],
        }
    )
    assert sub.removed is True
    assert sub.crosspost_parent == "t3_p1"
    assert sub.score == 9  # the parent's nested score is not this submission's


def test_every_generated_era_parses_into_the_submission_schema():
    gen = DumpGenerator(seed=3)
    for era in ("early", "middle", "modern", "recent", "arctic"):
        records = [parse(gen.fields(era)).to_record() for _ in range(50)]
        table = pa.Table.from_pylist(records, schema=schemas.SUBMISSION)
        assert table.num_rows == 50
        assert schemas.check_table(table.schema, schemas.SUBMISSION) == []


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (b"{not json", "not_json"),
        (b"[1, 2]", "not_object"),
        (b'{"created_utc": 1, "score": 1}', "missing_field"),
        (b'{"id": "a", "score": 1}', "missing_field"),
        (b'{"id": "a", "created_utc": 1}', "missing_field"),
        (b'{"id": 5, "created_utc": 1, "score": 1}', "wrong_type"),
        (b'{"id": "a", "created_utc": "yesterday", "score": 1}', "wrong_type"),
        (b'{"id": "a", "created_utc": 1, "score": "many"}', "wrong_type"),
        (b'{"id": "a", "created_utc": 1, "score": 1, "over_18": "no"}', "wrong_type"),
        (b'{"id": "a", "created_utc": 1, "score": 1, "url": 7}', "wrong_type"),
    ],
)
def test_malformed_lines_raise_with_a_reason(line, reason):
    with pytest.raises(MalformedSubmission) as info:
        parse_submission(line, "RS_test", 1)
    assert info.value.reason == reason


LINES = [json.dumps({"id": f"i{i}", "created_utc": i, "score": i}).encode() for i in range(5000)]


@pytest.mark.parametrize("suffix", [".zst", ".bz2", ".xz", ".gz", ".json"])
def test_each_compression_streams_every_line(tmp_path: Path, suffix: str):
    path = write_dump(tmp_path / f"RS_2017-01{suffix}", [line + b"\n" for line in LINES])
    end = ReadEnd()
    got = list(iter_lines(str(path), end))
    assert [n for n, _ in got] == list(range(1, 5001))
    assert [line for _, line in got] == LINES
    assert end.truncated is None and end.lines == 5000


def test_zst_with_a_long_window_needs_and_gets_the_large_decoder_limit(tmp_path: Path):
    path = write_dump(tmp_path / "RS_long.zst", [line + b"\n" for line in LINES[:100]])
    with pytest.raises(zstandard.ZstdError):
        zstandard.ZstdDecompressor().decompressobj().decompress(path.read_bytes())
    assert len(list(iter_lines(str(path)))) == 100


def test_concatenated_zst_frames_are_all_read(tmp_path: Path):
    compressor = zstandard.ZstdCompressor()
    data = b"".join(compressor.compress(b"\n".join(LINES[i : i + 100]) + b"\n") for i in (0, 100))
    path = tmp_path / "RS_frames.zst"
    path.write_bytes(data)
    assert [line for _, line in iter_lines(str(path))] == LINES[:200]


@pytest.mark.parametrize("suffix", [".zst", ".bz2", ".xz", ".gz"])
def test_truncated_file_stops_at_the_last_whole_line_and_reports(tmp_path: Path, suffix: str):
    lines = list(DumpGenerator(seed=1).lines(3000))
    path = write_dump(tmp_path / f"RS_cut{suffix}", lines)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 2 // 3])
    end = ReadEnd()
    got = list(iter_lines(str(path), end))
    assert end.truncated is not None
    assert 0 < len(got) < 3000
    assert [line + b"\n" for _, line in got] == lines[: len(got)]
    assert end.lines == len(got)


def test_plain_file_without_final_newline_keeps_its_last_line(tmp_path: Path):
    path = tmp_path / "RS_plain"
    path.write_bytes(b"a\n\nb\nc")
    assert list(iter_lines(str(path))) == [(1, b"a"), (3, b"b"), (4, b"c")]


def test_txt_url_list_with_and_without_scores(tmp_path: Path):
    path = tmp_path / "urls.txt"
    path.write_text("# OpenWebText URLs\nhttps://a.org/x\nhttps://b.org/y 17\nhttps://c.org z\n")
    entries = list(iter_url_list(str(path), min_karma=3))
    assert [(n, r.url, r.score) for n, _, r in entries[:2]] == [
        (2, "https://a.org/x", 3),
        (3, "https://b.org/y", 17),
    ]
    assert isinstance(entries[2][2], MalformedSubmission)
    assert entries[0][2].source == str(path)


def test_compressed_csv_url_list(tmp_path: Path):
    path = write_dump(
        tmp_path / "urls.csv.gz", [b"score,url\n", b"5,https://a.org/x\n", b",https://b.org/\n"]
    )
    entries = list(iter_url_list(str(path), min_karma=3))
    assert [(r.url, r.score) for _, _, r in entries] == [
        ("https://a.org/x", 5),
        ("https://b.org/", 3),
    ]


def test_parquet_url_list_with_optional_score(tmp_path: Path):
    path = tmp_path / "urls.parquet"
    pq.write_table(pa.table({"url": ["https://a.org/", None], "score": [4, 9]}), path)
    entries = list(iter_url_list(str(path), min_karma=3))
    assert entries[0][2].url == "https://a.org/" and entries[0][2].score == 4
    assert isinstance(entries[1][2], MalformedSubmission)
