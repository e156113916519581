"""Every record the webtext stages exchange. No other module defines a column."""

from schemas.records import (
    ALL,
    DEAD_LETTER,
    DOCUMENT,
    FETCH,
    LINK,
    LINK_SUBMISSION,
    REMOVAL,
    REMOVED,
    SCORES,
    SUBMISSION,
    TOKEN_PIECE,
    check_table,
    schema_name,
)
from schemas.tokens import EOT_TOKEN, HEADER_BYTES, TokenShardHeader

__all__ = [
    "ALL",
    "DEAD_LETTER",
    "DOCUMENT",
    "EOT_TOKEN",
    "FETCH",
    "HEADER_BYTES",
    "LINK",
    "LINK_SUBMISSION",
    "REMOVAL",
    "REMOVED",
    "SCORES",
    "SUBMISSION",
    "TOKEN_PIECE",
    "TokenShardHeader",
    "check_table",
    "schema_name",
]
