"""The command line as a user meets it: real processes, one-line errors, non-zero exits."""

import subprocess
from pathlib import Path

from tests.conftest import run_webtext as webtext
from tests.conftest import write_old_build_output


def assert_one_line_error(result: subprocess.CompletedProcess, *fragments: str) -> None:
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("webtext: error: ")
    for fragment in fragments:
        assert fragment in lines[0]


def test_help_lists_every_stage() -> None:
    result = webtext("--help")
    assert result.returncode == 0
    for command in ("links", "fetch", "build", "tokenize", "train", "sample", "run-all", "demo"):
        assert command in result.stdout


def test_missing_config_file(tmp_path: Path) -> None:
    result = webtext("links", "--config", str(tmp_path / "nope.toml"))
    assert_one_line_error(result, "nope.toml", "does not exist")


def test_misspelt_config_key(tmp_path: Path) -> None:
    result = webtext(
        "links", "--config", "configs/demo.toml", "--set", "links.min_karm=2",
        "--data-root", str(tmp_path),
    )  # fmt: skip
    assert_one_line_error(result, "min_karm", "did you mean 'min_karma'")


def test_validate_of_a_folder_without_manifest_fails(tmp_path: Path) -> None:
    result = webtext("validate", str(tmp_path))
    assert result.returncode != 0
    assert "manifest" in (result.stdout + result.stderr)


def test_validate_of_the_old_docs_folder_names_the_new_one(tmp_path: Path) -> None:
    old = write_old_build_output(tmp_path)
    result = webtext("validate", str(old))
    assert_one_line_error(result, f"{old} is the old name", str(tmp_path / "documents"))
