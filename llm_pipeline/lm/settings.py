"""The `trained_model` settings, defined once: model shape, optimisation, budgets and launch.

`TrainedModelSettings` is the stage's one model: it *is* a `ModelConfig` (the shape, what the
checkpoint's `config.json` records as `model`) and a `TrainConfig` (optimisation and budgets,
recorded as `training`), plus the stage's own keys (preset, processes, evaluation size). The
launchpad's `Config` is derived from it, the trainer's job file is its JSON, and the trainer
reads that JSON back into it and hands it to the loop, so a field added here reaches the
launchpad, the `--config` YAML, the job file, the loop, `config.json`, MLflow, the resume key,
the schedule's comparison and the docs with no other edit.

Presets (`PRESETS`) are partial instances of the same model: the fields a preset sets are its
`model_fields_set`, and `TrainedModelSettings.resolve` puts them under the keys a user gave.

- `tiny`: the defaults, tuned for `make run`'s 300 s on a 2-core CPU.
- `small`: nanoGPT's Shakespeare-char shape (6 × 384, block 256), for a strong CPU or a small GPU.
- `gpt2-124m`: GPT-2 small (12 layers, 12 heads, 768 wide, block 1024; 124M parameters with
  GPT-2's 50257-token vocabulary), with nanoGPT's GPT-2 recipe (peak 6e-4, β2 0.95, decay 0.1)
  and about 131k tokens per optimizer step (16 × 1024 × 8 accumulation steps). Sized for a
  real GPU: bf16 autocast is chosen automatically there; set `compile` for more speed.

Defaults are tuned for `make run`'s 300 s on a 2-core CPU (benchmarks/tune.py): at that
budget the number of optimizer steps limits quality, so a shallow model on small batches
(2 layers, batch 8) beat the 4-layer, batch-16 shape by about 0.05 bits/byte.
"""

from __future__ import annotations

import os
from typing import Self

from llm_pipeline.settings_base import Settings, SettingsError, Stage, setting

ARCHITECTURES = ("gpt", "gru")
POSITIONS = ("rope", "learned")
NORMS = ("rms", "layer")
MLPS = ("gelu", "swiglu")
# Keys a saved config may lack because it predates them, with the value such a model has.
LEGACY_DEFAULTS = {"mlp": "gelu"}
DTYPES = ("auto", "bf16", "fp32")
# Settings that say how and where a run goes, not what model it trains: the schedule does not
# retrain for them, a report comparing two models does not name them, and `run` does not call a
# trained model stale for them. `compile` and `measure_mfu` change speed and what is measured;
# `dtype` stays compared (bf16 and fp32 train different numbers).
MACHINE_SETTINGS = frozenset({"num_threads", "device", "compile", "measure_mfu", "nproc_per_node"})
# How often a run logs and saves its resumable state, and whether it resumes: bookkeeping too.
BOOKKEEPING_SETTINGS = frozenset(
    {"checkpoint_interval_steps", "checkpoint_interval_minutes", "resume", "log_interval"}
)
NOT_COMPARED = MACHINE_SETTINGS | BOOKKEEPING_SETTINGS


class ModelConfig(Settings):
    """Shape of a model. `n_layer` and `n_embd` apply to both families; `n_head` to GPT only.

    `position`, `norm` and `bias` choose the GPT's parts: ours (rotary positions, RMSNorm, no
    biases) or GPT-2/nanoGPT's (`learned`, `layer`, `bias=True`), kept as a baseline to beat.
    """

    architecture: str = setting(
        "gpt", "gpt (transformer) or gru (classic embedding → GRU → linear).", choices=ARCHITECTURES
    )
    # Upper bounds keep a planted checkpoint config from describing an absurd model (the loader
    # also checks every size against the weights file: lm/store/weights_header.py).
    vocab_size: int = setting(
        4096, "Token ids; taken from the corpus's tokenizer.", ge=1, le=1 << 24
    )
    block_size: int = setting(128, "Context length in tokens.", ge=1, le=1 << 20)
    n_layer: int = setting(2, "Transformer blocks / GRU layers.", ge=1, le=1024)
    n_head: int = setting(4, "Attention heads (gpt); must divide n_embd.", ge=1, le=1024)
    n_embd: int = setting(128, "Width of embeddings and hidden state.", ge=1, le=1 << 16)
    dropout: float = setting(0.0, "Dropout probability in training.", ge=0.0, lt=1.0)
    rope_base: float = setting(10_000.0, "Rotary embedding base (position: rope).", gt=0.0)
    position: str = setting(
        "rope", "rope (rotary) or learned (GPT-2's position table).", choices=POSITIONS
    )
    norm: str = setting("rms", "rms (RMSNorm) or layer (LayerNorm, GPT-2's).", choices=NORMS)
    bias: bool = setting(False, "Biases in linear layers and norms (GPT-2: true).")
    # "gelu": GPT-2's 4x up, GELU, down. "swiglu": Llama's silu(gate(x)) * up(x), then down, no
    # biases, hidden size `swiglu_hidden_size(n_embd)`; with rope + rms + no bias the model is
    # exactly a LlamaForCausalLM, which is what export needs. A config without the key is gelu.
    mlp: str = setting(
        "gelu",
        "gpt feed-forward block: gelu, or swiglu (Llama's; what export needs).",
        choices=MLPS,
    )

    def check_rules(self) -> None:
        if self.architecture == "gpt":
            if self.n_embd % self.n_head:
                raise SettingsError(
                    "n_embd",
                    f"n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head})",
                )
            if self.position == "rope" and (self.n_embd // self.n_head) % 2:
                raise SettingsError(
                    "n_embd",
                    f"head size n_embd/n_head = {self.n_embd // self.n_head} must be even "
                    "(rotary embeddings rotate pairs of dimensions)",
                )


class TrainConfig(Settings):
    """Optimisation and budget settings. A budget of 0 means "no limit"; at least one is set."""

    batch_size: int = setting(8, "Sequences per micro-batch (global over DDP ranks).", ge=1)
    grad_accum_steps: int = setting(1, "Micro-batches per optimizer step.", ge=1)
    learning_rate: float = setting(2e-3, "Peak learning rate.", gt=0.0)
    min_lr_ratio: float = setting(0.1, "Cosine floor as a fraction of peak.", ge=0.0, le=1.0)
    warmup_steps: int = setting(30, "Linear warm-up steps.", ge=0)
    weight_decay: float = setting(0.1, "AdamW decay on matrices only.", ge=0.0)
    beta1: float = setting(0.9, "AdamW β1.", ge=0.0, lt=1.0)
    beta2: float = setting(0.99, "AdamW β2.", ge=0.0, lt=1.0)
    grad_clip: float = setting(1.0, "Max gradient norm; 0 turns it off.", ge=0.0)
    max_steps: int = setting(0, "Stop after this many steps (0: no limit).", ge=0)
    max_tokens: int = setting(0, "Stop after this many training tokens (0: no limit).", ge=0)
    max_seconds: float = setting(300.0, "Stop after this many seconds (0: no limit).", ge=0.0)
    eval_interval: int = setting(100, "Steps between validation losses.", ge=1)
    eval_batches: int = setting(32, "Fixed validation batches per eval.", ge=1)
    log_interval: int = setting(20, "Steps between progress lines.", ge=1)
    seed: int = setting(1337, "Seed of weights and batches.")
    device: str = setting("auto", "auto (CUDA, MPS, CPU), cpu, cuda, cuda:N or mps.")
    dtype: str = setting("auto", "auto (bf16 where native), bf16 or fp32.", choices=DTYPES)
    compile: bool = setting(False, "torch.compile the model.")
    # 0 picks the CPUs free when training starts (lm/train/threads.py): one thread per core on a
    # busy shared machine oversubscribes it (5-16x slower steps measured while others kept ~1.5 of 2
    # cores busy: benchmarks/quality.py, benchmarks/threads.py).
    num_threads: int = setting(
        0, "CPU threads (0: the CPUs free when training starts); a number here wins.", ge=0
    )
    checkpoint_interval_steps: int = setting(
        0, "Save a resumable training state every N steps (0: off).", ge=0
    )
    checkpoint_interval_minutes: float = setting(
        1.0, "Save a resumable training state every M minutes (0: off).", ge=0.0
    )
    resume: bool = setting(
        True, "Continue an interrupted run of this config and shards; false: start fresh."
    )
    measure_mfu: bool = setting(
        True, "Time the device's matmul peak after training and report model FLOPs utilisation."
    )

    def check_rules(self) -> None:
        if self.max_steps <= 0 and self.max_tokens <= 0 and self.max_seconds <= 0:
            raise SettingsError(
                "max_steps", "all budgets are 0: set max_steps, max_tokens or max_seconds"
            )


class TrainedModelSettings(TrainConfig, ModelConfig):
    """The `trained_model` stage: model shape, optimisation, budgets, and how to launch."""

    preset: str = setting(
        "", "A named preset (tiny, small, gpt2-124m: PRESETS) fills the settings not given here."
    )
    nproc_per_node: int = setting(
        1,
        "Trainer processes: 1, or N data-parallel ranks under torchrun (DDP; one per GPU, or "
        "CPU processes with gloo). batch_size is the global batch, split over them.",
        ge=1,
    )
    max_eval_tokens: int = setting(2_000_000, "Validation tokens scored for bits per byte.", ge=1)

    def check_rules(self) -> None:
        if self.preset and self.preset not in PRESETS:
            known = ", ".join(PRESETS)
            raise SettingsError(
                "preset", f"preset must be one of {known} or empty, not {self.preset!r}"
            )
        ModelConfig.check_rules(self)
        TrainConfig.check_rules(self)

    @classmethod
    def resolve(cls, given: dict) -> Self:
        """The settings a run uses: the defaults, the preset's fields over them, `given` over
        those. A SettingsError names a bad key or value."""
        name = given.get("preset") or ""
        preset = PRESETS.get(name) if isinstance(name, str) else None
        base = preset.model_dump(include=preset.model_fields_set) if preset is not None else {}
        return cls.from_dict({**base, **given})


def preset(**values: object) -> TrainedModelSettings:
    """A partial instance: the fields given are the preset's (`model_fields_set`)."""
    return TrainedModelSettings.from_dict(values)


# The registry of presets: a new one is one entry here.
PRESETS: dict[str, TrainedModelSettings] = {}
PRESETS["tiny"] = preset(
    n_layer=2,
    n_head=4,
    n_embd=128,
    block_size=128,
    batch_size=8,
    grad_accum_steps=1,
    learning_rate=2e-3,
    warmup_steps=30,
)
PRESETS["small"] = preset(
    n_layer=6,
    n_head=6,
    n_embd=384,
    block_size=256,
    batch_size=32,
    grad_accum_steps=1,
    learning_rate=1e-3,
    warmup_steps=100,
    beta2=0.99,
)
PRESETS["gpt2-124m"] = preset(
    n_layer=12,
    n_head=12,
    n_embd=768,
    block_size=1024,
    batch_size=16,
    grad_accum_steps=8,
    learning_rate=6e-4,
    min_lr_ratio=0.1,
    warmup_steps=200,
    weight_decay=0.1,
    beta2=0.95,
    grad_clip=1.0,
)


def available_devices(device: str) -> tuple[int, str]:
    """How many trainer processes may start: CUDA devices, else CPU cores."""
    if device.startswith("cuda") or device == "auto":
        import torch

        if device != "auto" or torch.cuda.is_available():
            return torch.cuda.device_count(), "CUDA devices"
    return os.cpu_count() or 1, "CPU cores"


def check_processes(settings: TrainedModelSettings) -> None:
    """More ranks than devices (or cores) cannot start; the global batch must split evenly."""
    nproc = settings.nproc_per_node
    if nproc > 1:
        available, kind = available_devices(settings.device)
        if nproc > available:
            raise SettingsError(
                "nproc_per_node",
                f"nproc_per_node {nproc} must be between 1 and the {available} {kind} available",
            )
    if settings.batch_size % nproc:
        raise SettingsError(
            "batch_size",
            f"{settings.batch_size} must divide evenly over nproc_per_node ({nproc})",
        )


# vocab_size comes from the tokenizer stage, never from this stage's config.
TRAINED_MODEL = Stage(
    "trained_model",
    TrainedModelSettings,
    "Model shape, optimisation and budget. Budgets of 0 mean no limit.",
    exclude=("vocab_size",),
    rules=check_processes,
)
