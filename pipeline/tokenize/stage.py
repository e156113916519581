"""The tokenize stage: document shards -> GPT-2 token shards for the trainer.

    documents/data/documents-*.parquet  --SpreadFiles--> one document file per worker call
        --Encode-->    tiktoken's encode_ordinary_batch; each document goes to its split and
                       shard by a hash of its doc_id, into token pieces written under
                       tokens/_pieces/ (pipeline/tokenize/pieces.py); emits the pieces' paths
        --GroupByShard--> (shard, piece paths)  --WriteShards--> a k-way merge of the pieces
    tokens/train-SSSSS-of-NNNNN.bin, tokens/val-00000-of-00001.bin, tokens/_summary.json

The shard format, the split rule and the packing are pipeline/tokenize/shards.py. Split and
shard depend only on the doc_id, and order within a shard only on doc_ids, so a rerun on any
runner writes identical bytes. Tokens never cross the shuffle, and no worker holds more than
one flush of pieces, so memory does not grow with the corpus. Shards are written under a
temporary name and renamed, so a reader never sees a partial one.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator

import apache_beam as beam
import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems

from pipeline import beamio, dataroot
from pipeline.bpe import load_gpt2
from pipeline.config import Config, TokenizeConfig, TokenizerConfig
from pipeline.dataroot import DOCUMENT_SHARDS
from pipeline.tokenize.pieces import PIECES_DIR, PieceBuffer, PieceRef, shard_chunks
from pipeline.tokenize.shards import TRAIN, VAL, all_shard_keys, shard_key, shard_name
from schemas.records import DEAD_LETTER
from schemas.tokens import HEADER_BYTES, TokenShardHeader

STAGE = "tokenize"


def read_doc_batches(path: str, batch_docs: int) -> Iterator[tuple[str, list, list]]:
    """(path, doc_ids, texts) in batches of batch_docs rows, one row group at a time."""
    with FileSystems.open(path) as f:
        parquet = pq.ParquetFile(f)
        missing = {"doc_id", "text"} - set(parquet.schema_arrow.names)
        if missing:
            raise dataroot.StageError(
                f"{path}: no {' or '.join(sorted(missing))} column; is it a document shard "
                "written by `webtext build`?"
            )
        for batch in parquet.iter_batches(batch_size=batch_docs, columns=["doc_id", "text"]):
            yield path, batch.column(0).to_pylist(), batch.column(1).to_pylist()


def dead_reason(doc_id: str | None, text: str | None) -> str | None:
    if not doc_id:
        return "missing_doc_id"
    if text is None:
        return "missing_text"
    if not text:
        return "empty_text"
    return None


class EncodeFile(beam.DoFn):
    """Encode one document file into token pieces; emit (shard key, PieceRef), dead letters."""

    DEAD = "dead_letter"

    def __init__(self, tokenizer: TokenizerConfig, tok: TokenizeConfig, pieces_dir: str):
        self.tokenizer, self.tok, self.pieces_dir = tokenizer, tok, pieces_dir

    def setup(self) -> None:
        self.encoding = load_gpt2(self.tokenizer)
        self.documents = beamio.counter(STAGE, "documents_read")
        self.dead = beamio.counter(STAGE, "dead_letter")

    def process(self, path: str) -> Iterator:
        pieces = PieceBuffer(self.pieces_dir, path)
        for _, doc_ids, texts in read_doc_batches(path, self.tok.batch_docs):
            self.documents.inc(len(doc_ids))
            keep_ids, keep_texts = [], []
            for doc_id, text in zip(doc_ids, texts, strict=True):
                reason = dead_reason(doc_id, text)
                if reason:
                    self.dead.inc()
                    beamio.counter(STAGE, f"dead_{reason}").inc()
                    detail = f"doc_id={doc_id!r}"
                    yield beam.pvalue.TaggedOutput(
                        self.DEAD, beamio.dead_letter(path, None, reason, detail, text)
                    )
                    continue
                keep_ids.append(doc_id)
                keep_texts.append(text)
            # One thread: Beam runs one DoFn per core, so tiktoken's own pool would oversubscribe.
            encoded = self.encoding.encode_ordinary_batch(keep_texts, num_threads=1)
            for doc_id, tokens in zip(keep_ids, encoded, strict=True):
                key = shard_key(doc_id, self.tok.val_fraction, self.tok.num_shards)
                pieces.add(key, doc_id, tokens)
            if pieces.full:
                yield from pieces.flush()
        yield from pieces.flush()


class WriteShard(beam.DoFn):
    """Stream one shard out of its pieces, atomically, and count its tokens and documents."""

    def __init__(self, out_dir: str, num_shards: int):
        self.out_dir = out_dir
        self.num_shards = num_shards

    def process(self, keyed: tuple[tuple[str, int], Iterable]) -> Iterator[dict]:
        (split, index), refs = keyed
        pieces = [PieceRef(*r) for r in refs if r is not None]
        documents = sum(p.documents for p in pieces)
        tokens = sum(p.tokens for p in pieces) + documents
        count = self.num_shards if split == TRAIN else 1
        name = shard_name(split, index, count)
        dataroot.write_chunks_atomic(dataroot.join(self.out_dir, name), shard_chunks(pieces))
        beamio.counter(STAGE, f"documents_{split}").inc(documents)
        beamio.counter(STAGE, f"tokens_{split}").inc(tokens)
        yield {"shard": name, "tokens": tokens, "documents": documents}


class TokenizeDocuments(beam.PTransform):
    """Document shard paths -> written token shards (and a dead-letter PCollection)."""

    def __init__(self, config: Config, out_dir: str):
        super().__init__()
        self.config = config
        self.out_dir = out_dir

    def expand(self, paths: beam.PCollection) -> dict[str, beam.PCollection]:
        tok = self.config.tokenize
        pieces_dir = dataroot.join(self.out_dir, PIECES_DIR)
        encoded = (
            paths
            | "SpreadFiles" >> beam.Reshuffle()
            | "Encode"
            >> beam.ParDo(EncodeFile(self.config.tokenizer, tok, pieces_dir)).with_outputs(
                EncodeFile.DEAD, main="pieces"
            )
        )
        # Every shard is written, even one that no document hashed to.
        every_shard = paths.pipeline | "EveryShard" >> beam.Create(
            [(key, None) for key in all_shard_keys(tok.num_shards)]
        )
        shards = (
            (encoded.pieces, every_shard)
            | "WithEveryShard" >> beam.Flatten()
            | "GroupByShard" >> beam.GroupByKey()
            | "WriteShards" >> beam.ParDo(WriteShard(self.out_dir, tok.num_shards))
        )
        return {"shards": shards, "dead_letter": encoded[EncodeFile.DEAD]}


def run(config: Config, data_root: str, beam_args: list[str]) -> dict:
    dataroot.check_not_renamed(data_root, "build")
    dataroot.check_data_root(config, data_root, STAGE)
    if config.tokenize.num_shards < 1:
        raise dataroot.StageError("[tokenize] num_shards must be at least 1")
    if not 0.0 <= config.tokenize.val_fraction < 1.0:
        raise dataroot.StageError("[tokenize] val_fraction must be in [0, 1)")
    docs_dir = dataroot.stage_dir(data_root, "build")
    paths = dataroot.match(dataroot.join(docs_dir, DOCUMENT_SHARDS))
    if not paths:
        raise dataroot.StageError(
            f"no document shards ({DOCUMENT_SHARDS}) under {docs_dir}; run `webtext build` first"
        )
    load_gpt2(config.tokenizer)  # fail here, in one line, rather than inside a worker
    out_dir = dataroot.stage_dir(data_root, STAGE)
    pieces_dir = dataroot.join(out_dir, PIECES_DIR)
    dataroot.delete_folder(pieces_dir)

    def build(p: beam.Pipeline) -> None:
        outputs = (
            p | "DocShards" >> beam.Create(paths) | "Tokenize" >> TokenizeDocuments(config, out_dir)
        )
        outputs["dead_letter"] | "WriteDeadLetters" >> beamio.WriteParquet(
            dataroot.join(out_dir, "dead_letter"), DEAD_LETTER, num_shards=1
        )

    counters = beamio.run_pipeline(STAGE, build, beamio.with_local_workers(beam_args, len(paths)))
    dataroot.delete_folder(pieces_dir)
    shards = []
    for key in all_shard_keys(config.tokenize.num_shards):
        count = config.tokenize.num_shards if key[0] == TRAIN else 1
        name = shard_name(key[0], key[1], count)
        with FileSystems.open(dataroot.join(out_dir, name)) as f:
            header = TokenShardHeader.from_bytes(f.read(HEADER_BYTES), source=name)
        shards.append(
            {"shard": name, "tokens": header.token_count, "documents": header.document_count}
        )
    summary = {
        "counters": counters,
        "shards": shards,
        "tokens_train": sum(s["tokens"] for s in shards if s["shard"].startswith(TRAIN)),
        "tokens_val": sum(s["tokens"] for s in shards if s["shard"].startswith(VAL)),
        "funnel": [
            [
                "documents tokenized",
                counters.get("documents_train", 0) + counters.get("documents_val", 0),
            ],
            ["train tokens", counters.get("tokens_train", 0)],
            ["validation tokens", counters.get("tokens_val", 0)],
        ],
    }
    dataroot.write_summary(data_root, STAGE, summary)
    return summary


if __name__ == "__main__":
    from pipeline import cli

    sys.exit(cli.main([STAGE, *sys.argv[1:]]))
