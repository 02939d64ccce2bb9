"""The detection evaluation report: ``DIR/index.html`` with its pictures in ``DIR/img`` and the
metrics in ``DIR/metrics.json``.

Sections: the summary (COCO stats or VOC / lecture mAP, the score threshold to deploy with), a
per-class table (AP, AR, and TP / FP / FN at each class's F1-optimal score threshold), PR and F1
curves, the confusion matrix with background, TIDE's error breakdown (``detseg.metrics.tide``) per
class and overall, for a sliced run the recall by where objects lie on the slice grid and the duplicates
left by the merge (``detseg.metrics.slice_diagnostics``), and galleries: per class the highest-scored
false positives (labelled with their TIDE kind) and the largest missed objects, as crops; the images
with the most errors, whole.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from detseg.jsonio import dumps
from detseg.viz import report as H
from detseg.viz.gallery import ImageSource, crop_window, draw_box, fit, save_jpeg

COLORS = {
    "truth": (30, 170, 70),
    "tp": (40, 110, 230),
    "classification": (220, 45, 45),
    "localization": (250, 135, 0),
    "both": (165, 60, 200),
    "duplicate": (0, 165, 185),
    "background": (235, 200, 0),
    "missed": (30, 170, 70),
}
KIND_TEXT = {
    "classification": "classification: well placed, wrong class",
    "localization": "localization: right class, badly placed",
    "both": "both: wrong class and badly placed",
    "duplicate": "duplicate: its object was already found",
    "background": "background: no object there",
    "missed": "missed: no detection found it",
    "false_positives": "all false positives (ranked below every true positive)",
    "false_negatives": "all untaken objects (removed from the truth)",
}
ERROR_KINDS = ("classification", "localization", "both", "duplicate", "background")
GALLERY_W, GALLERY_H = 320, 220


def _xyxy(bbox) -> list[float]:
    x, y, w, h = (float(v) for v in bbox)
    return [x, y, x + w, y + h]


def _hard(ann: dict) -> bool:
    return bool(ann.get("iscrowd", 0) or ann.get("difficult", 0))


def _key(*path) -> list:
    return [str(p) for p in path]


class _Context:
    """What the sections share: the inputs by image and class, the analysis, the image source."""

    def __init__(self, out: Path, gt: dict, results: list[dict], analysis, image_dir, threshold: float):
        self.out = out
        self.gt, self.results, self.analysis = gt, results, analysis
        self.names = [str(c.get("name", c["id"])) for c in gt["categories"]]
        self.cat_index = {c["id"]: i for i, c in enumerate(gt["categories"])}
        self.images = {im["id"]: im for im in gt["images"]}
        self.anns = gt["annotations"]
        self.gt_by_image: dict = {}
        for j, a in enumerate(self.anns):
            self.gt_by_image.setdefault(a["image_id"], []).append(j)
        self.dt_by_image: dict = {}
        for i, r in enumerate(results):
            self.dt_by_image.setdefault(r["image_id"], []).append(i)
        self.source = ImageSource(image_dir)
        self.has_images = image_dir is not None
        self.threshold = threshold
        self.counter = 0

    def name_of(self, image_id) -> str:
        im = self.images.get(image_id, {})
        return str(im.get("file_name") or im.get("id", image_id))

    def picture(self, image_id):
        im = self.images.get(image_id, {})
        size = (int(im.get("width") or 0), int(im.get("height") or 0))
        return self.source.load(self.name_of(image_id), size if all(size) else None)

    def save(self, picture: np.ndarray, stem: str) -> tuple[str, int, int]:
        self.counter += 1
        rel = f"img/{stem}_{self.counter:04d}.jpg"
        save_jpeg(self.out / rel, picture)
        return rel, picture.shape[1], picture.shape[0]


def write_detection_report(
    out_dir: str | Path,
    gt: dict,
    results: list[dict],
    metrics: dict,
    curves: dict | None,
    metric: str,
    iou: float,
    image_dir: str | Path | None = None,
    title: str = "",
    analysis=None,
    max_items: int = 6,
    slices: dict | None = None,
) -> dict:
    """Write the report; returns ``{"report": DIR/index.html, "report_missing": images not found}``.

    ``metrics``: the evaluation's JSON (``detseg.metrics.evaluate.evaluate_detections``); ``curves``:
    name -> PRCurve at IoU ``iou`` (None when there are no detections); ``analysis``: the TIDE result
    (computed here when None); ``slices``: a sliced run's
    :func:`~detseg.metrics.slice_diagnostics.slice_diagnostics` (its section is left out when None)."""
    from detseg.metrics.detection import pool_curves
    from detseg.metrics.tide import tide

    out = Path(out_dir)
    (out / "img").mkdir(parents=True, exist_ok=True)
    for old in (out / "img").glob("*.jpg"):  # a rerun into the same folder leaves no stale pictures
        old.unlink()
    if analysis is None:
        analysis = tide(gt, results, fg_iou=iou, max_dets=100 if metric == "coco" else None)
        metrics["tide"] = analysis.to_dict()
    pooled = pool_curves(curves) if curves else None
    best = metrics.get("best_f1", {}).get("all classes", {})
    threshold = best.get("threshold", math.inf) if pooled is not None else math.inf
    if threshold is None or not math.isfinite(threshold):
        threshold = math.inf
    ctx = _Context(out, gt, results, analysis, image_dir, threshold)
    sections = [
        ("summary", "Summary", _summary(ctx, metrics, metric, iou)),
        ("classes", "Per class", _class_table(ctx, metrics, curves, pooled, metric, iou)),
    ]
    if curves and results:
        sections.append(("curves", "Curves and confusion", _curves(ctx, curves, pooled, iou)))
    sections.append(("errors", "Errors (TIDE)", _errors(ctx, iou)))
    if slices is not None:
        metrics["slices"] = slices
        sections.append(("slices", "Slices", _slices(slices)))
    sections.append(("galleries", "Galleries", _galleries(ctx, max_items)))
    sections.append(("about", "How to read this page", _about(metric, iou)))
    subtitle = f"{metric} at IoU {iou:g}" if metric != "coco" else "COCO bbox evaluation"
    subtitle += f" \u00b7 {len(gt['images'])} images, {sum(not _hard(a) for a in gt['annotations'])} objects,"
    subtitle += f" {len(results)} detections"
    page = H.page(title or "Detection evaluation", subtitle, sections)
    index = H.write_text_atomic(out / "index.html", page)
    H.write_text_atomic(out / "metrics.json", dumps(metrics))
    return {"report": index, "report_missing": len(ctx.source.missing) if ctx.has_images else 0}


def _summary(ctx: _Context, metrics: dict, metric: str, iou: float) -> str:
    parts = []
    if not ctx.results:
        n = sum(not _hard(a) for a in ctx.anns)
        parts.append(
            f'<div class="warn">No detections at all: every one of the {n} objects is missed and every AP'
            " is 0. Check that the detections name the ground truth's images and classes, and the score"
            " threshold the model ran with.</div>"
        )
    cards = []
    if metric == "coco" and "AP" in metrics:
        for k, label in (
            ("AP", "AP (IoU 0.50:0.95)"),
            ("AP50", "AP50"),
            ("AP75", "AP75"),
            ("AR100", "AR (100 dets)"),
        ):
            cards.append(H.card(label, metrics[k], json.dumps(_key(k))))
    elif "mAP" in metrics:
        value = metrics["mAP"]
        cards.append(H.card(f"mAP ({metric}, IoU {iou:g})", value, json.dumps(_key("mAP")), H.fmt(value, 4)))
    best = metrics.get("best_f1", {}).get("all classes")
    if best and best.get("threshold") is not None and math.isfinite(best["threshold"]):
        cards.append(
            H.card(
                "deploy: F1-optimal score threshold",
                best["threshold"],
                json.dumps(_key("best_f1", "all classes", "threshold")),
                H.fmt(best["threshold"], 3),
            )
        )
        for k in ("f1", "precision", "recall"):
            cards.append(
                H.card(
                    f"{k} at that threshold (IoU {iou:g})",
                    best[k],
                    json.dumps(_key("best_f1", "all classes", k)),
                )
            )
    tide = metrics.get("tide", {})
    if tide:
        cards.append(H.card(f"AP at IoU {iou:g} (TIDE's base)", tide["AP"], json.dumps(_key("tide", "AP"))))
    parts.append(f'<div class="cards">{"".join(cards)}</div>')
    counts = [
        H.card("images", len(ctx.gt["images"]), "", str(len(ctx.gt["images"]))),
        H.card("objects (crowd / difficult left out)", sum(not _hard(a) for a in ctx.anns), "", None),
        H.card("detections", len(ctx.results), "", str(len(ctx.results))),
    ]
    parts.append(f'<div class="cards" style="margin-top:10px">{"".join(counts)}</div>')
    if metric == "coco" and "stats" in metrics:
        parts.append(_coco_table(metrics))
    if tide:
        worst = max(ERROR_KINDS + ("missed",), key=lambda k: tide["dAP"].get(k) or 0)
        if (tide["dAP"].get(worst) or 0) > 0:
            parts.append(
                f"<p>The error that costs most AP is <b>{H.esc(worst)}</b>: fixing only those would add"
                f' {tide["dAP"][worst] * 100:.2f} points (see <a href="#errors">Errors</a>).</p>'
            )
    return "".join(parts)


def _coco_table(metrics: dict) -> str:
    """The 12 COCO stats as pycocotools prints them (-1: no object of that size)."""
    from detseg.metrics.coco import COCO_STATS, COCOParams

    max_dets = COCOParams().max_dets
    rows = []
    for name, ap, iou_threshold, area, dets_index in COCO_STATS:
        if name not in metrics:
            continue
        v, kind, dets = metrics[name], "AP" if ap else "AR", max_dets[dets_index]
        iou = "0.50:0.95" if iou_threshold is None else f"{iou_threshold:.2f}"
        key = H.esc(json.dumps(_key(name)))
        rows.append(
            f"<tr><td>{kind} ({name})</td><td>{iou}</td><td>{area}</td><td>{dets}</td>"
            f'<td data-v="{v!r}" data-key="{key}" data-value="{v!r}">{H.fmt(v, 3)}</td></tr>'
        )
    head = "".join(f"<th>{h}</th>" for h in ("stat", "IoU", "area", "maxDets", "value"))
    return (
        "<details open><summary>pycocotools' 12 numbers</summary>"
        f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody>'
        "</table></div></details>"
    )


def _counts_at(curve, threshold: float) -> tuple[int, int, int]:
    """(TP, FP, FN) of one class's curve when keeping scores >= ``threshold``."""
    n = int(np.count_nonzero(curve.thresholds >= threshold)) if math.isfinite(threshold) else 0
    tp = int(round(curve.recall[n - 1] * curve.num_gt)) if n and curve.num_gt else 0
    return tp, n - tp, curve.num_gt - tp


def _class_table(ctx: _Context, metrics: dict, curves, pooled, metric: str, iou: float) -> str:
    n_obj = [0] * len(ctx.names)
    for a in ctx.anns:
        if not _hard(a):
            n_obj[ctx.cat_index[a["category_id"]]] += 1
    n_det = [0] * len(ctx.names)
    for r in ctx.results:
        n_det[ctx.cat_index[r["category_id"]]] += 1
    coco = metric == "coco" and "per_category" in metrics
    heads = ["class", "objects", "detections"]
    heads += ["AP", "AP50", "AR100"] if coco else [f"AP ({metric}, IoU {iou:g})", "max recall"]
    heads += ["F1-optimal score", "precision", "recall", "F1", "TP", "FP", "FN"]
    rows = []

    def row(name, objects, dets, aps, curve):
        cells = [H.cell(name), H.cell(objects), H.cell(dets)] + [H.cell(v) for v in aps]
        if curve is None or len(curve.thresholds) == 0:
            cells += [H.cell(float("nan"))] * 4 + [H.cell(0), H.cell(0), H.cell(objects)]
        else:
            thr, f1, p, r = curve.best_f1()
            tp, fp, fn = _counts_at(curve, thr)
            cells += [H.cell(thr), H.cell(p), H.cell(r), H.cell(f1), H.cell(tp), H.cell(fp), H.cell(fn)]
        return cells

    if pooled is not None:
        aps = (
            [metrics.get(k, float("nan")) for k in ("AP", "AP50", "AR100")]
            if coco
            else [metrics.get("mAP"), float(pooled.recall[-1]) if len(pooled.recall) else 0.0]
        )
        rows.append(row("all classes (pooled)", sum(n_obj), len(ctx.results), aps, pooled))
    for c, name in enumerate(ctx.names):
        curve = curves.get(name) if curves else None
        if coco:
            pc = metrics["per_category"].get(name, {})
            aps = [pc.get(k, -1) for k in ("AP", "AP50", "AR100")]
            aps = [float("nan") if v is None or v < 0 else v for v in aps]
        else:
            ap = metrics.get("per_class", {}).get(name, float("nan"))
            aps = [
                float("nan") if ap is None else ap,
                float(curve.recall[-1]) if curve is not None and len(curve.recall) else 0.0,
            ]
        rows.append(row(name, n_obj[c], n_det[c], aps, curve))
    note = (
        '<p class="note">TP / FP / FN count the detections a class keeps at its own F1-optimal score'
        f" threshold, matched at IoU {iou:g}; the pooled row ranks every class's detections together and"
        " gives the one threshold to deploy with. Click a column to sort.</p>"
    )
    return H.table(heads, rows, html_rows=True) + note


def _curves(ctx: _Context, curves: dict, pooled, iou: float) -> str:
    from detseg.metrics.errors import detection_confusion
    from detseg.viz.plots import write_detection_plots

    thr = ctx.threshold if math.isfinite(ctx.threshold) else 0.5
    conf = detection_confusion(ctx.gt, ctx.results, score_threshold=thr, iou=iou)
    write_detection_plots(curves, pooled, conf, ctx.out / "img", max_classes=0)
    imgs = "".join(
        H.image(f"img/{name}", alt)
        for name, alt in (
            ("pr_all.png", "precision-recall curves"),
            ("f1_all.png", "F1 against the score threshold"),
            ("confusion_matrix.png", "confusion matrix"),
        )
    )
    labels = conf.labels
    rows = [
        [H.cell(f"truth: {labels[i]}")] + [H.cell(int(v)) for v in conf.matrix[i]] for i in range(len(labels))
    ]
    table = H.table(["", *[f"pred: {n}" for n in labels]], rows, sortable=False, html_rows=True)
    return (
        f'<div class="plots">{imgs}</div>'
        f"<h3>Confusion matrix at score \u2265 {thr:.3f}, IoU \u2265 {iou:g}</h3>"
        '<p class="note">Rows are the truth, columns the prediction. The background row counts false'
        " alarms (detections matching no object), the background column missed objects.</p>"
        + (table if len(labels) <= 30 else "")
    )


def _errors(ctx: _Context, iou: float) -> str:
    t = ctx.analysis
    top = max([v for v in t.dap.values() if v is not None and math.isfinite(v)] + [1e-9])
    bars = []
    for kind in ERROR_KINDS + ("missed", "false_positives", "false_negatives"):
        value = t.dap[kind]
        width = 100 * max(value, 0) / top if math.isfinite(value) else 0
        color = "rgb({},{},{})".format(*COLORS.get(kind, (120, 130, 140)))
        count = f" ({t.counts[kind]} error{'s' if t.counts[kind] != 1 else ''})" if kind in t.counts else ""
        bars.append(
            f"<div>{H.esc(KIND_TEXT[kind])}</div>"
            f'<div><div class="bar" style="width:{width:.1f}%;background:{color}"></div></div>'
            f'<div data-key="{H.esc(json.dumps(_key("tide", "dAP", kind)))}" data-value="{value!r}">'
            f"{H.fmt(value * 100, 2)} AP{H.esc(count)}</div>"
        )
    heads = ["class", "AP"] + [f"dAP {k}" for k in ERROR_KINDS + ("missed",)]
    rows = []
    for name in t.classes:
        rows.append(
            [name, t.per_class_ap[name] * 100]
            + [t.dap_per_class[name][k] * 100 for k in ERROR_KINDS + ("missed",)]
        )
    count_rows = [
        [name] + [t.counts_per_class[name][k] for k in ERROR_KINDS + ("missed",)] for name in t.classes
    ]
    count_rows.insert(0, ["all classes"] + [t.counts[k] for k in ERROR_KINDS + ("missed",)])
    return (
        f"<p>AP at IoU {iou:g}: <b>{t.ap * 100:.2f}</b>. dAP of a kind = the AP points gained by fixing only"
        " the errors of that kind (TIDE, Bolya et al. 2020), everything else as it is.</p>"
        f'<div class="bars">{"".join(bars)}</div>'
        "<h3>Per class: AP and dAP (AP points)</h3>"
        + H.table(heads, rows, digits=2)
        + "<h3>Per class: number of errors of each kind</h3>"
        + H.table(["class", *ERROR_KINDS, "missed"], count_rows)
        + '<p class="note">A false positive is counted once, under its first kind: localization (right'
        + " class,"
        f" {t.bg_iou:g} \u2264 IoU \u2264 {t.fg_iou:g}), classification (IoU \u2265 {t.fg_iou:g} with another"
        f" class), duplicate (IoU \u2265 {t.fg_iou:g} with an object already found), background (IoU \u2264"
        f" {t.bg_iou:g} with everything), both (the rest). An object no detection found is missed unless a"
        " localization or classification error points at it.</p>"
    )


def _slices(d: dict) -> str:
    """A sliced run's recall by place on the slice grid and the duplicates its merge left."""
    from detseg.metrics.slice_diagnostics import PLACE_TEXT, PLACES

    cards = [
        H.card(f"recall: {PLACE_TEXT[p]}", d["recall"][p], json.dumps(_key("slices", "recall", p)))
        for p in PLACES
    ]
    duplicates, cost = d["duplicates"]["all"], d["duplicate_dAP"] * 100
    cards.append(H.card("duplicates left by the merge", duplicates,
                        json.dumps(_key("slices", "duplicates", "all")), str(duplicates)))  # fmt: skip
    cards.append(H.card("their AP cost (TIDE duplicate dAP, AP points)", cost,
                        json.dumps(_key("slices", "duplicate_dAP")), H.fmt(cost, 2)))  # fmt: skip
    rows = [[PLACE_TEXT[p], d["objects"][p], d["found"][p], d["recall"][p], d["duplicates"][p]]
            for p in PLACES]  # fmt: skip
    heads = ["where the object lies", "objects", "found", f"recall (IoU {d['fg_iou']:g})", "duplicates"]
    return (
        f"<p>Slices of {d['tile']} px sharing {d['overlap']:g} of their size. An object is <i>inside</i> when"
        " no slice border cuts it, <i>border</i> when a border cuts it but another slice holds it whole,"
        " <i>cut</i> when every slice that sees it cuts it.</p>"
        f'<div class="cards">{"".join(cards)}</div>'
        + H.table(heads, rows)
        + '<p class="note">Recall much lower for border or cut objects than inside ones: the overlap is too'
        " small for the objects (raise <code>--overlap</code>, or add <code>--full-image</code>) or the merge"
        " does not fold their parts together (<code>--match ios</code>). Duplicates are detections on an"
        " object already found (TIDE's duplicate errors, counted by that object's place): parts the merge"
        " left apart (lower <code>--merge-threshold</code>, or greedy-nmm / nmm instead of nms). Found:"
        " taken by a detection at that IoU, matched as in the Errors section (TIDE's matching).</p>"
    )


def _galleries(ctx: _Context, max_items: int) -> str:
    t = ctx.analysis
    if not ctx.has_images:
        return (
            '<p class="note">The galleries need the images: give <code>--images DIR</code> (the folder'
            " the ground truth's file names are in), or evaluate a model with"
            " <code>--weights --data</code>.</p>"
        )
    parts = [
        H.legend(
            [("truth", COLORS["truth"]), ("true positive", COLORS["tp"])]
            + [(k, COLORS[k]) for k in ERROR_KINDS]
        )
    ]
    whole = _worst_images(ctx, max_items)
    shown = (
        "every detection"
        if not math.isfinite(ctx.threshold)
        else f"detections with score \u2265 {ctx.threshold:.3f}"
    )
    parts.append(
        f'<h3>Images with the most errors</h3><p class="note">Whole images, {shown} (the'
        " F1-optimal threshold of all classes), every object; dashed: missed objects.</p>"
    )
    parts.append(f'<div class="gallery">{"".join(whole) or "<p>No errors.</p>"}</div>')
    fps_of: list[list[int]] = [[] for _ in ctx.names]  # one pass over everything, then per class
    for i, k in enumerate(t.det_kind):
        if k in ERROR_KINDS:
            fps_of[ctx.cat_index[ctx.results[i]["category_id"]]].append(i)
    missed_of: list[list[int]] = [[] for _ in ctx.names]
    for j, k in enumerate(t.gt_kind):
        if k in ("missed", "fixable"):
            missed_of[ctx.cat_index[ctx.anns[j]["category_id"]]].append(j)
    for c, name in enumerate(ctx.names):
        fps = sorted(fps_of[c], key=lambda i: -ctx.results[i]["score"])
        missed = sorted(missed_of[c], key=lambda j: -(ctx.anns[j]["bbox"][2] * ctx.anns[j]["bbox"][3]))
        parts.append(f"<h3>{H.esc(name)}</h3>")
        parts.append(f'<p class="note">Highest-scored false positives ({len(fps)} in all)</p>')
        items = [_fp_item(ctx, i) for i in fps[:max_items]]
        parts.append(f'<div class="gallery">{"".join(items) or "<p>None.</p>"}</div>')
        parts.append(f'<p class="note">Largest objects not found ({len(missed)} in all)</p>')
        items = [_missed_item(ctx, j) for j in missed[:max_items]]
        parts.append(f'<div class="gallery">{"".join(items) or "<p>None.</p>"}</div>')
    if ctx.source.missing:
        n = len(ctx.source.missing)
        parts.insert(
            0,
            f'<div class="warn">{n} image(s) named by the ground truth were not found in'
            f" {H.esc(ctx.source.image_dir)}; their gallery items say so.</div>",
        )
    return "".join(parts)


def _missing(name: str) -> str:
    return f'<figure class="item missing"><div class="msg">image not found: {H.esc(name)}</div></figure>'


def _figure(src_w_h, alt: str, caption: str, name: str) -> str:
    src, w, h = src_w_h
    return (
        f'<figure class="item">{H.image(src, alt, w, h)}<figcaption>{caption}'
        f'<br><span class="file">{H.esc(name)}</span></figcaption></figure>'
    )


def _shift(box, x0, y0, scale):
    return [(box[0] - x0) * scale, (box[1] - y0) * scale, (box[2] - x0) * scale, (box[3] - y0) * scale]


def _crop(ctx: _Context, image_id, box):
    pic = ctx.picture(image_id)
    if pic is None:
        return None
    x0, y0, x1, y1 = crop_window(box, pic.shape[1], pic.shape[0])
    crop, scale = fit(np.ascontiguousarray(pic[y0:y1, x0:x1]), GALLERY_W, GALLERY_H)
    crop = np.ascontiguousarray(crop)

    def inside(b):
        return b[2] > x0 and b[0] < x1 and b[3] > y0 and b[1] < y1

    return crop, (x0, y0, scale), inside


def _fp_item(ctx: _Context, i: int) -> str:
    t, r = ctx.analysis, ctx.results[i]
    name = ctx.name_of(r["image_id"])
    box = _xyxy(r["bbox"])
    got = _crop(ctx, r["image_id"], box)
    if got is None:
        return _missing(name)
    crop, (x0, y0, s), inside = got
    target = int(t.det_target[i])
    for j in ctx.gt_by_image.get(r["image_id"], []):
        b = _xyxy(ctx.anns[j]["bbox"])
        if inside(b):
            label = ctx.names[ctx.cat_index[ctx.anns[j]["category_id"]]] if j == target else ""
            draw_box(
                crop,
                _shift(b, x0, y0, s),
                COLORS["truth"],
                label,
                2 if j == target else 1,
                _hard(ctx.anns[j]),
            )
    for o in ctx.dt_by_image.get(r["image_id"], []):  # the other detections kept at the threshold, thin
        other = ctx.results[o]
        if o != i and other["score"] >= ctx.threshold and t.det_kind[o] not in ("skipped", "ignored"):
            b = _xyxy(other["bbox"])
            if inside(b):
                draw_box(crop, _shift(b, x0, y0, s), COLORS[t.det_kind[o]], "", 1)
    kind = t.det_kind[i]
    cls = ctx.names[ctx.cat_index[r["category_id"]]]
    draw_box(crop, _shift(box, x0, y0, s), COLORS[kind], f"{cls} {r['score']:.2f}", 2)
    about = f"IoU {t.det_iou[i]:.2f}"
    if target >= 0:
        about += f" with a {ctx.names[ctx.cat_index[ctx.anns[target]['category_id']]]}"
    caption = f"<b>{H.esc(kind)}</b> \u00b7 {H.esc(cls)} {r['score']:.3f} \u00b7 {H.esc(about)}"
    return _figure(ctx.save(crop, "fp"), f"{kind} false positive", caption, name)


def _missed_item(ctx: _Context, j: int) -> str:
    t, a = ctx.analysis, ctx.anns[j]
    name = ctx.name_of(a["image_id"])
    box = _xyxy(a["bbox"])
    got = _crop(ctx, a["image_id"], box)
    if got is None:
        return _missing(name)
    crop, (x0, y0, s), inside = got
    cls = ctx.names[ctx.cat_index[a["category_id"]]]
    tries = [
        i
        for i in ctx.dt_by_image.get(a["image_id"], [])
        if int(t.det_target[i]) == j and t.det_kind[i] != "tp"
    ]
    shown = [
        i
        for i in ctx.dt_by_image.get(a["image_id"], [])
        if ctx.results[i]["score"] >= ctx.threshold or i in tries
    ]
    for i in shown:
        b = _xyxy(ctx.results[i]["bbox"])
        if inside(b) and t.det_kind[i] not in ("skipped", "ignored"):
            r = ctx.results[i]
            draw_box(
                crop,
                _shift(b, x0, y0, s),
                COLORS[t.det_kind[i]],
                f"{ctx.names[ctx.cat_index[r['category_id']]]} {r['score']:.2f}",
                1,
            )
    draw_box(crop, _shift(box, x0, y0, s), COLORS["missed"], cls, 2, dashed=True)
    w, h = a["bbox"][2], a["bbox"][3]
    caption = f"<b>missed</b> {H.esc(cls)} \u00b7 {w:.0f}\u00d7{h:.0f} px"
    if tries:
        best = max(tries, key=lambda i: ctx.results[i]["score"])
        caption += (
            f" \u00b7 closest try: {H.esc(t.det_kind[best])} error, score {ctx.results[best]['score']:.2f},"
            f" IoU {t.det_iou[best]:.2f}"
        )
    return _figure(ctx.save(crop, "missed"), f"missed {cls}", caption, name)


def _worst_images(ctx: _Context, max_items: int) -> list[str]:
    """Whole images ranked by errors at the deployment threshold (false positives + objects missed)."""
    t = ctx.analysis
    scored = []
    for image_id in ctx.images:
        dts = [i for i in ctx.dt_by_image.get(image_id, []) if ctx.results[i]["score"] >= ctx.threshold]
        fps = [i for i in dts if t.det_kind[i] in ERROR_KINDS]
        found = {int(t.det_target[i]) for i in dts if t.det_kind[i] == "tp"}
        missed = [j for j in ctx.gt_by_image.get(image_id, []) if not _hard(ctx.anns[j]) and j not in found]
        if fps or missed:
            scored.append((len(fps) + len(missed), image_id, dts, fps, missed))
    scored.sort(key=lambda s: (-s[0], str(ctx.name_of(s[1]))))
    items = []
    for _, image_id, dts, fps, missed in scored[:max_items]:
        name = ctx.name_of(image_id)
        pic = ctx.picture(image_id)
        kinds: dict[str, int] = {}
        for i in fps:
            kinds[t.det_kind[i]] = kinds.get(t.det_kind[i], 0) + 1
        summary = ", ".join(f"{v} {k}" for k, v in sorted(kinds.items(), key=lambda kv: -kv[1]))
        caption = f"<b>{len(fps)} false positive(s)</b>{': ' + H.esc(summary) if summary else ''};"
        caption += f" <b>{len(missed)} missed</b>"
        if pic is None:
            items.append(_missing(name))
            continue
        canvas, s = fit(pic, 480, 360, upscale=2.0)
        canvas = np.ascontiguousarray(canvas.copy())
        for j in ctx.gt_by_image.get(image_id, []):
            a = ctx.anns[j]
            cls = ctx.names[ctx.cat_index[a["category_id"]]]
            dashed = j in missed or _hard(a)
            draw_box(
                canvas,
                _shift(_xyxy(a["bbox"]), 0, 0, s),
                COLORS["truth"],
                cls if j in missed else "",
                2 if j in missed else 1,
                dashed,
            )
        for i in sorted(dts, key=lambda i: ctx.results[i]["score"]):
            kind = t.det_kind[i]
            if kind in ("skipped", "ignored"):
                continue
            r = ctx.results[i]
            draw_box(
                canvas,
                _shift(_xyxy(r["bbox"]), 0, 0, s),
                COLORS[kind],
                f"{ctx.names[ctx.cat_index[r['category_id']]]} {r['score']:.2f}",
                2,
            )
        items.append(_figure(ctx.save(canvas, "image"), f"errors in {name}", caption, name))
    return items


def _about(metric: str, iou: float) -> str:
    return (
        '<p class="note">Boxes are matched greedily by score (each detection takes the best unmatched'
        f" object of its class). The summary's AP is {'COCO' if metric == 'coco' else metric}'s; the error"
        f" analysis and the galleries use IoU {iou:g} and pycocotools' 101-point AP, with crowd and"
        " 'difficult'"
        " objects left out (a detection on one is ignored). The F1-optimal threshold is the lowest score"
        " among the tied best F1, so a deployed model keeps as many detections as that F1 allows."
        " Pictures: green boxes are the truth (dashed: missed), blue true positives, other colours the"
        " kind of false positive. The figures of this page are in metrics.json beside it.</p>"
    )
