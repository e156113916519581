"""The tokenize stage: a real DirectRunner run on a small document Parquet, read back."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.bpe import load_gpt2
from pipeline.config import Config, load
from pipeline.dataroot import StageError
from pipeline.tokenize import pieces, shards
from pipeline.tokenize import stage as tokenize
from schemas.tokens import EOT_TOKEN
from tests.conftest import write_old_build_output

TWO_PROCESSES = ["--direct_running_mode=multi_processing", "--direct_num_workers=2"]

WORDS = "the cat sat on a mat while rain fell over Paris and 42 naïve coders wrote 😀 tests".split()


def make_docs(n: int, seed: int = 7) -> dict[str, str]:
    rng = random.Random(seed)
    return {
        f"doc{i:04d}": " ".join(rng.choice(WORDS) for _ in range(rng.randint(5, 60)))
        + rng.choice(["", "\n\n", " <|endoftext|> literal"])
        for i in range(n)
    }


def write_docs(data_root: Path, docs: dict[str, str], files: int = 2) -> None:
    out = data_root / "documents" / "data"
    out.mkdir(parents=True)
    items = list(docs.items())
    random.Random(1).shuffle(items)  # the stage must not depend on input order
    for f in range(files):
        part = items[f::files]
        table = pa.table({"doc_id": [d for d, _ in part], "text": [t for _, t in part]})
        pq.write_table(table, out / f"documents-{f:05d}-of-{files:05d}.parquet", row_group_size=17)


def config_for(demo_config_path: Path, ranks_file: Path, **tok) -> Config:
    sets = [f'tokenizer.ranks_file="{ranks_file}"'] + [f"tokenize.{k}={v}" for k, v in tok.items()]
    return load(demo_config_path, sets)


def test_shards_hold_tiktoken_ids_in_doc_id_order(
    tmp_path: Path, demo_config_path: Path, ranks_file: Path
) -> None:
    docs = make_docs(120)
    write_docs(tmp_path, docs)
    config = config_for(demo_config_path, ranks_file, val_fraction=0.2, num_shards=3, batch_docs=16)

    summary = tokenize.run(config, str(tmp_path), [])

    enc = load_gpt2(config.tokenizer)
    seen = 0
    for key in shards.all_shard_keys(3):
        name = shards.shard_name(key[0], key[1], 3 if key[0] == "train" else 1)
        header, tokens = shards.read_shard(str(tmp_path / "tokens" / name))
        mine = sorted(d for d in docs if shards.shard_key(d, 0.2, 3) == key)
        expected = [t for d in mine for t in (*enc.encode_ordinary(docs[d]), EOT_TOKEN)]
        assert tokens.tolist() == expected
        assert header.document_count == len(mine)
        seen += len(mine)
    assert seen == len(docs)
    assert (
        summary["tokens_train"] + summary["tokens_val"]
        == summary["counters"]["tokens_train"] + (summary["counters"]["tokens_val"])
    )
    assert summary["counters"]["documents_read"] == 120


def test_rerun_writes_identical_bytes(
    tmp_path: Path, demo_config_path: Path, ranks_file: Path
) -> None:
    docs = make_docs(40, seed=3)
    config = config_for(demo_config_path, ranks_file, val_fraction=0.1, num_shards=2, batch_docs=7)
    roots = []
    for name, files in (("a", 1), ("b", 3)):
        write_docs(tmp_path / name, docs, files=files)
        tokenize.run(config, str(tmp_path / name), [])
        roots.append(tmp_path / name / "tokens")
    for shard in ("train-00000-of-00002.bin", "train-00001-of-00002.bin", "val-00000-of-00001.bin"):
        assert (roots[0] / shard).read_bytes() == (roots[1] / shard).read_bytes()
    assert not list(roots[0].glob("*.tmp-*"))


def test_empty_and_null_texts_go_to_dead_letter(
    tmp_path: Path, demo_config_path: Path, ranks_file: Path
) -> None:
    (tmp_path / "documents" / "data").mkdir(parents=True)
    table = pa.table({"doc_id": ["a", "b", "c"], "text": ["Hello world", "", None]})
    pq.write_table(table, tmp_path / "documents" / "data" / "documents-00000-of-00001.parquet")
    config = config_for(demo_config_path, ranks_file, val_fraction=0.0, num_shards=1)

    summary = tokenize.run(config, str(tmp_path), [])

    assert summary["counters"]["dead_empty_text"] == 1
    assert summary["counters"]["dead_missing_text"] == 1
    dead = pq.read_table(next((tmp_path / "tokens").glob("dead_letter*.parquet")))
    assert sorted(dead.column("reason").to_pylist()) == ["empty_text", "missing_text"]
    _, tokens = shards.read_shard(str(tmp_path / "tokens" / "train-00000-of-00001.bin"))
    assert tokens.tolist() == [15496, 995, EOT_TOKEN]


def test_split_is_stable_and_near_the_fraction() -> None:
    ids = [f"id-{i}" for i in range(20000)]
    val = sum(shards.split_of(d, 0.05) == "val" for d in ids)
    assert 850 < val < 1150
    assert shards.split_of("id-1", 0.05) == shards.split_of("id-1", 0.05)
    counts = np.bincount([shards.shard_key(d, 0.0, 4)[1] for d in ids], minlength=4)
    assert counts.min() > 4700


def test_the_old_docs_folder_is_named_in_a_one_line_error(
    tmp_path: Path, demo_config_path: Path
) -> None:
    old = write_old_build_output(tmp_path)
    with pytest.raises(StageError, match=rf"^{old} is the old name of the build output") as error:
        tokenize.run(load(demo_config_path), str(tmp_path), [])
    assert "\n" not in str(error.value) and "rerun `webtext build`" in str(error.value)


def test_missing_docs_is_a_one_line_error(tmp_path: Path, demo_config_path: Path) -> None:
    with pytest.raises(StageError, match="run `webtext build` first"):
        tokenize.run(load(demo_config_path), str(tmp_path), [])


def test_one_process_and_two_worker_processes_write_the_same_bytes(
    tmp_path: Path, demo_config_path: Path, ranks_file: Path
) -> None:
    docs = make_docs(600, seed=5)
    config = config_for(demo_config_path, ranks_file, val_fraction=0.1, num_shards=3, batch_docs=50)
    runs = {"one": ["--direct_num_workers=1"], "two": TWO_PROCESSES}
    for name, args in runs.items():
        write_docs(tmp_path / name, docs, files=6)
        tokenize.run(config, str(tmp_path / name), args)
    names = sorted(p.name for p in (tmp_path / "one" / "tokens").glob("*.bin"))
    assert len(names) == 4
    for name in names:
        assert (tmp_path / "one/tokens" / name).read_bytes() == (
            tmp_path / "two/tokens" / name
        ).read_bytes()
    assert not (tmp_path / "two/tokens" / pieces.PIECES_DIR).exists()


def test_a_shard_merged_from_many_pieces_is_the_sorted_concatenation(tmp_path: Path) -> None:
    rng = random.Random(4)
    docs = [
        (f"d{rng.randrange(300):03d}", [rng.randrange(50000) for _ in range(5)]) for _ in range(400)
    ]
    buffer = pieces.PieceBuffer(str(tmp_path), "documents-00000-of-00001.parquet", flush_tokens=97)
    refs = []
    for doc_id, tokens in docs:  # repeated doc_ids too: ordered by their tokens
        buffer.add(("train", 0), doc_id, tokens)
        if buffer.full:
            refs += [ref for _, ref in buffer.flush()]
    refs += [ref for _, ref in buffer.flush()]
    assert len(refs) > 10

    written = b"".join(pieces.shard_chunks(refs))

    expected, count = shards.concat_documents([shards.pack(*zip(*docs, strict=True))])
    header = shards.TokenShardHeader(token_count=len(expected), document_count=count)
    assert written == header.to_bytes() + expected.tobytes()
