"""The semantic segmentation evaluation report: ``DIR/index.html``, pictures in ``DIR/img``, the
metrics in ``DIR/metrics.json``.

Sections: the summary (mIoU, mDice, pixel and mean accuracy, fwIoU), a per-class table (IoU, Dice,
accuracy, precision, pixel counts), the confusion matrix (each true class's pixels, in percent, by
predicted class), and the worst images by mIoU as image | truth | prediction | errors side by side,
with a legend of the class colours.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path

import cv2
import numpy as np

from detseg.jsonio import dumps
from detseg.viz import report as H
from detseg.viz.draw import default_palette
from detseg.viz.gallery import save_jpeg

PANEL_H = 200
WRONG = np.array([255, 176, 0], np.uint8)  # amber: apart from the VOC class colours


def image_scores(truth: np.ndarray, pred: np.ndarray, num_classes: int, ignore_index: int | None) -> dict:
    """One image's mIoU and pixel accuracy (classes in neither truth nor prediction left out)."""
    t, p = truth.reshape(-1).astype(np.int64), pred.reshape(-1).astype(np.int64)
    keep = (t != ignore_index) if ignore_index is not None else np.ones(len(t), bool)
    keep &= (p >= 0) & (p < num_classes) & (t >= 0) & (t < num_classes)
    t, p = t[keep], p[keep]
    conf = np.bincount(t * num_classes + p, minlength=num_classes * num_classes).reshape(num_classes, -1)
    tp = np.diag(conf).astype(np.float64)
    union = conf.sum(0) + conf.sum(1) - tp
    iou = tp[union > 0] / union[union > 0]
    return {
        "miou": float(iou.mean()) if len(iou) else float("nan"),
        "pixel_accuracy": float(tp.sum() / len(t)) if len(t) else float("nan"),
        "pixels": int(len(t)),
    }


def _colorize(
    mask: np.ndarray, palette: np.ndarray, num_classes: int, ignore_index: int | None
) -> np.ndarray:
    out = np.full((*mask.shape, 3), 255, np.uint8)
    out[:] = (255, 0, 255)  # values that are neither a class nor the ignore index
    known = (mask >= 0) & (mask < num_classes)
    out[known] = palette[mask[known]]
    if ignore_index is not None:
        out[mask == ignore_index] = (224, 224, 192)
    return out


def _panels(image, truth, pred, palette, num_classes, ignore_index) -> np.ndarray:
    """image | truth | prediction | errors (wrong pixels red over the greyed image), one picture."""
    h, w = truth.shape
    scale = PANEL_H / h
    size = (max(1, round(w * scale)), PANEL_H)
    if image is None:
        base = np.full((h, w, 3), 40, np.uint8)
    else:
        base = image if image.shape[:2] == (h, w) else cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA)
    grey = cv2.cvtColor(cv2.cvtColor(base, cv2.COLOR_RGB2GRAY), cv2.COLOR_GRAY2RGB)
    errors = (grey.astype(np.float32) * 0.55 + 255 * 0.2).astype(np.uint8)
    wrong = pred != truth
    if ignore_index is not None:
        wrong &= truth != ignore_index
        errors[truth == ignore_index] = (224, 224, 192)
    errors[wrong] = WRONG
    pics = [base, _colorize(truth, palette, num_classes, ignore_index)]
    pics += [_colorize(pred, palette, num_classes, ignore_index), errors]
    resized = [
        cv2.resize(p, size, interpolation=cv2.INTER_AREA if i == 0 else cv2.INTER_NEAREST)
        for i, p in enumerate(pics)
    ]
    gap = np.full((PANEL_H, 6, 3), 255, np.uint8)
    row = []
    for i, p in enumerate(resized):
        row += [p] if i == 0 else [gap, p]
    return np.concatenate(row, axis=1)


def write_segmentation_report(
    out_dir: str | Path,
    metrics: dict,
    class_names: Sequence[str],
    per_image: list[dict],
    load: Callable[[int], tuple[np.ndarray | None, np.ndarray, np.ndarray]],
    ignore_index: int | None = 255,
    title: str = "",
    max_items: int = 8,
) -> dict:
    """Write the report; returns ``{"report": DIR/index.html, "report_missing": images not found}``.

    ``metrics``: ``segmentation_scores`` (plus anything else for metrics.json); ``per_image``: one dict
    per image with ``name``, ``miou``, ``pixel_accuracy`` (``image_scores``); ``load(i)`` gives image i's
    ``(RGB image or None when not found, truth [H, W], prediction [H, W])``."""
    out = Path(out_dir)
    (out / "img").mkdir(parents=True, exist_ok=True)
    for old in (out / "img").glob("*.jpg"):
        old.unlink()
    names = list(class_names)
    k = len(names)
    palette = default_palette(max(256, k))
    sections = [
        ("summary", "Summary", _summary(metrics, len(per_image))),
        ("classes", "Per class", _class_table(metrics, names)),
        ("confusion", "Confusion", _confusion(out, metrics, names)),
    ]
    gallery, missing = _worst(out, per_image, load, palette, k, ignore_index, max_items)
    legend = H.legend([(n, tuple(int(v) for v in palette[i])) for i, n in enumerate(names)])
    if ignore_index is not None:
        legend += H.legend([(f"ignored ({ignore_index})", (224, 224, 192)), ("wrong pixel", tuple(WRONG))])
    sections.append(("worst", "Worst images", legend + gallery))
    sections.append(("about", "How to read this page", _about()))
    subtitle = f"semantic segmentation \u00b7 {len(per_image)} images, {k} classes"
    index = H.write_text_atomic(
        out / "index.html", H.page(title or "Segmentation evaluation", subtitle, sections)
    )
    H.write_text_atomic(out / "metrics.json", dumps(metrics))
    return {"report": index, "report_missing": missing}


def _summary(m: dict, n_images: int) -> str:
    cards = [
        H.card(label, m[key], json.dumps([key]))
        for key, label in (
            ("miou", "mIoU"),
            ("mdice", "mean Dice"),
            ("pixel_accuracy", "pixel accuracy"),
            ("mean_accuracy", "mean class accuracy"),
            ("fwiou", "frequency-weighted IoU"),
        )
        if key in m
    ]
    cards.append(H.card("images", n_images, "", str(n_images)))
    return f'<div class="cards">{"".join(cards)}</div>'


def _class_table(m: dict, names: list[str]) -> str:
    conf = np.asarray(m["confusion"], np.int64)
    truth, pred, tp = conf.sum(1), conf.sum(0), np.diag(conf)
    rows = []
    for i, n in enumerate(names):
        precision = tp[i] / pred[i] if pred[i] else float("nan")
        rows.append(
            [n, m["iou"][i], m["dice"][i], m["accuracy"][i], float(precision), int(truth[i]), int(pred[i])]
        )
    rows = [[(float("nan") if v is None else v) for v in r] for r in rows]
    heads = ["class", "IoU", "Dice", "accuracy (recall)", "precision", "true pixels", "predicted pixels"]
    return H.table(heads, rows, digits=4) + (
        '<p class="note">IoU = TP / (TP + FP + FN), Dice = 2 TP / (2 TP + FP + FN), accuracy = TP / true'
        " pixels, precision = TP / predicted pixels; a class in neither truth nor prediction has no IoU"
        " (\u2014) and is left out of the mIoU. Ignored pixels are not counted.</p>"
    )


def _confusion(out: Path, m: dict, names: list[str]) -> str:
    from detseg.viz.plots import plot_confusion_matrix

    conf = np.asarray(m["confusion"], np.float64)
    rows = conf.sum(1, keepdims=True)
    percent = np.round(np.divide(conf * 100, rows, out=np.zeros_like(conf), where=rows > 0)).astype(np.int64)
    plot_confusion_matrix(
        percent, names, out / "img" / "confusion_matrix.png", "Pixels of each true class (%), by prediction"
    )
    table = H.table(
        ["truth \\ prediction", *names],
        [[n, *[int(v) for v in percent[i]]] for i, n in enumerate(names)],
        sortable=False,
    )
    return (
        f'<div class="plots">{H.image("img/confusion_matrix.png", "confusion matrix")}</div>'
        '<p class="note">Rows are the truth, columns the prediction, in percent of the row\'s pixels'
        " (the diagonal is each class's accuracy).</p>" + (table if len(names) <= 30 else "")
    )


def _worst(out, per_image, load, palette, k, ignore_index, max_items) -> tuple[str, int]:
    order = sorted(
        (i for i, s in enumerate(per_image) if s["miou"] == s["miou"]),
        key=lambda i: (per_image[i]["miou"], per_image[i]["name"]),
    )
    items, missing = [], 0
    for rank, i in enumerate(order[:max_items]):
        s = per_image[i]
        image, truth, pred = load(i)
        picture = _panels(image, np.asarray(truth), np.asarray(pred), palette, k, ignore_index)
        rel = f"img/worst_{rank:03d}.jpg"
        save_jpeg(out / rel, picture)
        note = ""
        if image is None:
            missing += 1
            note = f'<br><span class="msg" style="color:#a33">image not found: {H.esc(s["name"])}</span>'
        items.append(
            f'<figure class="item" style="max-width:none">'
            f"{H.image(rel, 'image, truth, prediction, errors', picture.shape[1], picture.shape[0])}"
            f"<figcaption>image | truth | prediction | errors \u00b7 <b>mIoU {s['miou']:.3f}</b>,"
            f" pixel accuracy {s['pixel_accuracy']:.3f}{note}<br>"
            f'<span class="file">{H.esc(s["name"])}</span></figcaption></figure>'
        )
    head = (
        f'<p class="note">The {len(items)} images of lowest mIoU (of {len(per_image)}); an image\'s mIoU'
        " averages the classes in its truth or its prediction.</p>"
    )
    return head + f'<div class="gallery">{"".join(items) or "<p>No images.</p>"}</div>', missing


def _about() -> str:
    return (
        '<p class="note">All figures count pixels over every evaluated image together (one confusion'
        " matrix), except the per-image mIoU that ranks the worst images. The figures of this page are in"
        " metrics.json beside it.</p>"
    )
