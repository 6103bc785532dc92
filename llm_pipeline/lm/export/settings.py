"""The `exported_model` settings, defined once (see llm_pipeline/settings_base.py).

The formats, their number formats and defaults come from the registry (`lm/export/formats.py`):
each format gets a `<name>_dtype` setting here with no edit of this file. Neither module imports
torch or gguf, so checking a run config stays cheap.
"""

from __future__ import annotations

import pydantic

from llm_pipeline.lm.export.formats import EXPORT_FORMATS as _REGISTRY
from llm_pipeline.settings_base import Settings, SettingsError, Stage, setting

EXPORT_FORMATS = tuple(_REGISTRY)
_FORMATS_HELP = " and/or ".join(EXPORT_FORMATS)


class _ExportChoices(Settings):
    """Which run, which formats, which number formats."""

    run: str = setting(
        "latest",
        "latest (the run trained_model wrote last), current (the promoted champion), or a run id.",
    )
    formats: list[str] = setting(list(EXPORT_FORMATS), f"{_FORMATS_HELP}.")

    def check_rules(self) -> None:
        unknown = sorted(set(self.formats) - set(EXPORT_FORMATS))
        if unknown or not self.formats:
            raise SettingsError("formats", f"formats must be {_FORMATS_HELP}, got {self.formats}")


# One `<format>_dtype` field per registered format.
ExportSettings = pydantic.create_model(
    "ExportSettings",
    __base__=_ExportChoices,
    __doc__=_ExportChoices.__doc__,
    __module__=__name__,
    **{
        f"{fmt.name}_dtype": (str, setting(fmt.default_dtype, fmt.dtype_help, choices=fmt.dtypes))
        for fmt in _REGISTRY.values()
    },
)

EXPORTED_MODEL = Stage("exported_model", ExportSettings, ExportSettings.__doc__ or "")
