"""GPU readiness shared by the trainers: mixed precision, channels-last, torch.compile with a
clean fallback, pinned memory, and one clear line on CUDA out-of-memory.

Defaults follow the device: on CUDA, autocast in bfloat16 where the card supports it (no
loss scaling needed), else float16 with a GradScaler, and channels-last activations (the
tensor-core layout); on a CPU, full precision in the default layout.  Environment overrides
(for a node's batch script or a bench), read when a trainer starts:

    MSKSTUDIO_AMP=off|bf16|fp16        MSKSTUDIO_CHANNELS_LAST=0|1        MSKSTUDIO_COMPILE=0|1

torch.compile is opt-in: on the small CPU runs this workstation mostly sees, compiling costs
more than it saves; on a GPU node it is worth trying, and when it fails (no compiler, an
unsupported op) the trainer logs why and goes on eagerly.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

AMP_ENV, CHANNELS_LAST_ENV, COMPILE_ENV = "MSKSTUDIO_AMP", "MSKSTUDIO_CHANNELS_LAST", "MSKSTUDIO_COMPILE"


@dataclass(frozen=True)
class Accel:
    device: Any                    # torch.device
    amp: str | None                # "bf16" | "fp16" | None (full precision)
    channels_last: bool

    @property
    def dtype(self):
        import torch

        return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.amp or "")

    def autocast(self):
        import torch

        if self.amp is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    def scaler(self):
        """Loss scaling: needed for float16 on CUDA only (bfloat16 has float32's range)."""
        import torch

        return torch.amp.GradScaler("cuda", enabled=self.amp == "fp16" and self.device.type == "cuda")

    def module(self, m):
        import torch

        m = m.to(self.device)
        return m.to(memory_format=torch.channels_last) if self.channels_last else m

    def batch(self, x):
        """A batch on the device (asynchronously from pinned memory), channels-last if chosen."""
        import torch

        x = x.to(self.device, non_blocking=True)
        if self.channels_last and x.ndim == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    @property
    def pin_memory(self) -> bool:
        return self.device.type == "cuda"


def accel_for(device, *, amp: str | None = "auto", channels_last: bool | str = "auto") -> Accel:
    """The precision and layout a trainer uses on ``device`` (environment overrides win)."""
    import torch

    amp = os.environ.get(AMP_ENV) or amp
    if amp == "auto":
        if device.type == "cuda":
            amp = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        else:
            amp = None
    if amp in ("off", "none", "0", "", None):
        amp = None
    if amp not in (None, "bf16", "fp16"):
        raise ValueError(f"{AMP_ENV}: mixed precision must be off, bf16 or fp16, not {amp!r}")
    if amp == "fp16" and device.type != "cuda":
        raise ValueError("float16 mixed precision needs a CUDA device; use bf16 on a CPU")
    env = os.environ.get(CHANNELS_LAST_ENV)
    if env is not None:
        channels_last = env.strip() not in ("0", "", "off", "false")
    elif channels_last == "auto":
        channels_last = device.type == "cuda"
    return Accel(device, amp, bool(channels_last))


def maybe_compile(model, log: Callable[[str], None] | None = None, *, enabled: bool | None = None):
    """``torch.compile(model)`` when asked (MSKSTUDIO_COMPILE=1); on any failure, at compile time
    or at the first call, the eager model with one logged line.  The parameters are shared, so
    optimisers and checkpoints use ``model`` either way."""
    if enabled is None:
        enabled = os.environ.get(COMPILE_ENV, "0").strip() not in ("0", "", "off", "false")
    if not enabled:
        return model
    import torch

    try:
        compiled = torch.compile(model)
    except Exception as exc:  # noqa: BLE001 - any compiler failure means: run eagerly
        if log:
            log(f"torch.compile unavailable ({type(exc).__name__}: {exc}); training eagerly")
        return model
    return _FirstCallFallback(model, compiled, log)


class _FirstCallFallback:
    """Calls the compiled module; if its first call fails (compilation happens there), switches
    to the eager module for good."""

    def __init__(self, eager, compiled, log):
        self.eager, self.compiled, self.log, self.ok = eager, compiled, log, False

    def __call__(self, *args, **kwargs):
        if self.compiled is None:
            return self.eager(*args, **kwargs)
        try:
            out = self.compiled(*args, **kwargs)
        except Exception as exc:
            if self.ok:  # it ran before: a real error of the model, not of the compiler
                raise
            if self.log:
                self.log(f"torch.compile failed ({type(exc).__name__}: {str(exc)[:200]}); training eagerly")
            self.compiled = None
            return self.eager(*args, **kwargs)
        self.ok = True
        return out

    def __getattr__(self, name):
        return getattr(self.eager, name)


# ---- out of memory -----------------------------------------------------------------------------
class OutOfMemory(ValueError):
    """CUDA ran out of memory; the message names a batch size that should fit (a ValueError, so the
    CLI and the job runner show it as one line)."""


def _memory(device) -> tuple[int, int]:
    """(peak bytes allocated by this process, total bytes) on a CUDA device."""
    import torch

    return torch.cuda.max_memory_allocated(device), torch.cuda.get_device_properties(device).total_memory


def fitting_batch_size(batch_size: int, peak: int, total: int, headroom: float = 0.8) -> int:
    """A batch size that should fit: the peak scaled to ``headroom`` of the card, assuming memory
    grows with the batch (weights and optimiser state make that pessimistic), never above half
    the batch that failed (the peak was measured before the failing allocation), rounded down
    to a power of two, at least 1."""
    half = max(1, batch_size // 2)
    guess = int(batch_size * headroom * total / peak) if peak > 0 else half
    n = max(1, min(half, guess))
    return 1 << (n.bit_length() - 1)


def oom_message(batch_size: int, device, *, peak: int | None = None, total: int | None = None) -> str:
    if peak is None or total is None:
        try:
            peak, total = _memory(device)
        except Exception:  # noqa: BLE001 - no CUDA statistics (simulated error, CPU): halve
            peak, total = 0, 0
    fit = fitting_batch_size(batch_size, peak, total)
    where = f" ({total / 2**30:.1f} GiB; {peak / 2**30:.1f} GiB in use at the failure)" if total else ""
    return (f"{device} ran out of memory at batch size {batch_size}{where}: try --batch-size {fit} "
            f"(or a smaller input size)")


@contextlib.contextmanager
def oom_guard(batch_size: int, device) -> Iterator[None]:
    """Turn a CUDA out-of-memory error into one line naming a batch size that should fit."""
    import torch

    try:
        yield
    except torch.OutOfMemoryError:
        msg = oom_message(int(batch_size), device)
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        raise OutOfMemory(msg) from None
