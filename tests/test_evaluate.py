"""webtext eval against lm-evaluation-harness, on a tiny random GPT-2 saved as a Hugging Face folder."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from pipeline import evalsets
from pipeline.bpe import load_gpt2
from pipeline.config import TokenizerConfig
from tests.hf_tokenizer import write_gpt2_tokenizer
from training.evaluate import (
    EvalSettings,
    Item,
    detokenize_wikitext,
    evaluate,
    load_model,
    rolling_windows,
    score,
)
from training.hf import export_hf
from training.model import GPT, gpt_config

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
RANKS = SHARED / "tokenizers" / "r50k_base.tiktoken"
EVAL_DIR = SHARED / "eval"
needs_shared = pytest.mark.skipif(
    not (RANKS.exists() and EVAL_DIR.is_dir()),
    reason="../shared/tokenizers and ../shared/eval are absent (the eval files and BPE ranks)",
)
LAMBADA_LIMIT = 24
WIKITEXT_LIMIT = 2
BLOCK = 128  # small, so WikiText articles span many windows and some passages are cut


def tiny_model(seed: int = 0) -> GPT:
    torch.manual_seed(seed)
    model = GPT(gpt_config("tiny", n_layer=2, n_head=2, n_embd=32, block_size=BLOCK))
    with torch.no_grad():  # sharper logits than the 0.02 init, so greedy choices are not ties
        model.transformer.wte.weight.mul_(20)
    return model


def test_rolling_windows_predict_every_token_once() -> None:
    tokens = list(range(10))
    for context, stride in ((4, 4), (4, 2), (4, 1), (16, 16)):
        windows = rolling_windows(tokens, context, stride)
        assert [t for w in windows for t in w.targets] == tokens
        for w in windows:
            assert len(w.inputs) <= context
            # input position i predicts the token after it: the targets end the sequence
            sequence = [50256, *tokens]
            end = sequence.index(w.targets[-1])
            assert w.inputs == sequence[end - len(w.inputs) : end]
    assert len(rolling_windows(tokens, 4, 2)) == 1 + 3


def test_score_is_independent_of_batching_and_padding() -> None:
    model = tiny_model()
    items = [Item(list(range(5, 5 + n)), list(range(40, 43))) for n in (3, 9, 17)]
    one = [s.logprob for s in score(model, items, batch_size=1)]
    batched = [s.logprob for s in score(model, items, batch_size=3)]
    assert one == pytest.approx(batched, rel=1e-5)


def test_detokenizer_undoes_wikitext_spacing() -> None:
    raw = ' = = Career = = \n He said " hello , world " ( 2 @,@ 000 ) . \n'
    assert detokenize_wikitext(raw) == ' == Career ==\nHe said "hello, world" (2,000).\n'


@needs_shared
@pytest.mark.slow
def test_equals_lm_evaluation_harness_and_checkpoint_equals_export(tmp_path: Path) -> None:
    pytest.importorskip("lm_eval", reason="lm-eval (the `test` extra) is not installed")
    model = tiny_model()
    with torch.no_grad():  # favour " signs", the first passage's last word, so accuracy is not 0
        favoured = model.transformer.wte.weight[5895]
        model.transformer.ln_f.bias.copy_(30 * favoured / favoured.norm() ** 2)
    folder = tmp_path / "hf"
    export_hf(model, folder)
    write_gpt2_tokenizer(RANKS, folder, BLOCK)
    checkpoint = tmp_path / "step-00000001.pt"
    torch.save({"model": model.state_dict(), "model_config": model.config.__dict__}, checkpoint)

    lambada = tmp_path / "lambada.jsonl"
    texts = evalsets.read_lambada(EVAL_DIR / evalsets.FILES["lambada"])[:LAMBADA_LIMIT]
    lambada.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    pages_file = tmp_path / "wikitext.jsonl"
    pages = evalsets.read_wikitext(EVAL_DIR / evalsets.FILES["wikitext"])[:WIKITEXT_LIMIT]
    pages_file.write_text("".join(json.dumps({"page": p}) + "\n" for p in pages))
    reference = tmp_path / "harness.json"
    subprocess.run(
        [sys.executable, "-m", "tests.lm_eval_reference", str(folder), str(lambada),
         str(pages_file), str(max(LAMBADA_LIMIT, WIKITEXT_LIMIT)), str(reference)],
        cwd=ROOT, check=True, timeout=600,
    )  # fmt: skip
    harness = json.loads(reference.read_text())

    encoding = load_gpt2(TokenizerConfig(str(RANKS)))
    settings = EvalSettings(eval_dir=str(EVAL_DIR), batch_size=4, progress=False)
    lambada_settings = EvalSettings(
        **{**settings.__dict__, "tasks": ("lambada",), "limit": LAMBADA_LIMIT}
    )
    wikitext_settings = EvalSettings(
        **{**settings.__dict__, "tasks": ("wikitext",), "limit": WIKITEXT_LIMIT}
    )
    ours = {}
    for path in (folder, checkpoint):
        loaded = load_model(path)
        ours[path] = {
            **evaluate(loaded, encoding, lambada_settings),
            **evaluate(loaded, encoding, wikitext_settings),
        }
    assert ours[folder] == ours[checkpoint]  # the checkpoint and its export: equal numbers

    mine = ours[folder]
    lamb, wiki = harness["results"]["lambada_local"], harness["results"]["wikitext_local"]
    assert mine["lambada"]["examples"] == LAMBADA_LIMIT
    assert mine["lambada"]["harness_acc"] > 0
    assert mine["lambada"]["harness_acc"] == pytest.approx(lamb["acc,none"], abs=1e-4)
    assert mine["lambada"]["harness_ppl"] == pytest.approx(lamb["perplexity,none"], rel=1e-4)
    assert mine["wikitext"]["word_ppl"] == pytest.approx(wiki["word_perplexity,none"], rel=1e-4)
    assert mine["wikitext"]["byte_ppl"] == pytest.approx(wiki["byte_perplexity,none"], rel=1e-4)
    assert mine["wikitext"]["bits_per_byte"] == pytest.approx(wiki["bits_per_byte,none"], rel=1e-4)
    assert mine["wikitext"]["windows"] > 2 * WIKITEXT_LIMIT  # articles span several windows
    # Per passage too: perplexity near the vocabulary size alone would hide an offset.
    per_passage = math.exp(-sum(harness["lambada_loglikelihoods"]) / LAMBADA_LIMIT)
    assert mine["lambada"]["harness_ppl"] == pytest.approx(per_passage, rel=1e-4)


@needs_shared
def test_cli_prints_the_table_and_writes_json_beside_the_checkpoint(tmp_path: Path, capsys) -> None:
    from pipeline import cli

    model = tiny_model()
    checkpoint = tmp_path / "step-00000007.pt"
    torch.save({"model": model.state_dict(), "model_config": model.config.__dict__}, checkpoint)
    argv = ["eval", str(checkpoint), "--config", str(ROOT / "configs" / "demo.toml")]
    argv += ["--eval-dir", str(EVAL_DIR), "--limit", "3", "--stride", "64", "--no-progress"]

    assert cli.main(argv) == 0

    printed = capsys.readouterr().out
    assert "accuracy, harness (greedy target tokens)" in printed
    assert "accuracy, paper (whole word, stop-word filter)" in printed
    assert "bits per byte (harness)" in printed
    record = json.loads((tmp_path / "step-00000007.eval.json").read_text())
    assert record["settings"]["stride"] == 64
    assert record["results"]["lambada"]["examples"] == 3
    assert record["results"]["wikitext"]["documents"] == 3
