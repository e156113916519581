import dataclasses
from pathlib import Path

import pytest

from pipeline import config as cfg
from tests.conftest import REPO

CONFIGS = sorted((REPO / "configs").glob("*.toml"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_shipped_configs_load_with_every_key(path: Path) -> None:
    config = cfg.load(path)
    assert config.links.min_karma == 3
    assert config.links.date_to == "2018-01-01"


def test_override_is_read_as_toml(demo_config_path: Path) -> None:
    config = cfg.load(
        demo_config_path,
        ["fetch.max_redirects=7", 'links.dumps=["a/*.zst", "b/*.zst"]', "links.karma_rule=per_url"],
    )
    assert config.fetch.max_redirects == 7
    assert config.links.dumps == ["a/*.zst", "b/*.zst"]
    assert config.links.karma_rule == "per_url"  # a bare word is taken as a string


def test_misspelt_override_names_the_right_key(demo_config_path: Path) -> None:
    with pytest.raises(cfg.ConfigError, match="did you mean 'max_redirects'"):
        cfg.load(demo_config_path, ["fetch.max_redirect=3"])


def test_misspelt_key_in_file_is_an_error(tmp_path: Path, demo_config_path: Path) -> None:
    text = demo_config_path.read_text().replace("min_karma =", "min_karmma =")
    (tmp_path / "c.toml").write_text(text)
    with pytest.raises(cfg.ConfigError, match=r"unknown key 'min_karmma' in \[links\]"):
        cfg.load(tmp_path / "c.toml")


def test_missing_key_is_an_error(tmp_path: Path, demo_config_path: Path) -> None:
    lines = [ln for ln in demo_config_path.read_text().splitlines() if not ln.startswith("seed")]
    (tmp_path / "c.toml").write_text("\n".join(lines))
    with pytest.raises(cfg.ConfigError, match=r"missing key 'seed' in \[run\]"):
        cfg.load(tmp_path / "c.toml")


def test_wrong_type_is_an_error(demo_config_path: Path) -> None:
    with pytest.raises(cfg.ConfigError, match="min_karma must be an integer"):
        cfg.load(demo_config_path, ['links.min_karma="three"'])


def test_missing_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(cfg.ConfigError, match="does not exist"):
        cfg.load(tmp_path / "nope.toml")


def test_fingerprint_changes_only_with_its_sections(demo_config_path: Path) -> None:
    a = cfg.load(demo_config_path)
    b = cfg.load(demo_config_path, ["fetch.max_redirects=9"])
    assert a.fingerprint("links") == b.fingerprint("links")
    assert a.fingerprint("links", "fetch") != b.fingerprint("links", "fetch")


def test_configs_are_frozen(demo_config_path: Path) -> None:
    config = cfg.load(demo_config_path)
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.links.min_karma = 1  # type: ignore[misc]
