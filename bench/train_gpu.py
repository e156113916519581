"""GPT-2 124M training speed on one GPU: the project trainer against a plain nanoGPT-style loop.

    python -m bench.train_gpu --data-root DATA            # on an H100; DATA/tokens from `webtext tokenize`
    python -m bench.train_gpu --dry-run                   # CPU smoke test: tiny model, a few steps

Three measurements in one process, on the same real token batches:
  reference  a plain loop like nanoGPT's train.py: torch.compile, SDPA attention, bf16 autocast,
             fused AdamW, TF32, micro-batch 32 x 1024, vocab padded to 50304
  project    training.train.Trainer with configs/webtext.toml's speed settings
  math check the project's fast path against fp32 eager (no compile, no SDPA, unfused AdamW,
             vocab 50257) for --check-steps steps from the same initial weights: the loss
             curves must agree within bf16 noise
Tokens/s exclude the first --warmup steps (compilation); MFU uses the PaLM formula against the
GPU's peak dense bf16 FLOP/s from training.train.GPU_PEAK_BF16.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import time
from pathlib import Path

import numpy as np
import torch

from pipeline.config import load
from pipeline.tokenize.shards import open_shard
from training.data import StepSampler, TokenWindows
from training.model import GPT, gpt_config
from training.train import Trainer, flops_per_token, peak_flops

REPO = Path(__file__).resolve().parent.parent


def batches_from(data_root: str | None, block: int, micro: int, seed: int, dry_run: bool):
    if data_root:
        paths = sorted((Path(data_root) / "tokens").glob("train-*-of-*.bin"))
        if not paths:
            raise SystemExit(
                f"no token shards under {data_root}/tokens; run `webtext tokenize` first"
            )
        arrays = [open_shard(str(p)) for p in paths]
    elif dry_run:  # synthetic tokens are enough to smoke-test the code path
        arrays = [np.random.default_rng(seed).integers(0, 50257, 200_000).astype(np.uint16)]
    else:
        raise SystemExit("--data-root with tokens/ is needed (real tokens), or --dry-run")
    return StepSampler(TokenWindows(arrays, block), micro, 1, seed)


def timed(
    step_fn, sampler: StepSampler, warmup: int, steps: int, device: torch.device
) -> tuple[float, list[float]]:
    """Seconds per step after warmup, and every step's loss."""
    losses = []
    for _ in range(warmup):
        losses.append(step_fn(sampler.next_step()))
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        losses.append(step_fn(sampler.next_step()))
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / max(steps, 1), losses


def reference_step(
    model: torch.nn.Module, optimizer: torch.optim.Optimizer, device: torch.device, lr: float
):
    """nanoGPT's inner loop, one micro-batch per step."""
    use_bf16 = device.type == "cuda"

    def step(micro_batches):
        for group in optimizer.param_groups:
            group["lr"] = lr
        (x, y) = micro_batches[0]
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16):
            _, loss = model(x, y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return float(loss.detach())

    return step


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data-root", help="folder holding tokens/ (real GPT-2 tokens)")
    parser.add_argument("--model", default="124M")
    parser.add_argument("--block-size", type=int, default=1024)
    parser.add_argument("--micro-batch", type=int, default=32, help="reference micro-batch")
    parser.add_argument("--project-micro-batch", type=int, default=32)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--check-steps", type=int, default=100, help="0 skips the math check")
    parser.add_argument("--lr", type=float, default=6e-4)
    parser.add_argument("--dry-run", action="store_true", help="tiny model on CPU, a few steps")
    args = parser.parse_args()
    if args.dry_run:
        args.model, args.block_size, args.micro_batch, args.project_micro_batch = "tiny", 64, 4, 4
        args.warmup, args.steps, args.check_steps = 1, 2, 3
    device = torch.device("cuda" if torch.cuda.is_available() and not args.dry_run else "cpu")
    if device.type != "cuda" and not args.dry_run:
        raise SystemExit("no GPU: this benchmark needs CUDA (use --dry-run for a CPU smoke test)")
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    peak = peak_flops(name) if device.type == "cuda" else None
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True

    config = load(
        REPO / "configs" / "webtext.toml",
        [
            f'train.model="{args.model}"',
            f"train.block_size={args.block_size}",
            f"train.micro_batch={args.project_micro_batch}",
            f"train.total_batch_tokens={args.project_micro_batch * args.block_size}",
            f"train.compile={'false' if args.dry_run else 'true'}",
        ],
    )
    cfg = config.train
    results = {}

    def report(label: str, seconds: float, tokens_per_step: int, model: GPT) -> None:
        tps = tokens_per_step / seconds
        flops = flops_per_token(model.config, model.num_params(non_embedding=True))
        mfu = "n/a" if peak is None else f"{tps * flops / peak:.1%}"
        results[label] = tps
        print(f"{label:10s} {tps:12,.0f} tokens/s   MFU {mfu}   ({seconds * 1000:.1f} ms/step)")

    print(f"device: {name}; model {args.model}, context {args.block_size}")

    # (a) reference: plain nanoGPT-style loop
    torch.manual_seed(0)
    ref_model = GPT(gpt_config(args.model, block_size=args.block_size, padded_vocab_size=50304)).to(
        device
    )
    decay = [p for p in ref_model.parameters() if p.dim() >= 2]
    no_decay = [p for p in ref_model.parameters() if p.dim() < 2]
    ref_opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
        lr=args.lr,
        betas=(0.9, 0.95),
        fused=device.type == "cuda",
    )
    ref_compiled = torch.compile(ref_model) if not args.dry_run else ref_model
    sampler = batches_from(args.data_root, args.block_size, args.micro_batch, 0, args.dry_run)
    seconds, _ = timed(
        reference_step(ref_compiled, ref_opt, device, args.lr),
        sampler,
        args.warmup,
        args.steps,
        device,
    )
    report("reference", seconds, args.micro_batch * args.block_size, ref_model)
    del ref_model, ref_opt, ref_compiled
    if device.type == "cuda":
        torch.cuda.empty_cache()

    # (b) the project trainer
    torch.manual_seed(0)
    model = GPT(
        gpt_config(cfg.model, block_size=cfg.block_size, padded_vocab_size=cfg.padded_vocab_size)
    ).to(device)
    optimizer = model.configure_optimizers(
        cfg.weight_decay, args.lr, (cfg.beta1, cfg.beta2), device.type
    )
    trainer = Trainer(model, optimizer, cfg, device)
    sampler = batches_from(
        args.data_root, args.block_size, args.project_micro_batch, 0, args.dry_run
    )
    seconds, _ = timed(
        lambda b: trainer.step(b, args.lr)[0], sampler, args.warmup, args.steps, device
    )
    report("project", seconds, cfg.total_batch_tokens, model)
    print(f"project / reference: {results['project'] / results['reference']:.2f}")
    del model, optimizer, trainer
    if device.type == "cuda":
        torch.cuda.empty_cache()

    # (c) the math check: fast path vs fp32 eager, same init, same batches
    if args.check_steps:
        curves = {}
        torch.manual_seed(1)
        init = GPT(
            gpt_config(
                cfg.model, block_size=cfg.block_size, padded_vocab_size=cfg.padded_vocab_size
            )
        )
        for label, fast in (("fast", True), ("fp32", False)):
            model = copy.deepcopy(init)
            if not fast:  # drop the padding (rows are never predicted) and SDPA
                state = model.state_dict()
                model = GPT(dataclasses.replace(model.config, padded_vocab_size=50257, flash=False))
                state["transformer.wte.weight"] = state["transformer.wte.weight"][:50257]
                state["lm_head.weight"] = state["transformer.wte.weight"]
                model.load_state_dict(state)
            model = model.to(device)
            run_cfg = dataclasses.replace(
                cfg, compile=fast and not args.dry_run, dtype="bfloat16" if fast else "float32"
            )
            if not fast:
                torch.backends.cuda.matmul.allow_tf32 = False
                torch.backends.cudnn.allow_tf32 = False
                torch.set_float32_matmul_precision("highest")
            optimizer = model.configure_optimizers(
                cfg.weight_decay, args.lr, (cfg.beta1, cfg.beta2), device.type if fast else "cpu"
            )
            trainer = Trainer(model, optimizer, run_cfg, device)
            sampler = batches_from(
                args.data_root, args.block_size, args.project_micro_batch, 7, args.dry_run
            )
            curves[label] = [
                trainer.step(sampler.next_step(), args.lr)[0] for _ in range(args.check_steps)
            ]
            del model, optimizer, trainer
        fast, ref = np.array(curves["fast"]), np.array(curves["fp32"])
        tail = max(1, len(ref) // 5)
        noise = float(np.std(np.diff(ref[-tail:]))) if tail > 2 else float("nan")
        print(
            f"math check over {args.check_steps} steps: loss {ref[0]:.4f} -> {ref[-1]:.4f} (fp32 eager), "
            f"{fast[0]:.4f} -> {fast[-1]:.4f} (fast); max |diff| {np.abs(fast - ref).max():.4f}, "
            f"mean diff over the last {tail} steps {np.mean(fast[-tail:] - ref[-tail:]):+.4f}, "
            f"step-to-step noise {noise:.4f}"
        )


if __name__ == "__main__":
    main()
