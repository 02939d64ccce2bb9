"""Schedules against their formulas, and their state across a save/load."""

from __future__ import annotations

import math

import pytest
import torch

from detseg.engine.schedules import build_scheduler


def _lrs(name: str, total: int, warmup: int = 0, base: float = 0.1, **kw) -> list[float]:
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=base)
    sched = build_scheduler(opt, name, total, warmup, **kw)
    out = []
    for _ in range(total):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


def test_poly_follows_deeplab_formula():
    lrs = _lrs("poly", 10, power=0.9)
    for t, lr in enumerate(lrs):
        assert lr == pytest.approx(0.1 * (1 - t / 10) ** 0.9)


def test_cosine_half_way_is_half():
    lrs = _lrs("cosine", 8)
    assert lrs[0] == pytest.approx(0.1)
    assert lrs[4] == pytest.approx(0.05)
    assert lrs[2] == pytest.approx(0.1 * 0.5 * (1 + math.cos(math.pi / 4)))


def test_linear_warmup_rises_from_factor_to_schedule():
    lrs = _lrs("constant", 10, warmup=4, warmup_factor=0.1)
    # t = 0: 0.1 * base; t = 2: half way between 0.1 and 1; from t = 4 on: base.
    assert lrs[0] == pytest.approx(0.01)
    assert lrs[2] == pytest.approx(0.1 * 0.55)
    assert lrs[4:] == pytest.approx([0.1] * 6)
    assert all(a < b for a, b in zip(lrs[:4], lrs[1:5], strict=True))


def test_scheduler_state_round_trips():
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    a = build_scheduler(opt, "poly", 20, warmup=3)
    for _ in range(7):
        opt.step()
        a.step()
    state = a.state_dict()
    opt2 = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    b = build_scheduler(opt2, "poly", 20, warmup=3)
    b.load_state_dict(state)
    opt2.param_groups[0]["lr"] = b.get_last_lr()[0]
    a.step()
    b.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(opt2.param_groups[0]["lr"])


def test_unknown_schedule_is_refused():
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    with pytest.raises(ValueError, match="unknown schedule 'step'"):
        build_scheduler(opt, "step", 10)
