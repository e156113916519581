"""lm-evaluation-harness's own numbers for a Hugging Face GPT-2 folder, offline, on local files.

    python -m tests.lm_eval_reference MODEL_DIR LAMBADA_JSONL WIKITEXT_PAGES_JSONL LIMIT OUT_JSON

The two tasks are the harness's `lambada_openai` and `wikitext` with the dataset pointed at
local JSON Lines files ({"text"} per passage, {"page"} per article); the WikiText detokenizer
and metrics are the harness's own functions. Run in its own process, offline.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

LAMBADA_TASK = """\
task: lambada_local
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: loglikelihood
doc_to_text: "{{{{text.split(' ')[:-1]|join(' ')}}}}"
doc_to_target: "{{{{' '+text.split(' ')[-1]}}}}"
metric_list:
  - metric: perplexity
    aggregation: perplexity
    higher_is_better: false
  - metric: acc
    aggregation: mean
    higher_is_better: true
"""
WIKITEXT_TASK = """\
task: wikitext_local
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: loglikelihood_rolling
doc_to_text: ""
doc_to_target: !function harness_wikitext.wikitext_detokenizer
process_results: !function harness_wikitext.process_results
metric_list:
  - metric: word_perplexity
  - metric: byte_perplexity
  - metric: bits_per_byte
"""


def main(model_dir: str, lambada: str, wikitext: str, limit: int, out: str) -> None:
    os.environ.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    tasks = Path(out).parent / "tasks"
    tasks.mkdir(exist_ok=True)
    (tasks / "lambada_local.yaml").write_text(LAMBADA_TASK.format(data=lambada))
    (tasks / "wikitext_local.yaml").write_text(WIKITEXT_TASK.format(data=wikitext))
    (tasks / "harness_wikitext.py").write_text(
        "from lm_eval.tasks.wikitext.preprocess_wikitext import (  # noqa: F401\n"
        "    process_results, wikitext_detokenizer)\n"
    )
    import lm_eval
    from lm_eval.tasks import TaskManager

    result = lm_eval.simple_evaluate(
        model="hf",
        model_args=f"pretrained={model_dir},tokenizer={model_dir},dtype=float32",
        tasks=["lambada_local", "wikitext_local"],
        task_manager=TaskManager(include_path=str(tasks)),
        limit=limit,
        batch_size=4,
        device="cpu",
        log_samples=True,
    )
    lambada_samples = sorted(result["samples"]["lambada_local"], key=lambda s: s["doc_id"])
    record = {
        "results": result["results"],
        "lambada_loglikelihoods": [float(s["resps"][0][0][0]) for s in lambada_samples],
    }
    Path(out).write_text(json.dumps(record, indent=2))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5])
