"""Hugging Face GPT-2 interop: export to, and import from, a config.json + model.safetensors folder.

The layouts differ in two ways only:
  - names: HF prefixes "transformer." (OpenAI's original checkpoints on the Hub do not);
  - HF's GPT-2 uses Conv1D, whose weight is (in, out): the transpose of nn.Linear's (out, in).
The output head is tied to wte, so HF stores no lm_head.weight. A padded vocabulary is cut
back to the 50257 real rows on export and padded again (zeros) on import.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from training.model import GPT, GPTConfig

# Weights stored transposed by HF's Conv1D (the same four names in every block).
CONV1D = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")
SKIPPED_SUFFIXES = (".attn.bias", ".attn.masked_bias")  # old HF causal-mask buffers, not weights


def hf_config(config: GPTConfig) -> dict:
    return {
        "architectures": ["GPT2LMHeadModel"],
        "model_type": "gpt2",
        "vocab_size": config.vocab_size,
        "n_positions": config.block_size,
        "n_ctx": config.block_size,
        "n_embd": config.n_embd,
        "n_layer": config.n_layer,
        "n_head": config.n_head,
        "n_inner": None,
        "activation_function": "gelu_new",  # HF's name for the tanh approximation
        "layer_norm_epsilon": config.layer_norm_epsilon,
        "initializer_range": 0.02,
        "resid_pdrop": 0.0,
        "embd_pdrop": 0.0,
        "attn_pdrop": 0.0,
        "scale_attn_weights": True,
        "tie_word_embeddings": True,
        "bos_token_id": 50256,
        "eos_token_id": 50256,
    }


def export_hf(model: GPT, folder: str | Path) -> None:
    """Write config.json and model.safetensors that transformers' GPT2LMHeadModel loads."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {}
    for name, tensor in model.state_dict().items():
        if name == "lm_head.weight":
            continue  # tied to wte
        tensor = tensor.detach().to("cpu", torch.float32)
        if name == "transformer.wte.weight":
            tensor = tensor[: model.config.vocab_size]
        if name.endswith(CONV1D):
            tensor = tensor.t()
        tensors[name] = tensor.contiguous()
    save_file(tensors, str(folder / "model.safetensors"), metadata={"format": "pt"})
    (folder / "config.json").write_text(json.dumps(hf_config(model.config), indent=2) + "\n")


def import_hf(
    folder: str | Path, block_size: int | None = None, padded_vocab_size: int | None = None
) -> GPT:
    """A GPT from a Hugging Face GPT-2 folder; block_size may crop the position embeddings."""
    folder = Path(folder)
    weights_path = folder / "model.safetensors"
    if not (folder / "config.json").exists() or not weights_path.exists():
        raise FileNotFoundError(
            f"{folder}: not a Hugging Face GPT-2 folder (needs config.json and model.safetensors)"
        )
    hf = json.loads((folder / "config.json").read_text())
    if hf.get("model_type") != "gpt2":
        raise ValueError(f"{folder}: model_type is {hf.get('model_type')!r}, expected 'gpt2'")
    if hf.get("activation_function", "gelu_new") not in ("gelu_new", "gelu_pytorch_tanh"):
        raise ValueError(f"{folder}: activation {hf['activation_function']!r} is not GPT-2's")
    positions = hf["n_positions"]
    config = GPTConfig(
        n_layer=hf["n_layer"],
        n_head=hf["n_head"],
        n_embd=hf["n_embd"],
        block_size=min(block_size or positions, positions),
        vocab_size=hf["vocab_size"],
        padded_vocab_size=max(padded_vocab_size or hf["vocab_size"], hf["vocab_size"]),
        layer_norm_epsilon=hf.get("layer_norm_epsilon", 1e-5),
    )
    model = GPT(config)
    ours = model.state_dict()
    loaded: dict[str, torch.Tensor] = {}
    for name, tensor in load_file(str(weights_path)).items():
        if name.endswith(SKIPPED_SUFFIXES) or name == "lm_head.weight":
            continue
        if not name.startswith("transformer."):
            name = "transformer." + name
        if name.endswith(CONV1D):
            tensor = tensor.t()
        if name == "transformer.wpe.weight":
            tensor = tensor[: config.block_size]
        if name == "transformer.wte.weight" and config.padded_vocab_size > tensor.shape[0]:
            padding = tensor.new_zeros(config.padded_vocab_size - tensor.shape[0], tensor.shape[1])
            tensor = torch.cat([tensor, padding])
        loaded[name] = tensor.to(ours[name].dtype) if name in ours else tensor
    missing = set(ours) - set(loaded) - {"lm_head.weight"}
    unexpected = set(loaded) - set(ours)
    if missing or unexpected:
        raise ValueError(
            f"{folder}: weights do not match GPT-2 (missing {sorted(missing)[:3]}, "
            f"unexpected {sorted(unexpected)[:3]})"
        )
    model.load_state_dict(loaded, strict=False)
    return model


def export_checkpoint(checkpoint: str | Path, folder: str | Path) -> None:
    """Export a training checkpoint (runs/<name>/checkpoints/step-*.pt) to a Hugging Face folder."""
    state = torch.load(checkpoint, map_location="cpu", weights_only=False)
    model = GPT(GPTConfig(**state["model_config"]))
    model.load_state_dict(state["model"])
    export_hf(model, folder)


if __name__ == "__main__":
    import sys

    if len(sys.argv) != 3:
        sys.exit("usage: python -m training.hf CHECKPOINT.pt OUT_FOLDER  (export to Hugging Face)")
    export_checkpoint(sys.argv[1], sys.argv[2])
    print(f"wrote {sys.argv[2]}/config.json and model.safetensors")
