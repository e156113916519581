"""`webtext sample`: generate text from the run's latest checkpoint, as [sample] says.

    webtext sample --config configs/demo.toml --data-root demo-data \
        --set 'sample.prompt="Once upon a time"' --set sample.top_p=0.9
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from pipeline import dataroot
from pipeline.bpe import load_gpt2
from pipeline.config import Config
from training.model import GPT, GPTConfig
from training.train import list_checkpoints, load_checkpoint


def load_latest(data_root: str, run_name: str) -> tuple[GPT, dict]:
    """The run's newest checkpoint as an eval-mode model on the CPU, and the checkpoint."""
    run_dir = Path(dataroot.stage_dir(data_root, "train")) / run_name
    checkpoints = list_checkpoints(run_dir)
    if not checkpoints:
        raise dataroot.StageError(f"no checkpoints under {run_dir}; run `webtext train` first")
    state = load_checkpoint(checkpoints[-1])
    model = GPT(GPTConfig(**state["model_config"]))
    model.load_state_dict(state["model"])
    state["path"] = str(checkpoints[-1])
    return model.eval(), state


def generate_text(model: GPT, config: Config, device: torch.device) -> tuple[str, int]:
    """(prompt + continuation, number of new tokens), seeded by run.seed."""
    s = config.sample
    encoding = load_gpt2(config.tokenizer)
    prompt = encoding.encode_ordinary(s.prompt) or [encoding.eot_token]
    idx = torch.tensor([prompt], dtype=torch.long, device=device)
    generator = torch.Generator(device=device).manual_seed(config.run.seed)
    out = model.to(device).generate(
        idx,
        s.max_new_tokens,
        temperature=s.temperature,
        top_k=s.top_k,
        top_p=s.top_p,
        generator=generator,
    )
    new = out[0, len(prompt) :].tolist()
    return s.prompt + encoding.decode(new), len(new)


def run(config: Config, data_root: str, beam_args: list[str]) -> dict:
    """Print one sample; beam_args are ignored."""
    model, state = load_latest(data_root, config.train.run_name)
    wanted = config.train.device
    use_cuda = torch.cuda.is_available() and wanted in ("auto", "cuda")
    text, new_tokens = generate_text(model, config, torch.device("cuda" if use_cuda else "cpu"))
    print(f"--- sample from {state['path']} (step {state['step']}) ---")
    print(text)
    print("---")
    return {
        "counters": {"checkpoint_step": state["step"], "new_tokens": new_tokens},
        "checkpoint": state["path"],
        "text": text,
    }


if __name__ == "__main__":
    from pipeline import cli

    sys.exit(cli.main(["sample", *sys.argv[1:]]))
