"""The trainer runs where Apache Beam is not installed: nothing it imports may pull Beam in."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TRAINING_MODULES = sorted(
    f"training.{p.stem}" for p in (ROOT / "training").glob("*.py") if p.stem != "__init__"
)
# What the trainer reaches outside training/: the command torchrun runs, and the shared modules.
SHARED_MODULES = [
    "pipeline",
    "pipeline.cli",
    "pipeline.config",
    "pipeline.bpe",
    "pipeline.dataroot",
    "pipeline.tokenize",
    "pipeline.tokenize.shards",
    "schemas",
]


@pytest.mark.parametrize(
    "module", ["training", *TRAINING_MODULES, "bench.train_gpu", *SHARED_MODULES]
)
def test_module_imports_without_beam(module: str) -> None:
    check = f"import sys, {module}; print('apache_beam' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", check], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False", f"importing {module} imports apache_beam"
