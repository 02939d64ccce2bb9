"""Classifying images with a classifier (a trained ``task: classify`` run, or timm's ImageNet model used
as is): ``<out>/predictions.json`` and contact sheets of the images with their top-1 names.

    detseg predict --model timm:tf_efficientnet_lite0 --pretrained in1k --source DIR --out OUT

``predictions.json``: one record per image, ``{"file": "ants/0013035.jpg", "top5": [{"id": 310,
"name": "ant", "score": 0.91}, ...]}`` (``file`` relative to the source folder, searched at any depth;
scores are softmax probabilities, descending; ids in the weights' own layout, 0-999 for ImageNet).
``contact_sheet.jpg`` (``contact_sheet_2.jpg``... past :data:`PER_SHEET` images): thumbnails captioned
with the top-1 name and score.

Preprocessing is the evaluation preset of detseg's classifiers (resize the short side to
``size / crop_pct``, centre crop ``size``, floats in [0, 1]); the model normalises inside.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from detseg.engine.speed import SpeedMeter, speed_line, write_speed

PER_SHEET = 48


def classification_sources(source: str | Path) -> tuple[list[Path], Path]:
    """The images of ``source`` (a file, or a folder searched at any depth, sorted) and the folder
    their ``file`` names are relative to."""
    from detseg.data.masks import IMAGE_EXTENSIONS

    source = Path(source)
    if source.is_file():
        return [source], source.parent
    if not source.is_dir():
        raise FileNotFoundError(f"image or folder not found: {source}")
    images = sorted(p for p in source.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
    if not images:
        raise ValueError(f"{source}: no images ({', '.join(IMAGE_EXTENSIONS)}) in this folder or below")
    return images, source


@torch.no_grad()
def classify_images(
    model: nn.Module,
    paths: list[Path],
    size: int = 224,
    crop_pct: float = 0.875,
    batch_size: int = 16,
    topk: int = 5,
    meter: SpeedMeter | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(scores [N, k], ids [N, k])``: the ``topk`` softmax probabilities of every image, descending.
    ``meter`` collects the per-image preprocess / inference / postprocess milliseconds."""
    from torchvision import tv_tensors

    from detseg.data.classification import classification_eval_preset
    from detseg.data.masks import read_image

    preset = classification_eval_preset(size, crop_pct)
    device = next(model.parameters()).device
    meter = meter or SpeedMeter(device)
    scores, ids = [], []
    for start in range(0, len(paths), batch_size):
        t0 = meter.now()
        batch = []
        for path in paths[start : start + batch_size]:
            image = tv_tensors.Image(torch.from_numpy(read_image(path, 3)).permute(2, 0, 1).contiguous())
            batch.append(preset(image))
            meter.add_size(*batch[-1].shape[-2:])
        x = torch.stack(batch).to(device)
        t1 = meter.now()
        logits = model(x)
        t2 = meter.now()
        probs = logits.float().softmax(1).cpu()
        top = probs.topk(min(topk, probs.shape[1]), dim=1)
        scores.append(top.values)
        ids.append(top.indices)
        t3 = meter.now()
        for stage, seconds in zip(SpeedMeter.STAGES, (t1 - t0, t2 - t1, t3 - t2), strict=True):
            meter.add(stage, seconds, len(batch))
    return torch.cat(scores), torch.cat(ids)


def contact_sheet(
    items: list[tuple[Path, str]], thumb: int = 160, columns: int = 8, caption: int = 18
) -> np.ndarray:
    """``[(image file, caption)]`` -> one RGB ``uint8`` picture: centre-cropped square thumbnails in rows
    of ``columns``, each with its caption below."""
    from PIL import Image, ImageDraw, ImageFont, ImageOps

    from detseg.data.masks import read_image

    rows = -(-len(items) // columns)
    sheet = Image.new("RGB", (columns * thumb, rows * (thumb + caption)), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default()
    for i, (path, text) in enumerate(items):
        x, y = (i % columns) * thumb, (i // columns) * (thumb + caption)
        picture = ImageOps.fit(Image.fromarray(read_image(path, 3)), (thumb, thumb))
        sheet.paste(picture, (x, y))
        while text and draw.textlength(text, font=font) > thumb - 4:
            text = text[:-1]
        draw.text((x + 2, y + thumb + 3), text, fill=(0, 0, 0), font=font)
    return np.asarray(sheet)


def predict_classification(
    model: nn.Module,
    source: str | Path,
    out: str | Path,
    class_names: list[str] | None = None,
    size: int = 224,
    crop_pct: float = 0.875,
    batch_size: int = 16,
    topk: int = 5,
    sheets: bool = True,
) -> dict[str, Any]:
    """Classify every image of ``source`` with ``model`` (eval mode, floats in [0, 1] in, logits out);
    write ``<out>/predictions.json`` and the contact sheets. Returns a summary."""
    from detseg.viz.draw import save_image

    paths, root = classification_sources(source)
    model.eval()
    device = next(model.parameters()).device
    meter = SpeedMeter(device)
    scores, ids = classify_images(model, paths, size, crop_pct, batch_size, topk, meter)
    names = class_names or [str(i) for i in range(int(ids.max()) + 1)]
    records = []
    for path, row_scores, row_ids in zip(paths, scores.tolist(), ids.tolist(), strict=True):
        top = [{"id": int(i), "name": names[i], "score": round(s, 5)} for i, s in zip(row_ids, row_scores,
                                                                                      strict=True)]
        records.append({"file": path.relative_to(root).as_posix(), "top5": top})
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "predictions.json").write_text(json.dumps(records, indent=1))
    speed = meter.summary(backend="pytorch", device=str(device), batch_size=batch_size)
    write_speed(out / "speed.json", speed)
    written = []
    if sheets:
        captions = [(p, f"{r['top5'][0]['name']} {r['top5'][0]['score']:.2f}") for p, r in zip(paths, records,
                                                                                              strict=True)]
        for n, start in enumerate(range(0, len(captions), PER_SHEET), start=1):
            target = out / ("contact_sheet.jpg" if n == 1 else f"contact_sheet_{n}.jpg")
            save_image(target, contact_sheet(captions[start : start + PER_SHEET]))
            written.append(str(target))
    top1 = {}
    for record in records:
        name = record["top5"][0]["name"]
        top1[name] = top1.get(name, 0) + 1
    return {
        "task": "classify",
        "images": len(records),
        "predictions": str(out / "predictions.json"),
        "sheets": written,
        "top1_counts": dict(sorted(top1.items(), key=lambda kv: -kv[1])),
        "speed": speed,
        "speed_line": speed_line(speed),
    }


def predict_pretrained(
    model_name: str,
    pretrained: Any,
    source: str | Path,
    out: str | Path,
    device: str = "cpu",
    batch_size: int = 16,
) -> dict[str, Any]:
    """``detseg predict --model NAME --pretrained WEIGHTS``: a classifier used as its weights made it
    (``timm:tf_efficientnet_lite0`` + ``in1k``: ImageNet's 1000 classes, named), loaded by the one loader
    (:func:`detseg.engine.loader.load`) as ``detseg.load`` and ``detseg eval`` load it."""
    from detseg.engine.loader import load
    from detseg.models.zoo import model_info

    info = model_info(model_name)
    if info.task != "classify":
        raise ValueError(f"--model {model_name} is a {info.task} model; predict --model runs classifiers "
                         "(a trained detector or segmenter: --weights RUN/best.pt)")
    model, meta = load(model_name, pretrained, device)
    cfg = getattr(model, "pretrained_cfg", {}) or {}
    size = int((cfg.get("input_size") or info.input_size)[-1])
    crop_pct = float(cfg.get("crop_pct") or 0.875)
    summary = predict_classification(model, source, out, meta["classes"], size, crop_pct, batch_size)
    summary["weights"] = meta["weights"]
    return summary
