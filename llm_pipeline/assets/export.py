"""`exported_model`: the trained run as a Hugging Face folder and a GGUF file, by its checkpoint.

Thin shell over `llm_pipeline.lm.export`: pick the run, call the core, report the paths. Not in
`corpus_pipeline_job` (see automation/jobs.py): only `mlp: swiglu` models map onto Llama, and
the GGUF writer is an optional dependency, so exporting is a step a user asks for
(`corpus_export_job`, or select the asset in the UI).
"""

from dagster import AssetExecutionContext, Failure, MaterializeResult, MetadataValue, asset

from llm_pipeline.assets._common import check_run_config, clear_errors
from llm_pipeline.assets._config import stage_config
from llm_pipeline.assets.model import trained_model
from llm_pipeline.lm.export.formats import EXPORT_FORMATS
from llm_pipeline.lm.export.settings import EXPORTED_MODEL
from llm_pipeline.lm.store.folders import CURRENT, LATEST, read_pointer, run_dir
from llm_pipeline.lm.tracking.records import record_export
from llm_pipeline.partitions import corpus_key, corpus_partitions
from llm_pipeline.resources import StorageResource
from llm_pipeline.safe_open import refuse_links_below
from llm_pipeline.tags import GROUP_MODEL, ON_REQUEST_TAG

EXPORT_DIR = "export"  # models/<corpus>/<run_id>/export/{hf/, gguf/<corpus>.gguf}


ExportedModelConfig = stage_config(EXPORTED_MODEL)


@asset(
    partitions_def=corpus_partitions,
    deps=[trained_model],
    group_name=GROUP_MODEL,
    kinds={"pytorch"},
    tags=dict([ON_REQUEST_TAG]),
    code_version="1",
)
@clear_errors
def exported_model(
    context: AssetExecutionContext, config: ExportedModelConfig, storage: StorageResource
) -> MaterializeResult:
    """The run as `export/hf/` (transformers, vLLM, lm-eval) and `export/gguf/<corpus>.gguf`
    (llama.cpp, Ollama) inside its checkpoint folder; each replaced whole on re-export."""
    check_run_config(context)
    corpus = corpus_key(context)
    models_root = storage.models_root()
    run_id = config.run
    if run_id in (LATEST, CURRENT):
        run_id = read_pointer(corpus, config.run, models_root)
        if run_id is None:
            raise Failure(
                description=f"corpus {corpus!r}: no {config.run} run; materialize trained_model"
            )
    source = run_dir(corpus, run_id, models_root)
    out = source / EXPORT_DIR
    metadata: dict = {"run_id": run_id}
    for fmt in EXPORT_FORMATS.values():  # registry order: hf, then gguf
        if fmt.name not in config.formats:
            continue
        dtype = getattr(config, f"{fmt.name}_dtype")
        # `export/` and `export/<fmt>/` are names anyone who writes into models/ can plant as
        # links to a folder elsewhere, which the writer would then replace: refused.
        refuse_links_below(out / fmt.name, models_root)
        written = fmt.write(
            source, out / fmt.name, dtype=dtype, force=True, data_root=storage.data_root()
        )
        metadata[f"{fmt.name}_path"] = MetadataValue.path(str(written))
        if written.is_file():
            metadata[f"{fmt.name}_bytes"] = written.stat().st_size
        if fmt.registers_model:
            champion = run_id == read_pointer(corpus, CURRENT, models_root)
            metadata.update(record_export(corpus, run_id, source, champion))  # MLflow, when on
        context.log.info(f"{fmt.title}: {written}")
    return MaterializeResult(metadata=metadata)
