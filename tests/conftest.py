"""Shared fixtures: the demo config, and the ../shared folder beside the checkout."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"
DEMO_CONFIG = REPO / "configs" / "demo.toml"
RANKS_FILE = SHARED / "tokenizers" / "r50k_base.tiktoken"


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
