"""A checkpoint to ONNX (or TorchScript), with the metadata ``predict`` needs, checked against PyTorch.

What the graph computes, per family (the input is always floats in [0, 1]; normalisation is inside):

- segmenter: ``images [B, C, H, W]`` -> ``logits [B, K, H, W]`` (``output="argmax"``: ``classes
  [B, H, W]`` int64); B is dynamic, H and W fixed at the export size unless ``dynamic``;
- classifier: ``images [B, C, S, S]`` -> ``logits [B, K]``;
- detector: ``images [3, H, W]`` (one image, any size) -> ``boxes [N, 4]`` XYXY in the image's pixels,
  ``labels [N]`` 0-based, ``scores [N]`` (``masks [N, 1, H, W]`` for Mask R-CNN): the whole model,
  resizing, post-processing and NMS included, so the boxes after NMS are the checkpoint's.

Exported with the TorchScript-based exporter (``dynamo=False``), the robust one for torchvision's
detectors; R-FCN's position-sensitive RoI align goes through :mod:`detseg.export.exportable_ops`.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from detseg.engine.onnx_runtime import META_KEY


class ExportError(ValueError):
    """The model cannot be exported (an op ONNX lacks) or the export disagrees with PyTorch."""


class SegmenterGraph(nn.Module):
    """``images [B, C, H, W]`` -> logits ``[B, K, H, W]``, or class indices ``[B, H, W]`` (``argmax``)."""

    def __init__(self, model: nn.Module, argmax: bool = False):
        super().__init__()
        self.model, self.argmax = model, argmax

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        from detseg.engine.tasks import class_logits

        logits = self.model(images)
        return class_logits(logits).argmax(1) if self.argmax else logits


class DetectorGraph(nn.Module):
    """``image [3, H, W]`` -> ``boxes [N, 4], labels [N], scores [N]`` (and ``masks``): one image."""

    def __init__(self, model: nn.Module, with_masks: bool = False):
        super().__init__()
        self.model, self.with_masks = model, with_masks

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = self.model([image])[0]
        parts = (out["boxes"], out["labels"], out["scores"])
        return (*parts, out["masks"]) if self.with_masks else parts


def _input_size(meta: dict[str, Any], img_size: int | list[int] | None) -> tuple[int, int]:
    size = img_size if img_size is not None else meta.get("img_size")
    if size is None:
        from detseg.models.zoo import model_info

        size = list(model_info(meta["model"]).input_size[-2:])
    if isinstance(size, int | float):
        return int(size), int(size)
    return int(size[0]), int(size[-1])


def _meta_size(size: tuple[int, int]) -> int | list[int]:
    """The size as checkpoints write it: one int when square (what ``predict`` and ``eval`` expect)."""
    return size[0] if size[0] == size[1] else list(size)


def _normalisation(model: nn.Module) -> dict[str, list[float]] | None:
    """Mean and std the model applies inside (its own buffers, or torchvision's transform's)."""
    transform = getattr(model, "transform", None)
    if transform is not None and hasattr(transform, "image_mean"):
        return {"mean": list(map(float, transform.image_mean)), "std": list(map(float, transform.image_std))}
    for module in model.modules():
        mean, std = getattr(module, "mean", None), getattr(module, "std", None)
        if isinstance(mean, torch.Tensor) and isinstance(std, torch.Tensor):
            return {"mean": mean.flatten().tolist(), "std": std.flatten().tolist()}
    return None


def _score_threshold(model: nn.Module) -> float | None:
    for owner in (model, getattr(model, "roi_heads", None)):
        value = getattr(owner, "score_thresh", None)
        if isinstance(value, int | float):
            return float(value)
    return None


def _graph(model: nn.Module, meta: dict[str, Any], output: str) -> tuple[nn.Module, str, list[str]]:
    """The module to export, the output kind (see runtime's OnnxModel) and the output names."""
    task = meta.get("task", "segment")
    if task in ("detect", "instance"):
        heads = getattr(model, "roi_heads", None)
        masks = bool(meta.get("instance")) or getattr(heads, "mask_predictor", None) is not None
        names = ["boxes", "labels", "scores", *(["masks"] if masks else [])]
        return DetectorGraph(model, masks).eval(), "detections", names
    if task == "classify":
        return SegmenterGraph(model).eval(), "classify", ["logits"]
    if output not in ("logits", "argmax"):
        raise ValueError(f"output must be 'logits' or 'argmax' for a segmenter, got {output!r}")
    argmax = output == "argmax"
    return SegmenterGraph(model, argmax).eval(), output, ["classes" if argmax else "logits"]


def _sample(task: str, channels: int, size: tuple[int, int], sample: str | Path | None) -> torch.Tensor:
    """The self-check's input: ``sample`` (an image file, resized for segmenters/classifiers) or seeded
    noise; ``[3, H, W]`` for detectors, ``[2, C, H, W]`` otherwise (two images test the batch axis)."""
    if sample is not None:
        from detseg.data.masks import read_image

        image = torch.from_numpy(read_image(sample, channels=channels)).permute(2, 0, 1).float() / 255
        if task in ("detect", "instance"):
            return image
        image = torch.nn.functional.interpolate(image[None], size=size, mode="bilinear", align_corners=False)
        return torch.cat([image, image.flip(-1)])
    generator = torch.Generator().manual_seed(0)
    if task in ("detect", "instance"):
        return torch.rand(3, *size, generator=generator)
    return torch.rand(2, channels, *size, generator=generator)


def export_onnx(
    weights: str | Path,
    out: str | Path,
    img_size: int | list[int] | None = None,
    dynamic: bool = False,
    opset: int = 17,
    half: bool = False,
    output: str = "logits",
    sample: str | Path | None = None,
    check: bool = True,
) -> dict[str, Any]:
    """Export a checkpoint (or run folder) to ``out`` (.onnx), check it, return a summary.

    ``img_size``: the input side (default the training size); ``dynamic``: segmenters and classifiers
    take any H, W (detectors always do); ``half``: float16 weights and input (for the CUDA provider);
    ``output``: a segmenter's ``"logits"`` or ``"argmax"``. The summary holds ``path``, ``seconds``,
    ``input_shape`` and the check's figures (``max_abs_diff``; segmenters ``pixel_agreement``; detectors
    ``max_box_diff``, ``max_score_diff``, ``unmatched``, ``detections``). A check that fails (under
    99.9 % pixels, any unmatched detection or a box off by more than 0.5 px) raises :class:`ExportError`
    and writes nothing.
    """
    import onnx

    from detseg import __version__
    from detseg.engine.loader import load_model
    from detseg.export.exportable_ops import exportable_ops, unsupported_op_name

    model, meta = load_model(weights, "cpu")
    task = meta.get("task", "segment")
    if half and task in ("detect", "instance"):
        raise ValueError("--half: detectors export in float32 only (their NMS and box decoding need it)")
    size = _input_size(meta, img_size)
    graph, kind, output_names = _graph(model, meta, output)
    channels = int(meta.get("channels", 3))
    x = _sample(task, channels, size, sample)
    if half:
        graph, x = graph.half(), x.half()
    detector = kind == "detections"
    if detector:
        axes = {"images": {1: "height", 2: "width"}, **{n: {0: "detections"} for n in output_names}}
    else:
        spatial = {2: "height", 3: "width"} if dynamic else {}
        axes = {"images": {0: "batch", **spatial}, output_names[0]: {0: "batch"}}
        if task != "classify":
            axes[output_names[0]].update({1: "height", 2: "width"} if kind == "argmax" else spatial)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    os.close(fd)
    start = time.perf_counter()
    try:
        with exportable_ops(), warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # tracer warnings about constants: the check below decides
            example = x if detector else x[:1]
            torch.onnx.export(
                graph,
                (example,),
                tmp,
                dynamo=False,
                opset_version=opset,
                input_names=["images"],
                output_names=output_names,
                dynamic_axes=axes,
                do_constant_folding=True,
            )
        proto = onnx.load(tmp)
        meta = {
            **meta,
            "img_size": _meta_size(size),
            "onnx_output": kind,
            "opset": opset,
            "dynamic": dynamic,
            "half": half,
        }
        props = {
            META_KEY: json.dumps(meta),
            "model": str(meta.get("model")),
            "task": task,
            "classes": json.dumps(list(meta["classes"])),
            "input_size": f"{size[0]}x{size[1]}",
            "normalization": json.dumps(_normalisation(model)),
            "score_threshold": json.dumps(_score_threshold(model)),
            "detseg_version": __version__,
            "output": kind,
        }
        del proto.metadata_props[:]
        for key, value in props.items():
            proto.metadata_props.add(key=key, value=value)
        proto.producer_name = "detseg"
        onnx.save(proto, tmp)
        summary = {
            "path": str(out),
            "seconds": time.perf_counter() - start,
            "task": task,
            "output": kind,
            "input_shape": list(x.shape if detector else (1, *x.shape[1:])),
        }
        if check:
            summary.update(check_onnx(tmp, meta, graph if not detector else model, x))
        os.replace(tmp, out)
    except (
        torch.onnx.errors.UnsupportedOperatorError,
        torch.onnx.errors.OnnxExporterError,
        torch.onnx.errors.SymbolicValueError,
    ) as exc:
        op = unsupported_op_name(exc) or "an operator"
        first = str(exc).strip().splitlines()[0]
        raise ExportError(
            f"model {meta.get('model')}: {op} cannot be exported to ONNX opset {opset} ({first})"
        ) from exc
    finally:
        Path(tmp).unlink(missing_ok=True)
    return summary


def compare_detections(
    ref: dict[str, torch.Tensor], out: dict[str, torch.Tensor], score_tol: float = 1e-3, box_tol: float = 0.5
) -> dict[str, float]:
    """Pair each reference detection with an unused one of the same label, a score within ``score_tol``
    and the nearest box, kept when that box is within ``box_tol`` px (every coordinate).

    Returns ``max_box_diff`` and ``max_score_diff`` over the pairs, ``unmatched`` (detections of either
    list without a partner), ``at_cut`` (unmatched ones scoring within ``score_tol`` of the lowest score
    kept, where the per-image cap cuts through near-tied scores and either side may keep a box; not in
    ``unmatched``) and ``detections`` (the reference's count)."""
    rb, rl, rs = (ref[k].detach().cpu().double().numpy() for k in ("boxes", "labels", "scores"))
    ob, ol, os_ = (out[k].detach().cpu().double().numpy() for k in ("boxes", "labels", "scores"))
    used = np.zeros(len(ob), dtype=bool)
    box_diff = score_diff = 0.0
    lost = []
    for i in np.argsort(-rs, kind="stable"):
        ok = (~used) & (ol == rl[i]) & (np.abs(os_ - rs[i]) <= score_tol)
        dist = np.where(ok, np.abs(ob - rb[i]).max(1) if len(ob) else 0.0, np.inf)
        j = int(np.argmin(dist)) if len(ob) else -1
        if j < 0 or dist[j] > box_tol:
            lost.append(rs[i])
            continue
        used[j] = True
        box_diff, score_diff = max(box_diff, float(dist[j])), max(score_diff, float(abs(os_[j] - rs[i])))
    lost.extend(os_[~used])
    capped = len(rs) == len(os_) and len(rs) > 0
    floor = max(rs.min(), os_.min()) if capped else -np.inf
    at_cut = sum(1 for score in lost if score <= floor + score_tol)
    return {
        "max_box_diff": box_diff,
        "max_score_diff": score_diff,
        "unmatched": len(lost) - at_cut,
        "at_cut": at_cut,
        "detections": len(rb),
    }


@torch.no_grad()
def check_onnx(
    path: str | Path, meta: dict[str, Any], reference: nn.Module, x: torch.Tensor
) -> dict[str, Any]:
    """Run ONNX Runtime on ``x`` beside ``reference`` (the PyTorch graph, or the detector itself) and
    compare; raises :class:`ExportError` when they disagree beyond the promised tolerance."""
    from detseg.engine.onnx_runtime import OnnxModel
    from detseg.engine.tasks import class_logits

    runtime = OnnxModel(path, meta)
    if runtime.kind == "detections":
        # Twice: at the traced size and at another one (a size baked into the graph shows there).
        h, w = x.shape[-2:]
        other = torch.nn.functional.interpolate(x[None], size=(max(16, 3 * h // 4), w), mode="bilinear")[0]
        reports = [compare_detections(reference([s])[0], runtime([s.float()])[0]) for s in (x, other)]
        report = {k: max(r[k] for r in reports) for k in reports[0]}
        report["max_abs_diff"] = report["max_box_diff"]
        if report["unmatched"] or report["max_box_diff"] > 0.5:
            raise ExportError(
                f"{meta.get('model')}: ONNX Runtime's detections differ from PyTorch's "
                f"({report['unmatched']} unmatched of {report['detections']}, boxes up to "
                f"{report['max_box_diff']:.3g} px apart); near-tied scores (an untrained model, a noise "
                "sample) can cause this: try --sample IMAGE, or --no-check"
            )
        return report
    ref = reference(x).float()
    raw = runtime.session.run(None, {runtime.input_name: x.numpy()})[0]
    got = torch.from_numpy(raw).float()
    report: dict[str, Any] = {"max_abs_diff": float((got - ref).abs().max()) if got.numel() else 0.0}
    if runtime.kind in ("logits", "argmax"):
        if runtime.kind == "logits":
            ref, got = class_logits(ref).argmax(1), class_logits(got).argmax(1)
        report["pixel_agreement"] = float((ref == got).float().mean())
        if report["pixel_agreement"] < 0.999 and not meta.get("half"):
            raise ExportError(
                f"{meta.get('model')}: ONNX Runtime agrees with PyTorch on only "
                f"{100 * report['pixel_agreement']:.2f} % of the pixels"
            )
    elif runtime.kind == "classify":
        report["top1_agreement"] = float((ref.argmax(1) == got.argmax(1)).float().mean())
    return report


def export_torchscript(
    weights: str | Path, out: str | Path, img_size: int | list[int] | None = None, output: str = "logits"
) -> dict[str, Any]:
    """A segmenter or classifier traced to TorchScript (``torch.jit.load`` runs it without detseg), with
    the checkpoint's ``meta`` as the extra file ``detseg_meta.json``; checked on two noise images."""
    from detseg.engine.loader import load_model

    model, meta = load_model(weights, "cpu")
    task = meta.get("task", "segment")
    if task in ("detect", "instance"):
        raise ValueError("--format torchscript: detectors export to ONNX only (--format onnx)")
    size = _input_size(meta, img_size)
    graph, kind, _ = _graph(model, meta, output)
    x = _sample(task, int(meta.get("channels", 3)), size, None)
    start = time.perf_counter()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(graph, x[:1])
        diff = float((traced(x).float() - graph(x).float()).abs().max())
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    os.close(fd)
    try:
        meta = {**meta, "img_size": _meta_size(size), "onnx_output": kind}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # torch.jit.save's deprecation notice
            torch.jit.save(traced, tmp, _extra_files={"detseg_meta.json": json.dumps(meta)})
        os.replace(tmp, out)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return {
        "path": str(out),
        "seconds": time.perf_counter() - start,
        "task": task,
        "output": kind,
        "input_shape": [1, *x.shape[1:]],
        "max_abs_diff": diff,
    }
