"""Small helpers shared by the asset modules."""

import functools
import re

from dagster import Failure, MetadataValue

from llm_pipeline.automation.deployment import executor_kind, gpus_per_pod, k8s_gpu_tags
from llm_pipeline.errors import DiskFullError, OutputBusyError, PipelineInputError
from llm_pipeline.tags import GPU_TAGS


def training_op_tags() -> dict:
    """The training step's tags: GPU work, and on Kubernetes a pod that asks for GPUs."""
    tags: dict = dict(GPU_TAGS)
    if executor_kind() == "k8s":
        tags.update(k8s_gpu_tags(gpus_per_pod()))
    return tags


def code_span(text: str) -> str:
    """`text` as one inline code span that no character in it can end or break out of.

    File names are user-controlled: a backtick would close a plain `...` span and let the rest
    render as links or remote images in the UI. Per CommonMark the fence is one backtick longer
    than the longest run inside (padded with a space when the text starts or ends with one), and
    line breaks and other control characters are shown escaped, so no new block can start.
    """
    text = re.sub(r"[\x00-\x1f\x7f]", lambda m: f"\\x{ord(m.group()):02x}", text)
    fence = "`" * (max((len(run) for run in re.findall(r"`+", text)), default=0) + 1)
    pad = " " if text.startswith("`") or text.endswith("`") or not text.strip() else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def problems_markdown(problems: list[str], total: int) -> MetadataValue:
    """A Markdown list of skip reasons for the UI (first few verbatim, then how many more)."""
    if not problems:
        return MetadataValue.md("none")
    lines = [f"- {code_span(p)}" for p in problems]
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


def check_run_config(context) -> None:
    """First thing in every asset: check the whole run's config, every stage, with the core's
    rules and against this machine (`preflight`: eval files, devices, tracking server), so a
    bad value launched from the launchpad fails the run's first step with a readable message
    instead of after the data stages have rebuilt (or after training)."""
    from llm_pipeline.asset_graph import stage_settings
    from llm_pipeline.automation.dead_runs import tag_run_host
    from llm_pipeline.dagster_compat import run_assets
    from llm_pipeline.preflight import check_machine
    from llm_pipeline.run_config import check_stages, from_dagster

    tag_run_host(context.instance, context.run)  # so a dead run can be told (dead_runs.py)

    source = "launchpad run config"
    storage = getattr(context.resources, "storage", None)
    try:
        stages = stage_settings(run_assets(context))
        values = check_stages(from_dagster(context.run.run_config, stages), source, stages)
        check_machine(values, source, storage.data_root() if storage is not None else None)
    except PipelineInputError as exc:
        raise Failure(description=str(exc)) from None
