"""MinHash signatures over word n-gram shingles, and the LSH banding that finds candidates.

Signatures are bit-for-bit datasketch's: the same permutations drawn from
`np.random.RandomState(seed)`, the same 32-bit input hash (`sha1_hash32`: the first four
bytes of the SHA-1 of the UTF-8 shingle, little-endian), and the same permutation scheme:

- "affine32" (datasketch >= 2.0, the default there): the input hash is pre-mixed with the
  MurmurHash3 finalizer, then permuted with `a * h + b mod 2**32`, `a` odd;
- "legacy" (datasketch < 2.0, what OpenWebText2 used): `(a * h + b mod 2**64) mod (2**61 - 1)`,
  keeping the low 32 bits.

It is faster than `MinHash.update_batch` because the shingles are byte slices of one encoded
string (no join and encode per shingle), the SHA-1 digests are read into numpy in one call
(no `struct.unpack` per shingle), and the permutations run on a reused buffer.

Shingling: the text is lowercased and split into words, a word being a maximal run of
Unicode word characters (letters, digits, underscore; regex `\\w+`). Punctuation and
whitespace only separate words. A shingle is `ngram` consecutive words joined by one space.
A text with fewer than `ngram` words has one shingle, all its words; a text without words
has none and never becomes a near-duplicate candidate.

Bands and rows come from the Jaccard threshold exactly as datasketch's `MinHashLSH` picks
them: the (b, r) with b * r <= num_perm that minimizes the equally weighted areas under the
S-curve 1 - (1 - s**r)**b below the threshold (false positives) and above it (false negatives).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import xxhash

SCHEMES = ("affine32", "legacy")
_MERSENNE_PRIME = np.uint64((1 << 61) - 1)
_MAX_HASH32 = np.uint64((1 << 32) - 1)
_WORD = re.compile(r"\w+")
_SPACE = 32  # the byte that joins words in the normalized shingle text


def shingle_words(text: str) -> list[str]:
    """The words shingles are made of: lowercased maximal runs of `\\w` characters."""
    return _WORD.findall(text.lower())


def shingles(text: str, ngram: int) -> list[bytes]:
    """The UTF-8 word n-gram shingles of a text, in order, repeats included.

    The plain reference version: `shingle_hashes` produces the hashes of exactly these.
    """
    words = shingle_words(text)
    if not words:
        return []
    count = max(1, len(words) - ngram + 1)
    return [" ".join(words[i : i + ngram]).encode("utf-8") for i in range(count)]


def _shingle_slices(text: str, ngram: int) -> tuple[bytes, list[int], list[int]]:
    """The words joined by single spaces, encoded once, and each shingle's byte range."""
    joined = " ".join(shingle_words(text)).encode("utf-8")
    if not joined:
        return joined, [], []
    spaces = np.flatnonzero(np.frombuffer(joined, dtype=np.uint8) == _SPACE)
    starts = np.concatenate(([0], spaces + 1))
    ends = np.concatenate((spaces, [len(joined)]))
    if len(starts) < ngram:
        return joined, [0], [len(joined)]
    return joined, starts[: len(starts) - ngram + 1].tolist(), ends[ngram - 1 :].tolist()


def shingle_hashes(text: str, ngram: int) -> np.ndarray:
    """uint32 per shingle: datasketch's `sha1_hash32`, the first 4 bytes of its SHA-1,
    little-endian."""
    joined, starts, ends = _shingle_slices(text, ngram)
    if not starts:
        return np.empty(0, dtype=np.uint32)
    sha1 = hashlib.sha1
    digests = b"".join([sha1(joined[s:e]).digest() for s, e in zip(starts, ends, strict=True)])
    rows = np.frombuffer(digests, dtype=np.uint8).reshape(-1, 20)
    return np.ascontiguousarray(rows[:, :4]).view("<u4").ravel().astype(np.uint32)


def shingle_set(hashes: np.ndarray) -> np.ndarray:
    """Sorted unique 32-bit shingle hashes (datasketch's `sha1_hash32`): the set whose Jaccard
    the MinHash signature estimates, and that exact Jaccard compares."""
    return np.unique(hashes)


def _fmix32(h: np.ndarray) -> np.ndarray:
    """MurmurHash3's 32-bit finalizer (wrapping uint32 arithmetic), as datasketch pre-mixes."""
    h = h ^ (h >> np.uint32(16))
    h = h * np.uint32(0x85EBCA6B)
    h = h ^ (h >> np.uint32(13))
    h = h * np.uint32(0xC2B2AE35)
    return h ^ (h >> np.uint32(16))


def permutations(num_perm: int, seed: int, scheme: str = "affine32") -> tuple[np.ndarray, ...]:
    """datasketch's permutation parameters (a, b) for `MinHash(num_perm, seed, scheme=...)`."""
    gen = np.random.RandomState(seed)
    if scheme == "legacy":
        pairs = [
            (
                gen.randint(1, _MERSENNE_PRIME, dtype=np.uint64),
                gen.randint(0, _MERSENNE_PRIME, dtype=np.uint64),
            )
            for _ in range(num_perm)
        ]
        a, b = np.array(pairs, dtype=np.uint64).T
        return np.ascontiguousarray(a), np.ascontiguousarray(b)
    if scheme == "affine32":
        a = gen.randint(0, 1 << 31, num_perm, dtype=np.uint32) * np.uint32(2) + np.uint32(1)
        b = gen.randint(0, 1 << 32, num_perm, dtype=np.uint32)
        return a, b
    raise ValueError(f"unknown MinHash scheme {scheme!r}; expected one of {SCHEMES}")


class MinHasher:
    """Signatures for one (num_perm, seed, scheme): datasketch's MinHash values as uint32."""

    def __init__(self, num_perm: int, seed: int, scheme: str = "affine32"):
        self.num_perm, self.seed, self.scheme = num_perm, seed, scheme
        self.a, self.b = permutations(num_perm, seed, scheme)

    def signature_from_hashes(self, hashes: np.ndarray) -> np.ndarray | None:
        """The signature of a shingle multiset given its `shingle_hashes`; None when empty."""
        if hashes.size == 0:
            return None
        h32 = hashes.astype(np.uint32, copy=False)
        if self.scheme == "legacy":
            values = (h32.astype(np.uint64)[:, None] * self.a + self.b) % _MERSENNE_PRIME
            return (values & _MAX_HASH32).min(axis=0).astype(np.uint32)
        mixed = _fmix32(h32)
        values = np.multiply.outer(mixed, self.a)
        values += self.b
        return values.min(axis=0)

    def signature(self, text: str, ngram: int) -> np.ndarray | None:
        return self.signature_from_hashes(shingle_hashes(text, ngram))


@dataclass(frozen=True)
class LshParams:
    bands: int
    rows: int


def _gauss_legendre(n: int) -> tuple[np.ndarray, np.ndarray]:
    return np.polynomial.legendre.leggauss(n)


def _integral(f_values_at, lo: float, hi: float, nodes: tuple[np.ndarray, np.ndarray]) -> float:
    x, w = nodes
    s = (hi - lo) / 2 * x + (hi + lo) / 2
    return float((hi - lo) / 2 * np.dot(w, f_values_at(s)))


def candidate_probability(s: float | np.ndarray, bands: int, rows: int) -> float | np.ndarray:
    """The LSH S-curve: probability that two documents of Jaccard s share a band."""
    return 1 - (1 - np.asarray(s, dtype=np.float64) ** rows) ** bands


@lru_cache(maxsize=64)
def optimal_params(
    threshold: float,
    num_perm: int,
    false_positive_weight: float = 0.5,
    false_negative_weight: float = 0.5,
) -> LshParams:
    """datasketch's `_optimal_param`: minimize the weighted false positive/negative areas.

    The integrands are polynomials of degree b * r <= num_perm, so Gauss-Legendre with
    num_perm // 2 + 1 nodes integrates them exactly (datasketch uses scipy's `quad`).
    """
    if not 0.0 < threshold < 1.0:
        raise ValueError(f"threshold must be between 0 and 1, got {threshold}")
    nodes = _gauss_legendre(num_perm // 2 + 8)
    best, best_error = (0, 0), float("inf")
    for b in range(1, num_perm + 1):
        for r in range(1, num_perm // b + 1):
            fp = _integral(
                lambda s, b=b, r=r: candidate_probability(s, b, r), 0.0, threshold, nodes
            )
            fn = _integral(
                lambda s, b=b, r=r: 1 - candidate_probability(s, b, r), threshold, 1.0, nodes
            )
            error = fp * false_positive_weight + fn * false_negative_weight
            if error < best_error:
                best_error, best = error, (b, r)
    return LshParams(*best)


def band_hashes(signature: np.ndarray, params: LshParams) -> list[int]:
    """One 64-bit key per band: xxh64 of the band's values, seeded with the band's index.

    Documents share a band's key exactly when they agree on every value of that band (up to
    a 2**-64 hash collision), which is what datasketch's hash tables test; the seed keeps
    equal values in different bands apart.
    """
    r = params.rows
    data = signature.astype("<u4", copy=False)
    return [
        xxhash.xxh64_intdigest(data[i * r : (i + 1) * r].tobytes(), seed=i)
        for i in range(params.bands)
    ]


def estimated_jaccard(sig_a: np.ndarray, sig_b: np.ndarray) -> float:
    """The fraction of equal signature values: datasketch's `MinHash.jaccard`."""
    return float(np.count_nonzero(sig_a == sig_b)) / len(sig_a)


def exact_jaccard(set_a: np.ndarray, set_b: np.ndarray) -> float:
    """Jaccard of two `shingle_set`s."""
    if set_a.size == 0 and set_b.size == 0:
        return 1.0
    inter = np.intersect1d(set_a, set_b, assume_unique=True).size
    return inter / (set_a.size + set_b.size - inter)
