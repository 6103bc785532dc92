"""Named model + optimisation sizes (`tiny`, `small`, `gpt2-124m`); explicit settings win.

A preset fills only the settings a user did not give: `preset="gpt2-124m", n_layer=6` is GPT-2
small's shape with 6 blocks. The vocabulary always comes from the corpus's tokenizer.

- `tiny`: the `trained_model` defaults, tuned for `make run`'s 300 s on a 2-core CPU
  (benchmarks/tune.py): steps, not model capacity, limit quality there.
- `small`: nanoGPT's Shakespeare-char shape (6 × 384, block 256), for a strong CPU or a small GPU.
- `gpt2-124m`: GPT-2 small (12 layers, 12 heads, 768 wide, block 1024; 124M parameters with
  GPT-2's 50257-token vocabulary), with nanoGPT's GPT-2 recipe (peak 6e-4, β2 0.95, decay 0.1)
  and about 131k tokens per optimizer step (16 × 1024 × 8 accumulation steps). Sized for a
  real GPU: bf16 autocast is chosen automatically there; set `compile` for more speed.
"""

from __future__ import annotations

from llm_pipeline.settings import SettingsError

PRESETS: dict[str, dict] = {
    "tiny": {
        "n_layer": 2,
        "n_head": 4,
        "n_embd": 128,
        "block_size": 128,
        "batch_size": 8,
        "grad_accum_steps": 1,
        "learning_rate": 2e-3,
        "warmup_steps": 30,
    },
    "small": {
        "n_layer": 6,
        "n_head": 6,
        "n_embd": 384,
        "block_size": 256,
        "batch_size": 32,
        "grad_accum_steps": 1,
        "learning_rate": 1e-3,
        "warmup_steps": 100,
        "beta2": 0.99,
    },
    "gpt2-124m": {
        "n_layer": 12,
        "n_head": 12,
        "n_embd": 768,
        "block_size": 1024,
        "batch_size": 16,
        "grad_accum_steps": 8,
        "learning_rate": 6e-4,
        "min_lr_ratio": 0.1,
        "warmup_steps": 200,
        "weight_decay": 0.1,
        "beta2": 0.95,
        "grad_clip": 1.0,
    },
}


def apply_preset(
    name: str, values: dict, explicit: set[str] | frozenset[str] = frozenset()
) -> dict:
    """`values` with the preset's settings put in, except those named in `explicit`.

    An empty `name` means no preset. Unknown names raise a SettingsError (a ValueError) naming
    the known ones.
    """
    if not name:
        return dict(values)
    if name not in PRESETS:
        known = ", ".join(PRESETS)
        raise SettingsError("preset", f"preset must be one of {known} or empty, not {name!r}")
    return {**values, **{k: v for k, v in PRESETS[name].items() if k not in explicit}}
