"""The `trained_model` settings, defined once: model shape, optimisation, budgets and launch.

`ModelConfig` and `TrainConfig` are what the trainer gets in its job file and what the
checkpoint's `config.json` records; `TrainedModelOptions` are the stage's own keys (preset,
processes, evaluation size). The stage's keys are the union of the three, so a field added
here reaches the launchpad, the `--config` YAML, the job file and `config.json` with no other
edit. Defaults are tuned for `make run`'s 300 s on a 2-core CPU (benchmarks/tune.py): at that
budget the number of optimizer steps limits quality, so a shallow model on small batches
(2 layers, batch 8) beat the 4-layer, batch-16 shape by about 0.05 bits/byte.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from llm_pipeline.lm.presets import PRESETS, apply_preset
from llm_pipeline.settings import Settings, SettingsError, Stage, setting, specs

ARCHITECTURES = ("gpt", "gru")
POSITIONS = ("rope", "learned")
NORMS = ("rms", "layer")
MLPS = ("gelu", "swiglu")
# Keys a saved config may lack because it predates them, with the value such a model has.
LEGACY_DEFAULTS = {"mlp": "gelu"}
DTYPES = ("auto", "bf16", "fp32")


@dataclass
class ModelConfig(Settings):
    """Shape of a model. `n_layer` and `n_embd` apply to both families; `n_head` to GPT only.

    `position`, `norm` and `bias` choose the GPT's parts: ours (rotary positions, RMSNorm, no
    biases) or GPT-2/nanoGPT's (`learned`, `layer`, `bias=True`), kept as a baseline to beat.
    """

    architecture: str = setting(
        "gpt", "gpt (transformer) or gru (classic embedding → GRU → linear).", choices=ARCHITECTURES
    )
    vocab_size: int = setting(4096, "Token ids; taken from the corpus's tokenizer.", ge=1)
    block_size: int = setting(128, "Context length in tokens.", ge=1)
    n_layer: int = setting(2, "Transformer blocks / GRU layers.", ge=1)
    n_head: int = setting(4, "Attention heads (gpt); must divide n_embd.", ge=1)
    n_embd: int = setting(128, "Width of embeddings and hidden state.", ge=1)
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


@dataclass
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
    # 1 avoids OpenMP oversubscription on a machine shared with other busy processes (5-16x
    # faster steps measured while others kept ~1.5 of 2 cores busy: benchmarks/quality.py).
    num_threads: int = setting(
        0, "CPU threads (0: one per core); 1 helps on a busy shared machine.", ge=0
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


@dataclass
class TrainedModelOptions(Settings):
    """The stage's own keys: which preset fills the rest, how many processes, what to score."""

    preset: str = setting(
        "",
        "tiny, small or gpt2-124m (lm/presets.py): fills the settings not given here.",
        choices=("", *PRESETS),
    )
    nproc_per_node: int = setting(
        1,
        "Trainer processes: 1, or N data-parallel ranks under torchrun (DDP; one per GPU, or "
        "CPU processes with gloo). batch_size is the global batch, split over them.",
        ge=1,
    )
    max_eval_tokens: int = setting(2_000_000, "Validation tokens scored for bits per byte.", ge=1)


# vocab_size comes from the tokenizer stage, never from this stage's config.
TRAINED_MODEL_SPECS = (
    *specs(TrainedModelOptions),
    *specs(ModelConfig, exclude=("vocab_size",)),
    *specs(TrainConfig),
)
_STAGE_KEYS = frozenset(s.name for s in TRAINED_MODEL_SPECS)
ModelConfig.sibling_keys = _STAGE_KEYS
TrainConfig.sibling_keys = _STAGE_KEYS
TrainedModelOptions.sibling_keys = _STAGE_KEYS


def resolve_trained_model(given: dict) -> dict:
    """Every `trained_model` key: the defaults, the preset over them, the given values over it."""
    defaults = {s.name: s.default for s in TRAINED_MODEL_SPECS}
    return apply_preset(given.get("preset", ""), {**defaults, **given}, set(given))


def trained_model_configs(
    given: dict, vocab_size: int
) -> tuple[TrainedModelOptions, ModelConfig, TrainConfig]:
    """The stage's three settings objects from the keys a user gave (preset resolved)."""
    values = resolve_trained_model(given)
    return (
        TrainedModelOptions.from_dict(values),
        ModelConfig.from_dict({**values, "vocab_size": vocab_size}),
        TrainConfig.from_dict(values),
    )


def available_devices(device: str) -> tuple[int, str]:
    """How many trainer processes may start: CUDA devices, else CPU cores."""
    if device.startswith("cuda") or device == "auto":
        import torch

        if device != "auto" or torch.cuda.is_available():
            return torch.cuda.device_count(), "CUDA devices"
    return os.cpu_count() or 1, "CPU cores"


def check_processes(nproc: int, train: TrainConfig) -> None:
    """More ranks than devices (or cores) cannot start; the global batch must split evenly."""
    if nproc > 1:
        available, kind = available_devices(train.device)
        if nproc > available:
            raise SettingsError(
                "nproc_per_node",
                f"nproc_per_node {nproc} must be between 1 and the {available} {kind} available",
            )
    if train.batch_size % nproc:
        raise SettingsError(
            "batch_size", f"{train.batch_size} must divide evenly over nproc_per_node ({nproc})"
        )


def check_trained_model(given: dict) -> None:
    """Every rule of the stage on the values a user gave, before the data stages run."""
    options, model, train = trained_model_configs(given, vocab_size=4096)
    model.validate()
    train.validate()
    options.validate()
    check_processes(options.nproc_per_node, train)


TRAINED_MODEL = Stage(
    "trained_model",
    TRAINED_MODEL_SPECS,
    "Model shape, optimisation and budget. Budgets of 0 mean no limit.",
    check_trained_model,
)
