"""--amp auto|on|off (detseg.engine.amp): auto is on only for CUDA or a CPU with bfloat16 matrix units, and
only when one training step agrees with float32; the choice and its reason reach config.json."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from detseg.cli import build_parser, main
from detseg.engine import amp
from detseg.engine.amp import choose_amp, precision_check
from detseg.engine.config import RunConfig, resolve_config

CPU = torch.device("cpu")


class SquaredError:
    """A task whose loss is (model(x) - y)^2 on one batch ``(x, y)``."""

    def train_step(self, model, batch, device):
        x, y = batch
        return ((model(x.to(device)).float() - y) ** 2).mean(), {}


def linear(weight: float = 1.0) -> nn.Linear:
    layer = nn.Linear(1, 1)
    with torch.no_grad():
        layer.weight.fill_(weight)
        layer.bias.zero_()
    return layer


def test_auto_follows_the_cpu_and_the_check(monkeypatch):
    never = lambda: pytest.fail("no check without bfloat16 units")  # noqa: E731
    monkeypatch.setattr(amp, "cpu_has_bf16", lambda: None)
    assert choose_amp("auto", CPU, never) == (False, "auto: the CPU has no bfloat16 matrix units "
                                                     "(amx_bf16 or avx512_bf16)")  # fmt: skip
    assert choose_amp(True, CPU, never) == (True, "on: given")
    assert choose_amp("off", CPU, never) == (False, "off: given")
    monkeypatch.setattr(amp, "cpu_has_bf16", lambda: "amx_bf16")
    on, reason = choose_amp("auto", CPU, lambda: (0.003, 0.999))
    assert on and reason == ("auto: CPU has amx_bf16; bf16 check passed (loss rel diff 0.003, "
                             "grad cosine 0.999)")  # fmt: skip
    on, reason = choose_amp("auto", CPU, lambda: (0.003, 0.9))
    assert not on and "bf16 check failed" in reason and "grad cosine 0.9;" in reason


def test_the_check_fails_a_model_whose_bf16_loss_differs_and_leaves_it_as_it_was():
    # 1000.5 is 1000 in bfloat16: the float32 loss is 0.25, the bf16 one 0.
    model, batch = linear(), (torch.tensor([[1000.5]]), torch.tensor([[1000.0]]))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.get_rng_state()
    loss_diff, _ = precision_check(model, SquaredError(), batch, CPU, torch.bfloat16)
    assert loss_diff > amp.LOSS_RTOL
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(p.grad is None for p in model.parameters()) and torch.equal(rng, torch.get_rng_state())
    # A well-conditioned one passes.
    loss_diff, cosine = precision_check(linear(0.5), SquaredError(), (torch.ones(4, 1), torch.zeros(4, 1)),
                                        CPU, torch.bfloat16)  # fmt: skip
    assert loss_diff <= amp.LOSS_RTOL and cosine >= amp.GRAD_COSINE


def test_an_operation_without_a_bf16_kernel_turns_auto_off_with_its_error(monkeypatch):
    monkeypatch.setattr(amp, "cpu_has_bf16", lambda: "avx512_bf16")

    def check():
        raise RuntimeError("Index put requires the source and destination dtypes match\nmore")

    on, reason = choose_amp("auto", CPU, check)
    assert not on and reason == ("auto: CPU has avx512_bf16; bf16 check failed (Index put requires the "
                                 "source and destination dtypes match)")  # fmt: skip


def test_amp_options_parse_and_old_true_false_values_still_work():
    parse = build_parser().parse_args
    base = ["train", "--model", "unet", "--data", "d.yaml"]
    assert parse(base).amp is None
    assert parse([*base, "--amp"]).amp == "on"
    assert parse([*base, "--amp", "off"]).amp == "off"
    assert parse([*base, "--no-amp"]).amp == "off"
    info = type("Info", (), {"name": "toy", "default_cfg": {"amp": True}})()
    assert resolve_config(RunConfig(model="toy", data="d.yaml"), info).amp == "on"
    assert resolve_config(RunConfig(model="toy", data="d.yaml", amp=False), info).amp == "off"
    assert resolve_config(RunConfig(model="toy", data="d.yaml"), None).amp == "auto"  # detseg's default


def test_a_run_records_what_auto_chose_and_why(tmp_path, monkeypatch, capsys):
    from detseg.data.synthetic import SynthConfig, generate

    root = generate(SynthConfig(seed=1, num_train=4, num_val=1, image_size=(48, 48)), tmp_path / "shapes")
    args = ["train", "--model", "unet", "--model-arg", "width=4", "--data", str(root / "segment.yaml"),
            "--iters", "1", "--img-size", "32", "--val-split", "none", "--amp", "auto"]  # fmt: skip
    assert main([*args, "--out", str(tmp_path / "plain")]) == 0  # the test suite's CPU: no bf16 units
    saved = json.loads((tmp_path / "plain" / "config.json").read_text())["config"]
    assert saved["amp"] is False and saved["amp_reason"].startswith("auto: the CPU has no bfloat16")
    monkeypatch.setattr(amp, "cpu_has_bf16", lambda: "amx_bf16")
    capsys.readouterr()
    assert main([*args, "--out", str(tmp_path / "bf16")]) == 0
    saved = json.loads((tmp_path / "bf16" / "config.json").read_text())["config"]
    assert saved["amp"] is True, saved["amp_reason"]
    assert saved["amp_reason"].startswith("auto: CPU has amx_bf16; bf16 check passed (loss rel diff")
    assert f"detseg train: amp on ({saved['amp_reason']})" in capsys.readouterr().err
    monkeypatch.setattr(amp, "LOSS_RTOL", -1.0)  # no loss can pass
    assert main([*args, "--out", str(tmp_path / "failed")]) == 0
    saved = json.loads((tmp_path / "failed" / "config.json").read_text())["config"]
    assert saved["amp"] is False and "bf16 check failed" in saved["amp_reason"]


def test_ssdlite_losses_run_under_bfloat16_autocast():
    # SSD's regression targets were allocated like the head's output (bfloat16 under autocast) and the
    # float32 encoded boxes could not be written into them.
    import torch

    from detseg.models.zoo import create_model

    torch.manual_seed(0)
    model = create_model("ssdlite320_mobilenet_v3_large", num_classes=3, size=128).train()
    images = [torch.rand(3, 128, 128), torch.rand(3, 128, 128)]
    targets = [{"boxes": torch.tensor([[10.0, 10.0, 60.0, 70.0]]), "labels": torch.tensor([1])}] * 2
    with torch.autocast("cpu", dtype=torch.bfloat16):
        losses = model(images, targets)
    total = sum(losses.values())
    assert torch.isfinite(total)
    total.backward()
