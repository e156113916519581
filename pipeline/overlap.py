"""Word n-grams as the GPT-2 paper compares texts, and a Bloom filter to hold a corpus's n-grams.

The paper (section 4): n-grams of lower-cased alphanumeric words joined by single spaces, the
training set's 8-grams in a Bloom filter with a false-positive rate at most 1e-8, each test
set's 8-grams looked up in it. GPT-3's decontamination uses the same words with n = 13.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Iterator

import numpy as np
import xxhash

WORD = re.compile(r"[^\W_]+")  # letters and digits, in any script
MASK64 = (1 << 64) - 1


def words(text: str) -> list[str]:
    return WORD.findall(text.lower())


def ngrams(text: str, n: int) -> Iterator[str]:
    """The text's word n-grams, each as its words joined by single spaces."""
    tokens = words(text)
    for i in range(len(tokens) - n + 1):
        yield " ".join(tokens[i : i + n])


def ngram_count(text: str, n: int) -> int:
    return max(0, len(words(text)) - n + 1)


def bloom_size(items: int, false_positive_rate: float) -> tuple[int, int]:
    """(bits, hash functions) for `items` at the rate: m = -n ln p / ln(2)^2, k = m/n ln 2."""
    if not 0 < false_positive_rate < 1:
        raise ValueError(f"false-positive rate {false_positive_rate} must be in (0, 1)")
    items = max(items, 1)
    bits = math.ceil(-items * math.log(false_positive_rate) / math.log(2) ** 2)
    bits = (bits + 63) // 64 * 64
    return bits, max(1, round(bits / items * math.log(2)))


class BloomFilter:
    """Bits in a numpy array; k positions per item by double hashing one 128-bit xxh3."""

    def __init__(self, bits: int, hashes: int):
        self.bits = bits
        self.hashes = hashes
        self.array = np.zeros(bits // 8 + 1, dtype=np.uint8)
        self._steps = np.arange(hashes, dtype=np.uint64)

    @classmethod
    def for_items(cls, items: int, false_positive_rate: float) -> BloomFilter:
        return cls(*bloom_size(items, false_positive_rate))

    @property
    def nbytes(self) -> int:
        return self.array.nbytes

    def _positions(self, keys: Iterable[str]) -> np.ndarray:
        """(items, hashes) bit positions."""
        digests = [xxhash.xxh3_128_intdigest(key.encode()) for key in keys]
        if not digests:
            return np.zeros((0, self.hashes), dtype=np.uint64)
        low = np.fromiter((d & MASK64 for d in digests), dtype=np.uint64, count=len(digests))
        high = np.fromiter((d >> 64 | 1 for d in digests), dtype=np.uint64, count=len(digests))
        with np.errstate(over="ignore"):  # the arithmetic wraps modulo 2**64 on purpose
            combined = low[:, None] + self._steps[None, :] * high[:, None]
        return combined % np.uint64(self.bits)

    def add(self, keys: Iterable[str]) -> None:
        positions = self._positions(keys).ravel()
        np.bitwise_or.at(self.array, (positions >> np.uint64(3)).astype(np.intp), _bit(positions))

    def contains(self, keys: Iterable[str]) -> np.ndarray:
        """A bool per key: maybe present (True) or certainly absent (False)."""
        positions = self._positions(keys)
        found = self.array[(positions >> np.uint64(3)).astype(np.intp)] & _bit(positions)
        return (found != 0).all(axis=1)


def _bit(positions: np.ndarray) -> np.ndarray:
    return np.left_shift(np.uint8(1), (positions & np.uint64(7)).astype(np.uint8))
