"""Training data: token shards memory-mapped, sampled without replacement, split across ranks.

A *window* is block_size + 1 consecutive tokens starting at a multiple of block_size inside
one shard (inputs are the first block_size, targets the last). Each epoch visits every window
once, in a permutation drawn from (seed, epoch). A step takes the next
micro_batch * accum_steps * world_size windows of the permutation; rank r reads its own
contiguous slice of them, so the ranks together see exactly what one process with
accumulation would. The position (epoch, index) is all a checkpoint needs to continue.

For small datasets `tokenize_docs` reads document Parquet directly and tokenizes it in
DataLoader workers, producing the same token stream as the tokenize stage with one shard.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import pyarrow.parquet as pq
import torch
from torch.utils.data import DataLoader, Dataset

from pipeline.bpe import load_gpt2
from pipeline.config import TokenizerConfig
from pipeline.tokenize.shards import TRAIN, VAL, PackedDocs, concat_documents, pack, split_of


@dataclass
class Position:
    """Where the sampler is: the epoch, and windows of its permutation already taken."""

    epoch: int = 0
    index: int = 0

    def to_dict(self) -> dict[str, int]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, int]) -> Position:
        return cls(epoch=int(d["epoch"]), index=int(d["index"]))


class TokenWindows:
    """The block-aligned windows of a list of token arrays (memory maps or in-memory)."""

    def __init__(self, arrays: Sequence[np.ndarray], block_size: int):
        self.arrays = list(arrays)
        self.block_size = block_size
        counts = np.array([max(len(a) - 1, 0) // block_size for a in self.arrays], dtype=np.int64)
        self.ends = np.cumsum(counts)

    def __len__(self) -> int:
        return int(self.ends[-1]) if len(self.ends) else 0

    def gather(self, window_ids: np.ndarray) -> np.ndarray:
        """(len(window_ids), block_size + 1) int64 tokens."""
        out = np.empty((len(window_ids), self.block_size + 1), dtype=np.int64)
        shards = np.searchsorted(self.ends, window_ids, side="right")
        for row, (w, s) in enumerate(zip(window_ids, shards, strict=True)):
            first = int(w) - (int(self.ends[s - 1]) if s else 0)
            start = first * self.block_size
            out[row] = self.arrays[s][start : start + self.block_size + 1]
        return out


def to_batch(rows: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    rows_t = torch.from_numpy(rows)
    return rows_t[:, :-1].contiguous(), rows_t[:, 1:].contiguous()


class StepSampler:
    """Each step's micro-batches for one rank, without replacement, from a seeded permutation."""

    def __init__(
        self,
        windows: TokenWindows,
        micro_batch: int,
        accum_steps: int,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
        position: Position | None = None,
    ):
        self.windows = windows
        self.micro_batch = micro_batch
        self.accum_steps = accum_steps
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.per_rank = micro_batch * accum_steps
        self.per_step = self.per_rank * world_size
        if len(windows) < self.per_step:
            raise ValueError(
                f"{len(windows)} training windows of {windows.block_size + 1} tokens, but one "
                f"step needs {self.per_step}; lower total_batch_tokens or add data"
            )
        self.position = position or Position()
        self._order_epoch = -1
        self._order = np.zeros(0, dtype=np.int64)

    def order(self, epoch: int) -> np.ndarray:
        if epoch != self._order_epoch:
            rng = np.random.default_rng([self.seed, epoch])
            self._order = rng.permutation(len(self.windows))
            self._order_epoch = epoch
        return self._order

    def next_step(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """accum_steps (x, y) micro-batches for this rank; advances the position."""
        if self.position.index + self.per_step > len(self.windows):
            self.position = Position(self.position.epoch + 1, 0)  # the remainder is dropped
        start = self.position.index + self.rank * self.per_rank
        ids = self.order(self.position.epoch)[start : start + self.per_rank]
        self.position = Position(self.position.epoch, self.position.index + self.per_step)
        rows = self.windows.gather(ids).reshape(self.accum_steps, self.micro_batch, -1)
        return [to_batch(r) for r in rows]

    def state_dict(self) -> dict[str, int]:
        return self.position.to_dict()

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.position = Position.from_dict(state)


def eval_batches(
    windows: TokenWindows, micro_batch: int, n_batches: int, rank: int = 0, world_size: int = 1
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The first n_batches validation micro-batches in order; batch i belongs to rank i % world."""
    n_batches = min(n_batches, len(windows) // micro_batch)
    out = []
    for i in range(rank, n_batches, world_size):
        ids = np.arange(i * micro_batch, (i + 1) * micro_batch)
        out.append(to_batch(windows.gather(ids)))
    return out


# ---- documents tokenized on the fly (train.data = "docs") ------------------------------------


class _RowGroups(Dataset):
    """Item i: the i-th row group of the document Parquet, tokenized and split train/val."""

    def __init__(self, paths: Sequence[str], tokenizer: TokenizerConfig, val_fraction: float):
        self.items = [(p, g) for p in paths for g in range(pq.ParquetFile(p).num_row_groups)]
        self.tokenizer = tokenizer
        self.val_fraction = val_fraction

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict[str, PackedDocs]:
        path, group = self.items[i]
        table = pq.ParquetFile(path).read_row_group(group, columns=["doc_id", "text"])
        by_split: dict[str, tuple[list, list]] = {TRAIN: ([], []), VAL: ([], [])}
        for doc_id, text in zip(
            table.column(0).to_pylist(), table.column(1).to_pylist(), strict=True
        ):
            if doc_id and text:
                ids, texts = by_split[split_of(doc_id, self.val_fraction)]
                ids.append(doc_id)
                texts.append(text)
        encoding = load_gpt2(self.tokenizer)
        return {
            split: pack(ids, encoding.encode_ordinary_batch(texts, num_threads=1))
            for split, (ids, texts) in by_split.items()
        }


def tokenize_docs(
    paths: Sequence[str], tokenizer: TokenizerConfig, val_fraction: float, num_workers: int
) -> dict[str, np.ndarray]:
    """{"train": tokens, "val": tokens} of document Parquet files, tokenized by loader workers.

    Same stream as the tokenize stage with one train shard: doc_id order, <|endoftext|> after
    each document. Meant for small datasets: the tokens are held in memory.
    """
    loader = DataLoader(
        _RowGroups(paths, tokenizer, val_fraction),
        batch_size=None,
        num_workers=num_workers,
        collate_fn=lambda x: x,
    )
    packs: dict[str, list[PackedDocs]] = {TRAIN: [], VAL: []}
    for item in loader:
        for split, packed in item.items():
            packs[split].append(packed)
    return {split: concat_documents(p)[0] for split, p in packs.items()}
