"""A stage run in its own process that stops in the middle of its write, to be SIGKILLed.

Used by `test_crashes.py`: `python -m llm_pipeline_tests.crash_child STAGE CORPUS` with
`LLM_PIPELINE_DATA_DIR` / `LLM_PIPELINE_MODELS_DIR` and `CRASH_READY_FILE` set. The stage runs
for real (the Dagster asset, or `save_checkpoint` for checkpoints); one writer call is wrapped so
that, after some bytes are on disk, it creates the ready file and sleeps until it is killed.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from llm_pipeline_tests.test_pipeline import FAST

READY: Path


def pause(note: str) -> None:
    """Tell the parent we are mid-write, then wait to be killed."""
    READY.write_text(f"{os.getpid()} {note}\n")
    while True:
        time.sleep(60)


def run_asset(asset_name: str, corpus: str, config: dict) -> None:
    from dagster import DagsterInstance, materialize

    from llm_pipeline.assets.cleaned import cleaned_corpus
    from llm_pipeline.assets.tokens import token_shards, tokenizer
    from llm_pipeline.partitions import CORPUS_PARTITIONS_NAME
    from llm_pipeline.resources import StorageResource

    assets = {
        "cleaned_corpus": cleaned_corpus,
        "tokenizer": tokenizer,
        "token_shards": token_shards,
    }
    instance = DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(CORPUS_PARTITIONS_NAME, [corpus])
    materialize(
        [assets[asset_name]],
        instance=instance,
        partition_key=corpus,
        resources={"storage": StorageResource()},
        run_config={"ops": {asset_name: {"config": config}}},
    )


def tiny_training_state(seed: int) -> tuple:
    """A tiny GPT after one optimizer step, its optimizer, and a checkpoint config."""
    import torch

    from llm_pipeline.lm.model.networks import build_model
    from llm_pipeline.lm.settings import ModelConfig

    torch.manual_seed(seed)
    config = ModelConfig(vocab_size=300, block_size=16, n_layer=1, n_head=2, n_embd=16)
    model = build_model(config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    ids = torch.randint(0, 300, (2, 16))
    logits = model(ids)
    logits = logits[0] if isinstance(logits, tuple) else logits
    logits.float().mean().backward()
    optimizer.step()
    return model, optimizer, {"model": config.to_dict(), "seed": seed}


def stage_cleaning(corpus: str) -> None:
    import pyarrow.parquet as pq

    real = pq.ParquetWriter.write_table

    def write_table(self, *args, **kwargs):
        real(self, *args, **kwargs)
        # Cleaning writes a staging copy first; pause in the output's own parts.
        if ".scratch" not in Path(str(self.where)).parts:
            pause("cleaning: a Parquet batch written")

    pq.ParquetWriter.write_table = write_table
    run_asset("cleaned_corpus", corpus, FAST["cleaned_corpus"]["config"])


def stage_tokenizing(corpus: str) -> None:
    real = Path.write_bytes

    def write_bytes(self: Path, data: bytes) -> int:
        if self.name.startswith(".tokenizer.json."):
            real(self, data[: len(data) // 2])
            pause("tokenizer: half of tokenizer.json written")
        return real(self, data)

    Path.write_bytes = write_bytes
    run_asset("tokenizer", corpus, {"vocab_size": 300})


def stage_shards(corpus: str) -> None:
    from llm_pipeline.tokens import shards

    real = shards.encode_ids
    calls = []

    def encode_ids(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:  # two batches of ids are in the temporary .bin files
            pause("token shards: two batches written")
        return real(*args, **kwargs)

    shards.encode_ids = encode_ids
    run_asset("token_shards", corpus, {"batch_size": 16})


def stage_checkpoint(corpus: str) -> None:

    from llm_pipeline.lm.store import checkpoint
    from llm_pipeline.lm.store.checkpoint import save_checkpoint
    from llm_pipeline.lm.store.folders import run_dir

    model, optimizer, config = tiny_training_state(seed=1)
    real = checkpoint.save_optimizer_state

    def save(state_dict, f):
        real(state_dict, f)
        with open(f, "r+b") as fh:  # leave a torn file, as a kill during the write would
            fh.truncate(os.path.getsize(f) // 2)
        pause("checkpoint: weights written, optimizer state half written")

    checkpoint.save_optimizer_state = save
    tokenizer = Path(os.environ["LLM_PIPELINE_DATA_DIR"]) / "tokens" / corpus / "tokenizer.json"
    save_checkpoint(run_dir(corpus, "run-1"), model, optimizer, config, [], tokenizer)


def stage_swap(corpus: str) -> None:
    """The two-rename folder swap (where renameat2 is unavailable), killed between renames."""
    from llm_pipeline import atomic

    atomic.USE_EXCHANGE = False
    real = os.replace

    def replace_first(src, dst, **fds):
        real(src, dst, **fds)
        into = os.readlink(f"/proc/self/fd/{fds['dst_dir_fd']}") if fds else str(Path(dst).parent)
        if into.endswith(".old"):
            pause("swap: old folder moved aside, new one not yet in place")

    atomic.os.replace = replace_first
    run_asset("cleaned_corpus", corpus, FAST["cleaned_corpus"]["config"])


def stage_shards_publish(corpus: str) -> None:
    """token_shards killed while renaming its finished files into place."""
    real = os.replace

    def replace(source, target, **fds):
        real(source, target, **fds)
        if Path(target).name == "train.bin":
            pause("token shards: train.bin renamed, val.bin and meta.json not yet")

    os.replace = replace
    run_asset("token_shards", corpus, {"batch_size": 20})


def stage_shards_whole(corpus: str) -> None:
    """token_shards without a pause (another run of the same stage and corpus)."""
    run_asset("token_shards", corpus, {"batch_size": 30})
    sys.exit(0)


def stage_corpus_data(corpus: str) -> None:
    """The four data stages for one corpus, in the instance of DAGSTER_HOME."""
    from dagster import DagsterInstance, materialize

    from llm_pipeline.assets.cleaned import cleaned_corpus
    from llm_pipeline.assets.raw import raw_corpus
    from llm_pipeline.assets.tokens import token_shards, tokenizer
    from llm_pipeline.resources import StorageResource

    with DagsterInstance.get() as instance:
        result = materialize(
            [raw_corpus, cleaned_corpus, tokenizer, token_shards],
            instance=instance,
            partition_key=corpus,
            resources={"storage": StorageResource()},
            run_config={"ops": FAST},
        )
    sys.exit(0 if result.success else 1)


STAGES = {
    "shards-publish": stage_shards_publish,
    "shards-whole": stage_shards_whole,
    "corpus-data": stage_corpus_data,
    "cleaning": stage_cleaning,
    "tokenizing": stage_tokenizing,
    "shards": stage_shards,
    "checkpoint": stage_checkpoint,
    "swap": stage_swap,
}

if __name__ == "__main__":
    stage, corpus = sys.argv[1], sys.argv[2]
    READY = Path(os.environ.get("CRASH_READY_FILE", "ready"))
    STAGES[stage](corpus)
    sys.exit(3)  # finished without reaching the write: the test reports it
