"""A finished dataset folder as its users open it: each reader called without options."""

from __future__ import annotations

from pathlib import Path

import pytest


def doc_ids_by_reader(dataset_dir: Path, cache: Path) -> dict[str, list[str]]:
    """Sorted doc_ids as pyarrow, pandas, DuckDB and polars read data/, and as
    `datasets.load_dataset` reads the whole folder (offline, its cache under `cache`)."""
    import duckdb
    import pandas as pd
    import polars as pl
    import pyarrow.parquet as pq

    data = dataset_dir / "data"
    found = {
        "pyarrow": pq.read_table(data).column("doc_id").to_pylist(),
        "pandas": pd.read_parquet(data)["doc_id"].tolist(),
        "duckdb": [
            row[0]
            for row in duckdb.sql(f"SELECT doc_id FROM read_parquet('{data}/*.parquet')").fetchall()
        ],
        "polars": pl.read_parquet(data)["doc_id"].to_list(),
        "datasets": load_offline(dataset_dir, cache)["train"]["doc_id"],
    }
    return {reader: sorted(ids) for reader, ids in found.items()}


def load_offline(dataset_dir: Path, cache: Path, *config: str):
    """`datasets.load_dataset(folder)` with nothing downloaded and every cache under `cache`."""
    with pytest.MonkeyPatch.context() as patch:
        for name, value in (("HF_HUB_OFFLINE", "1"), ("HF_DATASETS_OFFLINE", "1")):
            patch.setenv(name, value)
        patch.setenv("HF_HOME", str(cache))
        import datasets
        import huggingface_hub

        # datasets reads these once, at import: another test may have imported it already
        patch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
        patch.setattr(datasets.config, "HF_DATASETS_OFFLINE", True)
        patch.setattr(datasets.config, "HF_DATASETS_CACHE", cache / "datasets")
        patch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
        return datasets.load_dataset(str(dataset_dir), *config)
