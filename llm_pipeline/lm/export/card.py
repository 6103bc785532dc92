"""The model card (`README.md`) of an export: where the data came from, how good, how trained.

Everything comes from the checkpoint's own `config.json` (model, training, data lineage,
summary) and, when the cleaned corpus is still there, its `cleaning.json` funnel; a missing
piece is said to be unknown rather than left out silently.

Every value quoted from those files (eval-file names, run ids, devices, fingerprints, funnel
step names) is escaped as the report escapes it (`markdown_escape.py`: escaped text, or a code
span it cannot close): the card is rendered as Markdown and HTML on a model hub, where a planted
name must stay text, never an image fetched from elsewhere, an `<img onerror>` or a heading.
"""

from __future__ import annotations

from pathlib import Path

from llm_pipeline.lm.export.llama import ExportSource
from llm_pipeline.lm.model.networks import swiglu_hidden_size
from llm_pipeline.markdown_escape import markdown_code, markdown_text
from llm_pipeline.paths import cleaned_dir
from llm_pipeline.text.funnel import read_cleaning


def cleaning_stats(corpus: str, data_root: Path | None) -> dict | None:
    """The cleaned corpus's funnel stats, or None when they cannot be read."""
    stats = (read_cleaning(cleaned_dir(corpus, data_root)) or {}).get("stats")
    return stats if isinstance(stats, dict) else None


def _fmt(value: object, digits: int = 4) -> str:
    """A quoted value as inline Markdown text: numbers formatted, anything else escaped."""
    if value is None:
        return "unknown"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return markdown_text(value)


def _cleaning_lines(stats: dict | None) -> list[str]:
    if not stats:
        return ["- Cleaning funnel: unknown (the cleaned corpus's `cleaning.json` was not found)."]
    lines = [
        f"- Cleaning: {_fmt(stats.get('docs_in'))} documents ({_fmt(stats.get('bytes_in'))} "
        f"bytes) in, {_fmt(stats.get('docs_out'))} documents ({_fmt(stats.get('bytes_out'))} "
        "bytes) kept."
    ]
    for step in stats.get("funnel") or []:
        lines.append(
            f"  - {_fmt(step.get('step'))}: removed {_fmt(step.get('docs_removed'))} documents, "
            f"{_fmt(step.get('bytes_removed'))} bytes; {_fmt(step.get('docs_left'))} left"
        )
    return lines


def model_card(
    source: ExportSource, formats: str, cleaning: dict | None, eval_files: dict | None = None
) -> str:
    """Markdown with a Hugging Face metadata header."""
    m, cfg = source.model_config, source.config
    summary, training = cfg.get("summary") or {}, cfg.get("training") or {}
    data, tokenizer = cfg.get("data") or {}, cfg.get("tokenizer") or {}
    splits = (data.get("shards") or {}).get("splits") or {}
    eval_files = eval_files or {}
    header = [
        "---",
        "library_name: transformers",
        "pipeline_tag: text-generation",
        "tags: [llama, llm-pipeline, from-scratch]",
        "---",
        "",
    ]
    body = [
        f"# {_fmt(source.corpus)} — run {_fmt(source.run_id)}",
        "",
        f"A small Llama-architecture language model trained from scratch by llm-pipeline on "
        f"the corpus {markdown_code(source.corpus)}. Exported as {_fmt(formats)}.",
        "",
        "## Data lineage",
        "",
        f"- Corpus: {markdown_code(source.corpus)}; raw fingerprint "
        f"{markdown_code(data.get('raw_fingerprint') or 'unknown')}.",
        *_cleaning_lines(cleaning),
        *(
            f"- {_fmt(name)} split: {_fmt(split.get('tokens'))} tokens, "
            f"{_fmt(split.get('bytes'))} bytes"
            for name, split in splits.items()
            if isinstance(split, dict)
        ),
        f"- Tokenizer: byte-level BPE trained on the train split, {m.vocab_size:,} tokens, "
        f"sha256 {markdown_code(tokenizer.get('sha256') or 'unknown')}; `<|endoftext|>` "
        f"(id {_fmt(source.eot_id)}) "
        "separates documents and is both BOS and EOS.",
        "",
        "## Metrics",
        "",
        "Bits per byte on the held-out validation split (lower is better; independent of the "
        "tokenizer):",
        "",
        f"- validation bits per byte: {_fmt(summary.get('val_bits_per_byte'))}",
        f"- unigram baseline bits per byte: {_fmt(summary.get('unigram_bits_per_byte'))}",
        f"- validation loss (nats/token): {_fmt(summary.get('val_loss'))}",
        *(
            f"- eval file {markdown_code(name)}: {_fmt(bpb)} bits per byte"
            for name, bpb in eval_files.items()
        ),
        "",
        "## Model and training",
        "",
        f"- Llama: {m.n_layer} layers, {m.n_head} heads, width {m.n_embd}, SwiGLU hidden "
        f"{swiglu_hidden_size(m.n_embd)}, context {m.block_size} tokens, RoPE base "
        f"{m.rope_base:g}, tied embeddings; {_fmt(summary.get('parameters'))} parameters.",
        f"- Trained {_fmt(summary.get('steps'))} steps on {_fmt(summary.get('tokens_seen'))} "
        f"tokens in {_fmt(summary.get('training_seconds'), 1)} s on "
        f"{_fmt(summary.get('device'))} ({_fmt(summary.get('dtype'))}); stopped by "
        f"{_fmt(summary.get('stop_reason'))}.",
        f"- Optimiser: AdamW, peak learning rate {_fmt(training.get('learning_rate'), 6)}, "
        f"batch {_fmt(training.get('batch_size'))} × {_fmt(training.get('grad_accum_steps'))} "
        f"accumulation, warm-up {_fmt(training.get('warmup_steps'))} steps, weight decay "
        f"{_fmt(training.get('weight_decay'), 3)}, seed {_fmt(training.get('seed'))}.",
        "",
        "## Intended use and limits",
        "",
        "- For experiments, teaching and as a baseline on the corpus it was trained on; it "
        "continues text in the style of that corpus.",
        f"- Small and trained briefly: it is not instruction-tuned, not aligned, knows only its "
        f"corpus, and its context is {m.block_size} tokens. Do not rely on what it writes.",
        "- It reproduces the biases and errors of its training text; check the data lineage "
        "above before any use beyond experiments.",
        "",
    ]
    return "\n".join(header + body)
