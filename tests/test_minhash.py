"""MinHash signatures and LSH parameters equal datasketch's."""

from __future__ import annotations

import random

import numpy as np
import pytest

from pipeline.build import minhash

datasketch = pytest.importorskip("datasketch")
from datasketch.lsh import _optimal_param  # noqa: E402

TEXTS = [
    "The quick brown fox jumps over the lazy dog. " * 20,
    "Émigré café: naïve façade, 123 under_score words; ÅNGSTRÖM and straße. " * 8,
    "short text",
    "one",
    "東京は日本の首都です。 Tokyo is the capital — of Japan! 😀 emoji; tabs\tand\nlines",
]


def _random_text(rng: random.Random, words: int) -> str:
    vocab = [f"w{i}" for i in range(300)] + ["The", "of", "and,", "Ünïcode", "x-ray"]
    return " ".join(rng.choice(vocab) for _ in range(words))


def _datasketch_signature(text: str, num_perm: int, seed: int, scheme: str, ngram: int):
    m = datasketch.MinHash(num_perm=num_perm, seed=seed, scheme=scheme)
    m.update_batch(minhash.shingles(text, ngram))
    return m.hashvalues


@pytest.mark.parametrize("scheme", minhash.SCHEMES)
@pytest.mark.parametrize("num_perm,seed", [(128, 1), (10, 1), (256, 42)])
def test_signatures_equal_datasketch_update_batch(scheme, num_perm, seed):
    rng = random.Random(seed)
    texts = TEXTS + [_random_text(rng, n) for n in (1, 4, 5, 6, 700)]
    hasher = minhash.MinHasher(num_perm, seed, scheme)
    for text in texts:
        for ngram in (1, 3, 5):
            expected = _datasketch_signature(text, num_perm, seed, scheme, ngram)
            got = hasher.signature(text, ngram)
            assert got.dtype == np.uint32
            assert np.array_equal(got, expected), (scheme, text[:30], ngram)


def test_permutations_equal_datasketch():
    for scheme in minhash.SCHEMES:
        a, b = minhash.permutations(64, 7, scheme)
        ds_a, ds_b = datasketch.MinHash(num_perm=64, seed=7, scheme=scheme).permutations
        assert np.array_equal(a, ds_a) and np.array_equal(b, ds_b)


def test_shingle_hashes_are_datasketch_sha1_hash32():
    from datasketch.hashfunc import sha1_hash32

    text = "Alpha beta, gamma delta epsilon zeta eta theta."
    hashes = minhash.shingle_hashes(text, 3)
    expected = [sha1_hash32(s) for s in minhash.shingles(text, 3)]
    assert hashes.tolist() == expected


def test_shingles_are_lowercased_word_ngrams_without_punctuation():
    assert minhash.shingles("Hello, World! Foo-bar baz", 2) == [
        b"hello world",
        b"world foo",
        b"foo bar",
        b"bar baz",
    ]
    assert minhash.shingles("Only three words", 5) == [b"only three words"]
    assert minhash.shingles(" ... !! ", 5) == []


def test_text_without_words_has_no_signature():
    assert minhash.MinHasher(16, 1).signature("?! -- ...", 5) is None


@pytest.mark.parametrize("num_perm", [10, 32, 128, 256])
def test_bands_and_rows_equal_datasketch_optimal_param(num_perm):
    for threshold in np.round(np.arange(0.05, 1.0, 0.05), 2):
        expected = _optimal_param(float(threshold), num_perm, 0.5, 0.5)
        got = minhash.optimal_params(float(threshold), num_perm)
        assert (got.bands, got.rows) == expected, (num_perm, threshold)


def test_default_and_openwebtext2_parameters():
    assert minhash.optimal_params(0.8, 128) == minhash.LshParams(bands=9, rows=13)
    assert minhash.optimal_params(0.5, 10) == minhash.LshParams(bands=3, rows=3)


def test_band_hashes_match_exactly_when_band_values_match():
    params = minhash.LshParams(bands=4, rows=3)
    sig = np.arange(12, dtype=np.uint32)
    other = sig.copy()
    other[4] += 1  # band 1 differs
    keys, other_keys = minhash.band_hashes(sig, params), minhash.band_hashes(other, params)
    assert [k == o for k, o in zip(keys, other_keys, strict=True)] == [True, False, True, True]
    same_values = minhash.band_hashes(np.zeros(12, dtype=np.uint32), params)
    assert len(set(same_values)) == 4  # the band index seeds the key


def test_estimated_jaccard_tracks_exact_jaccard():
    rng = random.Random(3)
    words = [f"w{i}" for i in range(2000)]
    a = " ".join(rng.choice(words) for _ in range(1500))
    tokens = a.split()
    b = " ".join(tokens[:1200] + [rng.choice(words) for _ in range(300)])
    hasher = minhash.MinHasher(256, 1)
    exact = minhash.exact_jaccard(
        minhash.shingle_set(minhash.shingle_hashes(a, 5)),
        minhash.shingle_set(minhash.shingle_hashes(b, 5)),
    )
    estimate = minhash.estimated_jaccard(hasher.signature(a, 5), hasher.signature(b, 5))
    assert 0.6 < exact < 0.8
    assert abs(estimate - exact) < 0.08  # about 3 standard errors at 256 permutations
