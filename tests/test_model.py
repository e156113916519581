"""The GPT-2 model: sizes, initialisation, the architecture's details, padding, sampling."""

from __future__ import annotations

import math

import pytest
import torch

from training.model import GPT, SIZES, GPTConfig, filter_logits, gpt_config

# The published parameter counts (tied embeddings, vocab 50257, context 1024).
PUBLISHED = {"124M": 124_439_808, "355M": 354_823_168, "774M": 774_030_080, "1.5B": 1_557_611_200}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.mark.parametrize("size", list(PUBLISHED))
def test_parameter_counts_match_the_published_ones(size: str) -> None:
    with torch.device("meta"):  # no memory for 1.5B parameters
        model = GPT(gpt_config(size))
    assert model.num_params() == PUBLISHED[size]
    assert model.lm_head.weight is model.transformer.wte.weight


def test_sizes_are_the_papers() -> None:
    assert {k: tuple(v.values()) for k, v in SIZES.items() if k != "tiny"} == {
        "124M": (12, 12, 768),
        "355M": (24, 16, 1024),
        "774M": (36, 20, 1280),
        "1.5B": (48, 25, 1600),
    }


def test_initialisation_statistics() -> None:
    torch.manual_seed(0)
    model = GPT(GPTConfig(n_layer=4, n_head=4, n_embd=256, block_size=1024))
    residual_std = 0.02 / math.sqrt(2 * 4)
    block = model.transformer.h[0]
    for weight, std in [
        (model.transformer.wte.weight, 0.02),
        (model.transformer.wpe.weight, 0.01),
        (block.attn.c_attn.weight, 0.02),
        (block.mlp.c_fc.weight, 0.02),
        (block.attn.c_proj.weight, residual_std),
        (block.mlp.c_proj.weight, residual_std),
    ]:
        assert weight.mean().abs() < 3 * std / math.sqrt(weight.numel()) + 1e-4
        assert weight.std().item() == pytest.approx(std, rel=0.02)
    assert all(
        m.bias.abs().sum() == 0
        for m in model.modules()
        if isinstance(m, torch.nn.Linear) and m.bias is not None
    )
    ln = block.ln_1
    assert torch.all(ln.weight == 1) and torch.all(ln.bias == 0) and ln.eps == 1e-5


def test_gelu_is_the_tanh_approximation() -> None:
    mlp = GPT(gpt_config("tiny", block_size=8)).transformer.h[0].mlp
    x = torch.linspace(-4, 4, 101)
    openai = 0.5 * x * (1 + torch.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))
    torch.testing.assert_close(mlp.gelu(x), openai)


def test_flash_and_explicit_attention_compute_the_same_function() -> None:
    torch.manual_seed(1)
    flash = GPT(GPTConfig(n_layer=2, n_head=4, n_embd=64, block_size=32, flash=True)).eval()
    plain = GPT(GPTConfig(n_layer=2, n_head=4, n_embd=64, block_size=32, flash=False)).eval()
    plain.load_state_dict(flash.state_dict())
    idx = torch.randint(0, 50257, (3, 32))
    torch.testing.assert_close(flash(idx)[0], plain(idx)[0], rtol=1e-5, atol=1e-5)


def test_attention_is_causal() -> None:
    torch.manual_seed(2)
    model = GPT(GPTConfig(n_layer=2, n_head=2, n_embd=32, block_size=16)).eval()
    a = torch.randint(0, 50257, (1, 16))
    b = a.clone()
    b[0, 10:] = (b[0, 10:] + 1) % 50257
    torch.testing.assert_close(model(a)[0][:, :10], model(b)[0][:, :10])


def test_padded_ids_are_never_predicted() -> None:
    torch.manual_seed(3)
    model = GPT(GPTConfig(n_layer=1, n_head=2, n_embd=32, block_size=16, padded_vocab_size=50304))
    with torch.no_grad():
        model.transformer.wte.weight[50257:] = 100.0  # would dominate if not cut off
    logits, loss = model(torch.randint(0, 50257, (2, 8)), torch.randint(0, 50257, (2, 8)))
    assert logits.shape[-1] == 50257
    assert torch.isfinite(loss)
    out = model.generate(torch.zeros(1, 1, dtype=torch.long), 20, temperature=1.0)
    assert int(out.max()) < 50257


def test_a_tiny_model_overfits_one_batch() -> None:
    torch.manual_seed(4)
    model = GPT(GPTConfig(n_layer=2, n_head=2, n_embd=32, block_size=16))
    optimizer = model.configure_optimizers(0.0, 1e-2, (0.9, 0.95), "cpu")
    x = torch.randint(0, 50257, (2, 17))
    for _ in range(80):
        _, loss = model(x[:, :-1], x[:, 1:])
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    assert loss.item() < 0.1  # from ln(50257) = 10.8


def test_weight_decay_applies_to_2d_weights_only() -> None:
    model = GPT(gpt_config("tiny", block_size=8))
    decay, no_decay = model.configure_optimizers(0.1, 1e-3, (0.9, 0.95), "cpu").param_groups
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert all(p.dim() == 2 for p in decay["params"]) and all(
        p.dim() == 1 for p in no_decay["params"]
    )
    assert len(decay["params"]) + len(no_decay["params"]) == len(list(model.parameters()))


def test_top_k_and_top_p_keep_the_right_tokens() -> None:
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    assert torch.isfinite(filter_logits(logits, top_k=2)).tolist() == [[True, True, False, False]]
    assert torch.isfinite(filter_logits(logits, top_p=0.7)).tolist() == [[True, True, False, False]]
    assert torch.isfinite(filter_logits(logits, top_p=0.9)).tolist() == [[True, True, True, False]]
    assert torch.isfinite(filter_logits(logits, top_p=0.1)).tolist() == [
        [True, False, False, False]
    ]


def test_generation_is_seeded_and_greedy_is_deterministic() -> None:
    torch.manual_seed(5)
    model = GPT(GPTConfig(n_layer=1, n_head=2, n_embd=32, block_size=8)).eval()
    start = torch.zeros(1, 1, dtype=torch.long)
    a = model.generate(start, 12, top_k=50, generator=torch.Generator().manual_seed(1))
    b = model.generate(start, 12, top_k=50, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and a.shape == (1, 13)  # longer than block_size: context is cropped
    assert torch.equal(
        model.generate(start, 5, temperature=0), model.generate(start, 5, temperature=0)
    )
