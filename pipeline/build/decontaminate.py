"""GPT-3's decontamination rule: drop a document that shares any 13-gram with an eval set.

The n-grams are the GPT-2 paper's words (pipeline/overlap.py). The eval sets' n-grams are
held as 64-bit hashes, built once per process; a hit is confirmed against the eval text's own
n-gram, so a hash collision never removes a document.
"""

from __future__ import annotations

import functools

import xxhash

from pipeline import evalsets
from pipeline.build.filters import Rejection
from pipeline.config import DecontaminateConfig
from pipeline.overlap import ngrams

REASON = "eval_overlap"


class EvalIndex:
    def __init__(self, texts: dict[str, list[str]], n: int):
        self.n = n
        self.grams: dict[int, tuple[str, str]] = {}  # hash -> (eval set, n-gram)
        for name, passages in texts.items():
            for passage in passages:
                for gram in ngrams(passage, n):
                    self.grams.setdefault(xxhash.xxh3_64_intdigest(gram.encode()), (name, gram))

    def check(self, text: str) -> tuple[str, str] | None:
        """(eval set, the first shared n-gram), or None when the text shares none."""
        for gram in ngrams(text, self.n):
            hit = self.grams.get(xxhash.xxh3_64_intdigest(gram.encode()))
            if hit is not None and hit[1] == gram:
                return hit
        return None


@functools.lru_cache(maxsize=2)
def _index(eval_sets: tuple[str, ...], eval_dir: str, n: int) -> EvalIndex:
    texts = {name: evalsets.read(name, evalsets.path_of(name, eval_dir)) for name in eval_sets}
    return EvalIndex(texts, n)


def index_for(config: DecontaminateConfig) -> EvalIndex:
    """Built once per process (each extractor child) and kept."""
    return _index(tuple(config.eval_sets), config.eval_dir, config.ngram)


def warm_up(config: DecontaminateConfig | None) -> None:
    if config is not None and config.enabled:
        index_for(config)


def check(text: str, config: DecontaminateConfig | None) -> Rejection | None:
    """The build's filter: a Rejection naming the eval set and the shared n-gram, or None."""
    if config is None or not config.enabled:
        return None
    hit = index_for(config).check(text)
    return Rejection(REASON, f"{hit[0]}: {hit[1]}") if hit else None
