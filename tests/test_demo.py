"""`webtext demo` end to end: the funnel that actually flowed equals what the micro-web planted."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pyarrow.parquet as pq
import pytest

import schemas
from pipeline.dataroot import DOCUMENT_SHARDS
from tests.conftest import require_shared
from tests.conftest import run_webtext as webtext

# The funnel is the point here; a few training steps show that training consumes the shards.
SHORT_TRAINING = (
    "--set train.max_steps=3 --set train.eval_every=3 --set train.checkpoint_every=3 "
    "--set sample.max_new_tokens=8"
).split()


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    require_shared("tokenizers", "r50k_base.tiktoken")
    root = tmp_path_factory.mktemp("demo")
    result = webtext(
        "demo", "--config", "configs/demo.toml", "--data-root", str(root), *SHORT_TRAINING
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return root, result


def summary(root: Path, folder: str) -> dict:
    return json.loads((root / folder / "_summary.json").read_text())["counters"]


def truth(root: Path) -> dict:
    return json.loads((root / "microweb" / "ground_truth.json").read_text())


def test_links_funnel_equals_the_planted_submissions(demo_run) -> None:
    root, _ = demo_run
    links, planted = summary(root, "links"), truth(root)
    assert links["read"] == planted["dump_lines"]
    assert links["malformed"] == planted["malformed_lines"]
    for reason, count in planted["submissions_by_reason"].items():
        if reason != "qualifying":
            assert links[reason] == count, reason
    assert links["kept"] == planted["links_qualifying"]


def test_fetch_outcomes_equal_the_planted_web(demo_run) -> None:
    root, _ = demo_run
    fetch, planted = summary(root, "fetch"), truth(root)["fetch_outcomes"]
    assert fetch["ok"] == planted["ok"]
    assert fetch["http_4xx"] == planted["not_found"] + planted["gone"]
    assert fetch["http_5xx"] == planted["server_error"]
    assert fetch["not_html"] == planted["non_html"]
    assert fetch["filtered_redirect"] == planted["redirect_wikipedia"] + planted["redirect_blocked"]
    assert fetch["robots_disallowed"] == planted["robots"]
    for outcome in ("timeout", "redirect_loop", "too_many_redirects"):
        assert fetch[outcome] == planted[outcome], outcome


def test_build_removes_what_was_planted_and_writes_the_rest(demo_run) -> None:
    root, _ = demo_run
    build, planted = summary(root, "documents"), truth(root)
    assert build["too_short"] == planted["short_pages"]
    assert build["language"] == planted["non_english_pages"]
    assert build["exact_duplicate"] + build["near_duplicate"] == planted["removed_as_duplicates"]
    assert build["documents_written"] == planted["documents_written"]


def test_document_shards_match_the_schema_and_keep_one_per_cluster(demo_run) -> None:
    root, _ = demo_run
    planted = truth(root)
    tables = [pq.read_table(p) for p in sorted((root / "documents").glob(DOCUMENT_SHARDS))]
    assert tables and all(schemas.check_table(t.schema, schemas.DOCUMENT) == [] for t in tables)
    rows = [row for t in tables for row in t.select(["final_url", "host"]).to_pylist()]
    assert len(rows) == planted["documents_written"]
    written = {row["final_url"] for row in rows}
    for cluster in planted["exact_clusters"] + planted["near_clusters"]:
        assert len(written.intersection(cluster)) == 1, cluster
    assert not any("wikipedia.org" in row["host"] for row in rows)


def test_tokens_cover_every_document_and_training_consumed_them(demo_run) -> None:
    root, result = demo_run
    tokens = summary(root, "tokens")
    assert tokens["documents_read"] == truth(root)["documents_written"]
    assert tokens["tokens_train"] > 0 and tokens["tokens_val"] > 0
    assert list((root / "runs" / "demo" / "checkpoints").glob("step-*.pt"))
    assert "WebText funnel" in result.stdout
    assert "sample from" in result.stdout


def test_a_second_demo_run_resumes_instead_of_failing(demo_run) -> None:
    root, _ = demo_run
    again = webtext(
        "demo", "--quiet", "--config", "configs/demo.toml", "--data-root", str(root),
        *SHORT_TRAINING,
    )  # fmt: skip
    assert again.returncode == 0, again.stderr[-3000:]
    assert summary(root, "documents")["documents_written"] == truth(root)["documents_written"]


def test_a_data_root_made_with_another_config_is_refused(demo_run) -> None:
    root, _ = demo_run
    dumps = root / "microweb" / "dumps" / "*.zst"
    result = webtext(
        "links", "--config", "configs/demo.toml", "--data-root", str(root),
        "--set", "links.min_karma=5", "--set", f'links.dumps=["{dumps}"]',
    )  # fmt: skip
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    [line] = [ln for ln in result.stderr.splitlines() if ln.startswith("webtext: error:")]
    assert "different config" in line and "min_karma" in line
