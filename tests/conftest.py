"""Shared fixtures: the demo config, and the ../shared folder beside the checkout."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"
DEMO_CONFIG = REPO / "configs" / "demo.toml"
RANKS_FILE = SHARED / "tokenizers" / "r50k_base.tiktoken"


# An English article long enough for every filter, shared by the extraction and build tests.
LIBRARY_ARTICLE = (
    "The city council met on Tuesday evening to discuss the new budget for public libraries. "
    "Several residents spoke in favour of longer opening hours, arguing that students need a "
    "quiet place to work after school. The mayor said the proposal would be studied carefully "
    "before the next meeting, and that the costs of staff and heating had to be considered.\n"
    "Librarians described how the number of visitors has grown every year since the branch "
    "reopened, and how the reading programmes for children are now fully booked months in "
    "advance. One teacher explained that many families have no computer at home and rely on "
    "the library for homework, job applications and contact with public services."
)


def run_webtext(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    """The `webtext` command in a real process, run from the repository root."""
    return subprocess.run(
        [sys.executable, "-m", "pipeline.cli", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def write_old_build_output(data_root: Path) -> Path:
    """A build output as versions before the documents/ folder wrote it: DATA_ROOT/docs."""
    old = data_root / "docs"
    old.mkdir(parents=True)
    (old / "_config.json").write_text("{}")
    (old / "manifest.json").write_text('{"shards": {}}')
    return old


def require_shared(*parts: str) -> Path:
    """The path under ../shared, or skip the test with the reason."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} is absent: ../shared (test data beside the checkout) is needed")
    return path


@pytest.fixture
def demo_config_path() -> Path:
    return DEMO_CONFIG


@pytest.fixture
def ranks_file() -> Path:
    return require_shared("tokenizers", "r50k_base.tiktoken")


@pytest.fixture
def one_torch_thread():
    """One intra-op thread: on a shared 2-core machine, spinning OpenMP threads cost 4x."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
