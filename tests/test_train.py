"""The trainer on CPU: schedule, sampler, exact resume, DDP (2 gloo processes) = accumulation."""

from __future__ import annotations

import csv
import importlib.util
import os
import socket
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
import torch.multiprocessing as mp

from pipeline.config import Config, load
from pipeline.dataroot import StageError
from pipeline.tokenize import stage as tokenize
from pipeline.tokenize.shards import open_shard, read_shard
from schemas.tokens import TokenShardHeader
from tests.conftest import DEMO_CONFIG, write_old_build_output
from training import train
from training.data import Position, StepSampler, TokenWindows, tokenize_docs
from training.evaluate import LOG_METRICS

BLOCK = 16


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def write_token_shards(data_root: Path, sizes: list[int], val: int = 2000, seed: int = 0) -> None:
    """Token shards of a repeating random 'language' so a tiny model can learn something."""
    rng = np.random.default_rng(seed)
    phrases = rng.integers(0, 50257, size=(40, 8))
    folder = data_root / "tokens"
    folder.mkdir(parents=True)

    def tokens(n: int) -> np.ndarray:
        return phrases[rng.integers(0, len(phrases), size=n // 8 + 1)].reshape(-1)[:n]

    for i, n in enumerate(sizes):
        name = f"train-{i:05d}-of-{len(sizes):05d}.bin"
        (folder / name).write_bytes(
            TokenShardHeader(n, 1).to_bytes() + tokens(n).astype("<u2").tobytes()
        )
    (folder / "val-00000-of-00001.bin").write_bytes(
        TokenShardHeader(val, 1).to_bytes() + tokens(val).astype("<u2").tobytes()
    )


ROOT = Path(__file__).resolve().parent.parent


def train_config(**overrides: object) -> Config:
    values = {
        "model": '"tiny"',
        "block_size": BLOCK,
        "micro_batch": 2,
        "total_batch_tokens": 2 * BLOCK * 4,
        "max_steps": 6,
        "warmup_steps": 2,
        "eval_every": 3,
        "eval_batches": 2,
        "checkpoint_every": 3,
        "keep_checkpoints": 2,
        "log_every": 1,
        "zero_shot": "[]",
    }
    values.update(overrides)
    return load(DEMO_CONFIG, [f"train.{k}={v}" for k, v in values.items()])


def logged(run_dir: Path, column: str = "loss") -> dict[int, float]:
    with (run_dir / "log.csv").open() as f:
        return {int(r["step"]): float(r[column]) for r in csv.DictReader(f) if r[column]}


def final_params(run_dir: Path) -> dict[str, torch.Tensor]:
    return train.load_checkpoint(train.list_checkpoints(run_dir)[-1])["model"]


# ---- plain functions ---------------------------------------------------------------------


def test_schedule_warms_up_then_decays_to_min_lr() -> None:
    cfg = train_config(max_steps=100, warmup_steps=10, learning_rate=1e-3, min_lr=1e-4).train
    lrs = [train.learning_rate(s, cfg) for s in range(100)]
    assert lrs[0] == pytest.approx(1e-4) and lrs[9] == pytest.approx(1e-3)
    assert all(a >= b for a, b in zip(lrs[9:], lrs[10:], strict=False))
    assert train.learning_rate(100, cfg) == pytest.approx(1e-4)


def test_mfu_uses_the_palm_formula_and_the_gpu_table() -> None:
    from training.model import GPT, gpt_config

    with torch.device("meta"):
        model = GPT(gpt_config("124M"))
    flops = train.flops_per_token(model.config, model.num_params(non_embedding=True))
    assert flops == 6 * 123_653_376 + 12 * 12 * 12 * 64 * 1024
    assert train.peak_flops("NVIDIA H100 80GB HBM3") == 989e12
    assert train.peak_flops("NVIDIA H100 PCIe") == 756e12
    assert train.peak_flops("NVIDIA A100-SXM4-80GB") == 312e12
    assert train.peak_flops("Some Future GPU") is None
    assert train.mfu(470_000, flops, 989e12, 1) == pytest.approx(0.41, abs=0.01)


def test_sampler_visits_every_window_once_per_epoch(tmp_path: Path) -> None:
    write_token_shards(tmp_path, [1000, 333, 2000])
    arrays = [open_shard(str(p)) for p in sorted((tmp_path / "tokens").glob("train-*"))]
    windows = TokenWindows(arrays, BLOCK)
    assert len(windows) == 999 // BLOCK + 332 // BLOCK + 1999 // BLOCK
    sampler = StepSampler(windows, micro_batch=2, accum_steps=3, seed=5)
    seen = []
    for _ in range(len(windows) // 6):
        ids = sampler.order(0)[sampler.position.index : sampler.position.index + 6]
        rows = torch.cat([x for x, _ in sampler.next_step()])
        assert torch.equal(rows, torch.from_numpy(windows.gather(ids)[:, :-1]))
        seen.extend(ids.tolist())
    assert len(set(seen)) == len(seen) == len(windows) // 6 * 6
    sampler.next_step()
    assert sampler.position == Position(1, 6)  # the last partial step's windows wait an epoch


def test_ranks_split_the_single_process_batch(tmp_path: Path) -> None:
    write_token_shards(tmp_path, [3000, 3000])
    windows = TokenWindows(
        [open_shard(str(p)) for p in sorted((tmp_path / "tokens").glob("train-*"))], BLOCK
    )
    single = StepSampler(windows, 2, 4, seed=9, position=Position(0, 24))
    ranks = [
        StepSampler(windows, 2, 2, seed=9, rank=r, world_size=2, position=Position(0, 24))
        for r in (0, 1)
    ]
    whole = torch.cat([x for x, _ in single.next_step()])
    parts = torch.cat([x for r in ranks for x, _ in r.next_step()])
    assert torch.equal(whole, parts)
    assert single.position == ranks[0].position == ranks[1].position == Position(0, 32)


def test_docs_loader_matches_the_tokenize_stage(tmp_path: Path, ranks_file: Path) -> None:
    shards = tmp_path / "documents" / "data"
    shards.mkdir(parents=True)
    ids = [f"d{i}" for i in range(60)]
    texts = [f"Document {i} says hello to {60 - i} readers." for i in range(60)]
    for f in range(2):
        table = pa.table({"doc_id": ids[f::2], "text": texts[f::2]})
        pq.write_table(table, shards / f"documents-{f:05d}-of-00002.parquet", row_group_size=7)
    config = load(DEMO_CONFIG, [f'tokenizer.ranks_file="{ranks_file}"', "tokenize.num_shards=1"])
    tokenize.run(config, str(tmp_path), [])
    paths = [str(p) for p in sorted(shards.glob("*.parquet"))]

    tokens = tokenize_docs(paths, config.tokenizer, config.tokenize.val_fraction, num_workers=2)

    assert np.array_equal(
        tokens["train"],
        read_shard(str(tmp_path / "tokens" / "train-00000-of-00001.bin"))[1],
    )
    assert np.array_equal(
        tokens["val"], read_shard(str(tmp_path / "tokens" / "val-00000-of-00001.bin"))[1]
    )


def test_docs_loader_over_the_old_docs_folder_says_it_was_renamed(tmp_path: Path) -> None:
    old = write_old_build_output(tmp_path)
    config = load(DEMO_CONFIG, ['train.data="docs"'])
    with pytest.raises(StageError, match=rf"^{old} is the old name of the build output"):
        train.load_data(config, str(tmp_path), train.Distributed())


# ---- whole runs --------------------------------------------------------------------------


def test_training_lowers_the_loss_and_writes_its_outputs(tmp_path: Path) -> None:
    write_token_shards(tmp_path, [20_000, 20_000])
    config = train_config(max_steps=30, learning_rate=3e-3, eval_every=10, checkpoint_every=10)

    summary = train.run(config, str(tmp_path), [])

    run_dir = tmp_path / "runs" / "demo"
    losses = logged(run_dir)
    assert losses[1] > 10.0 and losses[30] < 7.5
    assert set(logged(run_dir, "val_loss")) == {10, 20, 30}
    assert [p.name for p in train.list_checkpoints(run_dir)] == [
        "step-00000020.pt",
        "step-00000030.pt",
    ]
    assert (run_dir / "loss.png").stat().st_size > 1000
    assert summary["final_loss"] == pytest.approx(losses[30])
    state = train.load_checkpoint(run_dir / "checkpoints" / "step-00000030.pt")
    assert set(state) >= {"model", "optimizer", "step", "rng", "data", "config"}


@pytest.mark.skipif(
    not (ROOT.parent / "shared" / "eval").is_dir(), reason="../shared/eval is absent"
)
def test_zero_shot_metrics_are_logged_at_eval_every(tmp_path: Path) -> None:
    write_token_shards(tmp_path, [5_000])
    eval_dir = ROOT.parent / "shared" / "eval"
    config = train_config(
        zero_shot='["lambada", "wikitext"]', zero_shot_limit=2, zero_shot_dir=f'"{eval_dir}"'
    )

    train.run(config, str(tmp_path), [])

    run_dir = tmp_path / "runs" / "demo"
    for column in LOG_METRICS:
        assert set(logged(run_dir, column)) == {3, 6}, column
    assert 0.0 <= logged(run_dir, "lambada_harness_acc")[6] <= 1.0
    assert logged(run_dir, "wikitext_word_ppl")[6] > 1.0
    if importlib.util.find_spec("tensorboard"):
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

        tags = EventAccumulator(str(run_dir / "tensorboard")).Reload().Tags()["scalars"]
        assert set(LOG_METRICS) <= set(tags)
    assert (run_dir / "loss.png").stat().st_size > 1000


def test_resume_continues_the_loss_curve_exactly(tmp_path: Path) -> None:
    write_token_shards(tmp_path, [200, 100])  # 18 windows: 3 epochs in 6 steps, resumed mid-way
    run_dir = tmp_path / "runs" / "demo"
    train.run(train_config(), str(tmp_path), [])
    uninterrupted = logged(run_dir)
    uninterrupted_params = final_params(run_dir)
    (run_dir / "checkpoints" / "step-00000006.pt").unlink()  # as if it stopped after step 3

    summary = train.run(train_config(resume="true"), str(tmp_path), [])

    assert summary["start_step"] == 3
    assert logged(run_dir) == uninterrupted  # bit-for-bit, steps 4-6 recomputed
    for name, tensor in final_params(run_dir).items():
        assert torch.equal(tensor, uninterrupted_params[name]), name


def test_existing_run_without_resume_is_refused(tmp_path: Path) -> None:
    write_token_shards(tmp_path, [3000])
    train.run(train_config(max_steps=3), str(tmp_path), [])
    with pytest.raises(StageError, match="train.resume=true"):
        train.run(train_config(max_steps=3), str(tmp_path), [])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank: int, world_size: int, port: int, data_root: str, overrides: dict) -> None:
    os.environ.update(
        RANK=str(rank),
        WORLD_SIZE=str(world_size),
        LOCAL_RANK=str(rank),
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
    )
    torch.set_num_threads(1)
    try:
        train.run(train_config(**overrides), data_root, [])
    finally:
        torch.distributed.destroy_process_group()


@pytest.mark.parametrize("zero1", ["false", "true"])
def test_two_gloo_ranks_equal_one_process_with_accumulation(tmp_path: Path, zero1: str) -> None:
    overrides = {"max_steps": 4, "checkpoint_every": 4, "zero1": zero1}
    write_token_shards(tmp_path / "single", [6000, 6000])
    write_token_shards(tmp_path / "ddp", [6000, 6000])
    train.run(train_config(**overrides), str(tmp_path / "single"), [])
    mp.spawn(_ddp_worker, args=(2, _free_port(), str(tmp_path / "ddp"), overrides), nprocs=2)

    single, ddp = (tmp_path / "single" / "runs" / "demo", tmp_path / "ddp" / "runs" / "demo")
    for step, loss in logged(single).items():
        assert logged(ddp)[step] == pytest.approx(loss, rel=1e-5)
    ddp_params = final_params(ddp)
    for name, tensor in final_params(single).items():
        torch.testing.assert_close(ddp_params[name], tensor, rtol=1e-4, atol=1e-5)


def test_sample_prints_a_continuation_of_the_prompt(
    tmp_path: Path, ranks_file: Path, capsys
) -> None:
    from training import sample

    write_token_shards(tmp_path, [3000])
    sets = {"max_steps": 2, "checkpoint_every": 2}
    train.run(train_config(**sets), str(tmp_path), [])
    config = load(
        DEMO_CONFIG,
        [f'tokenizer.ranks_file="{ranks_file}"', 'sample.prompt="Hello"', "sample.max_new_tokens=5"]
        + [f"train.{k}={v}" for k, v in sets.items()],
    )

    result = sample.run(config, str(tmp_path), [])

    assert result["counters"] == {"checkpoint_step": 2, "new_tokens": 5}
    assert result["text"].startswith("Hello") and result["text"] in capsys.readouterr().out
    assert sample.run(config, str(tmp_path), [])["text"] == result["text"]  # seeded
