"""`trained_model`: a GPT (default) or GRU language model trained on the token shards."""

import json
import math
import time

from dagster import (
    AssetExecutionContext,
    Config,
    Failure,
    MaterializeResult,
    MetadataValue,
    asset,
)
from pydantic import Field

from llm_pipeline.assets._common import GPU_POOL, GPU_TAGS, GROUP_MODEL
from llm_pipeline.assets.tokens import TOKENIZER_FILE, token_shards, tokenizer
from llm_pipeline.lm.checkpoint import CheckpointError, save_checkpoint
from llm_pipeline.lm.evaluate import bits_per_byte, sum_nats, unigram_bits_per_byte
from llm_pipeline.lm.model import ModelConfig, count_parameters
from llm_pipeline.lm.presets import apply_preset
from llm_pipeline.lm.registry import LATEST, run_dir, training_state_root, write_pointer
from llm_pipeline.lm.resume import clear_training_state
from llm_pipeline.lm.train import TrainConfig, train
from llm_pipeline.partitions import corpus_key, corpus_partitions
from llm_pipeline.resources import StorageResource
from llm_pipeline.tokens.bpe import file_sha256
from llm_pipeline.tokens.shards import open_split, read_meta


class TrainedModelConfig(Config):
    """Model shape, optimisation and budget. Budgets of 0 mean "no limit".

    Defaults are tuned for `make run`'s 300 s on a 2-core CPU (benchmarks/tune.py): at that
    budget the number of optimizer steps limits quality, so a shallow model on small batches
    (2 layers, batch 8) beat the 4-layer, batch-16 shape by about 0.05 bits/byte.
    """

    preset: str = Field(
        default="",
        description="tiny, small or gpt2-124m (lm/presets.py): fills the settings not given here.",
    )
    architecture: str = Field(default="gpt", description="gpt (transformer) or gru (classic).")
    n_layer: int = Field(default=2, description="Transformer blocks / GRU layers.")
    n_head: int = Field(default=4, description="Attention heads (gpt).")
    n_embd: int = Field(default=128, description="Width of embeddings and hidden state.")
    block_size: int = Field(default=128, description="Context length in tokens.")
    dropout: float = Field(default=0.0)
    batch_size: int = Field(default=8, description="Sequences per micro-batch.")
    grad_accum_steps: int = Field(default=1, description="Micro-batches per optimizer step.")
    learning_rate: float = Field(default=2e-3, description="Peak learning rate.")
    min_lr_ratio: float = Field(default=0.1, description="Cosine floor as a fraction of peak.")
    warmup_steps: int = Field(default=30)
    weight_decay: float = Field(default=0.1, description="AdamW decay on matrices only.")
    grad_clip: float = Field(default=1.0, description="Max gradient norm; 0 turns it off.")
    max_steps: int = Field(default=0, description="Stop after this many steps.")
    max_tokens: int = Field(default=0, description="Stop after this many training tokens.")
    max_seconds: float = Field(default=300.0, description="Stop after this many seconds.")
    eval_interval: int = Field(default=100, description="Steps between validation losses.")
    eval_batches: int = Field(default=32, description="Fixed validation batches per eval.")
    log_interval: int = Field(default=20, description="Steps between progress lines.")
    seed: int = Field(default=1337)
    device: str = Field(default="auto", description="auto (CUDA, MPS, CPU), cpu, cuda, mps.")
    dtype: str = Field(default="auto", description="auto (bf16 where native), bf16 or fp32.")
    compile: bool = Field(default=False, description="torch.compile the model.")
    num_threads: int = Field(
        default=0, description="CPU threads (0: one per core); 1 helps on a busy shared machine."
    )
    checkpoint_interval_steps: int = Field(
        default=0, description="Save a resumable training state every N steps (0: off)."
    )
    checkpoint_interval_minutes: float = Field(
        default=1.0, description="Save a resumable training state every M minutes (0: off)."
    )
    resume: bool = Field(
        default=True,
        description="Continue an interrupted run of this config and shards; False: start fresh.",
    )
    max_eval_tokens: int = Field(
        default=2_000_000, description="Validation tokens scored for bits per byte."
    )

    def resolved(self) -> dict:
        """The settings with the preset applied to every field not set explicitly."""
        return apply_preset(self.preset, self.model_dump(), self.model_fields_set)

    def to_model_config(self, vocab_size: int) -> ModelConfig:
        return ModelConfig.from_dict({**self.resolved(), "vocab_size": vocab_size})

    def to_train_config(self) -> TrainConfig:
        return TrainConfig.from_dict({**self.resolved(), "measure_mfu": True})


def _format_eta(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    return time.strftime("%M:%S", time.gmtime(seconds)) if seconds < 3600 else f"{seconds:.0f}s"


@asset(
    partitions_def=corpus_partitions,
    deps=[token_shards, tokenizer],
    group_name=GROUP_MODEL,
    kinds={"pytorch"},
    op_tags=GPU_TAGS,
    pool=GPU_POOL,
    code_version="1",
)
def trained_model(
    context: AssetExecutionContext, config: TrainedModelConfig, storage: StorageResource
) -> MaterializeResult:
    """A language model trained on `train.bin`, checkpointed in `models/<corpus>/<run_id>/`.

    Stops at `max_steps`, `max_tokens` or `max_seconds`, whichever comes first; logs step, losses,
    learning rate, tokens/s, percent done and ETA to the run log.
    """
    corpus = corpus_key(context)
    shards = storage.tokens(corpus)
    tokenizer_path = shards / TOKENIZER_FILE
    try:
        meta = read_meta(shards)
    except FileNotFoundError:
        raise Failure(description=f"corpus {corpus!r}: no token shards in {shards}") from None
    tokenizer_sha = file_sha256(tokenizer_path) if tokenizer_path.is_file() else None
    if tokenizer_sha != meta.get("tokenizer_sha256"):
        raise Failure(
            description=f"corpus {corpus!r}: {tokenizer_path} does not match the tokenizer the "
            "shards were encoded with; re-materialize token_shards"
        )
    try:
        model_config = config.to_model_config(meta["vocab_size"])
        train_config = config.to_train_config()
        model_config.validate()
        train_config.validate()
    except ValueError as exc:
        raise Failure(description=f"trained_model config: {exc}") from None

    def progress(row: dict) -> None:
        val = f" val {row['val_loss']:.4f}" if row["val_loss"] is not None else ""
        train_loss = row["train_loss"]
        context.log.info(
            f"step {row['step']}: train {train_loss if train_loss is None else f'{train_loss:.4f}'}"
            f"{val} lr {row['lr']:.2e} {row['tokens_per_s']:,.0f} tok/s "
            f"{row['percent']:.0f}% ETA {_format_eta(row['eta_s'])}"
        )

    try:
        result = train(
            model_config,
            train_config,
            shards,
            progress=progress,
            state_root=training_state_root(corpus, storage.models_root()),
        )
    except (ValueError, CheckpointError) as exc:
        raise Failure(description=f"corpus {corpus!r}: {exc}") from None
    if result.resumed_from_step:
        context.log.info(f"resumed from the training state at step {result.resumed_from_step}")
    if result.stop_reason == "diverged":
        raise Failure(description=f"corpus {corpus!r}: training diverged (loss is not finite)")

    val = open_split(shards, "val")
    scored = min(len(val), config.max_eval_tokens)
    val_bytes = meta["splits"]["val"]["bytes"] * scored / max(len(val), 1)
    device = next(result.model.parameters()).device
    nats, predicted = sum_nats(result.model, val[:scored], model_config.block_size, device=device)
    val_bpb = bits_per_byte(nats, int(val_bytes))
    unigram_bpb = unigram_bits_per_byte(
        open_split(shards, "train"), val[:scored], meta["vocab_size"], int(val_bytes)
    )
    val_loss = nats / max(predicted, 1)

    manifest = storage.documents(corpus) / "manifest.json"
    raw_fingerprint = (
        json.loads(manifest.read_text())["fingerprint"] if manifest.is_file() else None
    )
    summary = {
        "run_id": context.run_id,
        "corpus": corpus,
        "steps": result.steps,
        "tokens_seen": result.tokens_seen,
        "training_seconds": round(result.seconds, 3),
        "tokens_per_s": result.tokens_seen / max(result.seconds, 1e-9),
        "stop_reason": result.stop_reason,
        "parameters": count_parameters(result.model),
        "val_loss": val_loss,
        "val_bits_per_byte": val_bpb,
        "unigram_bits_per_byte": unigram_bpb,
        "final_train_loss": next(
            (r["train_loss"] for r in reversed(result.history) if r["train_loss"] is not None),
            None,
        ),
        "device": result.device,
        "dtype": result.dtype,
        "resumed_from_step": result.resumed_from_step,
        "flops_per_token": result.flops_per_token,
        "peak_flops": result.peak_flops,
        "mfu": result.mfu,
    }
    checkpoint_config = {
        "model": model_config.to_dict(),
        "training": train_config.to_dict(),
        "tokenizer": {"sha256": tokenizer_sha, "eot_id": meta["eot_id"], "file": TOKENIZER_FILE},
        "data": {
            "corpus": corpus,
            "raw_fingerprint": raw_fingerprint,
            "shards": {k: meta[k] for k in ("dtype", "vocab_size", "splits")},
        },
        "summary": summary,
    }
    out = run_dir(corpus, context.run_id, storage.models_root())
    save_checkpoint(
        out, result.model, result.optimizer, checkpoint_config, result.history, tokenizer_path
    )
    write_pointer(corpus, LATEST, context.run_id, storage.models_root())
    if result.state_path:  # the finished checkpoint supersedes the resumable state
        clear_training_state(result.state_path)
    context.log.info(
        f"trained {summary['parameters']:,} parameters for {result.steps} steps "
        f"({result.stop_reason}); val {val_bpb:.4f} bits/byte vs unigram {unigram_bpb:.4f}"
    )
    return MaterializeResult(
        metadata={
            "architecture": model_config.architecture,
            "parameters": summary["parameters"],
            "steps": result.steps,
            "tokens_seen": result.tokens_seen,
            "training_seconds": round(result.seconds, 1),
            "tokens_per_s": round(summary["tokens_per_s"], 1),
            "stop_reason": result.stop_reason,
            "val_loss": round(val_loss, 4),
            "val_bits_per_byte": round(val_bpb, 4),
            "unigram_bits_per_byte": round(unigram_bpb, 4),
            "losses_finite": all(
                math.isfinite(v)
                for r in result.history
                for v in (r["train_loss"], r["val_loss"])
                if v is not None
            ),
            "device": result.device,
            "dtype": result.dtype,
            "resumed_from_step": result.resumed_from_step,
            **(
                {"mfu": round(result.mfu, 4), "measured_peak_gflops": result.peak_flops / 1e9}
                if result.mfu is not None and result.peak_flops
                else {}
            ),
            "run_id": context.run_id,
            "path": MetadataValue.path(str(out)),
        }
    )
