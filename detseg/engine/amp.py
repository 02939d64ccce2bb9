"""Mixed precision: what ``--amp auto|on|off`` turns on, and why.

``auto`` (the default) turns autocast on

- on CUDA (float16 with a GradScaler, as ``--amp on``), or on a CPU with bfloat16 matrix units
  (:func:`cpu_has_bf16`: the ``amx_bf16`` or ``avx512_bf16`` flag), where bfloat16 matrix products are
  faster than float32 ones; elsewhere bfloat16 is emulated and slower, so it stays off;
- and only when one training step of the actual model on one training batch agrees with float32
  (:func:`precision_check`): the loss within a relative :data:`LOSS_RTOL` (2e-2) of float32's, and the
  gradient (all parameters as one vector) at a cosine similarity of at least :data:`GRAD_COSINE`
  (0.98) to float32's. A model whose loss or gradients bfloat16 changes more than that trains in float32.

The choice and its reason (``auto: CPU has amx_bf16; bf16 check passed (loss rel diff 0.003, grad cosine
0.999)``) are printed at the start of a run and saved in ``RUN_DIR/config.json`` (``amp``, ``amp_reason``).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

#: The check's tolerances: |loss_amp - loss_fp32| / |loss_fp32| <= LOSS_RTOL, gradient cosine >= GRAD_COSINE.
LOSS_RTOL = 2e-2
GRAD_COSINE = 0.98
#: /proc/cpuinfo flags of bfloat16 matrix units (Intel AMX, AVX-512 BF16; AMD Zen 4 has avx512_bf16).
BF16_FLAGS = ("amx_bf16", "avx512_bf16")


def cpu_has_bf16() -> str | None:
    """The first of :data:`BF16_FLAGS` that this CPU has (Linux ``/proc/cpuinfo``; oneDNN, which runs
    torch's CPU matrix products, uses those units by itself whatever ``torch.backends.cpu.
    get_cpu_capability()`` says), else None (no such flag, or no /proc/cpuinfo: not Linux).

    ``DETSEG_CPU_BF16=0`` answers None whatever the CPU (the test suite sets it, so that its numbers do
    not depend on the machine); ``DETSEG_CPU_BF16=1`` answers ``"bfloat16 units (DETSEG_CPU_BF16=1)"``."""
    forced = os.environ.get("DETSEG_CPU_BF16")
    if forced is not None:
        return "bfloat16 units (DETSEG_CPU_BF16=1)" if forced.strip() not in ("", "0") else None
    flags = cpu_flags()
    return next((flag for flag in BF16_FLAGS if flag in flags), None)


def cpu_flags(path: str | Path = "/proc/cpuinfo") -> set[str]:
    """Every flag the CPU reports in ``/proc/cpuinfo`` (empty where it is missing: not Linux)."""
    try:
        text = Path(path).read_text(errors="replace")
    except OSError:
        return set()
    line = next((line for line in text.splitlines() if line.startswith("flags")), "")
    return set(line.partition(":")[2].split())


def choose_amp(
    setting: Any, device: torch.device, check: Callable[[], tuple[float, float]]
) -> tuple[bool, str]:
    """``(on, reason)`` for ``--amp setting`` (auto, on, off; True/False) on ``device``. ``check()`` runs
    the precision check only where auto needs it and returns ``(loss rel diff, grad cosine)``."""
    from detseg.engine.config import amp_choice

    setting = amp_choice(setting)
    if setting != "auto":
        return setting == "on", f"{setting}: given"
    if device.type == "cuda":
        why, name = "auto: CUDA", "float16"
    elif device.type == "cpu":
        flag = cpu_has_bf16()
        if flag is None:
            return False, f"auto: the CPU has no bfloat16 matrix units ({' or '.join(BF16_FLAGS)})"
        why, name = f"auto: CPU has {flag}", "bf16"
    else:
        return False, f"auto: off on {device.type}"
    try:
        loss_diff, cosine = check()
    except RuntimeError as exc:  # an operation without a low-precision kernel on this device
        return False, f"{why}; {name} check failed ({str(exc).splitlines()[0][:120]})"
    figures = f"loss rel diff {loss_diff:.3g}, grad cosine {cosine:.3g}"
    if loss_diff <= LOSS_RTOL and cosine >= GRAD_COSINE:
        return True, f"{why}; {name} check passed ({figures})"
    return False, f"{why}; {name} check failed ({figures}; needs <= {LOSS_RTOL:g} and >= {GRAD_COSINE:g})"


def precision_check(
    model: torch.nn.Module, task: Any, batch: Any, device: torch.device, dtype: torch.dtype
) -> tuple[float, float]:
    """One forward and backward of ``task.train_step(model, batch, device)`` in float32 and under
    ``dtype`` autocast, from the same weights and random state: ``(relative loss difference, cosine
    similarity of the gradients)``; a non-finite loss or gradient gives ``(inf, 0)``. The model's weights,
    buffers (BatchNorm statistics), gradients and every random generator are left as they were."""
    saved = {k: v.detach().clone() for k, v in model.state_dict().items()}
    devices = [device] if device.type == "cuda" else []
    results = []
    try:
        with torch.random.fork_rng(devices=devices):
            for enabled in (False, True):
                model.load_state_dict(saved)
                model.zero_grad(set_to_none=True)
                torch.manual_seed(0)  # the same dropout in both passes
                model.train()
                with torch.autocast(device.type, dtype=dtype, enabled=enabled):
                    loss, _ = task.train_step(model, batch, device)
                (loss.float() * (128.0 if dtype == torch.float16 else 1.0)).backward()
                grads = [p.grad.detach().double().flatten() for p in model.parameters() if p.grad is not None]
                results.append((float(loss.detach()), torch.cat(grads) if grads else torch.zeros(1).double()))
    finally:
        model.load_state_dict(saved)
        model.zero_grad(set_to_none=True)
    (loss32, grad32), (loss16, grad16) = results
    if not all(torch.isfinite(torch.tensor([loss32, loss16]))) or not torch.isfinite(grad16).all():
        return float("inf"), 0.0
    loss_diff = abs(loss16 - loss32) / max(abs(loss32), 1e-12)
    norms = grad32.norm() * grad16.norm()
    cosine = float(grad32 @ grad16 / norms) if norms > 0 else float(grad32.norm() == grad16.norm())
    return loss_diff, cosine
