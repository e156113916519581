"""The data root on local disk: atomic writes, globbing, summaries and the config guard."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from pipeline import dataroot
from pipeline.config import load
from tests.conftest import DEMO_CONFIG


def test_write_bytes_atomic_makes_folders_and_replaces(tmp_path: Path) -> None:
    path = str(tmp_path / "a" / "b" / "file.bin")
    dataroot.write_bytes_atomic(path, b"one")
    dataroot.write_bytes_atomic(path, b"two")
    assert dataroot.read_bytes(path) == b"two"
    assert sorted(p.name for p in (tmp_path / "a" / "b").iterdir()) == ["file.bin"]


def test_match_lists_files_sorted_and_nothing_else(tmp_path: Path) -> None:
    for name in ("links-00001.parquet", "links-00000.parquet", ".links-x.parquet", "other.json"):
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "links-dir.parquet").mkdir()
    found = dataroot.match(dataroot.join(str(tmp_path), "*links-*.parquet"))
    assert [Path(p).name for p in found] == [
        ".links-x.parquet",
        "links-00000.parquet",
        "links-00001.parquet",
    ]
    assert dataroot.match(dataroot.join(str(tmp_path), "none-*")) == []


def test_summary_round_trip(tmp_path: Path) -> None:
    assert dataroot.read_summary(str(tmp_path), "tokenize") is None
    dataroot.write_summary(str(tmp_path), "tokenize", {"counters": {"tokens_train": 3}})
    assert dataroot.read_summary(str(tmp_path), "tokenize") == {"counters": {"tokens_train": 3}}
    assert (tmp_path / "tokens" / dataroot.SUMMARY).exists()


def test_check_data_root_records_then_refuses_another_config(tmp_path: Path) -> None:
    dataroot.check_data_root(load(DEMO_CONFIG), str(tmp_path), "tokenize")
    dataroot.check_data_root(load(DEMO_CONFIG), str(tmp_path), "tokenize")  # same config: resumes
    assert (tmp_path / "tokens" / dataroot.CONFIG_RECORD).exists()
    with pytest.raises(dataroot.StageError, match=r"\[tokenize\] num_shards"):
        dataroot.check_data_root(
            load(DEMO_CONFIG, ["tokenize.num_shards=7"]), str(tmp_path), "tokenize"
        )


def test_remote_path_without_beam_is_one_line_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "apache_beam.io.filesystems", None)  # import fails
    with pytest.raises(dataroot.StageError, match="need apache-beam"):
        dataroot.exists("gs://bucket/webtext/tokens/_summary.json")
