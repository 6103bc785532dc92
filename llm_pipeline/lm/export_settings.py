"""The `exported_model` settings, defined once (see llm_pipeline/settings.py).

Kept outside `lm/export/` so that checking a run config never imports torch or gguf; the
formats, their dtypes and defaults come from the registry (`lm/export/formats.py`), which
imports neither.
"""

from __future__ import annotations

from dataclasses import dataclass

from llm_pipeline.lm.export.formats import EXPORT_FORMATS as _REGISTRY
from llm_pipeline.settings import Settings, SettingsError, Stage, setting, specs

EXPORT_FORMATS = tuple(_REGISTRY)
_HF, _GGUF = _REGISTRY["hf"], _REGISTRY["gguf"]
HF_DTYPE_NAMES = _HF.dtypes
GGUF_DTYPES = _GGUF.dtypes
_FORMATS_HELP = " and/or ".join(EXPORT_FORMATS)


@dataclass
class ExportSettings(Settings):
    """Which run, which formats, which number formats."""

    run: str = setting(
        "latest",
        "latest (the run trained_model wrote last), current (the promoted champion), or a run id.",
    )
    formats: list[str] = setting(list(EXPORT_FORMATS), f"{_FORMATS_HELP}.")  # noqa: RUF009 (copied)
    hf_dtype: str = setting(_HF.default_dtype, _HF.dtype_help, choices=HF_DTYPE_NAMES)
    gguf_dtype: str = setting(_GGUF.default_dtype, _GGUF.dtype_help, choices=GGUF_DTYPES)

    def check_rules(self) -> None:
        unknown = sorted(set(self.formats) - set(EXPORT_FORMATS))
        if unknown or not self.formats:
            raise SettingsError("formats", f"formats must be {_FORMATS_HELP}, got {self.formats}")


EXPORTED_MODEL = Stage("exported_model", specs(ExportSettings), ExportSettings.__doc__ or "")
