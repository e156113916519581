"""One typed config per stage, loaded from one TOML file.

Every key must be present in the file and spelt right: a config is a record of how a
dataset was made, so nothing falls back to a hidden default. `configs/demo.toml` and
`configs/webtext.toml` are the commented references.

Loading errors are `ConfigError`s with a one-line message that names the file, the
section and the key.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import tomllib
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any


class ConfigError(ValueError):
    """A config file that is missing, malformed, or does not match the dataclasses below."""


@dataclass(frozen=True)
class RunConfig:
    seed: int  # every random choice in every stage derives from this
    progress_every: int  # log a progress line every N records per worker (0: never)


@dataclass(frozen=True)
class TokenizerConfig:
    # GPT-2 BPE ranks in tiktoken's format. Empty: $WEBTEXT_TIKTOKEN_RANKS, then tiktoken's own
    # cache or download. Relative paths are relative to the working directory.
    ranks_file: str


@dataclass(frozen=True)
class LinksConfig:
    dumps: list[str]  # globs of Pushshift / Arctic Shift submission dumps (local, gs://, s3://)
    url_lists: list[str]  # globs of plain URL lists: .txt, .csv or .parquet
    reddit_subreddits: list[str]  # live API through PRAW; empty list: off
    reddit_listings: list[str]  # "new", "hot", "top:all", "top:year", ...
    reddit_limit: int  # submissions per subreddit and listing (the API stops near 1000)
    reddit_site: str  # praw.ini section; credentials come from there or the environment
    karma_rule: str  # "per_submission" (the paper) or "per_url" (OpenWebText2: summed)
    min_karma: int
    exclude_nsfw: bool
    subreddit_blocklist: list[str]
    date_from: str  # inclusive, ISO date; "" for no bound
    date_to: str  # exclusive, ISO date; WebText: "2018-01-01"
    blocked_hosts: list[str]  # the host and all its subdomains are dropped
    media_extensions: list[str]  # path suffixes dropped as media files
    tracking_params: list[str]  # query keys removed by normalization; "utm_*" is a prefix rule
    num_shards: int  # output Parquet shards (0: let the runner decide)
    scores: list[str]  # globs of `webtext rescore` Parquet files; a fresher score wins
    snapshot_max_lag_hours: int  # a retrieval lag under this is an early score snapshot
    snapshot_short_lag_share: float  # a month above this share of short lags is flagged
    snapshot_low_score_share: float  # a month above this share of scores <= 1 is flagged


@dataclass(frozen=True)
class FetchConfig:
    user_agent: str
    respect_robots: bool
    concurrency: int  # requests in flight per worker
    max_per_host: int  # concurrent requests per host
    min_host_delay_s: float  # between two requests to one host
    connect_timeout_s: float
    read_timeout_s: float
    total_timeout_s: float  # whole URL, redirects and retries included
    max_body_bytes: int
    oversize: str  # "truncate" (keep the first max_body_bytes, marked) or "drop"
    max_decompressed_ratio: float  # gzip-bomb guard: decoded bytes per wire byte
    max_redirects: int
    max_retries: int  # transient failures only: connection errors, 5xx, 429
    backoff_base_s: float
    max_retry_after_s: float  # a longer Retry-After is recorded as a failure
    allow_private_networks: bool  # off: loopback, private, link-local, reserved IPs are refused
    verify_tls: bool  # off: HTTPS certificates are not checked, and each log row says so
    # host, "host:port", "*:port" or "*" -> "ip:port"; for tests and the demo only
    resolve_overrides: dict[str, str]
    archive_fallback: str  # "" (off), "commoncrawl", "wayback", or "commoncrawl,wayback" (in order)
    commoncrawl_index: str  # CDX API endpoint of one Common Crawl index
    commoncrawl_data: str  # base URL that WARC filenames are relative to
    wayback_endpoint: str
    warc_max_bytes: int  # roll over to a new WARC file past this size
    hosts_per_batch: int  # Beam groups links by host into batches of about this many hosts
    retry_failed: bool  # a rerun tries again the links whose last outcome was transient
    plan_response_s: float  # seconds one response is assumed to take, for the crawl plan
    max_host_seconds: float  # per-host time budget of one run (0: none); see over_budget
    over_budget: str  # a host's links past its budget: "archive" (then deferred) or "defer"


@dataclass(frozen=True)
class BuildConfig:
    max_html_bytes: int
    extract_timeout_s: float  # per document; a page over it is dropped, never hangs a worker
    extract_workers: (
        int  # extractor children per Extract instance; 0: one per CPU this process may use
    )
    favor_precision: bool
    favor_recall: bool
    include_comments: bool
    include_tables: bool
    dedup_boilerplate: bool  # trafilatura's deduplicate option
    min_tokens: int  # OpenWebText dropped documents under 128 GPT-2 tokens
    languages: list[str]  # ISO 639-1 codes kept; empty: every language
    min_language_score: float
    junk_filter: bool  # bot checks, cookie walls, soft 404s
    write_rejected: bool  # also write the removed documents with their text
    phase: str  # "all", or "extract", "dedup" or "write" alone (docs/build.md)
    partitions: int  # extracted parts = document shards; a part is held in memory when written
    row_group_rows: int


@dataclass(frozen=True)
class DecontaminateConfig:
    enabled: bool  # drop documents sharing any n-gram with the eval sets (GPT-3's rule)
    eval_sets: list[str]  # "lambada", "wikitext" (pipeline/evalsets.py)
    eval_dir: str  # folder holding the eval files
    ngram: int  # words per n-gram; GPT-3: 13


@dataclass(frozen=True)
class DedupConfig:
    exact: bool
    near: bool
    ngram: int  # word n-gram shingles
    num_perm: int
    threshold: float  # Jaccard; bands and rows follow from it as in datasketch
    seed: int  # permutation seed; 1 gives datasketch's default permutations
    scheme: str  # "affine32" (datasketch >= 2.0 default) or "legacy" (datasketch < 2.0)
    verify: str  # "none", "estimate" (signature Jaccard) or "exact" (shingle Jaccard)
    max_rounds: int  # connected components: rounds before giving up unconverged
    workers: int  # child processes that sign parts per SignParts instance; 0: one per CPU


@dataclass(frozen=True)
class TokenizeConfig:
    val_fraction: float  # by a hash of doc_id, so the split is stable
    num_shards: int  # train shards; validation gets its own
    batch_docs: int  # documents per encode_ordinary_batch call


@dataclass(frozen=True)
class TrainConfig:
    model: str  # "tiny", "124M", "355M", "774M" or "1.5B"
    init_from: str  # "" (scratch) or a Hugging Face GPT-2 folder to fine-tune
    block_size: int
    micro_batch: int
    total_batch_tokens: int  # gradient accumulation fills it; the paper: 512 * 1024
    max_steps: int
    learning_rate: float
    min_lr: float
    warmup_steps: int
    weight_decay: float
    beta1: float
    beta2: float
    grad_clip: float
    dtype: str  # "float32" or "bfloat16" (autocast on GPU)
    compile: bool
    device: str  # "auto", "cpu", "cuda"
    eval_every: int
    eval_batches: int
    zero_shot: list[str]  # also at eval_every, on rank 0: "lambada", "wikitext"; [] = off
    zero_shot_limit: int  # the first N passages / articles of each (0: all)
    zero_shot_dir: str  # folder holding the eval files
    checkpoint_every: int
    keep_checkpoints: int
    log_every: int
    data: str  # "tokens" (token shards) or "docs" (tokenize document Parquet on the fly)
    run_name: str  # the run's folder: runs/<run_name>/
    resume: bool  # continue from the run's latest checkpoint (CLI: --set train.resume=true)
    padded_vocab_size: int  # embedding rows, >= 50257 (50304 is faster on GPUs); never predicted
    zero1: bool  # shard AdamW state across DDP ranks (ZeroRedundancyOptimizer)
    loader_workers: int  # DataLoader workers that tokenize documents when data = "docs"


@dataclass(frozen=True)
class SampleConfig:
    prompt: str
    max_new_tokens: int
    temperature: float
    top_k: int  # 0: off
    top_p: float  # 1.0: off


@dataclass(frozen=True)
class Config:
    run: RunConfig
    tokenizer: TokenizerConfig
    links: LinksConfig
    fetch: FetchConfig
    build: BuildConfig
    decontaminate: DecontaminateConfig
    dedup: DedupConfig
    tokenize: TokenizeConfig
    train: TrainConfig
    sample: SampleConfig
    source: str = ""  # the file it came from, for messages

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out.pop("source")
        return out

    def fingerprint(self, *sections: str) -> str:
        """A stable hash of the named sections, for telling runs apart."""
        d = self.to_dict()
        blob = json.dumps({s: d[s] for s in sections}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _section_types() -> dict[str, type]:
    hints = typing.get_type_hints(Config)
    return {f.name: hints[f.name] for f in dataclasses.fields(Config) if f.name != "source"}


def _check_value(where: str, value: Any, annotation: Any) -> Any:
    origin = typing.get_origin(annotation)
    if annotation is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{where} must be a number, got {value!r}")
        return float(value)
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where} must be an integer, got {value!r}")
        return value
    if annotation in (str, bool):
        if not isinstance(value, annotation):
            raise ConfigError(f"{where} must be a {annotation.__name__}, got {value!r}")
        return value
    if origin is list:
        (item_type,) = typing.get_args(annotation)
        if not isinstance(value, list):
            raise ConfigError(f"{where} must be a list, got {value!r}")
        return [_check_value(f"{where}[{i}]", v, item_type) for i, v in enumerate(value)]
    if origin is dict:
        _, item_type = typing.get_args(annotation)
        if not isinstance(value, dict):
            raise ConfigError(f"{where} must be a table, got {value!r}")
        return {k: _check_value(f"{where}.{k}", v, item_type) for k, v in value.items()}
    if origin in (typing.Union, types.UnionType):
        raise ConfigError(f"{where}: optional values are not supported in configs")
    raise ConfigError(f"{where}: unsupported type {annotation}")


def _build_section(source: str, name: str, cls: type, raw: Any) -> Any:
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: [{name}] must be a table")
    hints = typing.get_type_hints(cls)
    known = [f.name for f in dataclasses.fields(cls)]
    for key in raw:
        if key not in hints:
            near = difflib.get_close_matches(key, known, n=1)
            hint = f" (did you mean {near[0]!r}?)" if near else ""
            raise ConfigError(f"{source}: unknown key {key!r} in [{name}]{hint}")
    values = {}
    for key in known:
        if key not in raw:
            raise ConfigError(f"{source}: missing key {key!r} in [{name}]")
        values[key] = _check_value(f"{source}: [{name}] {key}", raw[key], hints[key])
    return cls(**values)


def parse_override(text: str) -> tuple[str, str, Any]:
    """`section.key=value`, the value read as a TOML value, or as a bare string."""
    if "=" not in text or "." not in text.split("=", 1)[0]:
        raise ConfigError(f"--set {text!r}: expected section.key=value")
    path, value_text = text.split("=", 1)
    section, key = path.strip().split(".", 1)
    try:
        value = tomllib.loads(f"v = {value_text}")["v"]
    except tomllib.TOMLDecodeError:
        value = value_text
    return section, key, value


def from_dict(raw: dict[str, Any], source: str = "<config>") -> Config:
    types_by_section = _section_types()
    for name in raw:
        if name not in types_by_section:
            near = difflib.get_close_matches(name, list(types_by_section), n=1)
            hint = f" (did you mean [{near[0]}]?)" if near else ""
            raise ConfigError(f"{source}: unknown section [{name}]{hint}")
    sections = {}
    for name, cls in types_by_section.items():
        if name not in raw:
            raise ConfigError(f"{source}: missing section [{name}]")
        sections[name] = _build_section(source, name, cls, raw[name])
    return Config(**sections, source=source)


def load(path: str | Path, overrides: list[str] = ()) -> Config:
    """Read a TOML config, apply `section.key=value` overrides, and check every key."""
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML: {e}") from None
    for text in overrides:
        section, key, value = parse_override(text)
        if section not in raw:
            near = difflib.get_close_matches(section, list(raw), n=1)
            hint = f" (did you mean {near[0]!r}?)" if near else ""
            raise ConfigError(f"--set {text!r}: unknown section {section!r}{hint}")
        if key not in raw[section]:
            near = difflib.get_close_matches(key, list(raw[section]), n=1)
            hint = f" (did you mean {near[0]!r}?)" if near else ""
            raise ConfigError(f"--set {text!r}: unknown key {key!r} in [{section}]{hint}")
        raw[section][key] = value
    return from_dict(raw, source=str(path))
