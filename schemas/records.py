"""The columns of every record the stages exchange, as versioned pyarrow schemas.

This module is the only place a column is defined. Each schema carries its name and
version in its metadata, so a Parquet file says what it holds; `check_table` compares
a table against the schema it claims to follow.

    submission  -> links/              one Reddit submission, normalized across dump eras and the API
    scores      -> scores/             one submission's score as the Reddit API gave it (`rescore`)
    link        -> links/              one normalized URL with every submission that posted it
    fetch       -> fetch/              one fetch attempt's outcome, pointing into the WARC files
    document    -> documents/data/     one extracted, filtered, deduplicated document
    removed     -> documents/removed/  one document removed by a filter or by dedup, and why
    dead_letter -> any stage           one input record that could not be parsed, and where it was
    token_piece -> tokens/_pieces/     one encoded document on its way into a token shard (scratch)
"""

from __future__ import annotations

import pyarrow as pa

SCHEMA_NAME_KEY = b"webtext.schema"
SCHEMA_VERSION_KEY = b"webtext.schema_version"


def _schema(name: str, version: int, fields: list[pa.Field]) -> pa.Schema:
    return pa.schema(
        fields,
        metadata={SCHEMA_NAME_KEY: name.encode(), SCHEMA_VERSION_KEY: str(version).encode()},
    )


SUBMISSION = _schema(
    "submission",
    2,
    [
        pa.field("id", pa.string(), nullable=False),  # base-36 id without the t3_ prefix
        pa.field("subreddit", pa.string()),
        pa.field("created_utc", pa.int64(), nullable=False),  # seconds since the epoch
        pa.field("score", pa.int64(), nullable=False),  # `score`, or `ups` in early dumps
        # when the score was read (the dump's retrieval fields), null when the record has none
        pa.field("retrieved_utc", pa.int64()),
        pa.field("title", pa.string()),
        pa.field("url", pa.string()),  # url_overridden_by_dest when present
        pa.field("domain", pa.string()),
        pa.field("is_self", pa.bool_(), nullable=False),
        pa.field("over_18", pa.bool_(), nullable=False),
        pa.field("removed", pa.bool_(), nullable=False),  # removed or deleted marker seen
        pa.field("crosspost_parent", pa.string()),
        pa.field("source", pa.string(), nullable=False),  # dump path, "reddit-api" or list path
        pa.field("source_line", pa.int64()),  # 1-based line in the source, when it has lines
    ],
)

# A link's submissions, kept so every document can be traced back to the Reddit posts.
LINK_SUBMISSION = pa.struct(
    [
        pa.field("id", pa.string()),
        pa.field("subreddit", pa.string()),
        pa.field("score", pa.int64()),
        pa.field("created_utc", pa.int64()),
        pa.field("title", pa.string()),
        pa.field("retrieved_utc", pa.int64()),  # when `score` was read; null when unknown
    ]
)

LINK = _schema(
    "link",
    2,
    [
        pa.field("normalized_url", pa.string(), nullable=False),
        pa.field("host", pa.string(), nullable=False),  # normalized host, no www., IDN as punycode
        pa.field("urls", pa.list_(pa.string()), nullable=False),  # original URLs as posted, sorted
        pa.field("karma", pa.int64(), nullable=False),  # by the configured karma rule
        pa.field("first_created_utc", pa.int64(), nullable=False),
        pa.field("submissions", pa.list_(LINK_SUBMISSION), nullable=False),
    ],
)

FETCH = _schema(
    "fetch",
    2,
    [
        pa.field("url", pa.string(), nullable=False),  # the URL requested first
        pa.field("normalized_url", pa.string(), nullable=False),
        pa.field("outcome", pa.string(), nullable=False),  # "ok" or the reason it is not
        pa.field("status", pa.int32()),  # final HTTP status, null when no response
        pa.field("error_class", pa.string()),  # exception class or policy name, null when ok
        pa.field("final_url", pa.string()),
        pa.field("redirects", pa.list_(pa.string())),  # every hop after the first URL
        pa.field("content_type", pa.string()),
        pa.field("charset", pa.string()),
        pa.field("bytes", pa.int64()),  # body bytes stored
        pa.field("truncated", pa.bool_()),
        pa.field("elapsed_s", pa.float64()),
        pa.field("attempts", pa.int32()),
        pa.field("warc_file", pa.string()),  # path relative to the fetch folder
        pa.field("warc_offset", pa.int64()),  # offset of the response record
        pa.field("warc_length", pa.int64()),  # compressed length of the response record
        # ms, not s: Parquet has no seconds unit, so a file written by Beam reads back as ms.
        pa.field("fetched_at", pa.timestamp("ms", tz="UTC")),
        pa.field("source", pa.string()),  # "live", "commoncrawl" or "wayback"
        # v2: null when no hop was HTTPS; false when fetch.verify_tls was off for the page
        pa.field("tls_verified", pa.bool_()),
        # v2: 0 for a link's first fetch; n for its n-th rerun with fetch.retry_failed
        pa.field("retry_round", pa.int32()),
    ],
)

DOCUMENT = _schema(
    "document",
    2,
    [
        pa.field("doc_id", pa.string(), nullable=False),  # stable hash of normalized_url
        pa.field("text", pa.string(), nullable=False),
        pa.field("title", pa.string()),
        pa.field("date", pa.string()),  # ISO date when the page gives one
        pa.field("language", pa.string()),
        pa.field("language_score", pa.float32()),
        pa.field("word_count", pa.int32(), nullable=False),
        pa.field("token_count", pa.int32(), nullable=False),  # GPT-2 BPE tokens
        pa.field("normalized_url", pa.string(), nullable=False),
        pa.field("final_url", pa.string(), nullable=False),
        pa.field("host", pa.string(), nullable=False),
        pa.field("karma", pa.int64(), nullable=False),
        pa.field("first_created_utc", pa.int64(), nullable=False),
        pa.field("submissions", pa.list_(LINK_SUBMISSION), nullable=False),
        # ms: Parquet has no seconds unit, so a timestamp[s] column reads back as timestamp[ms]
        pa.field("fetched_at", pa.timestamp("ms", tz="UTC")),
        pa.field("warc_file", pa.string()),
        pa.field("warc_offset", pa.int64()),
        pa.field("extractor", pa.string(), nullable=False),  # e.g. "trafilatura 2.3.1"
        pa.field("text_hash", pa.string(), nullable=False),  # of the normalized text
    ],
)

REMOVED = _schema(
    "removed",
    1,
    [
        pa.field("doc_id", pa.string(), nullable=False),
        pa.field("normalized_url", pa.string(), nullable=False),
        pa.field("final_url", pa.string()),
        pa.field("stage", pa.string(), nullable=False),  # "filter" or "dedup"
        pa.field("reason", pa.string(), nullable=False),  # counter name, e.g. "too_short"
        pa.field("detail", pa.string()),
        pa.field("cluster_id", pa.string()),  # dedup: the cluster, named by its kept doc_id
        pa.field("kept_doc_id", pa.string()),
        pa.field("text", pa.string()),  # the extracted text, when there was one
    ],
)


def removed_row(
    doc_id: str,
    normalized_url: str,
    final_url: str | None,
    stage: str,
    reason: str,
    detail: str | None,
    text: str | None = None,
    kept_doc_id: str | None = None,
) -> dict:
    """A REMOVED row. Dedup's removals name their cluster by the kept document's id."""
    return {
        "doc_id": doc_id,
        "normalized_url": normalized_url,
        "final_url": final_url,
        "stage": stage,
        "reason": reason,
        "detail": detail[:1000] if detail else detail,
        "cluster_id": kept_doc_id,
        "kept_doc_id": kept_doc_id,
        "text": text,
    }


REMOVAL = _schema(
    "removal",
    1,
    [
        pa.field("doc_id", pa.string(), nullable=False),  # the duplicate dedup removes
        pa.field("kept_doc_id", pa.string(), nullable=False),  # its cluster's kept document
        pa.field("reason", pa.string(), nullable=False),  # "exact_duplicate" or "near_duplicate"
        pa.field("cluster_size", pa.int64(), nullable=False),
        pa.field("part", pa.int64(), nullable=False),  # the extracted part that holds doc_id
    ],
)

# `webtext rescore`'s output, read by the links stage through `links.scores`.
SCORES = _schema(
    "scores",
    1,
    [
        pa.field("id", pa.string(), nullable=False),  # base-36 id without the t3_ prefix
        pa.field("score", pa.int64()),  # null when the API did not return the submission
        pa.field("fetched_utc", pa.int64(), nullable=False),  # seconds since the epoch
        pa.field("state", pa.string(), nullable=False),  # "live", "removed", "deleted", "missing"
    ],
)

DEAD_LETTER = _schema(
    "dead_letter",
    1,
    [
        pa.field("source", pa.string(), nullable=False),  # file path or endpoint
        pa.field("line", pa.int64()),  # 1-based, when the source has lines
        pa.field("reason", pa.string(), nullable=False),
        pa.field("detail", pa.string()),
        pa.field("raw", pa.string()),  # the offending input, cut to a few KB
    ],
)

# Scratch between the tokenize stage's encode and shard-writing steps, sorted by
# (doc_id, tokens): what crosses the shuffle is the piece's path, never the tokens.
TOKEN_PIECE = _schema(
    "token_piece",
    1,
    [
        pa.field("doc_id", pa.string(), nullable=False),
        pa.field("tokens", pa.binary(), nullable=False),  # little-endian uint16 GPT-2 ids
    ],
)

ALL = {
    s.metadata[SCHEMA_NAME_KEY].decode(): s
    for s in (SUBMISSION, LINK, FETCH, DOCUMENT, REMOVED, REMOVAL, SCORES, DEAD_LETTER, TOKEN_PIECE)
}


def schema_name(schema: pa.Schema) -> str | None:
    meta = schema.metadata or {}
    name = meta.get(SCHEMA_NAME_KEY)
    return name.decode() if name else None


def check_table(table_schema: pa.Schema, expected: pa.Schema) -> list[str]:
    """Differences between a table's schema and the expected one; empty when they match."""
    problems = []
    for field in expected:
        idx = table_schema.get_field_index(field.name)
        if idx < 0:
            problems.append(f"missing column {field.name!r}")
            continue
        got = table_schema.field(idx)
        if not got.type.equals(field.type):
            problems.append(f"column {field.name!r} is {got.type}, expected {field.type}")
    extra = set(table_schema.names) - set(expected.names)
    problems.extend(f"unexpected column {name!r}" for name in sorted(extra))
    return problems
