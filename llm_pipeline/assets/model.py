"""`trained_model`: a GPT (default) or GRU language model trained on the token shards."""

import json
import tempfile
from pathlib import Path

from dagster import (
    AssetExecutionContext,
    Config,
    Failure,
    MaterializeResult,
    MetadataValue,
    asset,
)
from pydantic import Field

from llm_pipeline.assets._common import GPU_POOL, GROUP_MODEL, training_op_tags
from llm_pipeline.assets.tokens import TOKENIZER_FILE, token_shards, tokenizer
from llm_pipeline.automation.trainer_process import (
    TrainerPipesClient,
    available_devices,
    trainer_command,
)
from llm_pipeline.lm.checkpoint import read_config
from llm_pipeline.lm.model import ModelConfig
from llm_pipeline.lm.presets import apply_preset
from llm_pipeline.lm.registry import LATEST, run_dir, training_state_root, write_pointer
from llm_pipeline.lm.train import TrainConfig
from llm_pipeline.partitions import corpus_key, corpus_partitions
from llm_pipeline.resources import StorageResource
from llm_pipeline.tokens.bpe import file_sha256
from llm_pipeline.tokens.shards import read_meta


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
    mlp: str = Field(
        default=ModelConfig.mlp,
        description="gpt feed-forward block: gelu, or swiglu (Llama's; what export needs).",
    )
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
    nproc_per_node: int = Field(
        default=1,
        description="Trainer processes: 1, or N data-parallel ranks under torchrun (DDP; one "
        "per GPU, or CPU processes with gloo). batch_size is the global batch, split over them.",
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


@asset(
    partitions_def=corpus_partitions,
    deps=[token_shards, tokenizer],
    group_name=GROUP_MODEL,
    kinds={"pytorch"},
    op_tags=training_op_tags(),
    pool=GPU_POOL,
    code_version="1",
)
def trained_model(
    context: AssetExecutionContext, config: TrainedModelConfig, storage: StorageResource
) -> MaterializeResult:
    """A language model trained on `train.bin`, checkpointed in `models/<corpus>/<run_id>/`.

    The trainer runs as its own process (`python -m llm_pipeline.lm.train`, or torchrun with
    `nproc_per_node` > 1) through Dagster Pipes: its progress lines (step, losses, learning rate,
    tokens/s, percent done, ETA) stream into the run log and its figures become this
    materialization's metadata. Stops at `max_steps`, `max_tokens` or `max_seconds`, whichever
    comes first. This step only checks the inputs, writes the job file and launches.
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

    nproc = config.nproc_per_node
    available, kind = available_devices(train_config.device)
    if nproc < 1 or nproc > available:
        raise Failure(
            description=f"trained_model config: nproc_per_node {nproc} must be between 1 and "
            f"the {available} {kind} available"
        )
    if train_config.batch_size % nproc:
        raise Failure(
            description=f"trained_model config: batch_size {train_config.batch_size} must "
            f"divide evenly over nproc_per_node {nproc} processes"
        )

    manifest = storage.documents(corpus) / "manifest.json"
    raw_fingerprint = (
        json.loads(manifest.read_text())["fingerprint"] if manifest.is_file() else None
    )
    out = run_dir(corpus, context.run_id, storage.models_root())
    job = {
        "model": model_config.to_dict(),
        "training": train_config.to_dict(),
        "shards": str(shards),
        "state_root": str(training_state_root(corpus, storage.models_root())),
        "out_dir": str(out),
        "tokenizer_path": str(tokenizer_path),
        "max_eval_tokens": config.max_eval_tokens,
        "run_id": context.run_id,
        "corpus": corpus,
        "checkpoint": {
            "tokenizer": {
                "sha256": tokenizer_sha,
                "eot_id": meta["eot_id"],
                "file": TOKENIZER_FILE,
            },
            "data": {
                "corpus": corpus,
                "raw_fingerprint": raw_fingerprint,
                "shards": {k: meta[k] for k in ("dtype", "vocab_size", "splits")},
            },
        },
    }
    with tempfile.TemporaryDirectory(prefix=f"trainer-{corpus}-") as tmp:
        job_file = Path(tmp) / "job.json"
        job_file.write_text(json.dumps(job, indent=2))
        invocation = TrainerPipesClient().run(
            context=context, command=trainer_command(str(job_file), nproc)
        )
    reported = invocation.get_materialize_result()
    # The trainer wrote the checkpoint; point `latest` at it only once it is really there.
    read_config(out)
    write_pointer(corpus, LATEST, context.run_id, storage.models_root())
    return MaterializeResult(
        metadata={
            **reported.metadata,
            "run_id": context.run_id,
            "path": MetadataValue.path(str(out)),
        }
    )
