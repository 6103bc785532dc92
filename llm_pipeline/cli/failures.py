"""How the CLI tells a failed run: the root cause first, one line of advice, then what was
skipped because of it (one line, not Dagster's "Dependencies for step … failed" per step)."""

from __future__ import annotations

from typing import Any

from llm_pipeline.text.read.corpus_files import SUPPORTED_DESCRIPTION

# One line of advice per stage that failed; a check's own message already says what to try.
ADVICE = {
    "raw_corpus": "add readable files ({supported}) with `llm-pipeline corpus add {corpus} "
    "FILE...`, then run again",
    "cleaned_corpus": "the cleaning left too little or the split failed its checks: see the "
    "figures above; another cleaning profile or more text usually helps "
    "(docs/configuration.md), then run again",
    "trained_model": "see the trainer's last lines above; fix the setting it names in --config "
    "and run again (`--from trained_model` skips the data stages)",
}
GENERIC_ADVICE = (
    "fix the cause above and run again: `llm-pipeline run --corpus {corpus}` redoes only what "
    "failed or is stale"
)


def step_failure_message(event: Any) -> str:
    """The user-facing reason of a failed step: a Failure's description, else the error line."""
    data = event.event_specific_data
    failure = getattr(data, "user_failure_data", None)
    if failure is not None and failure.description:
        return failure.description
    error = data.error
    while error is not None and error.cause is not None and "Failure" not in error.cls_name:
        error = error.cause
    return error.message.strip() if error else "unknown error"


def failure_summary(steps: list[tuple[str, str]], checks: dict[str, str]) -> list[str]:
    """Which step failed and why, one line each, no traceback.

    A step stopped by a blocking check says so with the check's own message (its figures and
    what to try), not Dagster's "DagsterAssetCheckFailedError"."""
    lines = []
    for step, reason in steps:
        failed = [name for name in checks if name in reason]
        if failed or "AssetCheckFailed" in reason or "asset check" in reason.lower():
            for name in failed or list(checks):
                lines.append(f"FAILED {step}: check {name} failed: {checks[name]}")
            if failed or checks:
                continue
        first = reason.strip().splitlines()[0] if reason.strip() else "unknown error"
        lines.append(f"FAILED {step}: {first}")
    if not steps:
        lines += [f"FAILED check {name}: {text}" for name, text in checks.items()]
    return lines


def advice(step: str, corpus: str) -> str:
    """One line of what to try after `step` failed (a check step's stage counts as the stage)."""
    stage = next((name for name in ADVICE if step == name or step.startswith(name + "_")), None)
    text = ADVICE.get(stage, GENERIC_ADVICE) if stage else GENERIC_ADVICE
    return "try: " + text.format(corpus=corpus, supported=SUPPORTED_DESCRIPTION)


def failed_run_lines(
    steps: list[tuple[str, str]], checks: dict[str, str], skipped: list[str], corpus: str
) -> list[str]:
    """The end of a failed run: the root cause (the first failure) and the others, one line of
    advice, then the steps skipped because of them."""
    lines = failure_summary(steps, checks)
    first_step = steps[0][0] if steps else next(iter(checks), "")
    if lines:
        lines.append(advice(first_step, corpus))
    steps_left = sorted({step for step in skipped if step}, key=skipped.index)
    # A check's step is `<asset>_<check>`: the asset being skipped says it already.
    stages = [s for s in steps_left if not any(s.startswith(o + "_") for o in steps_left)]
    if stages:
        lines.append(f"skipped because of it: {', '.join(stages)}")
    return lines
