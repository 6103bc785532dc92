"""`trained_model`: a GPT (default) or GRU language model trained on the token shards."""

import tempfile
from pathlib import Path

from dagster import AssetExecutionContext, MaterializeResult, MetadataValue, asset

from llm_pipeline.assets._common import check_run_config, clear_errors, training_op_tags
from llm_pipeline.assets._config import stage_config
from llm_pipeline.assets.tokens import token_shards, tokenizer
from llm_pipeline.automation.trainer_process import TrainerPipesClient, trainer_command
from llm_pipeline.lm.settings import TRAINED_MODEL
from llm_pipeline.lm.store.checkpoint import read_config
from llm_pipeline.lm.store.folders import LATEST, run_dir, training_state_root, write_pointer
from llm_pipeline.lm.tracking.records import end_unfinished_run
from llm_pipeline.lm.tracking.training_runs import job_tracking
from llm_pipeline.lm.train.job import trainer_job
from llm_pipeline.partitions import corpus_key, corpus_partitions
from llm_pipeline.resources import StorageResource
from llm_pipeline.tags import GPU_POOL, GROUP_MODEL
from llm_pipeline.text.funnel import read_cleaning
from llm_pipeline.text.read.manifest import read_raw_manifest


def cleaning_profile(cleaned: Path) -> str | None:
    """The cleaning profile the corpus's current cleaned data was made with, for tracking."""
    try:
        return (read_cleaning(cleaned) or {})["config"]["profile"]
    except (KeyError, TypeError):
        return None


# Model shape, optimisation and budget, derived from lm/settings.py (defaults and why there).
TrainedModelConfig = stage_config(TRAINED_MODEL)


@asset(
    partitions_def=corpus_partitions,
    deps=[token_shards, tokenizer],
    group_name=GROUP_MODEL,
    kinds={"pytorch"},
    op_tags=training_op_tags(),
    pool=GPU_POOL,
    code_version="1",
)
@clear_errors
def trained_model(
    context: AssetExecutionContext, config: TrainedModelConfig, storage: StorageResource
) -> MaterializeResult:
    """A language model trained on `train.bin`, checkpointed in `models/<corpus>/<run_id>/`.

    This step writes the job file (`lm/train/job.py`) and launches the trainer as its own
    process (`python -m llm_pipeline.lm.train.trainer_main`, or torchrun) through Dagster Pipes:
    its progress lines stream into the run log and its figures become this materialization's
    metadata."""
    check_run_config(context)
    corpus = corpus_key(context)
    manifest = read_raw_manifest(storage.documents(corpus))
    out = run_dir(corpus, context.run_id, storage.models_root())
    job = trainer_job(
        config.given(),
        corpus=corpus,
        run_id=context.run_id,
        shards=storage.tokens(corpus),
        out_dir=out,
        state_root=training_state_root(corpus, storage.models_root()),
        raw_fingerprint=manifest.fingerprint if manifest else None,
        tracking=job_tracking(cleaning_profile(storage.cleaned(corpus))),
    )
    with tempfile.TemporaryDirectory(prefix=f"trainer-{corpus}-") as tmp:
        job_file = Path(tmp) / "job.json"
        job.write(job_file)
        try:
            command = trainer_command(str(job_file), job.settings.nproc_per_node)
            invocation = TrainerPipesClient().run(context=context, command=command)
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
    metadata = {"run_id": context.run_id, "path": MetadataValue.path(str(out))}
    return MaterializeResult(metadata={**reported.metadata, **metadata})
