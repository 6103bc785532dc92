"""Small helpers shared by the asset modules."""

import functools

from dagster import Failure, MetadataValue

from llm_pipeline.errors import DiskFullError, OutputBusyError, PipelineInputError

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


def clear_errors(compute):
    """Put under `@asset`: errors the user can act on — bad input, a full disk, an output busy
    in another run — fail the step with their own message (naming the file and the reason)
    instead of a wrapped library traceback."""

    @functools.wraps(compute)
    def wrapper(*args, **kwargs):
        try:
            return compute(*args, **kwargs)
        except (PipelineInputError, DiskFullError, OutputBusyError) as exc:
            raise Failure(description=str(exc)) from exc

    return wrapper
