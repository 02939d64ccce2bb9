"""The one loader (detseg.engine.loader.load, behind detseg.load, predict, eval, export): a detseg
checkpoint means the same as a file, a URL or ``zoo:NAME``; a missing file is said as one."""

from __future__ import annotations

import json

import pytest
import torch
from test_results import _unet_checkpoint, serve_folder

import detseg
from detseg.engine.loader import load
from detseg.models.weights import file_sha256


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    pairs = zip(a.state_dict().values(), b.state_dict().values(), strict=True)
    return all(torch.equal(x, y) for x, y in pairs)


def test_a_checkpoint_loads_the_same_as_a_file_a_url_and_zoo(tmp_path, monkeypatch, local_server):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("DETSEG_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("DETSEG_OFFLINE", raising=False)
    path = _unet_checkpoint(tmp_path / "run")
    model, meta = load(path)
    assert meta["classes"] == ["membrane", "cell"] and not model.training
    same_run, _ = load(tmp_path / "run")  # the run folder: its best.pt
    as_weights, _ = load("unet", str(path))  # a checkpoint as --pretrained: the checkpoint it is
    from_url, url_meta = load("unet", f"{serve_folder(local_server, path.parent)}/best.pt")
    zoo = tmp_path / "home" / "zoo"
    zoo.mkdir(parents=True)
    (zoo / "unet_tiny.pt").write_bytes(path.read_bytes())
    (zoo / "unet_tiny.json").write_text(json.dumps({"sha256": file_sha256(path), "meta": meta}))
    from_zoo = detseg.load("zoo:unet_tiny")
    assert from_zoo.names == url_meta["classes"] == meta["classes"]
    for other in (same_run, as_weights, from_url, from_zoo.module):
        assert _same_weights(model, other)
    with pytest.raises(ValueError, match="a checkpoint of 'unet', not of 'fcn8s_vgg16'"):
        load("fcn8s_vgg16", str(path))


def test_a_missing_checkpoint_is_said_as_one(tmp_path):
    with pytest.raises(FileNotFoundError, match="checkpoint not found"):
        detseg.load(tmp_path / "runs" / "best.pt")
