"""GPT-2's byte-level BPE through tiktoken, from a local ranks file when there is no network.

Lookup order: the config's `tokenizer.ranks_file`, then $WEBTEXT_TIKTOKEN_RANKS, then
tiktoken's own `gpt2` encoding (its cache, or a download). The ranks are those of
tiktoken's r50k_base, whose SHA-256 is checked.
"""

from __future__ import annotations

import functools
import os

import tiktoken
import tiktoken.load

from pipeline.config import TokenizerConfig

RANKS_SHA256 = "306cd27f03c1a714eca7108e03d66b7dc042abe8c258b44c199a7ed9838dd930"
RANKS_ENV = "WEBTEXT_TIKTOKEN_RANKS"
EOT = "<|endoftext|>"
EOT_ID = 50256
# GPT-2's pre-tokenizer split, as tiktoken's r50k_base defines it.
GPT2_PATTERN = (
    r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}++| ?\p{N}++| ?[^\s\p{L}\p{N}]++|\s++$|\s+(?!\S)|\s"""
)


class TokenizerError(RuntimeError):
    pass


@functools.lru_cache(maxsize=4)
def _from_file(path: str) -> tiktoken.Encoding:
    if not os.path.exists(path):
        raise TokenizerError(f"GPT-2 ranks file {path} does not exist")
    try:
        ranks = tiktoken.load.load_tiktoken_bpe(path, expected_hash=RANKS_SHA256)
    except ValueError as e:
        raise TokenizerError(f"GPT-2 ranks file {path}: {e}") from None
    return tiktoken.Encoding(
        name="gpt2",
        pat_str=GPT2_PATTERN,
        mergeable_ranks=ranks,
        special_tokens={EOT: EOT_ID},
        explicit_n_vocab=50257,
    )


def load_gpt2(config: TokenizerConfig | None = None) -> tiktoken.Encoding:
    """The GPT-2 encoding, or a one-line TokenizerError that names both ways to fix it."""
    path = (config.ranks_file if config else "") or os.environ.get(RANKS_ENV, "")
    if path:
        return _from_file(path)
    try:
        return tiktoken.get_encoding("gpt2")
    except Exception as e:  # tiktoken raises requests/urllib errors when offline
        raise TokenizerError(
            "cannot load GPT-2's BPE ranks: tiktoken could not download them "
            f"({type(e).__name__}); set [tokenizer] ranks_file in the config or "
            f"${RANKS_ENV} to a local r50k_base.tiktoken (SHA-256 {RANKS_SHA256[:12]}...)"
        ) from None
