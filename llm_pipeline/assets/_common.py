"""Small helpers shared by the asset modules."""

from dagster import MetadataValue

GROUP_DATA = "corpus_data"
GROUP_MODEL = "language_model"
# Tags that mark a step as accelerator work; the executor limits how many run at once.
GPU_POOL = "gpu"
GPU_TAGS = {"llm_pipeline/accelerator": "gpu"}


def problems_markdown(problems: list[str], total: int) -> MetadataValue:
    """A Markdown list of skip reasons for the UI (first few verbatim, then how many more)."""
    if not problems:
        return MetadataValue.md("none")
    lines = [f"- `{p}`" for p in problems]
    if total > len(problems):
        lines.append(f"- … and {total - len(problems)} more")
    return MetadataValue.md("\n".join(lines))
