"""What a low-precision export gains on this CPU: interleaved timing, and the instruction sets found."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from pathlib import Path

# /proc/cpuinfo flags that make low-precision arithmetic fast: int8 dot products (VNNI, AMX) and bf16.
FAST_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8", "avx512_bf16", "amx_bf16", "amx_tile", "avx2")


def fast_cpu_flags(path: str | Path = "/proc/cpuinfo") -> list[str]:
    """The :data:`FAST_FLAGS` this CPU reports (empty where /proc/cpuinfo is missing)."""
    from detseg.engine.amp import cpu_flags

    flags = cpu_flags(path)
    return [f for f in FAST_FLAGS if f in flags]


def has_vnni(flags: list[str] | None = None) -> bool:
    """Whether int8 dot products run without saturation (VNNI or AMX): then no ``reduce_range``."""
    flags = fast_cpu_flags() if flags is None else flags
    return any(f in flags for f in ("avx512_vnni", "avx_vnni", "amx_int8"))


def instruction_sets_line(flags: list[str] | None = None) -> str:
    """``instruction sets found: avx512_vnni, avx512_bf16 (no amx_int8)`` for messages."""
    flags = fast_cpu_flags() if flags is None else flags
    missing = [f for f in ("avx512_vnni", "amx_int8", "amx_bf16") if f not in flags]
    found = ", ".join(flags) if flags else "none of " + ", ".join(FAST_FLAGS)
    return f"instruction sets found: {found}" + (f" (no {', '.join(missing)})" if missing and flags else "")


def median_ms(calls: dict[str, Callable[[], object]], repeat: int = 7) -> dict[str, float]:
    """Median milliseconds of each call, interleaved (one of each per round, after one warm-up each), so
    that a load that drifts slows them all alike."""
    for call in calls.values():
        call()
    times: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(repeat):
        for name, call in calls.items():
            start = time.perf_counter()
            call()
            times[name].append(1000 * (time.perf_counter() - start))
    return {name: statistics.median(values) for name, values in times.items()}
