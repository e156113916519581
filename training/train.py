"""The train stage: token shards -> GPT-2 checkpoints, logs and a loss curve in runs/<name>/.

    webtext train --config configs/demo.toml --data-root demo-data [--set train.resume=true]
    torchrun --nproc_per_node 8 -m pipeline.cli train --config configs/webtext.toml ...

One process, or one per GPU under torchrun (DDP; gloo on CPU, nccl on GPU). Each step is
total_batch_tokens tokens: micro-batches accumulated on every rank, gradients averaged across
ranks, so any world size computes the same step as one process. AdamW with linear warmup then
cosine decay to min_lr, gradient clipping, bf16 autocast on GPU, optional torch.compile and
ZeRO-1. A checkpoint holds everything the next step depends on, so a resumed run's losses
equal an uninterrupted run's, step for step.
"""

from __future__ import annotations

import csv
import dataclasses
import logging
import math
import os
import random
import re
import sys
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP

from pipeline import dataroot
from pipeline.bpe import load_gpt2
from pipeline.config import Config, TrainConfig
from pipeline.dataroot import DOCUMENT_SHARDS
from pipeline.tokenize.shards import open_shard
from training.data import StepSampler, TokenWindows, eval_batches, tokenize_docs
from training.evaluate import LOG_METRICS, zero_shot
from training.hf import import_hf
from training.model import GPT, GPTConfig, gpt_config

log = logging.getLogger("webtext")
STAGE = "train"

# Peak dense bf16 tensor FLOP/s by device name (torch.cuda.get_device_name), most specific
# first. From the vendors' data sheets, without sparsity.
GPU_PEAK_BF16: list[tuple[str, float]] = [
    ("H100 PCIe", 756e12),
    ("H100 NVL", 835e12),
    ("H100", 989e12),  # SXM: "NVIDIA H100 80GB HBM3"
    ("H200", 989e12),
    ("GH200", 989e12),
    ("B200", 2250e12),
    ("A100", 312e12),
    ("A800", 312e12),
    ("L40S", 362e12),
    ("L40", 181e12),
    ("L4", 121e12),
    ("A10G", 70e12),
    ("A10", 125e12),
    ("RTX 4090", 165e12),
    ("RTX 3090", 71e12),
    ("A6000", 155e12),
    ("V100", 125e12),  # fp16 tensor cores; V100 has no bf16
    ("T4", 65e12),  # fp16 tensor cores
]


# ---- plain functions ---------------------------------------------------------------------


def learning_rate(step: int, cfg: TrainConfig) -> float:
    """Linear warmup to learning_rate over warmup_steps, then cosine down to min_lr at max_steps."""
    if step < cfg.warmup_steps:
        return cfg.learning_rate * (step + 1) / cfg.warmup_steps
    if step >= cfg.max_steps:
        return cfg.min_lr
    progress = (step - cfg.warmup_steps) / max(1, cfg.max_steps - cfg.warmup_steps)
    return cfg.min_lr + 0.5 * (1.0 + math.cos(math.pi * progress)) * (
        cfg.learning_rate - cfg.min_lr
    )


def accumulation_steps(cfg: TrainConfig, world_size: int) -> int:
    per_pass = cfg.micro_batch * cfg.block_size * world_size
    if cfg.total_batch_tokens % per_pass:
        raise dataroot.StageError(
            f"[train] total_batch_tokens {cfg.total_batch_tokens} is not a multiple of "
            f"micro_batch * block_size * ranks = {per_pass}; change one of them"
        )
    return cfg.total_batch_tokens // per_pass


def peak_flops(device_name: str) -> float | None:
    """The GPU's peak dense bf16 FLOP/s, or None when unknown (MFU is then not reported)."""
    for key, flops in GPU_PEAK_BF16:
        if key in device_name:
            return flops
    return None


def flops_per_token(model_config: GPTConfig, n_params: int) -> float:
    """PaLM's 6N + 12*L*H*Q*T training FLOPs per token (N without position embeddings)."""
    c = model_config
    return 6 * n_params + 12 * c.n_layer * c.n_head * (c.n_embd // c.n_head) * c.block_size


def mfu(
    tokens_per_s: float, flops_token: float, peak: float | None, world_size: int
) -> float | None:
    return None if peak is None else tokens_per_s * flops_token / (peak * world_size)


@dataclass(frozen=True)
class Distributed:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def init_distributed(device_type: str) -> Distributed:
    """From torchrun's RANK / WORLD_SIZE / LOCAL_RANK; a single process when they are unset."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size == 1:
        return Distributed()
    d = Distributed(int(os.environ["RANK"]), world_size, int(os.environ.get("LOCAL_RANK", "0")))
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device_type == "cuda" else "gloo")
    if device_type == "cuda":
        torch.cuda.set_device(d.local_rank)
    return d


def resolve_device(cfg: TrainConfig, d: Distributed) -> torch.device:
    name = cfg.device
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        if not torch.cuda.is_available():
            raise dataroot.StageError(
                "[train] device is 'cuda' but no GPU is visible; set device='auto'"
            )
        return torch.device("cuda", d.local_rank)
    return torch.device(name)


def build_model(cfg: TrainConfig) -> GPT:
    if cfg.init_from:
        try:
            return import_hf(cfg.init_from, cfg.block_size, cfg.padded_vocab_size)
        except (FileNotFoundError, ValueError) as e:
            raise dataroot.StageError(f"[train] init_from: {e}") from None
    try:
        model_config = gpt_config(
            cfg.model, block_size=cfg.block_size, padded_vocab_size=cfg.padded_vocab_size
        )
    except ValueError as e:
        raise dataroot.StageError(f"[train] {e}") from None
    return GPT(model_config)


# ---- the training step -------------------------------------------------------------------


class Trainer:
    """One optimizer step over a list of micro-batches; the same code the benchmark times."""

    def __init__(
        self,
        model: GPT,
        optimizer: torch.optim.Optimizer,
        cfg: TrainConfig,
        device: torch.device,
        d: Distributed = Distributed(),
    ):
        self.raw_model = model
        self.optimizer = optimizer
        self.cfg = cfg
        self.device = device
        self.dist = d
        use_bf16 = cfg.dtype == "bfloat16" and device.type == "cuda"
        self.autocast = (
            (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if use_bf16 else nullcontext
        )
        compiled = torch.compile(model) if cfg.compile else model
        device_ids = [device.index] if device.type == "cuda" else None
        self.model = DDP(compiled, device_ids=device_ids) if d.enabled else compiled

    def step(
        self, micro_batches: list[tuple[torch.Tensor, torch.Tensor]], lr: float
    ) -> tuple[float, float]:
        """Accumulate, clip, update. Returns (mean loss over the global batch, grad norm)."""
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        total = torch.zeros((), device=self.device)
        for i, (x, y) in enumerate(micro_batches):
            x = x.to(self.device, non_blocking=True)
            y = y.to(self.device, non_blocking=True)
            last = i == len(micro_batches) - 1
            sync = self.model.no_sync() if self.dist.enabled and not last else nullcontext()
            with sync:
                with self.autocast():
                    _, loss = self.model(x, y)
                loss = loss / len(micro_batches)
                loss.backward()
            total += loss.detach()
        if self.dist.enabled:
            dist.all_reduce(total, op=dist.ReduceOp.AVG)
        norm = torch.nn.utils.clip_grad_norm_(self.raw_model.parameters(), self.cfg.grad_clip)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return float(total), float(norm)

    @torch.no_grad()
    def evaluate(self, batches: list[tuple[torch.Tensor, torch.Tensor]]) -> float | None:
        """Mean loss over this rank's validation batches, averaged over all ranks' batches."""
        self.model.eval()
        stats = torch.zeros(2, device=self.device, dtype=torch.float64)
        for x, y in batches:
            with self.autocast():
                _, loss = self.raw_model(x.to(self.device), y.to(self.device))
            stats += torch.tensor([float(loss), 1.0], device=self.device, dtype=torch.float64)
        if self.dist.enabled:
            dist.all_reduce(stats)
        self.model.train()
        return float(stats[0] / stats[1]) if stats[1] > 0 else None


# ---- checkpoints -------------------------------------------------------------------------

CHECKPOINT_RE = re.compile(r"^step-(\d{8})\.pt$")


def checkpoint_path(run_dir: Path, step: int) -> Path:
    return run_dir / "checkpoints" / f"step-{step:08d}.pt"


def list_checkpoints(run_dir: Path) -> list[Path]:
    folder = run_dir / "checkpoints"
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if CHECKPOINT_RE.match(p.name))


def rng_state() -> dict[str, Any]:
    state = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: Path, state: dict[str, Any], keep: int) -> None:
    """Write atomically (temporary name, then rename), then keep only the newest `keep`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    torch.save(state, tmp)
    os.replace(tmp, path)
    for old in list_checkpoints(path.parent.parent)[:-keep] if keep > 0 else []:
        old.unlink()


def load_checkpoint(path: Path) -> dict[str, Any]:
    # Our own file, with numpy RNG state and Python objects inside: not weights_only.
    return torch.load(path, map_location="cpu", weights_only=False)


# ---- logs --------------------------------------------------------------------------------

LOG_FIELDS = [
    *("step", "loss", "val_loss", "lr", "grad_norm", "tokens_per_s", "mfu", "elapsed_s"),
    *LOG_METRICS,
]


class RunLog:
    """log.csv (rewritten up to the resumed step), TensorBoard when installed, the loss PNG."""

    def __init__(self, run_dir: Path, start_step: int, enabled: bool):
        self.path = run_dir / "log.csv"
        self.enabled = enabled
        self.rows: list[dict[str, Any]] = []
        self.tb = None
        if not enabled:
            return
        run_dir.mkdir(parents=True, exist_ok=True)
        if self.path.exists():
            with self.path.open(newline="") as f:
                self.rows = [r for r in csv.DictReader(f) if int(r["step"]) <= start_step]
        with self.path.open("w", newline="") as f:
            writer = csv.DictWriter(f, LOG_FIELDS)
            writer.writeheader()
            writer.writerows(self.rows)
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(run_dir / "tensorboard"))
        except ImportError:  # tensorboard is optional
            self.tb = None

    def write(self, row: dict[str, Any]) -> None:
        if not self.enabled:
            return
        row = {k: row.get(k, "") for k in LOG_FIELDS}
        self.rows.append(row)
        with self.path.open("a", newline="") as f:
            csv.DictWriter(f, LOG_FIELDS).writerow(row)
        if self.tb is not None:
            for key in ("loss", "val_loss", "lr", "tokens_per_s", "mfu", *LOG_METRICS):
                if row[key] not in ("", None):
                    self.tb.add_scalar(key, float(row[key]), int(row["step"]))

    def plot(self, path: Path) -> None:
        if not self.enabled or not self.rows:
            return
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(7, 4))
        train = [(int(r["step"]), float(r["loss"])) for r in self.rows if r["loss"] != ""]
        val = [
            (int(r["step"]), float(r["val_loss"]))
            for r in self.rows
            if r["val_loss"] not in ("", None)
        ]
        if train:
            ax.plot(*zip(*train, strict=True), label="train", linewidth=1)
        if val:
            ax.plot(*zip(*val, strict=True), "o-", label="validation")
        ax.set_xlabel("step")
        ax.set_ylabel("loss (nats/token)")
        ax.grid(alpha=0.3)
        ax.legend(loc="upper left")
        shown = [
            k for k in ("lambada_harness_acc", "wikitext_bits_per_byte") if self.rows[-1].get(k)
        ]
        if shown:
            right = ax.twinx()
            for key in shown:
                points = [(int(r["step"]), float(r[key])) for r in self.rows if r.get(key)]
                right.plot(*zip(*points, strict=True), "s--", label=key, linewidth=1)
            right.set_ylabel("zero-shot")
            right.legend(loc="upper right")
        fig.tight_layout()
        fig.savefig(path, dpi=120)
        plt.close(fig)
        if self.tb is not None:
            self.tb.close()


# ---- the stage ---------------------------------------------------------------------------


def _main_first(d: Distributed, fn) -> None:
    """Run fn on rank 0; every rank raises the same StageError if it failed."""
    error = [None]
    if d.is_main:
        try:
            fn()
        except dataroot.StageError as e:
            error = [str(e)]
    if d.enabled:
        dist.broadcast_object_list(error, src=0)
    if error[0]:
        raise dataroot.StageError(error[0])


def load_data(config: Config, data_root: str, d: Distributed) -> tuple[list, list]:
    """(train arrays, validation arrays): memory-mapped shards, or Parquet tokenized now."""
    cfg = config.train
    if "://" in data_root:
        raise dataroot.StageError(
            f"the trainer memory-maps token shards and needs a local or mounted --data-root, "
            f"not {data_root}; copy tokens/ to local disk (gsutil -m cp -r) and point there"
        )
    if cfg.data == "tokens":
        folder = Path(dataroot.stage_dir(data_root, "tokenize"))
        train = sorted(folder.glob("train-*-of-*.bin"))
        if not train:
            raise dataroot.StageError(
                f"no token shards under {folder}; run `webtext tokenize` first"
            )
        return [open_shard(str(p)) for p in train], [
            open_shard(str(p)) for p in sorted(folder.glob("val-*-of-*.bin"))
        ]
    if cfg.data == "docs":
        dataroot.check_not_renamed(data_root, "build")
        folder = Path(dataroot.stage_dir(data_root, "build"))
        paths = [str(p) for p in sorted(folder.glob(DOCUMENT_SHARDS))]
        if not paths:
            raise dataroot.StageError(
                f"no document shards under {folder}; run `webtext build` first"
            )
        tokens = tokenize_docs(
            paths, config.tokenizer, config.tokenize.val_fraction, cfg.loader_workers
        )
        return [tokens["train"]], [tokens["val"]]
    raise dataroot.StageError(f"[train] data must be 'tokens' or 'docs', not {cfg.data!r}")


def run(config: Config, data_root: str, beam_args: list[str]) -> dict:
    """Train as [train] says; beam_args are ignored (training is not a Beam job)."""
    cfg = config.train
    device_type = (
        "cuda"
        if cfg.device == "cuda" or (cfg.device == "auto" and torch.cuda.is_available())
        else "cpu"
    )
    d = init_distributed(device_type)
    _main_first(d, lambda: dataroot.check_data_root(config, data_root, STAGE))
    device = resolve_device(cfg, d)
    accum = accumulation_steps(cfg, d.world_size)
    run_dir = Path(dataroot.stage_dir(data_root, STAGE)) / cfg.run_name
    checkpoints = list_checkpoints(run_dir)
    if checkpoints and not cfg.resume:
        raise dataroot.StageError(
            f"{run_dir} already has checkpoints; add --set train.resume=true to continue it, "
            "or pick another --set train.run_name=..."
        )

    seed = config.run.seed
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if cfg.dtype == "bfloat16" and device.type == "cuda":
        torch.set_float32_matmul_precision("high")  # the leftover fp32 matmuls use TF32

    train_arrays, val_arrays = load_data(config, data_root, d)
    model = build_model(cfg).to(device)
    try:
        sampler = StepSampler(
            TokenWindows(train_arrays, cfg.block_size),
            cfg.micro_batch,
            accum,
            seed,
            d.rank,
            d.world_size,
        )
    except ValueError as e:
        raise dataroot.StageError(f"[train] {e}") from None
    val = eval_batches(
        TokenWindows(val_arrays, cfg.block_size),
        cfg.micro_batch,
        cfg.eval_batches,
        d.rank,
        d.world_size,
    )
    optimizer = model.configure_optimizers(
        cfg.weight_decay,
        cfg.learning_rate,
        (cfg.beta1, cfg.beta2),
        device.type,
        zero1=cfg.zero1 and d.enabled,
    )

    start_step = 0
    if cfg.resume and checkpoints:
        state = load_checkpoint(checkpoints[-1])
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        sampler.load_state_dict(state["data"])
        set_rng_state(state["rng"])
        start_step = state["step"]
        if d.is_main:
            log.info("train: resuming %s at step %d", checkpoints[-1], start_step)
    trainer = Trainer(model, optimizer, cfg, device, d)

    n_params = model.num_params()
    flops_token = flops_per_token(model.config, model.num_params(non_embedding=True))
    peak = peak_flops(torch.cuda.get_device_name(device)) if device.type == "cuda" else None
    run_log = RunLog(run_dir, start_step, enabled=d.is_main)
    if d.is_main:
        log.info(
            "train: %s, %s params, %d rank(s) x %d micro-batches of %d x %d tokens, device %s",
            cfg.model if not cfg.init_from else cfg.init_from,
            f"{n_params:,}",
            d.world_size,
            accum,
            cfg.micro_batch,
            cfg.block_size,
            device,
        )

    from tqdm import tqdm

    bar = tqdm(
        total=cfg.max_steps, initial=start_step, disable=not d.is_main, unit="step", file=sys.stderr
    )
    started = time.monotonic()
    tick, tick_step = time.monotonic(), start_step
    loss = val_loss = None
    for step in range(start_step, cfg.max_steps):
        lr = learning_rate(step, cfg)
        loss, norm = trainer.step(sampler.next_step(), lr)
        done = step + 1
        row: dict[str, Any] = {"step": done, "loss": repr(loss), "lr": lr, "grad_norm": norm}
        if done % cfg.eval_every == 0 or done == cfg.max_steps:
            val_loss = trainer.evaluate(val)
            row["val_loss"] = "" if val_loss is None else repr(val_loss)
            if d.is_main and cfg.zero_shot:
                encoding = load_gpt2(config.tokenizer)
                row.update(
                    zero_shot(
                        model, encoding, cfg.zero_shot, cfg.zero_shot_dir,
                        cfg.zero_shot_limit, cfg.micro_batch,
                    )
                )  # fmt: skip
        if done % cfg.log_every == 0 or done == cfg.max_steps:
            if device.type == "cuda":
                torch.cuda.synchronize()
            now = time.monotonic()
            tokens_per_s = (done - tick_step) * cfg.total_batch_tokens / max(now - tick, 1e-9)
            tick, tick_step = now, done
            utilization = mfu(tokens_per_s, flops_token, peak, d.world_size)
            row.update(
                tokens_per_s=round(tokens_per_s),
                mfu="" if utilization is None else round(utilization, 4),
            )
            bar.set_postfix(
                loss=f"{loss:.4f}",
                tok_s=f"{tokens_per_s:,.0f}",
                mfu="n/a" if utilization is None else f"{utilization:.1%}",
            )
        row["elapsed_s"] = round(time.monotonic() - started, 3)
        run_log.write(row)
        bar.update(1)
        if done % cfg.checkpoint_every == 0 or done == cfg.max_steps:
            if cfg.zero1 and d.enabled:
                optimizer.consolidate_state_dict(to=0)
            if d.is_main:
                state = {
                    "step": done,
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "data": sampler.state_dict(),
                    "rng": rng_state(),
                    "config": config.to_dict(),
                    "model_config": dataclasses.asdict(model.config),
                }
                save_checkpoint(checkpoint_path(run_dir, done), state, cfg.keep_checkpoints)
    bar.close()
    summary: dict[str, Any] = {"steps": cfg.max_steps, "start_step": start_step, "params": n_params}
    if d.is_main:
        run_log.plot(run_dir / "loss.png")
        summary.update(
            run_dir=str(run_dir),
            final_loss=loss,
            val_loss=val_loss,
            tokens_trained=cfg.max_steps * cfg.total_batch_tokens,
            latest_checkpoint=str(list_checkpoints(run_dir)[-1])
            if list_checkpoints(run_dir)
            else "",
        )
        dataroot.write_summary(data_root, STAGE, summary)
    if d.enabled:
        dist.barrier()
    return summary


if __name__ == "__main__":
    from pipeline import cli

    sys.exit(cli.main([STAGE, *sys.argv[1:]]))
