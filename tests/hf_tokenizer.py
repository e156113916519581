"""Transformers' GPT-2 tokenizer files (vocab.json, merges.txt) derived from tiktoken's BPE ranks.

Byte-level BPE stores each token as bytes; transformers spells bytes as printable characters
(the GPT-2 byte-to-unicode table) and lists the merges in rank order. A token's merge is the
pair that BPE, using only lower ranks, leaves its bytes in.
"""

from __future__ import annotations

import json
from pathlib import Path

import tiktoken.load

EOT = "<|endoftext|>"


def byte_alphabet() -> dict[int, str]:
    """GPT-2's table: printable Latin-1 bytes stand for themselves, the rest move past 255."""
    printable = [*range(ord("!"), ord("~") + 1), *range(0xA1, 0xAD), *range(0xAE, 0x100)]
    table, shifted = {}, 0
    for b in range(256):
        if b in printable:
            table[b] = chr(b)
        else:
            table[b] = chr(256 + shifted)
            shifted += 1
    return table


def merge_of(token: bytes, ranks: dict[bytes, int]) -> tuple[bytes, bytes]:
    """The two parts BPE joins last to make `token`, merging only ranks below its own."""
    limit = ranks[token]
    parts = [bytes([b]) for b in token]
    while len(parts) > 2:
        best = min((ranks.get(parts[i] + parts[i + 1], limit), i) for i in range(len(parts) - 1))
        if best[0] >= limit:
            break
        i = best[1]
        parts[i : i + 2] = [parts[i] + parts[i + 1]]
    if len(parts) != 2:
        raise ValueError(f"token {token!r} is not one merge of lower-ranked tokens")
    return parts[0], parts[1]


def write_gpt2_tokenizer(ranks_file: str | Path, folder: str | Path, max_length: int) -> None:
    ranks = tiktoken.load.load_tiktoken_bpe(str(ranks_file))
    alphabet = byte_alphabet()

    def spell(token: bytes) -> str:
        return "".join(alphabet[b] for b in token)

    vocab = {spell(token): rank for token, rank in ranks.items()}
    vocab[EOT] = len(ranks)
    merges = [
        " ".join(map(spell, merge_of(token, ranks)))
        for token, _ in sorted(ranks.items(), key=lambda item: item[1])
        if len(token) > 1
    ]
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
    config = {
        "tokenizer_class": "GPT2Tokenizer",
        "bos_token": EOT,
        "eos_token": EOT,
        "unk_token": EOT,
        "add_prefix_space": False,
        "model_max_length": max_length,
    }
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
