"""Checkpoints: atomic writes, weights-only reads, RNG states that replay the same draws."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from detseg.engine import checkpoint
from detseg.engine.checkpoint import check_classes, load_checkpoint, rng_state, save_checkpoint, set_rng_state


def test_round_trip_with_weights_only(tmp_path):
    model = torch.nn.Linear(3, 2)
    path = save_checkpoint(
        {"model": model.state_dict(), "meta": {"classes": ["a", "b"], "values": [0, 255]}}, tmp_path / "x.pt"
    )
    state = load_checkpoint(path)
    assert torch.equal(state["model"]["weight"], model.weight.detach())
    assert state["meta"] == {"classes": ["a", "b"], "values": [0, 255]}
    assert list(tmp_path.iterdir()) == [path]  # no temporary file left behind


def test_failed_write_leaves_previous_file_intact(tmp_path, monkeypatch):
    path = save_checkpoint({"step": 1}, tmp_path / "last.pt")
    before = path.read_bytes()

    def broken_save(obj, f):
        f.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(checkpoint.torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint({"step": 2}, path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]


def test_folder_resolves_to_best_then_last(tmp_path):
    save_checkpoint({"step": 5}, tmp_path / "last.pt")
    assert load_checkpoint(tmp_path)["step"] == 5
    save_checkpoint({"step": 3}, tmp_path / "best.pt")
    assert load_checkpoint(tmp_path)["step"] == 3


def test_foreign_files_are_refused_by_name(tmp_path):
    torch.save({"weights": torch.zeros(2)}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="other.pt: not a detseg checkpoint"):
        load_checkpoint(tmp_path / "other.pt")
    (tmp_path / "junk.pt").write_bytes(b"\x00not a zip")
    with pytest.raises(ValueError, match="junk.pt: not a readable detseg checkpoint"):
        load_checkpoint(tmp_path / "junk.pt")
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        load_checkpoint(tmp_path / "missing.pt")


def test_rng_states_survive_a_weights_only_file(tmp_path):
    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    np.random.randn()  # leaves a cached Gaussian in numpy's state
    save_checkpoint({"rng": rng_state()}, tmp_path / "rng.pt")
    expected = (random.random(), np.random.randn(), np.random.rand(), torch.rand(3))
    random.seed(9), np.random.seed(9), torch.manual_seed(9)
    set_rng_state(load_checkpoint(tmp_path / "rng.pt")["rng"])
    got = (random.random(), np.random.randn(), np.random.rand(), torch.rand(3))
    assert got[:3] == expected[:3]
    assert torch.equal(got[3], expected[3])


def test_class_mismatch_names_both_lists():
    check_classes(["membrane", "cell"], ["membrane", "cell"])
    with pytest.raises(ValueError, match=r"\['cat', 'dog'\].*\['membrane', 'cell'\]"):
        check_classes(["membrane", "cell"], ["cat", "dog"], where="spec.yaml")
