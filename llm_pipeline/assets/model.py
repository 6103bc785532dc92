"""`trained_model`: a GPT (default) or GRU language model trained on the token shards."""

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

from llm_pipeline.assets._common import GPU_POOL, GROUP_MODEL, check_run_config, training_op_tags
from llm_pipeline.assets._config import stage_config
from llm_pipeline.assets.tokens import TOKENIZER_FILE, token_shards, tokenizer
from llm_pipeline.automation.trainer_process import (
    TrainerPipesClient,
    trainer_command,
)
from llm_pipeline.lm.checkpoint import read_config
from llm_pipeline.lm.checkpoint_config import DataInfo, TokenizerInfo
from llm_pipeline.lm.job import TrainerJob
from llm_pipeline.lm.registry import LATEST, run_dir, training_state_root, write_pointer
from llm_pipeline.lm.settings import (
    TRAINED_MODEL,
    ModelConfig,
    TrainConfig,
    check_processes,
    resolve_trained_model,
)
from llm_pipeline.lm.tracking import job_tracking
from llm_pipeline.lm.tracking_promotion import end_unfinished_run
from llm_pipeline.partitions import corpus_key, corpus_partitions
from llm_pipeline.resources import StorageResource
from llm_pipeline.text.funnel import read_cleaning
from llm_pipeline.text.manifest import read_raw_manifest
from llm_pipeline.tokens.bpe import file_sha256
from llm_pipeline.tokens.shards import read_meta


class _TrainedModelMethods(Config):
    def resolved(self) -> dict:
        """The settings with the preset applied to every field not set explicitly."""
        given = {k: v for k, v in self.model_dump().items() if k in self.model_fields_set}
        return resolve_trained_model(given)

    def to_model_config(self, vocab_size: int) -> ModelConfig:
        return ModelConfig.from_dict({**self.resolved(), "vocab_size": vocab_size})

    def to_train_config(self) -> TrainConfig:
        return TrainConfig.from_dict(self.resolved())


def cleaning_profile(cleaned: Path) -> str | None:
    """The cleaning profile the corpus's current cleaned data was made with, for tracking."""
    try:
        return (read_cleaning(cleaned) or {})["config"]["profile"]
    except (KeyError, TypeError):
        return None


# Model shape, optimisation and budget, generated from lm/settings.py (defaults and why there).
TrainedModelConfig = stage_config(TRAINED_MODEL, base=_TrainedModelMethods)


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

    The trainer runs as its own process (`python -m llm_pipeline.lm.trainer_main`, or torchrun with
    `nproc_per_node` > 1) through Dagster Pipes: its progress lines (step, losses, learning rate,
    tokens/s, percent done, ETA) stream into the run log and its figures become this
    materialization's metadata. Stops at `max_steps`, `max_tokens` or `max_seconds`, whichever
    comes first. This step only checks the inputs, writes the job file and launches.
    """
    check_run_config(context)
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
    nproc = config.nproc_per_node
    try:
        model_config = config.to_model_config(meta["vocab_size"])
        train_config = config.to_train_config()
        model_config.validate()
        train_config.validate()
        check_processes(nproc, train_config)
    except ValueError as exc:
        raise Failure(description=f"trained_model config: {exc}") from None

    manifest = read_raw_manifest(storage.documents(corpus))
    out = run_dir(corpus, context.run_id, storage.models_root())
    job = TrainerJob(
        model=model_config.to_dict(),
        training=train_config.to_dict(),
        shards=str(shards),
        state_root=str(training_state_root(corpus, storage.models_root())),
        out_dir=str(out),
        tokenizer_path=str(tokenizer_path),
        max_eval_tokens=config.max_eval_tokens,
        run_id=context.run_id,
        corpus=corpus,
        tokenizer=TokenizerInfo(sha256=tokenizer_sha, eot_id=meta["eot_id"], file=TOKENIZER_FILE),
        data=DataInfo(
            corpus=corpus,
            raw_fingerprint=manifest.fingerprint if manifest else None,
            shards={k: meta[k] for k in ("dtype", "vocab_size", "splits")},
        ),
        tracking=job_tracking(cleaning_profile(storage.cleaned(corpus))),
    )
    with tempfile.TemporaryDirectory(prefix=f"trainer-{corpus}-") as tmp:
        job_file = Path(tmp) / "job.json"
        job.write(job_file)
        try:
            invocation = TrainerPipesClient().run(
                context=context, command=trainer_command(str(job_file), nproc)
            )
        except BaseException:
            # A trainer killed outright leaves its MLflow run RUNNING; end it (no-op when off).
            ended = end_unfinished_run(corpus, context.run_id, "the trainer exited unfinished")
            if ended:
                context.log.warning(ended)
            raise
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
