"""Hugging Face interop: transformers' GPT2LMHeadModel loads our export with equal logits."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch

from training.hf import export_hf, import_hf
from training.model import GPT, GPTConfig

transformers = pytest.importorskip("transformers", reason="transformers is a test dependency")


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def small(padded: int = 50257) -> GPT:
    torch.manual_seed(0)
    return GPT(GPTConfig(n_layer=2, n_head=4, n_embd=32, block_size=64, padded_vocab_size=padded))


@pytest.mark.parametrize("padded", [50257, 50304])
def test_transformers_loads_the_export_with_equal_logits(tmp_path: Path, padded: int) -> None:
    model = small(padded).eval()
    export_hf(model, tmp_path)
    hf = transformers.GPT2LMHeadModel.from_pretrained(tmp_path).eval()
    idx = torch.randint(0, 50257, (2, 40), generator=torch.Generator().manual_seed(1))

    with torch.no_grad():
        ours, _ = model(idx)
        theirs = hf(idx).logits

    assert theirs.shape == ours.shape == (2, 40, 50257)
    torch.testing.assert_close(theirs, ours, rtol=1e-4, atol=1e-4)
    assert json.loads((tmp_path / "config.json").read_text())["activation_function"] == "gelu_new"


def test_import_round_trip_gives_equal_logits(tmp_path: Path) -> None:
    model = small().eval()
    export_hf(model, tmp_path)
    back = import_hf(tmp_path, padded_vocab_size=50304).eval()
    idx = torch.randint(0, 50257, (1, 64), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        torch.testing.assert_close(back(idx)[0], model(idx)[0], rtol=0, atol=1e-5)


def test_import_reads_a_transformers_checkpoint_and_crops_context(tmp_path: Path) -> None:
    torch.manual_seed(3)
    hf_config = transformers.GPT2Config(n_layer=2, n_head=2, n_embd=16, n_positions=128)
    hf = transformers.GPT2LMHeadModel(hf_config).eval()
    hf.save_pretrained(tmp_path)

    ours = import_hf(tmp_path, block_size=32).eval()

    assert ours.config.block_size == 32
    idx = torch.randint(0, 50257, (2, 32), generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        torch.testing.assert_close(ours(idx)[0], hf(idx).logits, rtol=1e-4, atol=1e-4)


def test_a_folder_without_weights_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="needs config.json and model.safetensors"):
        import_hf(tmp_path)


def test_a_training_checkpoint_exports(tmp_path: Path) -> None:
    from training.hf import export_checkpoint

    model = small(50304).eval()
    state = {"model": model.state_dict(), "model_config": dataclasses.asdict(model.config)}
    torch.save(state, tmp_path / "step-00000001.pt")

    export_checkpoint(tmp_path / "step-00000001.pt", tmp_path / "hf")

    hf = transformers.GPT2LMHeadModel.from_pretrained(tmp_path / "hf").eval()
    idx = torch.arange(10).unsqueeze(0)
    with torch.no_grad():
        torch.testing.assert_close(hf(idx).logits, model(idx)[0], rtol=1e-4, atol=1e-4)
