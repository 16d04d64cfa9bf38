"""Mixed precision of a training run: `run.precision` -> autocast dtype and gradient scaler.

    fp32   no autocast (exact, the reference).
    bf16   torch.autocast(device, bfloat16) on the run's device; runs on CUDA (GPUs with
           bfloat16) and on CPU. No gradient scaler: bfloat16 has float32's exponent range.
    fp16   torch.autocast("cuda", float16) with a GradScaler (float16 gradients underflow
           without loss scaling). CUDA only: refused on CPU.
    auto   what `run.amp: true` did before `run.precision` existed: bf16 on a CUDA GPU that
           supports it, fp16 on an older GPU, fp32 on CPU.

Losses, the queue of keys and the EMA teacher's parameters stay float32 whatever the
precision: every loss in `pretrain.losses` is wrapped in `float32_loss` (autocast off,
half-precision inputs cast to float32), `KeyQueue` stores float32 keys, and autocast never changes
a parameter's dtype. Only the encoder's and heads' matmuls and convolutions run in the low
precision.
"""
from __future__ import annotations

import contextlib
import functools
from typing import Callable, TypeVar

import torch

__all__ = ["PRECISIONS", "PrecisionError", "autocast_dtype", "autocast", "make_grad_scaler", "float32_loss",
           "cpu_bf16_note"]

PRECISIONS = ("auto", "fp32", "bf16", "fp16")

F = TypeVar("F", bound=Callable)


class PrecisionError(ValueError):
    """`run.precision` cannot run on the run's device; the message says what to use instead."""


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of `precision` on `device` (None: float32, no autocast).

    Raises PrecisionError for fp16 off CUDA and for bf16 on a GPU without bfloat16.
    """
    if precision not in PRECISIONS:
        raise PrecisionError(f"run.precision must be one of {list(PRECISIONS)}, got {precision!r}")
    if precision == "auto":
        if device.type != "cuda":
            return None
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if precision == "fp32":
        return None
    if precision == "fp16":
        if device.type != "cuda":
            raise PrecisionError(
                f"run.precision=fp16 needs a CUDA device (float16 autocast with a GradScaler), but this run's "
                f"device is {device}; use run.precision=bf16 (also runs on CPU) or run.precision=fp32")
        return torch.float16
    if device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise PrecisionError(f"run.precision=bf16: the GPU {torch.cuda.get_device_name(device)} has no bfloat16 "
                             "support; use run.precision=fp16 or run.precision=fp32")
    return torch.bfloat16


NATIVE_BF16_FLAGS = ("avx512_bf16", "amx_bf16")
"""CPU flags (/proc/cpuinfo) of a bfloat16 matmul in hardware; without one, oneDNN emulates it."""


def _cpu_flags() -> set[str] | None:
    """This CPU's flags from /proc/cpuinfo (None where there is no such file: not Linux)."""
    try:
        text = open("/proc/cpuinfo", encoding="utf-8", errors="replace").read()
    except OSError:
        return None
    return {f for line in text.splitlines() if line.startswith("flags") for f in line.partition(":")[2].split()}


def cpu_bf16_note(device: torch.device, dtype: torch.dtype | None, flags: set[str] | None = None) -> str | None:
    """A warning for bf16 autocast on a CPU without bfloat16 in hardware (None otherwise, or where
    the flags cannot be read): measured on an AMD EPYC Zen 3 (AVX2), SLICER trained at 0.8 clips/s
    in bf16 against 18.9 in fp32 (docs/studies.md)."""
    if device.type != "cpu" or dtype != torch.bfloat16:
        return None
    flags = _cpu_flags() if flags is None else flags
    if flags is None or flags & set(NATIVE_BF16_FLAGS):
        return None
    return ("run.precision=bf16 on a CPU without bfloat16 in hardware (none of the flags "
            f"{', '.join(NATIVE_BF16_FLAGS)}): autocast emulates it, about 23x slower than fp32 on an AVX2 CPU "
            "(measured, docs/studies.md); run.precision=fp32 trains faster here")


def autocast(device: torch.device, dtype: torch.dtype | None):
    """Context manager: autocast to `dtype` on `device`'s type, or nothing when dtype is None."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


def make_grad_scaler(device: torch.device, dtype: torch.dtype | None) -> torch.amp.GradScaler:
    """A GradScaler, enabled only for float16 (a disabled one passes gradients through)."""
    return torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)


def float32_loss(fn: F) -> F:
    """Decorator: run the loss `fn` with autocast off and its half-precision tensor arguments
    (float16, bfloat16) cast to float32 (float32 and float64 inputs are left as they are)."""

    def cast(x):
        return x.float() if isinstance(x, torch.Tensor) and x.dtype in (torch.float16, torch.bfloat16) else x

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        devices = {a.device.type for a in (*args, *kwargs.values()) if isinstance(a, torch.Tensor)}
        with contextlib.ExitStack() as stack:
            for d in devices:
                stack.enter_context(torch.autocast(d, enabled=False))
            return fn(*(cast(a) for a in args), **{k: cast(v) for k, v in kwargs.items()})

    return wrapper  # type: ignore[return-value]
