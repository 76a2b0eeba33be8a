"""Device and numeric precision: bf16 autocast on CPU and CUDA, fp32 as the fallback.

fp16 is never used: on CPUs it is emulated (under 1 GFLOP/s) and on GPUs it needs loss
scaling that bf16 does not. Whether a CPU runs bf16 fast is a property of the machine, not of
torch: without native bf16 instructions (AVX512-BF16 or AMX) oneDNN emulates it, and
convolutions get ~40x *slower* (seen on AVX2-only hosts); on an AVX512 core without them
oneDNN still reports bf16 as supported, but its matmul peak is a quarter of fp32's (58 against
221 GFLOP/s on 2 threads of an Intel Xeon without AVX512-BF16) and the quickstart's step
takes twice as long. So ``auto`` reads the CPU's own flags before choosing bf16.
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


CPUINFO = Path("/proc/cpuinfo")
NATIVE_BF16_FLAGS = ("avx512_bf16", "amx_bf16")


def cpu_flags(cpuinfo: Path | None = None) -> set[str] | None:
    """The CPU's feature flags (Linux's ``/proc/cpuinfo``), or None where they cannot be read."""
    try:
        text = (cpuinfo or CPUINFO).read_text()
    except OSError:
        return None
    for line in text.splitlines():
        name, _, value = line.partition(":")
        if name.strip() in ("flags", "Features"):  # x86, ARM
            return set(value.split())
    return None


def cpu_has_fast_bf16() -> bool:
    """True where the CPU has native bf16 instructions (AVX512-BF16, AMX-BF16; ARM's bf16).
    oneDNN's own answer is only the fallback, where the flags cannot be read: it says yes on
    any AVX512 core, emulated or not."""
    flags = cpu_flags()
    if flags is not None:
        return any(f in flags for f in NATIVE_BF16_FLAGS) or "bf16" in flags
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


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
