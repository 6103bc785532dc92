"""The two model families: a GPT decoder and the classic embedding → GRU → linear language model.

Flat and explicit in nanoGPT's manner: configuration is plain data, every module does one
visible thing, and nothing framework-like hides inside the model. Both models share one
interface, `forward(idx, targets) -> (logits, loss)`, so training, evaluation and sampling never
ask which one they hold.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from llm_pipeline.lm.settings import ModelConfig

# --------------------------------------------------------------------------- GPT


def rotary_tables(head_dim: int, length: int, base: float) -> tuple[torch.Tensor, torch.Tensor]:
    """cos/sin tables of rotary position embeddings, shape (length, head_dim // 2)."""
    inv_freq = 1.0 / (base ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))
    angles = torch.outer(torch.arange(length, dtype=torch.float32), inv_freq)
    return angles.cos(), angles.sin()


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate pairs (first half, second half) of each head's dimensions by position angles.

    This is the half-split convention of transformers' Llama (`rotate_half`), not the
    interleaved pairs of the original RoPE paper: exported q/k weights need no permutation for
    Hugging Face, and get llama.cpp's usual one for GGUF (lm/export/gguf.py).
    """
    half = x.shape[-1] // 2
    x1, x2 = x[..., :half], x[..., half:]
    cos, sin = cos.to(x.dtype), sin.to(x.dtype)
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)


class KVCache:
    """Keys and values of the tokens seen so far, one (k, v) pair per layer, for generation.

    With it, each new token costs one position's worth of compute instead of re-running the
    whole context. Rotary positions continue from `length`.
    """

    def __init__(self, n_layer: int) -> None:
        self.layers: list[tuple[torch.Tensor, torch.Tensor] | None] = [None] * n_layer
        self.length = 0

    def reset(self) -> None:
        self.layers = [None] * len(self.layers)
        self.length = 0

    def update(
        self, layer: int, k: torch.Tensor, v: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Append this step's (batch, heads, time, head_dim) keys/values; return all of them."""
        past = self.layers[layer]
        if past is not None:
            k, v = torch.cat([past[0], k], dim=2), torch.cat([past[1], v], dim=2)
        self.layers[layer] = (k, v)
        return k, v


class CausalSelfAttention(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.n_head = config.n_head
        self.qkv = nn.Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)
        self.proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.dropout = config.dropout

    def forward(
        self,
        x: torch.Tensor,
        cos: torch.Tensor | None,
        sin: torch.Tensor | None,
        cache: KVCache | None = None,
        layer: int = 0,
    ) -> torch.Tensor:
        batch, time, channels = x.shape
        q, k, v = self.qkv(x).split(channels, dim=2)
        shape = (batch, time, self.n_head, channels // self.n_head)
        q, k, v = (t.view(shape).transpose(1, 2) for t in (q, k, v))
        if cos is not None:
            q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
        past = 0 if cache is None else cache.length
        if cache is not None:
            k, v = cache.update(layer, k, v)
        mask = None
        if past and time > 1:  # new queries see all cached keys and the causal part of theirs
            mask = torch.ones(time, past + time, dtype=torch.bool, device=x.device).tril(past)
        y = F.scaled_dot_product_attention(
            q,
            k,
            v,
            attn_mask=mask,
            is_causal=past == 0,
            dropout_p=self.dropout if self.training else 0.0,
        )
        return self.proj(y.transpose(1, 2).contiguous().view(batch, time, channels))


class MLP(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.fc = nn.Linear(config.n_embd, 4 * config.n_embd, bias=config.bias)
        self.proj = nn.Linear(4 * config.n_embd, config.n_embd, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.proj(F.gelu(self.fc(x))))


def swiglu_hidden_size(n_embd: int) -> int:
    """Hidden width of the SwiGLU block: the multiple of 64 nearest to 8/3 · n_embd (at least 64).

    8/3 · n_embd keeps the gated block's three matrices at the parameter count of GELU's two
    4 · n_embd ones; a multiple of 64 keeps matrix shapes friendly to kernels and to GGUF's
    32-wide quantization blocks. (Llama rounds up instead; either way the result is written to
    the export as `intermediate_size`, so any width maps exactly.) 128 → 320, 768 → 2048.
    """
    return 64 * max(1, round(8 * n_embd / 3 / 64))


class SwiGLUMLP(nn.Module):
    """Llama's feed-forward block: down(silu(gate(x)) * up(x)), bias-free.

    The down projection is named `proj` like the GELU block's, so it gets the same scaled
    residual initialisation (see `GPT.__init__`).
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        hidden = swiglu_hidden_size(config.n_embd)
        self.gate = nn.Linear(config.n_embd, hidden, bias=False)
        self.up = nn.Linear(config.n_embd, hidden, bias=False)
        self.proj = nn.Linear(hidden, config.n_embd, bias=False)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.proj(F.silu(self.gate(x)) * self.up(x)))


def make_norm(config: ModelConfig) -> nn.Module:
    if config.norm == "layer":
        return nn.LayerNorm(config.n_embd, bias=config.bias)
    return nn.RMSNorm(config.n_embd)


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(norm(x)), then x + mlp(norm(x))."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.norm_attn = make_norm(config)
        self.attn = CausalSelfAttention(config)
        self.norm_mlp = make_norm(config)
        self.mlp = SwiGLUMLP(config) if config.mlp == "swiglu" else MLP(config)

    def forward(
        self,
        x: torch.Tensor,
        cos: torch.Tensor | None,
        sin: torch.Tensor | None,
        cache: KVCache | None = None,
        layer: int = 0,
    ) -> torch.Tensor:
        x = x + self.attn(self.norm_attn(x), cos, sin, cache, layer)
        return x + self.mlp(self.norm_mlp(x))


class GPT(nn.Module):
    """Decoder-only transformer: RMSNorm, rotary positions, SDPA attention, tied embeddings.

    (Or, with `position="learned"`, `norm="layer"`, `bias=True`, GPT-2's parts.)
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.wte = nn.Embedding(config.vocab_size, config.n_embd)
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_layer))
        self.norm_f = make_norm(config)
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self.lm_head.weight = self.wte.weight  # tied input/output embeddings
        self.wpe = None
        if config.position == "learned":
            self.wpe = nn.Embedding(config.block_size, config.n_embd)
        else:
            cos, sin = rotary_tables(
                config.n_embd // config.n_head, config.block_size, config.rope_base
            )
            self.register_buffer("rope_cos", cos, persistent=False)
            self.register_buffer("rope_sin", sin, persistent=False)
        self.apply(self._init_weights)
        # Residual projections scaled by 1/sqrt(2 * n_layer) (GPT-2): the residual stream's
        # variance then stays constant with depth instead of growing with each block.
        for name, param in self.named_parameters():
            if name.endswith("proj.weight"):
                nn.init.normal_(param, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def forward(
        self,
        idx: torch.Tensor,
        targets: torch.Tensor | None = None,
        cache: KVCache | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Logits (and loss with `targets`); with `cache`, `idx` continues the cached tokens."""
        time = idx.shape[1]
        start = 0 if cache is None else cache.length
        if start + time > self.config.block_size:
            raise ValueError(
                f"sequence of {start + time} tokens exceeds block_size {self.config.block_size}"
            )
        x = self.wte(idx)
        if self.wpe is not None:
            cos = sin = None
            x = x + self.wpe(torch.arange(start, start + time, device=idx.device))
        else:
            cos, sin = self.rope_cos[start : start + time], self.rope_sin[start : start + time]
        x = self.drop(x)
        for layer, block in enumerate(self.blocks):
            x = block(x, cos, sin, cache, layer)
        if cache is not None:
            cache.length += time
        logits = self.lm_head(self.norm_f(x))
        return logits, _loss(logits, targets)

    def new_cache(self) -> KVCache:
        return KVCache(self.config.n_layer)


# --------------------------------------------------------------------------- GRU


class GRULanguageModel(nn.Module):
    """The classic from-scratch language model: embedding → GRU → linear, predicting the next
    token at every position (not only the last)."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.embedding = nn.Embedding(config.vocab_size, config.n_embd)
        self.gru = nn.GRU(
            config.n_embd,
            config.n_embd,
            num_layers=config.n_layer,
            batch_first=True,
            dropout=config.dropout if config.n_layer > 1 else 0.0,
        )
        self.head = nn.Linear(config.n_embd, config.vocab_size)

    def forward(
        self, idx: torch.Tensor, targets: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        output, _ = self.gru(self.embedding(idx))
        logits = self.head(output)
        return logits, _loss(logits, targets)


# --------------------------------------------------------------------------- shared


def _loss(logits: torch.Tensor, targets: torch.Tensor | None) -> torch.Tensor | None:
    if targets is None:
        return None
    return F.cross_entropy(logits.float().view(-1, logits.size(-1)), targets.reshape(-1))


def build_model(config: ModelConfig) -> nn.Module:
    """A freshly initialised model of the configured architecture."""
    return GPT(config) if config.architecture == "gpt" else GRULanguageModel(config)


def count_parameters(model: nn.Module) -> int:
    """Trainable parameters, counting tied weights once."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


@torch.no_grad()
def generate(
    model: nn.Module,
    idx: torch.Tensor,
    max_new_tokens: int,
    temperature: float = 1.0,
    top_k: int | None = None,
    generator: torch.Generator | None = None,
    stop_token: int | None = None,
    use_cache: bool = True,
) -> torch.Tensor:
    """Sample `max_new_tokens` continuations of `idx` (batch, time), cropping to the block size.

    temperature 0 means greedy decoding. Stops early when every row emitted `stop_token`.
    A GPT decodes with a KV cache (`use_cache`): the prompt is run once, then one token per step.
    Once the text outgrows the block size, each step re-runs the last `block_size` tokens, exactly
    what the uncached loop computes, so both give the same tokens.
    """
    model.eval()
    block_size = model.config.block_size
    cache = model.new_cache() if use_cache and isinstance(model, GPT) else None
    pending = idx
    finished = torch.zeros(idx.shape[0], dtype=torch.bool, device=idx.device)
    for _ in range(max_new_tokens):
        if cache is None:
            logits, _ = model(idx[:, -block_size:])
        else:
            if cache.length == 0 or cache.length + pending.shape[1] > block_size:
                cache.reset()
                pending = idx[:, -block_size:]
            logits, _ = model(pending, cache=cache)
        logits = logits[:, -1, :].float()
        if temperature <= 0:
            next_id = logits.argmax(dim=-1, keepdim=True)
        else:
            logits = logits / temperature
            if top_k:
                kth = torch.topk(logits, min(top_k, logits.size(-1))).values[:, [-1]]
                logits = logits.masked_fill(logits < kth, float("-inf"))
            probs = F.softmax(logits, dim=-1)
            next_id = torch.multinomial(probs, num_samples=1, generator=generator)
        idx = torch.cat([idx, next_id], dim=1)
        pending = next_id
        if stop_token is not None:
            finished |= next_id.squeeze(1) == stop_token
            if bool(finished.all()):
                break
    return idx
