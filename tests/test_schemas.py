import pyarrow as pa
import pytest

import schemas
from schemas.tokens import HEADER_BYTES, TokenShardHeader


@pytest.mark.parametrize("name", sorted(schemas.ALL))
def test_every_schema_names_itself_and_its_version(name: str) -> None:
    schema = schemas.ALL[name]
    assert schemas.schema_name(schema) == name
    assert schema.metadata[b"webtext.schema_version"].isdigit()


def test_check_table_reports_missing_retyped_and_extra_columns() -> None:
    got = pa.schema([("url", pa.string()), ("status", pa.int64()), ("surprise", pa.bool_())])
    problems = schemas.check_table(got, schemas.FETCH)
    assert "column 'status' is int64, expected int32" in problems
    assert "missing column 'normalized_url'" in problems
    assert "unexpected column 'surprise'" in problems


def test_check_table_accepts_the_schema_itself() -> None:
    assert schemas.check_table(schemas.DOCUMENT, schemas.DOCUMENT) == []


def test_token_header_round_trips() -> None:
    header = TokenShardHeader(token_count=123_456_789_012, document_count=42)
    raw = header.to_bytes()
    assert len(raw) == HEADER_BYTES == 1024
    assert TokenShardHeader.from_bytes(raw) == header


def test_token_header_rejects_other_files() -> None:
    with pytest.raises(ValueError, match="not a webtext token shard"):
        TokenShardHeader.from_bytes(b"\x00" * HEADER_BYTES, "x.bin")
    with pytest.raises(ValueError, match="shorter than"):
        TokenShardHeader.from_bytes(b"abc", "x.bin")
