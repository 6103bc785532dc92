"""Exports of a trained run that other tools load: a Hugging Face folder and a GGUF file.

No Dagster here: `export_hf` and `export_gguf` take a checkpoint folder and an output path,
and refuse (ExportError) anything that is not exactly a Llama (see `llama.check_exportable`).
The formats and their dtypes are registered in `formats.py`. The writers import torch (and
gguf), so they are loaded on first access: importing `llm_pipeline.lm.export.formats` (a run
config's check, the CLI's help) stays cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "GGUF_DTYPES": "gguf",
    "export_gguf": "gguf",
    "HF_DTYPES": "hf",
    "HF_FILES": "hf",
    "export_hf": "hf",
    "ExportError": "llama",
    "check_exportable": "llama",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
