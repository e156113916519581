"""The `webtext` command: one subcommand per stage, plus run-all, demo and validate.

    webtext STAGE --config FILE [--data-root DIR] [--set section.key=value ...] [BEAM OPTIONS]
    webtext rescore --config FILE [--ids flippable|all] [--calls-per-minute N] [--out DIR]

Everything after webtext's own flags is handed to Beam's PipelineOptions untouched, so
`--runner DataflowRunner --project P --region R --temp_location gs://...` just works.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
import time
from collections.abc import Callable
from typing import Any

from pipeline.config import Config, ConfigError, load

log = logging.getLogger("webtext")

# stage -> (module, what it does); each module has run(config, data_root, beam_args) -> dict.
STAGES: dict[str, tuple[str, str]] = {
    "links": ("pipeline.links.stage", "Reddit submissions -> the >=3-karma link set (links/)"),
    "fetch": ("pipeline.fetch.stage", "links -> raw responses as WARC + fetch log (fetch/)"),
    "build": (
        "pipeline.build.stage",
        "WARC -> extracted, filtered, deduplicated documents (documents/)",
    ),
    "tokenize": ("pipeline.tokenize.stage", "documents -> GPT-2 token shards (tokens/)"),
    "train": ("training.train", "token shards -> GPT-2 checkpoints (runs/)"),
    "sample": ("training.sample", "generate text from the latest checkpoint"),
}
PIPELINE_ORDER = ["links", "fetch", "build", "tokenize", "train"]

EPILOG = """\
examples:
  webtext demo --config configs/demo.toml --data-root demo-data
  webtext links --config configs/webtext.toml --data-root gs://bucket/webtext \\
      --set 'links.dumps=["gs://bucket/reddit/RS_2017-*.zst"]' \\
      --runner DataflowRunner --project my-project --region us-central1 \\
      --temp_location gs://bucket/tmp
  webtext validate demo-data/documents
  webtext rescore --config configs/webtext.toml --data-root data --ids flippable

Options that webtext does not know are Beam pipeline options and pass through unchanged.
"""


RESCORE_DESCRIPTION = """\
Ask the Reddit API (reddit.info, 100 ids a call) for today's scores of the dump
submissions in links.dumps that pass every [links] filter but karma, and write
DIR/scores.parquet (id, score, fetched time, live/removed/deleted/missing) for
links.scores, where a fresher score wins over the dump's.

It prints the estimate first: ids, calls, and hours at --calls-per-minute. It is
resumable: progress is kept in DIR/rescore.sqlite, and a rerun (after a kill, too)
asks only for ids without an answer. Credentials come from the praw.ini section
links.reddit_site, or praw_client_id / praw_client_secret in the environment; never
from the config, and they are never logged. See docs/links.md, "Karma in 2026".
"""


class UsageError(Exception):
    pass


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="webtext",
        description="Rebuild WebText (the GPT-2 corpus) with Apache Beam, and train GPT-2 on it.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def add_run_flags(p: argparse.ArgumentParser) -> None:
        p.add_argument("--config", required=True, help="TOML config; see configs/demo.toml")
        p.add_argument(
            "--data-root",
            default="data",
            help="folder (local, gs://, s3://) holding links/ fetch/ documents/ tokens/ runs/ "
            "(default: ./data)",
        )
        p.add_argument(
            "--set",
            dest="overrides",
            action="append",
            default=[],
            metavar="SECTION.KEY=VALUE",
            help="override one config key; VALUE is read as TOML (repeatable)",
        )
        p.add_argument("-q", "--quiet", action="store_true", help="only errors and the summary")

    for name, (_, what) in STAGES.items():
        add_run_flags(sub.add_parser(name, help=what, description=what))
    add_run_flags(
        sub.add_parser(
            "run-all",
            help="links, fetch, build, tokenize and train in order",
            description="Run links, fetch, build, tokenize and train in order, then print "
            "the funnel. Each stage resumes from what the data root already holds.",
        )
    )
    demo = sub.add_parser(
        "demo",
        help="the whole chain on the embedded micro-web",
        description="Generate a synthetic Reddit dump and web, serve the web on 127.0.0.1, "
        "run every stage on it, and print the funnel and a sample from the trained model.",
    )
    add_run_flags(demo)
    demo.add_argument("--seed", type=int, default=None, help="micro-web seed (default: run.seed)")
    rescore = sub.add_parser(
        "rescore",
        help="refresh dump submissions' scores through the Reddit API (PRAW)",
        description=RESCORE_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n"
        "  webtext rescore --config configs/webtext.toml --data-root data --estimate-only\n"
        "  webtext rescore --config configs/webtext.toml --data-root data --ids all\n"
        "  webtext links --config configs/webtext.toml --data-root data2 \\\n"
        "      --set 'links.scores=[\"data/scores/scores.parquet\"]'\n",
    )
    add_run_flags(rescore)
    rescore.add_argument(
        "--ids",
        choices=("flippable", "all"),
        default="flippable",
        help="flippable (default): only submissions below links.min_karma whose score was "
        "read within links.snapshot_max_lag_hours of posting; all: every candidate",
    )
    rescore.add_argument(
        "--calls-per-minute",
        type=float,
        default=100,
        metavar="N",
        help="API calls a minute, 100 ids each (default: 100, Reddit's quota per client)",
    )
    rescore.add_argument(
        "--out",
        metavar="DIR",
        help="local folder for the progress and scores.parquet (default: DATA_ROOT/scores)",
    )
    rescore.add_argument("--estimate-only", action="store_true", help="print the estimate and stop")
    validate = sub.add_parser(
        "validate",
        help="check a dataset folder against its manifest",
        description="Check a documents/ folder against its manifest.json: schemas, row counts, "
        "checksums, missing or extra shards.",
    )
    validate.add_argument("dataset_dir", metavar="DIR")
    _add_eval_parser(sub)
    _add_contamination_parser(sub)
    return parser


def _tool_parser(sub, name: str, what: str, description: str) -> argparse.ArgumentParser:
    """A command outside the pipeline's stages: no --config required, defaults in --help."""
    return sub.add_parser(
        name,
        help=what,
        description=description,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )


def _add_contamination_parser(sub) -> None:
    from pipeline.evalsets import DEFAULT_DIR, FILES

    p = _tool_parser(
        sub,
        "contamination",
        "share of each test set's 8-grams found in the built dataset (GPT-2 Table 6)",
        "The GPT-2 paper's overlap analysis: the dataset's 8-grams in a Bloom filter "
        "(false-positive rate <= 1e-8), each eval set's 8-grams looked up in it. Prints the "
        "share per set and the documents that hold the most, and writes them into "
        "documents/manifest.json and the dataset card.",
    )
    p.add_argument("--data-root", default="data", help="holds documents/ from `webtext build`")
    p.add_argument("--eval-dir", default=DEFAULT_DIR, help="folder holding the eval files")
    p.add_argument("--sets", default=",".join(FILES), help="comma-separated eval sets")


def contamination(args: argparse.Namespace) -> int:
    from pipeline import dataroot
    from pipeline.contamination import run

    dataset_dir = dataroot.stage_dir(args.data_root, "build")
    sets = [s.strip() for s in args.sets.split(",") if s.strip()]
    try:
        run(dataset_dir, args.eval_dir, sets)
    except (FileNotFoundError, ValueError) as e:
        raise UsageError(str(e)) from None
    return 0


def _add_eval_parser(sub) -> None:
    from pipeline.evalsets import DEFAULT_DIR

    p = _tool_parser(
        sub,
        "eval",
        "zero-shot LAMBADA and WikiText-2 on a checkpoint or Hugging Face folder",
        "Zero-shot LAMBADA (accuracy and perplexity, harness and paper protocols) and "
        "WikiText-2 (token and word perplexity, bits per byte) of a model. Prints a table and "
        "writes the results as JSON beside the checkpoint (or eval.json in the folder). "
        "See docs/evaluation.md.",
    )
    p.add_argument(
        "model", help="runs/<name>/checkpoints/step-*.pt, or a Hugging Face GPT-2 folder"
    )
    p.add_argument("--config", help="TOML config whose [tokenizer] finds the BPE ranks")
    p.add_argument("--tasks", default="lambada,wikitext", help="comma-separated tasks")
    p.add_argument("--eval-dir", default=DEFAULT_DIR, help="folder holding the eval files")
    p.add_argument("--lambada", help="LAMBADA JSONL instead of the eval folder's")
    p.add_argument("--wikitext", help="WikiText-2 test text instead of the eval folder's")
    p.add_argument("--batch-size", type=int, default=8, help="sequences per forward pass")
    p.add_argument("--context", type=int, default=0, help="window tokens (0: the model's)")
    p.add_argument(
        "--stride", type=int, default=0, help="new WikiText tokens per window (0: = context)"
    )
    p.add_argument(
        "--no-detokenize",
        dest="detokenize",
        action="store_false",
        help="score WikiText's tokenized text as is (default: the harness's detokenizer)",
    )
    p.add_argument("--limit", type=int, default=0, help="first N passages/articles (0: all)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, ...")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")


def evaluate(args: argparse.Namespace) -> int:
    from pipeline.bpe import load_gpt2
    from training.evaluate import EvalSettings, run_eval

    tokenizer = load(args.config).tokenizer if args.config else None
    files = {t: f for t, f in (("lambada", args.lambada), ("wikitext", args.wikitext)) if f}
    same = ("eval_dir", "batch_size", "context", "stride", "detokenize", "limit", "progress")
    settings = EvalSettings(
        tasks=tuple(t.strip() for t in args.tasks.split(",") if t.strip()),
        files=files,
        **{name: getattr(args, name) for name in same},
    )
    try:
        run_eval(args.model, load_gpt2(tokenizer), settings, args.device)
    except (FileNotFoundError, ValueError) as e:
        raise UsageError(str(e)) from None
    return 0


def _stage_runner(stage: str) -> Callable[[Config, str, list[str]], dict[str, Any]]:
    module = importlib.import_module(STAGES[stage][0])
    return module.run


def run_stage(stage: str, config: Config, data_root: str, beam_args: list[str]) -> dict:
    from pipeline import dataroot

    log.info("%s: starting (%s)", stage, STAGES[stage][1])
    started = time.monotonic()
    summary = _stage_runner(stage)(config, data_root, beam_args)
    seconds = time.monotonic() - started
    print(dataroot.format_summary(f"{stage} ({seconds:.1f} s)", _summary_rows(summary)))
    return summary


def _summary_rows(summary: dict) -> list[tuple[str, Any]]:
    counters = summary.get("counters", summary)
    return [(k, v) for k, v in counters.items() if isinstance(v, int | float | str)]


def funnel(data_root: str) -> list[tuple[str, Any]]:
    """The whole funnel, read back from each stage's written summary."""
    from pipeline import dataroot

    rows: list[tuple[str, Any]] = []
    for stage in ("links", "fetch", "build", "tokenize"):
        summary = dataroot.read_summary(data_root, stage) or {}
        rows.extend(summary.get("funnel", []))
    return rows


def warnings(data_root: str) -> list[str]:
    """Each stage summary's warning lines (e.g. the links stage's early-snapshot months)."""
    from pipeline import dataroot

    lines: list[str] = []
    for stage in ("links", "fetch", "build", "tokenize"):
        lines.extend((dataroot.read_summary(data_root, stage) or {}).get("warnings", []))
    return lines


def run_all(config: Config, data_root: str, beam_args: list[str]) -> None:
    from pipeline import dataroot

    for stage in PIPELINE_ORDER:
        run_stage(stage, config, data_root, beam_args)
    print()
    print(dataroot.format_summary("WebText funnel", funnel(data_root)))
    for line in warnings(data_root):
        print(f"  warning: {line}")


def demo(args: argparse.Namespace, beam_args: list[str]) -> None:
    from pipeline import dataroot
    from pipeline.dataroot import DOCUMENT_SHARDS
    from pipeline.demo import MicroWeb, generate

    base = load(args.config, args.overrides)
    seed = base.run.seed if args.seed is None else args.seed
    web_dir = dataroot.join(args.data_root, "microweb")
    truth = generate(web_dir, seed=seed)
    with MicroWeb(dataroot.join(web_dir, "site")) as web:
        overrides = [
            *args.overrides,
            f'links.dumps=["{dataroot.join(web_dir, "dumps", "*.zst")}"]',
            f'fetch.resolve_overrides={{"*" = "127.0.0.1:{web.port}"}}',
            "train.resume=true",  # a second `make demo` continues the finished run: a no-op
        ]
        config = load(args.config, overrides)
        log.info("micro-web: %d pages served on 127.0.0.1:%d", truth.pages_total, web.port)
        run_all(config, args.data_root, beam_args)
    print()
    demo_contamination(args.data_root)
    run_stage("sample", config, args.data_root, beam_args)
    print(
        f"\nDocument shards: {dataroot.join(dataroot.stage_dir(args.data_root, 'build'), DOCUMENT_SHARDS)}"
    )
    print(f"Token shards:    {dataroot.stage_dir(args.data_root, 'tokenize')}/")


def rescore(config: Config, args: argparse.Namespace) -> int:
    from pipeline.links import rescore as rescoring

    rescoring.run(
        config,
        args.data_root,
        selection=args.ids,
        calls_per_minute=args.calls_per_minute,
        out=args.out,
        estimate_only=args.estimate_only,
    )
    return 0


def demo_contamination(data_root: str) -> None:
    """The demo dataset's overlap with the eval sets, when ../shared/eval is there."""
    from pathlib import Path

    from pipeline import dataroot, evalsets
    from pipeline.contamination import run

    if not Path(evalsets.DEFAULT_DIR).is_dir():
        print(f"Test-set overlap: skipped ({evalsets.DEFAULT_DIR} is absent)\n")
        return
    print("Test-set overlap (the GPT-2 paper's 8-gram method; `webtext contamination`):")
    run(dataroot.stage_dir(data_root, "build"), evalsets.DEFAULT_DIR, list(evalsets.FILES))
    print()


def validate(dataset_dir: str) -> int:
    from pipeline.build.dataset import validate as check

    problems = check(dataset_dir)
    for problem in problems:
        print(f"{dataset_dir}: {problem}")
    if problems:
        print(f"{len(problems)} problem(s) found", file=sys.stderr)
        return 1
    print(f"{dataset_dir}: OK")
    return 0


def _configure_logging(quiet: bool) -> None:
    """webtext's own progress at INFO; other libraries (Beam is chatty) only at ERROR.

    Runs before Beam is imported, so Beam's import-time warnings stay quiet too.
    """
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", datefmt="%H:%M:%S"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.ERROR)
    log.setLevel(logging.WARNING if quiet else logging.INFO)


def main(argv: list[str] | None = None) -> int:
    args, beam_args = _parser().parse_known_args(argv)
    _configure_logging(getattr(args, "quiet", False))
    from pipeline.bpe import TokenizerError
    from pipeline.dataroot import StageError
    from pipeline.links.rescore import RescoreError

    try:
        if args.command == "validate":
            return validate(args.dataset_dir)
        if args.command == "contamination":
            return contamination(args)
        if args.command == "eval":
            return evaluate(args)
        if args.command == "demo":
            demo(args, beam_args)
            return 0
        config = load(args.config, args.overrides)
        if args.command == "rescore":
            return rescore(config, args)
        if args.command == "run-all":
            run_all(config, args.data_root, beam_args)
        else:
            run_stage(args.command, config, args.data_root, beam_args)
        return 0
    except (ConfigError, StageError, TokenizerError, UsageError, RescoreError) as e:
        print(f"webtext: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("webtext: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
