"""The single place where the compute device and the precision are chosen.

Precision ``auto`` is bf16 on CUDA devices that support it and **fp32 on every CPU**:

- on CPUs without native bf16 (AVX2-only, e.g. many AMD EPYC and desktop parts) torch emulates
  bf16 autocast and a train step gets about 10x *slower* (67.7 vs 6.3 samples/s measured for the
  CPU-default AVGN);
- on CPUs with native bf16 (AVX-512 BF16 / AMX) bf16 is faster (1.8x for a CPU-default AVGN
  train step, ``benchmarks/bench_model.py``, 2026-12-02) but not reproducible: two identical
  ``fit`` calls in one process gave different losses from the first epoch on, so exact resume
  failed (``tests/test_engine.py::test_real_avgn_resume_and_evaluate``), while fp32 matched bit
  for bit. Reproducible numbers come first here; ``precision: bf16`` still asks for it.

The decision reads the device, never a figure measured on another machine.
"""
from __future__ import annotations

import contextlib
from collections.abc import Sequence
from pathlib import Path

import torch

PRECISIONS = ("auto", "fp32", "bf16")


def pick_device(requested: str = "auto") -> torch.device:
    """``auto`` -> CUDA when present, else CPU. An explicit ``cuda`` without a GPU is an error."""
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(requested)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' requested but no CUDA device is available")
    return device


def cpu_has_native_bf16() -> bool:
    """True when the CPU computes bf16 in hardware (AVX-512 BF16 or AMX)."""
    probes = [getattr(torch.backends.cpu, "_is_avx512_bf16_supported", None),
              getattr(torch._C._cpu, "_is_avx512_bf16_supported", None),
              getattr(torch._C._cpu, "_is_amx_tile_supported", None)]
    for probe in probes:
        if probe is not None:
            try:
                if probe():
                    return True
            except RuntimeError:
                continue
    if any(p is not None for p in probes):
        return False
    # Older torch without the probes: read the kernel's CPU flags.
    cpuinfo = Path("/proc/cpuinfo")
    flags = cpuinfo.read_text() if cpuinfo.is_file() else ""
    return " avx512_bf16" in flags or " amx_bf16" in flags


def cpu_capability() -> str:
    """torch's CPU kernel level (``AVX2``, ``AVX512``, ...), printed beside every benchmark."""
    return str(torch.backends.cpu.get_cpu_capability())


def resolve_precision(precision: str, device: torch.device) -> str:
    """``auto`` | ``fp32`` | ``bf16`` -> the precision actually used on ``device`` (fp32 or bf16).

    ``auto``: bf16 on CUDA devices that support it, else fp32 (on CPUs too, native bf16 or not:
    see the module docstring). An explicit ``bf16`` is honoured even where it is slow or not
    reproducible (the caller asked for it).
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision != "auto":
        return precision
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    return "fp32"


def autocast(device: torch.device, precision: str):
    """bf16 autocast on ``device`` when the resolved precision is bf16, else a no-op context."""
    if resolve_precision(precision, device) != "bf16":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


def to_device(batch: dict[str, torch.Tensor], device: torch.device, channels_last: bool = False,
              skip: Sequence[str] = ()) -> dict[str, torch.Tensor]:
    """Move a contract batch to ``device``; 4-D float inputs optionally become channels_last."""
    out = {}
    for key, value in batch.items():
        if key in skip or not isinstance(value, torch.Tensor):
            continue
        value = value.to(device, non_blocking=True)
        if channels_last and value.dim() == 4 and value.is_floating_point():
            value = value.contiguous(memory_format=torch.channels_last)
        out[key] = value
    return out
