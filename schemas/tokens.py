"""The token shard: a fixed header, then GPT-2 token ids as little-endian uint16.

Header: HEADER_WORDS little-endian int64 words (1 KiB), of which these are set:
    [0] MAGIC            identifies the file as a webtext token shard
    [1] VERSION
    [2] token count      number of uint16 tokens after the header
    [3] bytes per token  2
    [4] eot id           the <|endoftext|> id written between documents (50256)
    [5] document count
The rest is zero. Readers memory-map the tokens at offset HEADER_BYTES.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MAGIC = 0x5745425458_5431  # "WEBTXT1" in hex digits
VERSION = 1
HEADER_WORDS = 128
HEADER_BYTES = HEADER_WORDS * 8
TOKEN_DTYPE = np.dtype("<u2")
EOT_TOKEN = 50256


@dataclass(frozen=True)
class TokenShardHeader:
    token_count: int
    document_count: int
    eot_token: int = EOT_TOKEN

    def to_bytes(self) -> bytes:
        words = np.zeros(HEADER_WORDS, dtype="<i8")
        words[:6] = [
            MAGIC,
            VERSION,
            self.token_count,
            TOKEN_DTYPE.itemsize,
            self.eot_token,
            self.document_count,
        ]
        return words.tobytes()

    @classmethod
    def from_bytes(cls, raw: bytes, source: str = "token shard") -> TokenShardHeader:
        if len(raw) < HEADER_BYTES:
            raise ValueError(f"{source}: {len(raw)} bytes is shorter than the 1 KiB header")
        words = np.frombuffer(raw[:HEADER_BYTES], dtype="<i8")
        if int(words[0]) != MAGIC:
            raise ValueError(f"{source}: not a webtext token shard (bad magic {int(words[0]):#x})")
        if int(words[1]) != VERSION:
            raise ValueError(f"{source}: token shard version {int(words[1])}, expected {VERSION}")
        if int(words[3]) != TOKEN_DTYPE.itemsize:
            raise ValueError(f"{source}: {int(words[3])} bytes per token, expected 2")
        return cls(token_count=int(words[2]), document_count=int(words[5]), eot_token=int(words[4]))
