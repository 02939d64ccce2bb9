"""The trainer on a toy segmenter: learning, exact resume, NaN stops, clipping, AMP, logs, checkpoints."""

from __future__ import annotations

import os
import signal

import pytest
import torch
from engine_toys import BlobData, ToySegmenter

from detseg.engine import NonFiniteLossError, SegmentationTask, TrainConfig, Trainer, TrainingInterrupted
from detseg.engine.checkpoint import load_checkpoint
from detseg.engine.logging import read_csv

META = {"task": "segment", "model": "toy", "classes": ["background", "blob"], "values": [0, 255]}


def make_trainer(out, hooks=None, data_seed=0, model_seed=0, augment=True, dropout=0.2, meta=META, **cfg):
    torch.manual_seed(model_seed)
    model = ToySegmenter(dropout=dropout)
    kw = {"epochs": 3, "batch_size": 4, "lr": 0.1, "quiet": True, "seed": 7, "plots": False, **cfg}
    config = TrainConfig(out=str(out), **kw)
    return Trainer(
        model,
        SegmentationTask(2, class_names=["background", "blob"]),
        BlobData(12, seed=data_seed, augment=augment),
        BlobData(4, seed=99),
        config,
        meta=meta,
        on_step=hooks,
    )


def weights(trainer_or_path):
    if isinstance(trainer_or_path, Trainer):
        return {k: v.clone() for k, v in trainer_or_path.model.state_dict().items()}
    return load_checkpoint(trainer_or_path)["model"]


def assert_same_weights(a, b):
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-6, atol=1e-7, msg=k)


def test_learning_happens_and_run_folder_is_complete(tmp_path):
    t = make_trainer(
        tmp_path, epochs=8, augment=False, dropout=0.0, lr=0.5, schedule="cosine", warmup=3, plots=True
    )
    out = t.fit()
    steps = read_csv(tmp_path / "steps.csv")
    assert len(steps) == 8 * 3
    first, last = float(steps[0]["loss"]), float(steps[-1]["loss"])
    assert last < 0.5 * first
    assert out["last"]["miou"] > 0.7  # bright squares on dim noise: an easy, learnable task
    epochs = read_csv(tmp_path / "log.csv")
    assert [int(r["epoch"]) for r in epochs] == list(range(1, 9))
    assert {"train_loss", "val_loss", "val_miou", "val_iou_blob", "seconds"} <= set(epochs[0])
    for name in ("last.pt", "best.pt", "loss.png", "metrics.png"):
        assert (tmp_path / name).stat().st_size > 0, name
    best = load_checkpoint(tmp_path / "best.pt")
    assert best["meta"] == META
    assert best["metrics"]["miou"] == pytest.approx(max(float(r["val_miou"]) for r in epochs))
    assert best["config"]["schedule"] == "cosine"


def test_iterations_instead_of_epochs(tmp_path):
    t = make_trainer(tmp_path, epochs=None, iters=7, optimizer="adamw", lr=0.01)
    assert isinstance(t.optimizer, torch.optim.AdamW)
    t.fit()
    assert t.step == 7
    rows = read_csv(tmp_path / "log.csv")
    # 3 steps per epoch: two full epochs and one of a single step, each evaluated at its end.
    assert [int(r["step"]) for r in rows] == [3, 6, 7]
    assert load_checkpoint(tmp_path / "last.pt")["step"] == 7


def test_crash_mid_epoch_then_resume_gives_same_weights(tmp_path):
    reference = make_trainer(tmp_path / "ref", workers=0)
    reference.fit()

    def crash(trainer):
        if trainer.step == 5:  # in the middle of epoch 2: a crash loses that epoch only
            raise RuntimeError("power cut")

    crashed = make_trainer(tmp_path / "run", hooks=[crash])
    with pytest.raises(RuntimeError, match="power cut"):
        crashed.fit()
    assert load_checkpoint(tmp_path / "run" / "last.pt")["step"] == 3
    resumed = make_trainer(tmp_path / "run", model_seed=123)  # a different init: the checkpoint must win
    resumed.fit(resume=tmp_path / "run" / "last.pt")
    assert_same_weights(weights(reference), weights(resumed))
    ref_steps = read_csv(tmp_path / "ref" / "steps.csv")
    run_steps = read_csv(tmp_path / "run" / "steps.csv")
    assert [r["loss"] for r in run_steps] == [r["loss"] for r in ref_steps]


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_saves_mid_epoch_and_resume_is_exact(tmp_path, sig):
    reference = make_trainer(tmp_path / "ref", workers=1)
    reference.fit()
    before = signal.getsignal(sig)

    def ctrl_c(trainer):
        if trainer.step == 4:
            os.kill(os.getpid(), sig)  # the real signal, as a terminal (or `timeout`) sends it

    run = make_trainer(tmp_path / "run", hooks=[ctrl_c], workers=1)
    with pytest.raises(TrainingInterrupted):
        run.fit()
    state = load_checkpoint(tmp_path / "run" / "last.pt")
    assert (state["epoch"], state["batch_in_epoch"], state["step"]) == (1, 1, 4)  # nothing lost
    resumed = make_trainer(tmp_path / "run", workers=1)
    resumed.fit(resume=tmp_path / "run" / "last.pt")
    assert_same_weights(weights(reference), weights(resumed))
    assert signal.getsignal(sig) is before


def test_nan_loss_stops_naming_the_step(tmp_path):
    def poison(trainer):
        if trainer.step == 4:
            with torch.no_grad():
                trainer.model.body[0].weight.fill_(float("nan"))

    t = make_trainer(tmp_path, hooks=[poison])
    with pytest.raises(NonFiniteLossError, match=r"loss is nan at epoch 2, step 5 \(batch 2 of 3\)"):
        t.fit()


def test_gradient_clipping_bounds_the_step(tmp_path):
    # Plain SGD, lr 1, constant schedule: one step moves the weights by exactly the clipped gradient.
    t = make_trainer(
        tmp_path,
        epochs=None,
        iters=1,
        lr=1.0,
        momentum=0.0,
        weight_decay=0.0,
        schedule="constant",
        clip_grad=0.01,
        dropout=0.0,
    )
    before = torch.cat([p.detach().flatten().clone() for p in t.model.parameters()])
    t.fit()
    after = torch.cat([p.detach().flatten() for p in t.model.parameters()])
    assert (after - before).norm().item() == pytest.approx(0.01, rel=1e-4)


def test_amp_bfloat16_on_cpu_trains(tmp_path):
    t = make_trainer(tmp_path, epochs=2, amp=True, augment=False, dropout=0.0)
    out = t.fit()
    losses = [float(r["loss"]) for r in read_csv(tmp_path / "steps.csv")]
    assert all(torch.isfinite(torch.tensor(losses)))
    assert losses[-1] < losses[0]
    assert out["last"]["miou"] > 0.0


def test_same_seed_same_run(tmp_path):
    a = make_trainer(tmp_path / "a", epochs=1)
    a.fit()
    b = make_trainer(tmp_path / "b", epochs=1)
    b.fit()
    assert_same_weights(weights(a), weights(b))


def test_resume_refuses_other_classes(tmp_path):
    make_trainer(tmp_path, epochs=1).fit()
    other = dict(META, classes=["sky", "road"])
    t = make_trainer(tmp_path, epochs=2, meta=other)
    with pytest.raises(ValueError, match=r"\['background', 'blob'\].*\['sky', 'road'\]"):
        t.fit(resume=tmp_path / "last.pt")
