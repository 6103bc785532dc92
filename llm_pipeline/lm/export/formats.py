"""The export formats: one registry, from which the settings, the CLI and the asset derive.

Each format is one `ExportFormat` line below: its name (the `--format` value and the entry in
`exported_model`'s `formats`), its number formats with their default, what its output path
names, and its writer, named as `"module:function"` and imported only when something is
exported. That last point is why the declarations live here and not in the writer modules:
`hf.py` and `gguf.py` import torch (and gguf), and checking a run config or building the CLI's
`--help` must not.

Adding a format: write its module beside `hf.py` with a writer of the shape
`write(run_dir, out, *, dtype, force, data_root) -> Path` (raise `ExportError` on what it
cannot export), and add one line to `EXPORT_FORMATS`. `exported_model` writes it under
`export/<name>/` and reports its path as `<name>_path`; `llm-pipeline export --format <name>`
writes it at `--out`; `exported_model`'s `<name>_dtype` setting picks its number format.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ExportFormat:
    """One export format: what users choose, and the function that writes it."""

    name: str
    title: str  # what one export is, for logs and help: "Hugging Face folder"
    dtypes: tuple[str, ...]  # the number formats it writes, as users spell them
    default_dtype: str
    dtype_of: str  # what the dtype applies to, for help: "weights", "matrices"
    out_help: str  # what the output path names (a folder to fill, a folder to write into)
    writer: str  # "module:function"; imported on first use (torch, gguf)
    # Registered as a model version in MLflow when tracking is on (transformers/vLLM load it).
    registers_model: bool = False

    def __post_init__(self) -> None:
        if self.default_dtype not in self.dtypes:
            raise ValueError(f"{self.name}: default dtype {self.default_dtype!r} not in dtypes")

    @property
    def dtype_help(self) -> str:
        """`hf weights: f32, f16 or bf16.`: the `<name>_dtype` setting's description."""
        return f"{self.name} {self.dtype_of}: {or_list(self.dtypes)}."

    def write(
        self,
        run_dir: Path,
        out: Path,
        *,
        dtype: str | None = None,
        force: bool = False,
        data_root: Path | None = None,
    ) -> Path:
        """Export `run_dir` to `out` with `dtype` (default: the format's); return the path
        written (a folder or a file)."""
        module, function = self.writer.split(":")
        write: Callable[..., Path] = getattr(importlib.import_module(module), function)
        return write(
            run_dir, out, dtype=dtype or self.default_dtype, force=force, data_root=data_root
        )


def or_list(items: tuple[str, ...]) -> str:
    """`a, b or c`."""
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} or {items[-1]}"


# The registry, one entry per format, in the order exports run and help lists them.
EXPORT_FORMATS: dict[str, ExportFormat] = {
    fmt.name: fmt
    for fmt in (
        ExportFormat(
            name="hf",
            title="Hugging Face folder",
            dtypes=("f32", "f16", "bf16"),
            default_dtype="f32",  # logits equal ours
            dtype_of="weights",
            out_help="the model folder",
            writer="llm_pipeline.lm.export.hf:export_hf",
            registers_model=True,
        ),
        ExportFormat(
            name="gguf",
            title="GGUF file",
            dtypes=("f16", "bf16", "q8_0"),
            default_dtype="f16",
            dtype_of="matrices",
            out_help="the folder for <corpus>.gguf",
            writer="llm_pipeline.lm.export.gguf:export_gguf",
        ),
    )
}


def all_dtypes(formats: dict[str, ExportFormat] = EXPORT_FORMATS) -> tuple[str, ...]:
    """Every format's dtypes, each once, in registry order (the CLI's `--dtype` choices)."""
    return tuple(dict.fromkeys(d for fmt in formats.values() for d in fmt.dtypes))
