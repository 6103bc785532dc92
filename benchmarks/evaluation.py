#!/usr/bin/env python
"""Benchmark of evaluation's cost: evaluation seconds ÷ training seconds, and peak memory of
the data and evaluation path at 2× corpus size ÷ at 1×.

Each size runs in its own child process (so its peak RSS is its own) on a generated corpus
(`synthetic_corpus.py`): the cleaning stage (`text.stages.clean_corpus`: the split and the
leakage measure), the tokenizer on the train side, the shards, `--seconds` of training of the
`tiny`-sized default model, and the trainer's one validation score
(`trainer_main.score_validation`, sized to `EVAL_BUDGET_SHARE` of the training budget).
Printed as ratios measured side by side:

- eval ÷ train seconds: the goal is ≤ about 0.10 (`lm/scoring.py`);
- peak RSS at 2S ÷ at S: ≈ 1 means memory does not grow with the corpus.

    .venv/bin/python benchmarks/evaluation.py [--mb 20] [--seconds 30]
"""

from __future__ import annotations

import sys
from pathlib import Path

_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE] + [str(_HERE)]

import argparse  # noqa: E402
import json  # noqa: E402
import resource  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402

from synthetic_corpus import WORK_DIR, ensure_documents  # noqa: E402


def child(mb: float, seconds: float) -> None:
    """One size: the whole path, printing its figures as one JSON line."""
    from llm_pipeline.lm.settings import ModelConfig, TrainConfig
    from llm_pipeline.lm.train.loop import train
    from llm_pipeline.lm.train.trainer_main import score_validation
    from llm_pipeline.text.clean import CleaningConfig, iter_document_batches
    from llm_pipeline.text.read.chunks import split_long_text
    from llm_pipeline.text.stages import clean_corpus
    from llm_pipeline.text.store import parquet_parts
    from llm_pipeline.tokens.bpe import end_of_text_id, save_tokenizer, train_bpe
    from llm_pipeline.tokens.shards import iter_split_batches, write_shards

    docs, _ = ensure_documents(mb, 0, log=lambda line: None)
    work = WORK_DIR / f"evaluation-{mb:g}"
    shutil.rmtree(work, ignore_errors=True)
    cleaned, shards = work / "cleaned", work / "shards"
    cleaned.mkdir(parents=True)
    started = time.perf_counter()

    def sections():  # documents cut as raw_corpus cuts them (max_doc_chars 20,000)
        for texts, sources in iter_document_batches(parquet_parts(docs)):
            cut = [(c, s) for t, s in zip(texts, sources) for c in split_long_text(t, 20_000)]
            yield [c for c, _ in cut], [s for _, s in cut]

    # The cleaning stage as cleaned_corpus runs it: the split, its leakage, split.json.
    result = clean_corpus(sections(), cleaned, CleaningConfig.from_profile("web"), "synthetic")
    data_seconds = time.perf_counter() - started
    split, leakage = result.split, result.leakage
    parts = parquet_parts(cleaned)
    texts = (t for t, _, _ in iter_split_batches(parts, side="train"))
    bpe = train_bpe(texts, 4096)
    shards.mkdir()
    save_tokenizer(bpe, shards / "tokenizer.json")
    write_shards(bpe, iter_split_batches(parts), shards, end_of_text_id(bpe),
                 {"validation_set": split.identity()})  # fmt: skip
    model = ModelConfig(vocab_size=bpe.get_vocab_size(), block_size=128, n_layer=2, n_head=4,
                        n_embd=128)  # fmt: skip
    result = train(model, TrainConfig(max_seconds=seconds, measure_mfu=False), shards)
    scores = score_validation(result, shards, 2_000_000, model.block_size)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    print(json.dumps({
        "mb": mb, "val_share": split.val_share, "leaked_share": leakage.share,
        "data_seconds": data_seconds, "train_seconds": result.seconds,
        "eval_seconds": scores.seconds, "bpb": scores.val_bits_per_byte,
        "stderr": scores.stderr, "peak_rss_mb": usage.ru_maxrss / 1024,
    }))  # fmt: skip
    shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mb", type=float, default=20.0, help="corpus size S (also runs 2S)")
    parser.add_argument("--seconds", type=float, default=30.0, help="training budget")
    parser.add_argument("--child", type=float, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        child(args.child, args.seconds)
        return
    rows = []
    for mb in (args.mb, 2 * args.mb):
        out = subprocess.run(
            [sys.executable, __file__, "--child", str(mb), "--seconds", str(args.seconds)],
            check=True, capture_output=True, text=True,
        )  # fmt: skip
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    print(f"{'MB':>6}{'val %':>7}{'leak %':>8}{'train s':>9}{'eval s':>8}{'bpb':>8}{'±':>7}"
          f"{'RSS MB':>8}")  # fmt: skip
    for r in rows:
        print(f"{r['mb']:>6g}{100 * r['val_share']:>7.2f}{100 * r['leaked_share']:>8.2f}"
              f"{r['train_seconds']:>9.1f}{r['eval_seconds']:>8.2f}{r['bpb']:>8.3f}"
              f"{r['stderr']:>7.3f}{r['peak_rss_mb']:>8.0f}")  # fmt: skip
    for r in rows:
        print(f"{r['mb']:g} MB: evaluation seconds / training seconds = "
              f"{r['eval_seconds'] / r['train_seconds']:.3f}")  # fmt: skip
    print(f"peak RSS at 2S / at S = {rows[1]['peak_rss_mb'] / rows[0]['peak_rss_mb']:.2f}")


if __name__ == "__main__":
    main()
