"""Document shards, manifest, dataset card and validate, through a real DirectRunner write."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import random
from pathlib import Path

import apache_beam as beam
import pyarrow.parquet as pq
import pytest
import yaml

import schemas
from pipeline import beamio, dataroot
from pipeline.build import dataset
from pipeline.build.parts import ExtractedParts, write_documents
from pipeline.build.textnorm import text_hash
from pipeline.config import Config, load
from tests.conftest import DEMO_CONFIG, write_old_build_output
from tests.readers import doc_ids_by_reader, load_offline

HOSTS = ["example.com", "news.example.org", "blog.example.net"]


def _config(partitions: int = 3, row_group_rows: int = 7, write_rejected: bool = True) -> Config:
    config = load(DEMO_CONFIG)
    build = dataclasses.replace(
        config.build, partitions=partitions, row_group_rows=row_group_rows,
        write_rejected=write_rejected,
    )  # fmt: skip
    return dataclasses.replace(config, build=build)


def _document(i: int, rng: random.Random) -> dict:
    text = " ".join(rng.choice(["alpha", "beta", "gamma", "delta"]) for _ in range(50 + i))
    host = HOSTS[i % len(HOSTS)]
    return {
        "doc_id": f"{rng.getrandbits(64):016x}",
        "text": text,
        "title": f"Title {i}",
        "date": None,
        "language": "en" if i % 4 else "de",
        "language_score": 0.9,
        "word_count": 50 + i,
        "token_count": 60 + 3 * i,
        "normalized_url": f"http://{host}/{i}",
        "final_url": f"https://{host}/{i}",
        "host": host,
        "karma": 3 + i,
        "first_created_utc": 1_400_000_000 + i,
        "submissions": [
            {
                "id": f"s{i}",
                "subreddit": "test",
                "score": 3 + i,
                "created_utc": 1_400_000_000 + i,
                "title": "t",
            }
        ],
        "fetched_at": dt.datetime(2026, 11, 1, tzinfo=dt.UTC),
        "warc_file": "warc/fetch-00000.warc.gz",
        "warc_offset": 100 * i,
        "extractor": "trafilatura test",
        "text_hash": text_hash(text),
    }


def _copy(doc: dict) -> dict:
    """A near-duplicate of `doc` that dedup removed."""
    return {
        **doc,
        "doc_id": doc["doc_id"] + "-r",
        "normalized_url": doc["normalized_url"] + "?copy",
    }


def _removal(copy: dict, parts: ExtractedParts) -> dict:
    return {
        "doc_id": copy["doc_id"],
        "kept_doc_id": copy["doc_id"].removesuffix("-r"),
        "reason": "near_duplicate",
        "cluster_size": 2,
        "part": parts.part_of(copy["doc_id"]),
    }


def _build(data_root: Path, config: Config, n: int = 40, seed: int = 0) -> dict:
    """The write phase over n documents and 5 near-duplicate copies of them, as extracted
    parts, and the copies' removals."""
    rng = random.Random(seed)
    docs = [_document(i, rng) for i in range(n)]
    copies = [_copy(d) for d in docs[:5]]
    parts = ExtractedParts(str(data_root / dataroot.EXTRACTED_DIR), config.build.partitions)
    write_documents(parts, docs + copies, config.build.row_group_rows)
    removals = [_removal(c, parts) for c in copies]
    dataroot.check_data_root(config, str(data_root), "build")

    def build(p: beam.Pipeline) -> None:
        gone = p | "Removals" >> beam.Create(removals)
        _ = gone | dataset.WriteDocuments(str(data_root), config, parts)

    counters = beamio.run_pipeline("build", build, [])
    counters.update({"exact_duplicate": 0, "near_duplicate": 5})
    return dataset.finish(config, str(data_root), counters)


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("data")
    links = root / "links"
    links.mkdir()
    (links / "_summary.json").write_text(
        json.dumps({"funnel": [["submissions", 100], ["links", 60]]})
    )
    return root, _build(root, _config())


def test_shards_have_deterministic_names_sorted_rows_and_row_groups(built):
    root, manifest = built
    data = root / "documents" / "data"
    names = sorted(p.name for p in data.glob("documents-*.parquet"))
    assert names == [f"documents-{i:05d}-of-00003.parquet" for i in range(3)]
    total = 0
    for name in names:
        parquet = pq.ParquetFile(data / name)
        table = parquet.read()
        ids = table.column("doc_id").to_pylist()
        assert ids == sorted(ids)
        assert all(dataset.shard_of(i, 3) == int(name[10:15]) for i in ids)
        assert all(
            parquet.metadata.row_group(g).num_rows <= 7 for g in range(parquet.num_row_groups)
        )
        assert parquet.metadata.row_group(0).column(0).compression == "ZSTD"
        assert schemas.check_table(table.schema, dataset.stored_schema(schemas.DOCUMENT)) == []
        assert schemas.schema_name(table.schema) == "document"
        total += table.num_rows
    assert total == 40 == manifest["totals"]["documents"]
    assert manifest["totals"]["removed"] == 5


def test_shards_read_back_with_plain_pyarrow_glob(built):
    root, _ = built
    import pyarrow.dataset as ds

    table = ds.dataset(
        sorted(str(p) for p in (root / "documents").glob(dataset.DOCUMENT_SHARDS))
    ).to_table()
    assert table.num_rows == 40
    assert table.column("submissions").type == schemas.DOCUMENT.field("submissions").type


def test_every_reader_opens_the_dataset_without_options(built, tmp_path):
    root, manifest = built
    folder = root / "documents"
    expected = sorted(
        doc_id
        for shard in manifest["shards"]["documents"]
        for doc_id in pq.read_table(folder / shard["path"]).column("doc_id").to_pylist()
    )
    assert len(expected) == manifest["totals"]["documents"] == 40
    for reader, ids in doc_ids_by_reader(folder, tmp_path / "hf").items():
        assert ids == expected, reader


def test_removed_documents_are_the_second_config_of_the_card(built, tmp_path):
    root, manifest = built
    card = (root / "documents" / "README.md").read_text()
    assert card.startswith("---\n")
    front = yaml.safe_load(card.split("---\n")[1])
    assert front["configs"] == [
        {
            "config_name": "default",
            "default": True,
            "data_files": [{"split": "train", "path": "data/*.parquet"}],
        },
        {"config_name": "removed", "data_files": [{"split": "train", "path": "removed/*.parquet"}]},
    ]
    assert front["language"] == ["en"] and front["size_categories"] == ["n<1K"]
    removed = load_offline(root / "documents", tmp_path / "hf", "removed")["train"]
    assert removed.num_rows == manifest["totals"]["removed"] == 5


def test_finish_leaves_no_scratch_folder(built):
    root, _ = built
    assert not (root / "documents.tmp").exists()
    assert not [p for p in (root / "documents").rglob("*") if ".tmp-" in p.name]


def test_size_category_follows_the_hub_buckets():
    assert dataset.size_category(0) == "n<1K"
    assert dataset.size_category(1000) == "1K<n<10K"
    assert dataset.size_category(8_000_000) == "1M<n<10M"
    assert dataset.size_category(10**9) == "n>1B"


def test_rerun_writes_byte_identical_shards(built, tmp_path):
    _, manifest = built
    again = _build(tmp_path, _config())
    assert [s["sha256"] for s in again["shards"]["documents"]] == [
        s["sha256"] for s in manifest["shards"]["documents"]
    ]


def test_manifest_holds_config_versions_inputs_funnel_and_checksums(built):
    root, manifest = built
    on_disk = json.loads((root / "documents" / "manifest.json").read_text())
    assert on_disk["shards"] == manifest["shards"]
    assert manifest["config"]["dedup"]["num_perm"] == 128
    assert manifest["versions"]["pyarrow"] and manifest["versions"]["python"]
    assert manifest["inputs"]["links"]["present"] and not manifest["inputs"]["fetch"]["present"]
    assert manifest["funnel"][:2] == [["submissions", 100], ["links", 60]]
    assert manifest["funnel"][-1] == ["documents written", 40]
    assert ["dedup: near duplicates removed", 5] in manifest["funnel"]
    entries = manifest["shards"]["removed"]
    assert [e["path"] for e in entries] == [
        f"removed/removed-{i:05d}-of-00003.parquet" for i in range(3)
    ]
    assert all(len(e["sha256"]) == 64 for e in entries)
    assert sum(e["rows"] for e in entries) == 5


def test_removed_copies_name_their_kept_document(built):
    root, _ = built
    removed = pq.read_table(root / "documents" / "removed").to_pylist()
    assert len(removed) == 5
    for row in removed:
        assert row["stage"] == "dedup" and row["reason"] == "near_duplicate"
        assert row["cluster_id"] == row["kept_doc_id"] == row["doc_id"].removesuffix("-r")
        assert row["detail"] == "cluster of 2 documents" and row["text"]


def test_dataset_card_has_funnel_domains_and_plots(built):
    root, _ = built
    card = (root / "documents" / "README.md").read_text()
    assert "## Funnel" in card and "| dedup: near duplicates removed | 5 |" in card
    assert "| example.com | 14 |" in card
    for plot in ("plots/length.png", "plots/language.png"):
        assert f"]({plot})" in card
        assert (root / "documents" / plot).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_validate_passes_on_a_fresh_dataset(built):
    root, _ = built
    assert dataset.validate(str(root / "documents")) == []


def test_validate_detects_corruption_missing_and_extra_shards(tmp_path):
    _build(tmp_path, _config(partitions=2))
    docs = tmp_path / "documents"
    shard = docs / "data" / "documents-00000-of-00002.parquet"
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0xFF
    shard.write_bytes(bytes(data))
    (docs / "data" / "documents-00001-of-00002.parquet").unlink()
    (docs / "data" / "documents-00009-of-00010.parquet").write_bytes(b"stray")
    problems = dataset.validate(str(docs))
    assert any("data/documents-00000-of-00002.parquet: checksum" in p for p in problems)
    assert "data/documents-00001-of-00002.parquet: missing" in problems
    assert "data/documents-00009-of-00010.parquet: shard not in the manifest" in problems


def test_validate_detects_row_count_and_schema_mismatch(tmp_path):
    _build(tmp_path, _config(partitions=1))
    docs = tmp_path / "documents"
    manifest = json.loads((docs / "manifest.json").read_text())
    manifest["shards"]["documents"][0]["rows"] += 1
    (docs / "manifest.json").write_text(json.dumps(manifest))
    table = pq.read_table(docs / "removed" / "removed-00000-of-00001.parquet").drop_columns(
        ["text"]
    )
    pq.write_table(table, docs / "removed" / "removed-00000-of-00001.parquet")
    problems = dataset.validate(str(docs))
    assert any("rows, the manifest says 41" in p for p in problems)
    assert "removed/removed-00000-of-00001.parquet: missing column 'text'" in problems


def test_validate_without_manifest_says_so(tmp_path):
    assert dataset.validate(str(tmp_path))[0].startswith("no manifest.json")


def test_validate_of_the_old_docs_folder_says_it_was_renamed(tmp_path):
    old = write_old_build_output(tmp_path)
    with pytest.raises(dataroot.StageError, match=r"docs is the old name .* now .*documents"):
        dataset.validate(str(old))


def test_removed_text_is_dropped_unless_write_rejected(tmp_path):
    _build(tmp_path, _config(partitions=1, write_rejected=False))
    table = pq.read_table(tmp_path / "documents" / "removed" / "removed-00000-of-00001.parquet")
    assert table.column("text").null_count == table.num_rows == 5
