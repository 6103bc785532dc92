"""Which device and number format a run uses, and the autocast that applies it.

Shared by training and evaluation (and the benchmarks), so both score a model the same way and
neither module has to import the other.
"""

from __future__ import annotations

import torch


def resolve_device(name: str = "auto") -> torch.device:
    """`auto`: CUDA, else Apple MPS, else CPU."""
    if name != "auto":
        return torch.device(name)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def cpu_supports_bf16() -> bool:
    """True when the CPU has native bf16 matmuls (AVX-512 BF16 or AMX), where autocast pays."""
    cpu = torch.cpu
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(cpu, name, lambda: False)() for name in checks)


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    """bf16 autocast where the device runs it natively, fp32 otherwise (or as configured)."""
    if name == "fp32":
        return torch.float32
    if name == "bf16":
        return torch.bfloat16
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    if device.type == "cpu" and cpu_supports_bf16():
        return torch.bfloat16
    return torch.float32


def autocast_context(device: torch.device, dtype: torch.dtype) -> torch.autocast:
    """Autocast to `dtype` (no-op for fp32); parameters and optimizer state stay fp32."""
    return torch.autocast(device_type=device.type, dtype=dtype, enabled=dtype != torch.float32)
