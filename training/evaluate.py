"""Zero-shot evaluation: LAMBADA and WikiText-2, scored as lm-evaluation-harness and the paper do.

    webtext eval runs/demo/checkpoints/step-00000200.pt --config configs/demo.toml
    webtext eval path/to/hf-gpt2-folder --tasks lambada --limit 500

LAMBADA, two protocols, both reported and named:
  harness  lm-eval's `lambada_openai`: context = all but the last word, target = " " + last word;
           acc = the target's tokens are each the argmax given the true prefix (greedy decoding
           of exactly those tokens); perplexity = exp(-mean over passages of log p(target)).
  paper    GPT-2's whole-word accuracy: the greedy word must be the last word and end there (the
           token predicted after it starts a new word), with a stop-word filter on its first
           token; perplexity per target token, exp(-sum log p / target tokens).
WikiText-2, per article: rolling log-likelihood over windows of `context` tokens (1024 for
GPT-2), each window predicting `stride` new tokens; stride = context is the harness's
disjoint windows. Token perplexity, and the harness's word perplexity, byte perplexity and
bits per byte (words and bytes counted on the original article). The harness detokenizes
WikiText's tokenized text first (`detokenize`, on by default), as the paper did.
"""

from __future__ import annotations

import json
import math
import re
import sys
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from pipeline import evalsets
from pipeline.bpe import EOT_ID
from training.hf import import_hf
from training.model import GPT, GPTConfig

TASKS = ("lambada", "wikitext")
# The paper filtered stop words from LAMBADA's first predicted token; the usual English list.
STOP_WORDS = frozenset(
    """a about above after again against all am an and any are as at be because been before
    being below between both but by can could did do does doing down during each few for from
    further had has have having he her here hers herself him himself his how i if in into is it
    its itself just me more most my myself no nor not now of off on once only or other our ours
    ourselves out over own same she should so some such than that the their theirs them
    themselves then there these they this those through to too under until up very was we were
    what when where which while who whom why will with would you your yours yourself
    yourselves""".split()
)
# WikiText's tokenization undone, in order: lm-evaluation-harness's `wikitext` rules.
WIKITEXT_DETOKENIZE: list[tuple[str | re.Pattern, str]] = [
    ("s '", "s'"),
    (re.compile(r"/' [0-9]/"), r"/'[0-9]/"),
    (" @-@ ", "-"),
    (" @,@ ", ","),
    (" @.@ ", "."),
    *((f" {mark} ", f"{mark} ") for mark in ":;.!?,"),
    (re.compile(r"\(\s*([^\)]*?)\s*\)"), r"(\1)"),
    (re.compile(r"\[\s*([^\]]*?)\s*\]"), r"[\1]"),
    (re.compile(r"{\s*([^}]*?)\s*}"), r"{\1}"),
    (re.compile(r"\"\s*([^\"]*?)\s*\""), r'"\1"'),
    (re.compile(r"'\s*([^']*?)\s*'"), r"'\1'"),
    ("= = = =", "===="),
    ("= = =", "==="),
    ("= =", "=="),
    (" \N{DEGREE SIGN} ", "\N{DEGREE SIGN}"),
    (" \n", "\n"),
    ("\n ", "\n"),
    (" N ", " 1 "),
    (" 's", "'s"),
]


@dataclass(frozen=True)
class EvalSettings:
    tasks: tuple[str, ...] = TASKS
    eval_dir: str = evalsets.DEFAULT_DIR
    files: dict[str, str] = field(default_factory=dict)  # task -> file, instead of eval_dir's
    batch_size: int = 8
    context: int = 0  # tokens per window; 0: the model's block size
    stride: int = 0  # new tokens scored per WikiText window; 0: = context (the harness)
    detokenize: bool = True
    limit: int = 0  # the first N passages / articles per task; 0: all
    progress: bool = True

    def file(self, task: str) -> Path:
        return (
            Path(self.files[task]) if task in self.files else evalsets.path_of(task, self.eval_dir)
        )


def detokenize_wikitext(text: str) -> str:
    for pattern, replacement in WIKITEXT_DETOKENIZE:
        if isinstance(pattern, re.Pattern):
            text = pattern.sub(replacement, text)
        else:
            text = text.replace(pattern, replacement)
    return text


def load_model(path: str | Path) -> GPT:
    """A project checkpoint (runs/<name>/checkpoints/step-*.pt) or a Hugging Face GPT-2 folder."""
    path = Path(path)
    if path.is_dir():
        return import_hf(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such checkpoint or Hugging Face folder")
    state = torch.load(path, map_location="cpu", weights_only=False)
    model = GPT(GPTConfig(**state["model_config"]))
    model.load_state_dict(state["model"])
    return model


def results_path(model_path: str | Path) -> Path:
    """Where the JSON goes: beside the checkpoint, or inside the Hugging Face folder."""
    path = Path(model_path)
    return path / "eval.json" if path.is_dir() else path.with_suffix(".eval.json")


# ---- scoring -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Item:
    """One forward pass: `inputs`, and the `targets` the last len(targets) logits must predict.

    With `after_word`, the very last logit predicts the token after the targets (LAMBADA's
    paper protocol), so the targets' logits sit one further left.
    """

    inputs: list[int]
    targets: list[int]
    after_word: bool = False


@dataclass
class Scored:
    logprob: float  # sum of log p(target)
    greedy: bool  # every target token is the argmax
    first_filtered: bool = False  # the first target is the argmax among non-stop-word tokens
    word_ends: bool = False  # the argmax after the targets starts a new word (or is EOT)


@dataclass(frozen=True)
class Vocabulary:
    """Per token id: is it a stop word (with its leading space), does it continue a word."""

    stop_word: torch.Tensor
    continues_word: torch.Tensor

    @classmethod
    def of(cls, encoding, vocab_size: int) -> Vocabulary:
        stop = torch.zeros(vocab_size, dtype=torch.bool)
        cont = torch.zeros(vocab_size, dtype=torch.bool)
        for i in range(min(vocab_size, encoding.n_vocab)):
            if i == EOT_ID:
                continue
            text = encoding.decode_single_token_bytes(i).decode("utf-8", "replace")
            stop[i] = text.startswith(" ") and text.strip().lower() in STOP_WORDS
            cont[i] = bool(text) and text[0].isalnum()
        return cls(stop, cont)


def _batches(items: list[Item], batch_size: int) -> Iterator[list[int]]:
    """Indices of items, longest first so padding stays small."""
    order = sorted(range(len(items)), key=lambda i: -len(items[i].inputs))
    for start in range(0, len(order), batch_size):
        yield order[start : start + batch_size]


@torch.no_grad()
def score(
    model: GPT,
    items: list[Item],
    batch_size: int,
    vocab: Vocabulary | None = None,
    desc: str = "",
    progress: bool = False,
) -> list[Scored]:
    """Each item's log-likelihood and greedy checks, in batches of right-padded inputs."""
    from tqdm import tqdm

    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    results: list[Scored | None] = [None] * len(items)
    bar = tqdm(total=len(items), desc=desc, disable=not progress, file=sys.stderr, leave=False)
    for indices in _batches(items, batch_size):
        width = max(len(items[i].inputs) for i in indices)
        x = torch.full((len(indices), width), EOT_ID, dtype=torch.long)
        for row, i in enumerate(indices):
            x[row, : len(items[i].inputs)] = torch.tensor(items[i].inputs)
        logits, _ = model(x.to(device))
        for row, i in enumerate(indices):
            results[i] = _score_one(items[i], logits[row, : len(items[i].inputs)], vocab)
        bar.update(len(indices))
    bar.close()
    model.train(was_training)
    return results  # type: ignore[return-value]


def _score_one(item: Item, logits: torch.Tensor, vocab: Vocabulary | None) -> Scored:
    """One item's scores from its logits (log p = logit - logsumexp: no second vocab-wide
    tensor for the log-softmax)."""
    n, end = len(item.targets), len(logits) - (1 if item.after_word else 0)
    rows = logits[end - n : end].float()
    targets = torch.tensor(item.targets, device=rows.device)
    chosen = rows.gather(1, targets[:, None]).squeeze(1)
    result = Scored(
        logprob=float((chosen - torch.logsumexp(rows, dim=-1)).sum()),
        greedy=bool((rows.argmax(-1) == targets).all()),
    )
    if item.after_word and vocab is not None:
        stop = vocab.stop_word.to(rows.device)
        first = rows[0].masked_fill(stop[: rows.shape[1]], -math.inf).argmax()
        result.first_filtered = bool(first == targets[0]) and bool(
            (rows[1:].argmax(-1) == targets[1:]).all()
        )
        after = int(logits[-1].argmax())
        result.word_ends = after == EOT_ID or not bool(vocab.continues_word[after])
    return result


# ---- LAMBADA -----------------------------------------------------------------------------


def lambada_items(encoding, texts: list[str], context: int) -> list[tuple[Item, Item | None]]:
    """Per passage (harness item, separate paper item or None when one pass serves both)."""
    out = []
    for text in texts:
        prefix, word = text.rsplit(" ", 1)
        whole = encoding.encode_ordinary(prefix + " " + word)
        n_prefix = len(encoding.encode_ordinary(prefix))
        target = whole[n_prefix:]
        if len(whole) <= context:
            out.append((Item(whole, target, after_word=True), None))
        else:  # the harness keeps the last context + 1 tokens and drops the final one
            out.append(
                (Item(whole[-(context + 1) : -1], target), Item(whole[-context:], target, True))
            )
    return out


def evaluate_lambada(
    model: GPT, encoding, texts: list[str], settings: EvalSettings, vocab: Vocabulary
) -> dict[str, float]:
    context = settings.context or model.config.block_size
    pairs = lambada_items(encoding, texts, context)
    items = [item for pair in pairs for item in pair if item is not None]
    scored = dict(
        zip(
            map(id, items),
            score(model, items, settings.batch_size, vocab, "lambada", settings.progress),
            strict=True,
        )
    )
    harness = [scored[id(h)] for h, _ in pairs]
    paper = [scored[id(p if p is not None else h)] for h, p in pairs]
    target_tokens = sum(len(h.targets) for h, _ in pairs)
    n = len(pairs)
    return {
        "harness_acc": sum(s.greedy for s in harness) / n,
        "harness_ppl": math.exp(-sum(s.logprob for s in harness) / n),
        "paper_acc": sum(s.first_filtered and s.word_ends for s in paper) / n,
        "paper_ppl": math.exp(-sum(s.logprob for s in paper) / target_tokens),
        "examples": n,
    }


# ---- WikiText ----------------------------------------------------------------------------


def rolling_windows(tokens: list[int], context: int, stride: int) -> list[Item]:
    """Windows that predict every token exactly once: the first `context` tokens after an EOT,
    then `stride` at a time, each seeing up to `context` tokens before it."""
    if not tokens:
        return []
    first = min(context, len(tokens))
    windows = [Item([EOT_ID, *tokens[: first - 1]], tokens[:first])]
    done = first
    while done < len(tokens):
        n = min(stride, len(tokens) - done)
        end = done + n
        windows.append(Item(tokens[max(0, end - context - 1) : end - 1], tokens[done:end]))
        done = end
    return windows


def evaluate_wikitext(
    model: GPT, encoding, pages: list[str], settings: EvalSettings
) -> dict[str, float]:
    context = settings.context or model.config.block_size
    stride = settings.stride or context
    if not 1 <= stride <= context:
        raise ValueError(f"stride {stride} must be between 1 and the context {context}")
    items, owner = [], []
    for page_index, page in enumerate(pages):
        text = detokenize_wikitext(page) if settings.detokenize else page
        windows = rolling_windows(encoding.encode_ordinary(text), context, stride)
        items.extend(windows)
        owner.extend([page_index] * len(windows))
    scored = score(model, items, settings.batch_size, None, "wikitext", settings.progress)
    logprob = sum(s.logprob for s in scored)
    tokens = sum(len(item.targets) for item in items)
    words = sum(len(re.split(r"\s+", page)) for page in pages)
    n_bytes = sum(len(page.encode("utf-8")) for page in pages)
    return {
        "token_ppl": math.exp(-logprob / tokens),
        "word_ppl": math.exp(-logprob / words),
        "byte_ppl": math.exp(-logprob / n_bytes),
        "bits_per_byte": -logprob / n_bytes / math.log(2),
        "documents": len(pages),
        "tokens": tokens,
        "windows": len(items),
    }


# ---- all tasks ---------------------------------------------------------------------------


def evaluate(model: GPT, encoding, settings: EvalSettings) -> dict[str, dict[str, float]]:
    """{task: metrics} for each task in settings.tasks."""
    results: dict[str, dict[str, float]] = {}
    for task in settings.tasks:
        if task not in TASKS:
            raise ValueError(f"unknown task {task!r}; expected one of {', '.join(TASKS)}")
        data = evalsets.read(task, settings.file(task))
        if settings.limit:
            data = data[: settings.limit]
        if task == "lambada":
            vocab = Vocabulary.of(encoding, model.config.vocab_size)
            results[task] = evaluate_lambada(model, encoding, data, settings, vocab)
        else:
            results[task] = evaluate_wikitext(model, encoding, data, settings)
    return results


METRIC_NAMES = {
    "harness_acc": "accuracy, harness (greedy target tokens)",
    "harness_ppl": "perplexity, harness (per passage)",
    "paper_acc": "accuracy, paper (whole word, stop-word filter)",
    "paper_ppl": "perplexity, paper (per target token)",
    "token_ppl": "token perplexity",
    "word_ppl": "word perplexity (harness)",
    "byte_ppl": "byte perplexity (harness)",
    "bits_per_byte": "bits per byte (harness)",
}


def format_table(results: dict[str, dict[str, float]]) -> str:
    lines = [f"{'task':<10} {'metric':<48} {'value':>12}"]
    for task, metrics in results.items():
        for key, value in metrics.items():
            shown = f"{value:>12,}" if isinstance(value, int) else f"{value:>12.4f}"
            lines.append(f"{task:<10} {METRIC_NAMES.get(key, key):<48} {shown}")
    return "\n".join(lines)


def flat_metrics(results: dict[str, dict[str, float]]) -> dict[str, float]:
    """{"lambada_harness_acc": ..., "wikitext_word_ppl": ...}: the float metrics, for logs."""
    return {
        f"{task}_{key}": value
        for task, metrics in results.items()
        for key, value in metrics.items()
        if isinstance(value, float)
    }


# The zero-shot metrics the trainer logs at eval_every (log.csv columns, TensorBoard scalars).
LOG_METRICS = (
    "lambada_harness_acc",
    "lambada_harness_ppl",
    "lambada_paper_acc",
    "wikitext_word_ppl",
    "wikitext_bits_per_byte",
)


def zero_shot(
    model: GPT, encoding, tasks: list[str], eval_dir: str, limit: int, batch_size: int
) -> dict[str, float]:
    """The trainer's zero-shot evals: LOG_METRICS of the tasks, on the first `limit` examples."""
    settings = EvalSettings(
        tasks=tuple(tasks), eval_dir=eval_dir, limit=limit, batch_size=batch_size, progress=False
    )
    metrics = flat_metrics(evaluate(model, encoding, settings))
    return {key: metrics[key] for key in LOG_METRICS if key in metrics}


def run_eval(
    model_path: str, encoding, settings: EvalSettings, device: str = "auto"
) -> dict[str, Any]:
    """Evaluate a checkpoint or Hugging Face folder, print the table, write the JSON beside it."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    model = load_model(model_path).to(device)
    results = evaluate(model, encoding, settings)
    print(format_table(results))
    out = results_path(model_path)
    record = {"model": str(model_path), "settings": asdict(settings), "results": results}
    out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"\nwrote {out}")
    return record
