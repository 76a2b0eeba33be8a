"""Device and numeric precision: bf16 autocast on CPU and CUDA, fp32 as the fallback.

fp16 is never used: on CPUs it is emulated (under 1 GFLOP/s) and on GPUs it needs loss
scaling that bf16 does not. Whether a CPU runs bf16 fast is a property of the machine, not of
torch: without AVX512-BF16 or AMX, oneDNN emulates it and convolutions get ~40x *slower* (seen
on AVX2-only hosts), so ``auto`` asks oneDNN before choosing bf16.
"""

from __future__ import annotations

import contextlib
import warnings
from pathlib import Path

import torch

from farsight.config import ConfigError


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"device {name!r} is not a torch device (cpu, cuda, cuda:N)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} asked for but torch sees no CUDA device")
    return device


def cpu_has_fast_bf16() -> bool:
    """True where oneDNN has native bf16 kernels (AVX512-BF16 or AMX)."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        try:
            flags = Path("/proc/cpuinfo").read_text()
        except OSError:
            return False
        return "avx512_bf16" in flags or "amx_bf16" in flags


def bf16_is_fast(device: torch.device) -> bool:
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        return cpu_has_fast_bf16()
    return False


def resolve_precision(precision: str, device: torch.device) -> str:
    """``auto`` -> bf16 where fast, else fp32. An explicit bf16 on a slow device warns."""
    if precision == "auto":
        return "bf16" if bf16_is_fast(device) else "fp32"
    if precision == "bf16" and not bf16_is_fast(device):
        warnings.warn(
            f"precision bf16 on {device}, which has no native bf16 kernels: expect it to be "
            "many times slower than fp32 (use precision=auto)",
            stacklevel=2,
        )
    if precision not in ("bf16", "fp32"):
        raise ConfigError(f"precision {precision!r}; choose auto, bf16 or fp32")
    return precision


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """Autocast context for the forward pass (and loss); a no-op in fp32."""
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()
