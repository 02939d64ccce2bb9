"""The one loader: a model and its ``meta`` from whatever names it, for predict, eval, export, the
transfer study and :func:`detseg.load`.

    model, meta = load("runs/x/best.pt")                       # a detseg checkpoint or run folder
    model, meta = load("runs/x/best.onnx")                     # its ONNX export (ONNX Runtime)
    model, meta = load("ssdlite320_mobilenet_v3_large", "COCO_V1")   # torchvision's weights by name
    model, meta = load("ssdlite320_mobilenet_v3_large", "https://host/ssdlite.pth")  # same as the file
    model, meta = load("timm:tf_efficientnet_lite0", "in1k")   # timm's classifiers
    model, meta = load("unet", "zoo:unet_shapes")              # what `detseg zoo build` cached

The weights source is parsed once (:func:`detseg.models.weights.parse_weights_source`): a URL is the
file it downloads to, so a whole detector's state dict loads the whole detector either way, and a
detseg checkpoint given as ``pretrained`` (file or URL) loads as the checkpoint it is.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import torch
from torch import nn

from detseg.engine.checkpoint import inference_weights, load_checkpoint
from detseg.models.registry import is_timm_name


def build_model(meta: dict[str, Any]) -> nn.Module:
    """The model a checkpoint's ``meta`` describes (weights not loaded)."""
    from detseg.models.zoo import create_model

    if "model" not in meta:
        raise ValueError("the checkpoint names no model (meta['model'] is missing)")
    kwargs = dict(meta.get("model_kwargs", {}))
    if meta.get("builder_pretrained"):
        from detseg.models.weights import WeightsDeferred

        # The architecture made for pre-trained weights (frozen BatchNorm...), nothing loaded: the
        # checkpoint holds every weight.
        kwargs["pretrained"] = WeightsDeferred()
    return create_model(meta["model"], **kwargs)


def load_model(
    weights: str | Path,
    device: str | torch.device = "cpu",
    classes: list[str] | None = None,
    img_size: int | None = None,
) -> tuple[nn.Module, dict[str, Any]]:
    """The trained model of a checkpoint (or run folder), in eval mode, and its ``meta``.

    An ``.onnx`` file gives an :class:`~detseg.engine.onnx_runtime.OnnxModel` called the same way (an
    OpenVINO ``.xml`` an :class:`~detseg.engine.openvino_runtime.OpenVinoModel`); ``classes``
    and ``img_size`` stand in for the metadata of an ONNX file that detseg did not write.
    """
    if Path(weights).suffix.lower() == ".onnx":
        from detseg.engine.onnx_runtime import load_onnx

        return load_onnx(weights, str(device), classes, img_size)
    if Path(weights).suffix.lower() == ".xml":  # an OpenVINO IR (detseg export --format openvino)
        from detseg.engine.openvino_runtime import load_openvino

        return load_openvino(weights, str(device), classes, img_size)
    return _from_state(load_checkpoint(weights, map_location=device), device)


def _from_state(state: dict[str, Any], device: str | torch.device) -> tuple[nn.Module, dict[str, Any]]:
    """The model of a read checkpoint, in eval mode on ``device``, and its ``meta``."""
    meta = dict(state.get("meta", {}))
    model = build_model(meta)
    model.load_state_dict(inference_weights(state))
    return model.to(device).eval(), meta


def load(
    source: str | Path,
    pretrained: Any = None,
    device: str | torch.device = "cpu",
    classes: list[str] | None = None,
    img_size: int | None = None,
    offline: bool | None = None,
) -> tuple[nn.Module, dict[str, Any]]:
    """``source`` in eval mode on ``device`` and its ``meta`` (task, model, classes, category ids...).

    ``source``: a checkpoint, a run folder, an ``.onnx`` file (``pretrained`` None; ``classes`` and
    ``img_size`` for an ONNX file without detseg's metadata) or ``zoo:NAME``; or a registered or
    ``timm:`` model name with its ``pretrained`` weights (a torchvision weights name, a URL, a file,
    ``zoo:NAME``, a timm tag, a detseg checkpoint of that model). ``offline=True`` never downloads."""
    from detseg.models.weights import offline_mode

    with offline_mode(offline) if offline is not None else contextlib.nullcontext():
        name = str(source)
        if pretrained is None and name.startswith("zoo:"):  # a zoo build is a detseg checkpoint
            return _from_state(_checkpoint(name), device)
        if pretrained is None and (Path(name).exists() or _reads_as_path(name)):
            return load_model(source, device, classes, img_size)
        from detseg.engine.pretrained import load_pretrained_model

        checkpoint = None if is_timm_name(name) else _checkpoint(pretrained)
        if checkpoint is None:
            return load_pretrained_model(name, pretrained, device)
        model, meta = _from_state(checkpoint, device)
        if meta.get("model") != name:
            raise ValueError(f"{pretrained}: a checkpoint of {meta.get('model')!r}, not of {name!r}")
        return model, meta


def _reads_as_path(name: str) -> bool:
    """A missing checkpoint, not a model name: said as "checkpoint not found", not "unknown model"."""
    if is_timm_name(name):
        return False
    return "/" in name or "\\" in name or Path(name).suffix.lower() in (".pt", ".pth", ".onnx", ".xml")


def _checkpoint(pretrained: Any) -> dict[str, Any] | None:
    """The detseg checkpoint (a file, a run folder, a URL of one, ``zoo:NAME``: its SHA-256 checked) that
    ``pretrained`` is, read once (on the CPU), or None."""
    from detseg.models.weights import file_sha256, parse_weights_source, zoo_cached

    if not isinstance(pretrained, (str, Path)):
        return None
    source = parse_weights_source(pretrained)
    if source.scheme == "zoo":
        path, sha256, _ = zoo_cached(source.location)
        if not file_sha256(path).startswith(sha256):
            raise ValueError(f"{path}: its SHA-256 is not the {sha256} its record says; rebuild it")
        return load_checkpoint(path)
    if source.scheme not in ("file", "url"):
        return None
    path = Path(source.location)
    if source.scheme == "file" and not (path.is_file() or (path.is_dir() and any(path.glob("*.pt")))):
        return None
    path = source.local_file() if source.scheme == "url" else path
    try:
        return load_checkpoint(path)
    except ValueError:
        return None
