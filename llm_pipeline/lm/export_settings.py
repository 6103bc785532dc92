"""The `exported_model` settings, defined once (see llm_pipeline/settings.py).

Kept outside `lm/export/` so that checking a run config never imports torch or gguf.
"""

from __future__ import annotations

from llm_pipeline.settings import Settings, SettingsError, Stage, setting

EXPORT_FORMATS = ("hf", "gguf")
HF_DTYPE_NAMES = ("f32", "f16", "bf16")
GGUF_DTYPES = ("f16", "bf16", "q8_0")


class ExportSettings(Settings):
    """Which run, which formats, which number formats."""

    run: str = setting(
        "latest",
        "latest (the run trained_model wrote last), current (the promoted champion), or a run id.",
    )
    formats: list[str] = setting(list(EXPORT_FORMATS), "hf and/or gguf.")
    hf_dtype: str = setting("f32", "hf weights: f32, f16 or bf16.", choices=HF_DTYPE_NAMES)
    gguf_dtype: str = setting("f16", "gguf matrices: f16, bf16 or q8_0.", choices=GGUF_DTYPES)

    def check_rules(self) -> None:
        unknown = sorted(set(self.formats) - set(EXPORT_FORMATS))
        if unknown or not self.formats:
            raise SettingsError("formats", f"formats must be hf and/or gguf, got {self.formats}")


EXPORTED_MODEL = Stage("exported_model", ExportSettings, ExportSettings.__doc__ or "")
