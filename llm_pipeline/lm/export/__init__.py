"""Exports of a trained run that other tools load: a Hugging Face folder and a GGUF file.

No Dagster here: `export_hf` and `export_gguf` take a checkpoint folder and an output path,
and refuse (ExportError) anything that is not exactly a Llama (see `llama.check_exportable`).
"""

from llm_pipeline.lm.export.gguf import GGUF_DTYPES, export_gguf
from llm_pipeline.lm.export.hf import HF_DTYPES, HF_FILES, export_hf
from llm_pipeline.lm.export.llama import ExportError, check_exportable

__all__ = [
    "GGUF_DTYPES",
    "HF_DTYPES",
    "HF_FILES",
    "ExportError",
    "check_exportable",
    "export_gguf",
    "export_hf",
]
