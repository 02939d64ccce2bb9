"""Weight averaging (--ema) and channels-last training in the engine."""

from __future__ import annotations

import pytest
import torch
from engine_toys import BlobData, ToySegmenter

from detseg.cli import main
from detseg.engine import SegmentationTask
from detseg.engine.checkpoint import inference_weights, load_checkpoint
from detseg.engine.ema import ModelEma
from detseg.engine.predict import load_model
from detseg.engine.run import evaluate
from detseg.models.backbones import _extract_state_dict
from tests.engine.test_engine_cli import TRAIN, make_data
from tests.engine.test_engine_trainer import assert_same_weights, make_trainer


def test_ema_is_the_hand_computed_average():
    model = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2))
    ema = ModelEma(model, decay=0.9)
    expected = model[0].weight.detach().clone()
    for n in range(30):
        with torch.no_grad():
            model[0].weight.add_(torch.randn_like(model[0].weight))
        model.train()(torch.randn(4, 3))  # moves the BatchNorm statistics and its step counter
        d = min(0.9, (1 + n) / (10 + n))  # held low early, then the decay itself
        expected = d * expected + (1 - d) * model[0].weight.detach()
        ema.update(model)
    torch.testing.assert_close(ema.module[0].weight, expected)
    assert ema.current_decay() == pytest.approx(31 / 40)  # still warming up: 0.9 is reached at n = 80
    assert int(ema.module[1].num_batches_tracked) == 30  # integer buffers are copied, not averaged
    assert not torch.equal(ema.module[1].running_mean, model[1].running_mean)  # float buffers averaged
    assert not any(p.requires_grad for p in ema.module.parameters())
    with pytest.raises(ValueError, match="between 0 and 1"):
        ModelEma(model, decay=1.0)


def test_ema_is_evaluated_saved_and_resumed_exactly(tmp_path):
    reference = make_trainer(tmp_path / "ref", ema=0.8, augment=False)
    summary = reference.fit()
    state = load_checkpoint(tmp_path / "ref" / "last.pt")
    assert state["ema"]["updates"] == reference.step == 9
    raw, averaged = state["model"], inference_weights(state)
    assert any(not torch.equal(raw[k], averaged[k]) for k in raw)
    # The reported metrics are the averaged model's.
    model = ToySegmenter(dropout=0.2)
    model.load_state_dict(averaged)
    model.eval()
    task = SegmentationTask(2, class_names=["background", "blob"])
    task.eval_begin()
    for image, target in torch.utils.data.DataLoader(BlobData(4, seed=99), batch_size=4):
        task.eval_step(model, (image, target), torch.device("cpu"))
    assert task.eval_end()["miou"] == pytest.approx(summary["last"]["miou"], abs=1e-9)

    def crash(trainer):
        if trainer.step == 5:
            raise RuntimeError("power cut")

    with pytest.raises(RuntimeError):
        make_trainer(tmp_path / "run", ema=0.8, augment=False, hooks=[crash]).fit()
    resumed = make_trainer(tmp_path / "run", ema=0.8, augment=False, model_seed=5)
    resumed.fit(resume=tmp_path / "run" / "last.pt")
    assert_same_weights(reference.ema.module.state_dict(), resumed.ema.module.state_dict())
    # A run trained without averaging has nothing to resume it from.
    plain = make_trainer(tmp_path / "plain", epochs=1)
    plain.fit()
    with pytest.raises(ValueError, match="without --ema"):
        make_trainer(tmp_path / "plain", ema=0.8).fit(resume=tmp_path / "plain" / "last.pt")


def test_channels_last_trains_the_same_model(tmp_path):
    runs = {}
    for cl in (False, True):
        t = make_trainer(tmp_path / str(cl), channels_last=cl, augment=False, dropout=0.0, epochs=2)
        t.fit()
        runs[cl] = t
    conv = runs[True].model.body[0].weight
    assert conv.is_contiguous(memory_format=torch.channels_last)
    a, b = (r.model.state_dict() for r in (runs[False], runs[True]))
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-5, msg=k)


def test_cli_ema_run_predicts_and_evaluates_with_the_average(tmp_path):
    spec = make_data(tmp_path)
    run = tmp_path / "run"
    args = [*TRAIN, "--data", str(spec), "--epochs", "4", "--out", str(run), "--ema", "0.9"]
    args.append("--channels-last")
    assert main(args) == 0
    best = load_checkpoint(run / "best.pt")
    model, _ = load_model(run / "best.pt")
    for k, v in model.state_dict().items():
        assert torch.equal(v, best["ema"]["model"][k]), k
    # As a --pretrained source, a run trained with --ema gives its averaged weights too.
    assert _extract_state_dict(best, "best.pt").keys() == best["ema"]["model"].keys()
    assert all(torch.equal(v, best["ema"]["model"][k]) for k, v in _extract_state_dict(best, "x").items())
    scores = evaluate(run / "best.pt", spec, "val")
    assert scores["miou"] == pytest.approx(best["metrics"]["miou"], abs=1e-6)
    # --time alone is a length too; with none of --epochs, --iters, --time there is nothing to plan.
    assert main([*TRAIN, "--data", str(spec), "--time", "0.05", "--out", str(tmp_path / "timed")]) == 0
    assert load_checkpoint(tmp_path / "timed" / "last.pt")["config"]["time"] == 0.05
    assert main([*TRAIN, "--data", str(spec), "--out", str(tmp_path / "none")]) == 2


class FakeClock:
    """Seconds that pass only when a training step says so."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def timed_trainer(out, clock, seconds_per_step, **cfg):
    def tick(trainer):
        clock.now += seconds_per_step

    t = make_trainer(out, hooks=[tick], augment=False, schedule="cosine", **cfg)
    t.clock = clock
    return t


def test_time_budget_fits_the_epochs_and_the_schedule(tmp_path):
    # 3 steps an epoch at 1 s a step: 3 s an epoch; 10 s allow 3 epochs. The cosine ends at step 9.
    clock = FakeClock()
    t = timed_trainer(tmp_path / "a", clock, 1.0, epochs=None, time=10 / 60)
    t.fit()
    assert t.step == 9 and t.scheduler.lr_lambdas[0].total_iters == 9
    assert t.optimizer.param_groups[0]["lr"] == pytest.approx(0.0, abs=1e-12)  # the decay ran to its end
    assert load_checkpoint(tmp_path / "a" / "last.pt")["elapsed"] == pytest.approx(9.0)
    # With --epochs too, whichever ends first: 2 epochs end before 10 s.
    t = timed_trainer(tmp_path / "b", FakeClock(), 1.0, epochs=2, time=10 / 60)
    t.fit()
    assert t.step == 6
    # An epoch slower than planned: the budget is spent mid-epoch, and training stops at that step.
    clock = FakeClock()

    def slow_down(trainer):
        clock.now += 1.0 if trainer.step <= 3 else 4.0

    t = make_trainer(tmp_path / "c", hooks=[slow_down], augment=False, epochs=None, time=10 / 60)
    t.clock = clock
    t.fit()
    assert t.step == 5 and clock.now == pytest.approx(11.0)  # 3 x 1 s, then 4 s + 4 s passes 10 s
    # A budget that ends at an epoch not due for evaluation: that last epoch is evaluated all the same.
    t = timed_trainer(tmp_path / "e", FakeClock(), 1.0, epochs=None, time=5 / 60, eval_interval=3)
    t.fit()
    assert t.step == 3 and "val_miou" in t.history[-1] and (tmp_path / "e" / "best.pt").is_file()
    with pytest.raises(ValueError, match="epochs, iters or a time budget"):
        make_trainer(tmp_path / "d", epochs=None)


def test_time_budget_is_kept_over_a_resume(tmp_path):
    clock = FakeClock()

    def crash(trainer):
        if trainer.step == 4:
            raise RuntimeError("power cut")

    t = timed_trainer(tmp_path, clock, 1.0, epochs=None, time=10 / 60)
    t.on_step.append(crash)
    with pytest.raises(RuntimeError):
        t.fit()
    state = load_checkpoint(tmp_path / "last.pt")
    assert state["elapsed"] == pytest.approx(3.0) and state["total_steps"] == 9
    resumed = timed_trainer(tmp_path, FakeClock(), 1.0, epochs=None, time=10 / 60)
    resumed.fit(resume=tmp_path / "last.pt")
    assert resumed.step == 9  # 3 s were used before the crash: 7 s left, two more epochs
