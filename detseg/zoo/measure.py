"""What ``detseg zoo bench`` measures: parameters, GFLOPs and CPU milliseconds of one forward pass.

- parameters: the sum of ``numel`` over the model's parameters (trainable or not);
- GFLOPs: :class:`torch.utils.flop_counter.FlopCounterMode` over one forward pass at the model's
  registered input size, batch 1; it counts a multiply-add as 2 FLOPs and counts convolutions and
  matrix products (not activations, pooling or NMS), so ResNet-50 at 224 px gives 8.2 (torchvision's
  ``_ops`` 4.09 counts multiply-adds);
- CPU ms: the median of ``repeats`` timed forward passes after ``warmup`` untimed ones, batch 1,
  ``torch.inference_mode``, eval mode, ``threads`` CPU threads, detectors including their
  post-processing (NMS): wall-clock milliseconds, and beside them the process's CPU time over the same
  passes. On a machine shared with other jobs the wall clock also counts the time others held the
  cores; with one thread the CPU time is close to what the pass takes on a quiet machine.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


def count_parameters(model: nn.Module) -> int:
    """The number of parameters (every ``nn.Parameter``, frozen ones too)."""
    return sum(p.numel() for p in model.parameters())


def example_input(task: str, input_size: tuple[int, int, int], seed: int = 0) -> Any:
    """A batch of one random image at ``input_size`` (C, H, W), as the task's models take it: a list of
    ``Tensor[3, H, W]`` for detectors, ``Tensor[1, C, H, W]`` otherwise, values in [0, 1]."""
    image = torch.rand(*input_size, generator=torch.Generator().manual_seed(seed))
    return [image] if task == "detect" else image.unsqueeze(0)


def count_flops(model: nn.Module, inputs: Any) -> int:
    """FLOPs of one forward pass of ``model`` (eval mode) on ``inputs``."""
    model.eval()
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        model(inputs)
    return int(counter.get_total_flops())


def time_forward(model: nn.Module, inputs: Any, repeats: int = 10, warmup: int = 2,
                 threads: int | None = None) -> tuple[float, float]:
    """``(wall, cpu)``: median wall-clock and median process CPU milliseconds of ``repeats`` forward
    passes after ``warmup`` (eval, inference mode)."""
    if repeats < 1:
        raise ValueError(f"repeats must be at least 1, got {repeats}")
    model.eval()
    old_threads = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        wall, cpu = [], []
        with torch.inference_mode():
            for i in range(warmup + repeats):
                start, start_cpu = time.perf_counter(), time.process_time()
                model(inputs)
                if i >= warmup:
                    wall.append((time.perf_counter() - start) * 1000)
                    cpu.append((time.process_time() - start_cpu) * 1000)
    finally:
        torch.set_num_threads(old_threads)
    return statistics.median(wall), statistics.median(cpu)


def bench_model(name: str, repeats: int = 10, warmup: int = 2, threads: int | None = None,
                timing: bool = True) -> dict[str, Any]:
    """Parameters, GFLOPs and (``timing``) CPU ms of the zoo model ``name`` at its registered input
    size, with its default number of classes and random weights (speed does not depend on them)."""
    from detseg.models.zoo import create_model, model_info

    info = model_info(name)
    torch.manual_seed(0)
    model = create_model(name).eval()
    inputs = example_input(info.task, info.input_size)
    out: dict[str, Any] = {
        "params": count_parameters(model),
        "gflops": count_flops(model, inputs) / 1e9,
        "input_size": list(info.input_size),
    }
    if timing:
        out["cpu_ms"], out["cpu_time_ms"] = time_forward(model, inputs, repeats, warmup, threads)
        out["threads"] = threads or torch.get_num_threads()
        out["repeats"] = repeats
        out["warmup"] = warmup
    return out
