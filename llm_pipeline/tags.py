"""Names the asset modules and the automation both use: asset groups, the GPU pool and tag.

They live here, in a module that imports nothing, so `assets/` (which tags the training step)
and `automation/` (whose jobs select groups and whose executor limits GPU steps) both import
them without importing each other.
"""

GROUP_DATA = "corpus_data"
GROUP_MODEL = "language_model"
# The instance concurrency pool the training step is in; at most N such steps run at once.
GPU_POOL = "gpu"
# Tags that mark a step as accelerator work; the executor limits how many run at once.
GPU_TAGS = {"llm_pipeline/accelerator": "gpu"}
# An asset tag: the stage runs only when asked for (`corpus_export_job`), outside
# `corpus_pipeline_job`; the CLI's overview shows it once it exists.
ON_REQUEST_TAG = ("llm_pipeline/runs", "on_request")
