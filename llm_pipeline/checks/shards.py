"""Checks on `token_shards` (blocking): the ids a trainer will read are valid and described.

These are tensor checks, not table checks, so they run on the memmapped arrays directly in
bounded chunks rather than through great-expectations.
"""

import random

import numpy as np
import pyarrow.parquet as pq
from dagster import AssetCheckExecutionContext, AssetCheckResult, asset_check

from llm_pipeline.assets.tokens import token_shards
from llm_pipeline.partitions import corpus_key
from llm_pipeline.resources import StorageResource
from llm_pipeline.text.store import parquet_parts
from llm_pipeline.tokens.bpe import TOKENIZER_FILE, file_sha256, load_tokenizer
from llm_pipeline.tokens.shards import SPLITS, open_split, read_meta

CHUNK = 1 << 24
ROUND_TRIP_SAMPLE = 200


def max_token_id(ids: np.ndarray) -> int:
    """Largest id in a (memmapped) array, read in chunks so memory stays bounded."""
    return max((int(chunk.max()) for chunk in _chunks(ids)), default=-1)


def _chunks(ids: np.ndarray):
    """Consecutive slices of a memmapped split: the scans below never load a whole split."""
    for start in range(0, len(ids), CHUNK):
        yield ids[start : start + CHUNK]


@asset_check(asset=token_shards, blocking=True)
def token_ids_in_vocab(
    context: AssetCheckExecutionContext, storage: StorageResource
) -> AssetCheckResult:
    """Every id in both splits is below the vocabulary size."""
    folder = storage.tokens(corpus_key(context.op_execution_context))
    meta = read_meta(folder)
    largest = {split: max_token_id(open_split(folder, split)) for split in SPLITS}
    return AssetCheckResult(
        passed=all(v < meta["vocab_size"] for v in largest.values()),
        metadata={
            "vocab_size": meta["vocab_size"],
            **{f"max_id_{k}": v for k, v in largest.items()},
        },
    )


@asset_check(asset=token_shards, blocking=True)
def validation_split_not_empty(
    context: AssetCheckExecutionContext, storage: StorageResource
) -> AssetCheckResult:
    """The validation split has documents and tokens (evaluation needs them)."""
    meta = read_meta(storage.tokens(corpus_key(context.op_execution_context)))
    val = meta["splits"]["val"]
    return AssetCheckResult(
        passed=val["documents"] > 0 and val["tokens"] > 0,
        metadata={"val_documents": val["documents"], "val_tokens": val["tokens"]},
    )


@asset_check(asset=token_shards, blocking=True)
def token_counts_match_files(
    context: AssetCheckExecutionContext, storage: StorageResource
) -> AssetCheckResult:
    """`meta.json` token counts equal the `.bin` file sizes divided by the dtype width."""
    folder = storage.tokens(corpus_key(context.op_execution_context))
    meta = read_meta(folder)
    width = np.dtype(meta["dtype"]).itemsize
    observed = {split: (folder / f"{split}.bin").stat().st_size / width for split in SPLITS}
    expected = {split: meta["splits"][split]["tokens"] for split in SPLITS}
    return AssetCheckResult(
        passed=observed == expected,
        metadata={
            **{f"{s}_tokens_meta": expected[s] for s in SPLITS},
            **{f"{s}_tokens_file": observed[s] for s in SPLITS},
        },
    )


@asset_check(asset=token_shards, blocking=True)
def documents_match_end_of_text(
    context: AssetCheckExecutionContext, storage: StorageResource
) -> AssetCheckResult:
    """Each split holds exactly one end-of-text per document: no document lost its boundary and
    none forged an extra one."""
    folder = storage.tokens(corpus_key(context.op_execution_context))
    meta = read_meta(folder)
    eot = meta["eot_id"]
    found = {}
    for split in SPLITS:
        chunks = _chunks(open_split(folder, split))
        found[split] = sum(int(np.count_nonzero(chunk == eot)) for chunk in chunks)
    expected = {split: meta["splits"][split]["documents"] for split in SPLITS}
    return AssetCheckResult(
        passed=found == expected,
        metadata={
            **{f"{s}_documents": expected[s] for s in SPLITS},
            **{f"{s}_end_of_text": found[s] for s in SPLITS},
        },
    )


@asset_check(asset=token_shards, blocking=True)
def shards_match_tokenizer(
    context: AssetCheckExecutionContext, storage: StorageResource
) -> AssetCheckResult:
    """The shards were encoded with the `tokenizer.json` that is there now (a retrained tokenizer
    makes old shards meaningless)."""
    folder = storage.tokens(corpus_key(context.op_execution_context))
    recorded = read_meta(folder).get("tokenizer_sha256")
    path = folder / TOKENIZER_FILE
    current = file_sha256(path) if path.is_file() else None
    return AssetCheckResult(
        passed=recorded is not None and recorded == current,
        metadata={"shards_tokenizer": recorded or "", "current_tokenizer": current or "missing"},
    )


@asset_check(asset=token_shards, blocking=True)
def tokenizer_round_trips(
    context: AssetCheckExecutionContext, storage: StorageResource
) -> AssetCheckResult:
    """decode(encode(x)) == x on a seeded sample of cleaned documents (byte-level BPE is lossless,
    so any mismatch means a broken tokenizer or normalisation drift)."""
    corpus = corpus_key(context.op_execution_context)
    bpe = load_tokenizer(storage.tokens(corpus) / TOKENIZER_FILE)
    # Reservoir sample over the whole corpus (streamed), so every part has its chance.
    rng = random.Random(0)
    sample: list[str] = []
    seen = 0
    for part in parquet_parts(storage.cleaned(corpus)):
        parquet = pq.ParquetFile(part, pre_buffer=False)
        for batch in parquet.iter_batches(columns=["text"], batch_size=4096):
            for text in batch.column(0).to_pylist():
                seen += 1
                if len(sample) < ROUND_TRIP_SAMPLE:
                    sample.append(text)
                elif (slot := rng.randrange(seen)) < ROUND_TRIP_SAMPLE:
                    sample[slot] = text
    encodings = bpe.encode_batch(sample, add_special_tokens=False)
    decoded = bpe.decode_batch([e.ids for e in encodings], skip_special_tokens=False)
    failures = [t for t, d in zip(sample, decoded) if t != d]
    return AssetCheckResult(
        passed=bool(sample) and not failures,
        metadata={
            "sampled": len(sample),
            "mismatches": len(failures),
            "first_mismatch": failures[0][:200] if failures else "",
        },
    )
