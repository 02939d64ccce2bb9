"""Sliced inference (``detseg.engine.slicing``) beside SAHI 0.12.8 and supervision's InferenceSlicer:
parity of the merged boxes, speed, and the accuracy slicing buys on large images with small objects.

SAHI and supervision bring opencv-python, which clashes with detseg's opencv-python-headless, so they live
in their own virtual environment and run there through ``benchmarks/_sahi_worker.py``:

    python3 -m venv /work/sahi-venv
    /work/sahi-venv/bin/pip install sahi==0.12.8 supervision torch==2.14.1 torchvision==0.29.1
    detseg synth data/large --size 1024 --min-object 16 --max-object 48 --objects 40 --num-train 16 \\
        --num-val 6 --seed 0
    detseg train --model ssdlite320_mobilenet_v3_large --data data/large/detect.yaml --tile 256 \\
        --tile-overlap 0.2 --img-size 256 --model-arg size=256 --model-arg min_scale=0.1 \\
        --model-arg max_scale=0.6 --zoom-out 1 --no-iou-crop --vflip 0.5 --val-split none --time 8 \\
        --out runs/large-tiles
    python benchmarks/sliced_inference.py --weights runs/large-tiles/last.pt --data data/large/detect.yaml \\
        --sahi-python /work/sahi-venv/bin/python --tile 256 --overlap 0.2 --threads 2

- parity: the same detector file, images and settings (slice size, overlap, NMS / NMM / GREEDYNMM,
  IOU / IOS, threshold, full-image pass on or off; detections above ``--confidence``) through SAHI's
  ``get_sliced_prediction`` and detseg's ``SlicedDetector``: the share of detseg's merged boxes that
  one of SAHI's boxes of the same class matches at IoU >= 0.99 (one to one), per setting.
- speed: wall time per image (in memory, median over the split's images after one warm-up image), slices
  alone merged by NMS at IoU ``--threshold``, ``--threads`` torch threads: detseg one slice per call and
  ``--tile-batch`` slices per call, SAHI (its ``batch_size`` loops over the slices for torchvision
  models), supervision one slice per callback and ``--tile-batch`` per callback; then SAHI's defaults
  (greedy NMM by IoS, full-image pass) for detseg and SAHI.
- accuracy: COCO AP, AP50 and AP_small (maxDets 100) of detseg's detector on the split for the full image
  alone, slices alone and slices + full image (greedy NMM by IoS, and NMS by IoU, at ``--threshold``),
  detections above ``--eval-score``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from detseg.data.spec import load_spec
from detseg.engine.loader import load_model
from detseg.engine.slicing import slice_count, with_slicing
from detseg.metrics.boxes import box_iou
from detseg.metrics.coco import evaluate

WORKER = Path(__file__).with_name("_sahi_worker.py")
SAHI_MERGE = {"nms": "NMS", "nmm": "NMM", "greedy-nmm": "GREEDYNMM"}


def set_score_threshold(model: torch.nn.Module, threshold: float) -> None:
    """Keep the detector's detections scored above ``threshold`` (SSD's or Faster R-CNN's own filter)."""
    if hasattr(model, "score_thresh"):
        model.score_thresh = threshold
    else:
        model.roi_heads.score_thresh = threshold


class Sides:
    """The detector on both sides: detseg's module here, the same weights in the worker's interpreter."""

    def __init__(self, args: argparse.Namespace, work: Path) -> None:
        self.args, self.work = args, work
        self.model, meta = load_model(args.weights)
        self.classes = list(meta["classes"])
        weights = work / "state_dict.pt"
        torch.save(self.model.state_dict(), weights)
        self.spec = {"name": meta["model"], "kwargs": meta.get("model_kwargs", {}), "weights": str(weights)}
        spec = load_spec(args.data)
        split = spec.splits[args.split]
        self.gt = json.loads(Path(split.annotations).read_text())
        self.gt["images"] = self.gt["images"][: args.images]
        kept = {im["id"] for im in self.gt["images"]}
        self.gt["annotations"] = [a for a in self.gt["annotations"] if a["image_id"] in kept]
        self.paths = [str(Path(split.images) / im["file_name"]) for im in self.gt["images"]]
        self.arrays = [np.array(Image.open(p).convert("RGB")) for p in self.paths]

    def worker(self, runs: list[dict], confidence: float) -> list[dict]:
        """Each run (``tool``, ``merge``, ``match``, ``full_image``, ``batch``) in the other interpreter."""
        common = {"repo": str(Path(__file__).resolve().parents[1]),
                  "model": dict(self.spec, score_thresh=confidence),
                  "classes": self.classes, "images": self.paths, "tile": self.args.tile,
                  "overlap": self.args.overlap, "threshold": self.args.threshold, "confidence": confidence,
                  "threads": self.args.threads, "warmup": 1}  # fmt: skip
        job, out = self.work / "job.json", self.work / "out.json"
        job.write_text(json.dumps({**common, "runs": runs}))
        subprocess.run([self.args.sahi_python, str(WORKER), str(job), str(out)], check=True)
        return json.loads(out.read_text())["runs"]

    def detseg(self, confidence: float, merge: str, match: str, full_image: bool, batch: int,
               tile: int | None = None) -> list[dict]:  # fmt: skip
        """detseg's merged detections of every image (``tile`` None: the whole image alone)."""
        set_score_threshold(self.model, confidence)
        model = self.model
        if tile is not None:
            model = with_slicing(model, "detect", tile, self.args.overlap, full_image, merge, match,
                                 self.args.threshold, batch)  # fmt: skip
        out = []
        with torch.no_grad():
            for k, array in enumerate([self.arrays[0], *self.arrays]):  # the first run warms up
                start = time.perf_counter()
                image = torch.from_numpy(array).permute(2, 0, 1).float() / 255
                found = model([image])[0]
                seconds = time.perf_counter() - start
                if k:
                    out.append({"boxes": found["boxes"].tolist(), "scores": found["scores"].tolist(),
                                "labels": found["labels"].tolist(), "seconds": seconds})  # fmt: skip
        return out


def matched_share(ours: list[dict], theirs: list[dict], iou: float = 0.99) -> tuple[float, int, int]:
    """(share of ``ours`` boxes matched one to one by a box of ``theirs`` of the same label at IoU >= ``iou``,
    our count, their count), over all images."""
    matched = total = other = 0
    for a, b in zip(ours, theirs, strict=True):
        total, other = total + len(a["boxes"]), other + len(b["boxes"])
        if not a["boxes"] or not b["boxes"]:
            continue
        overlap = box_iou(np.array(a["boxes"]), np.array(b["boxes"]))
        overlap[np.array(a["labels"])[:, None] != np.array(b["labels"])[None, :]] = 0
        free = np.ones(len(b["boxes"]), bool)
        for i in np.argsort(-np.array(a["scores"]), kind="stable"):
            row = np.where(free, overlap[i], 0)
            j = int(np.argmax(row))
            if row[j] >= iou:
                free[j] = False
                matched += 1
    return (matched / total if total else 1.0), total, other


def parity(sides: Sides, args: argparse.Namespace) -> None:
    settings = [(merge, match, full) for merge in SAHI_MERGE for match in ("iou", "ios")
                for full in (False, True)]  # fmt: skip
    runs = [{"tool": "sahi", "merge": SAHI_MERGE[m], "match": s.upper(), "full_image": f, "batch": 1}
            for m, s, f in settings]  # fmt: skip
    theirs = sides.worker(runs, args.confidence)
    v = theirs[0]["versions"]
    print(f"\nparity with SAHI {v['sahi']} ({v['postprocess_backend']} postprocess): tile {args.tile}, "
          f"overlap {args.overlap}, threshold {args.threshold}, detections > {args.confidence}, "
          f"{len(sides.paths)} images")  # fmt: skip
    print(f"{'merge':<11}{'match':<6}{'full image':<11}{'detseg boxes':>13}{'SAHI boxes':>11}{'matched':>9}")
    for (merge, match, full), run in zip(settings, theirs, strict=True):
        ours = sides.detseg(args.confidence, merge, match, full, args.tile_batch, args.tile)
        share, n_ours, n_theirs = matched_share(ours, run["images"])
        print(f"{merge:<11}{match:<6}{'yes' if full else 'no':<11}{n_ours:>13}{n_theirs:>11}{share:>9.2%}")


def speed(sides: Sides, args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    b = args.tile_batch
    nms = {"merge": "NMS", "match": "IOU", "full_image": False}
    runs = [{"tool": "sahi", **nms, "batch": 1}, {"tool": "supervision", **nms, "batch": 1},
            {"tool": "supervision", **nms, "batch": b},
            {"tool": "sahi", "merge": "GREEDYNMM", "match": "IOS", "full_image": True,
             "batch": 1}]  # fmt: skip
    theirs = sides.worker(runs, args.confidence)
    height, width = sides.arrays[0].shape[:2]
    n = slice_count(height, width, args.tile, args.overlap)
    v = theirs[0]["versions"], theirs[1]["versions"]
    print(f"\nspeed: ms per image ({width}x{height}, {n} slices of {args.tile}, median of {len(sides.paths)} "
          f"images after a warm-up), {args.threads} torch threads, CPU; SAHI {v[0]['sahi']}, supervision "
          f"{v[1]['supervision']}, torch {v[0]['torch']}")  # fmt: skip

    def ms(images: list[dict]) -> float:
        return 1000 * statistics.median(im["seconds"] for im in images)

    def ours(merge: str, match: str, full: bool, batch: int) -> list[dict]:
        return sides.detseg(args.confidence, merge, match, full, batch, args.tile)

    plain, sahi_defaults = "slices, NMS IoU", "slices + full, greedy NMM IoS"
    rows = [(plain, "detseg, 1 slice per call", ms(ours("nms", "iou", False, 1))),
            (plain, f"detseg, --tile-batch {b}", ms(ours("nms", "iou", False, b))),
            (plain, "SAHI get_sliced_prediction", ms(theirs[0]["images"])),
            (plain, "supervision InferenceSlicer", ms(theirs[1]["images"])),
            (plain, f"supervision, batch_size {b}", ms(theirs[2]["images"])),
            (sahi_defaults, f"detseg, --tile-batch {b}", ms(ours("greedy-nmm", "ios", True, b))),
            (sahi_defaults, "SAHI get_sliced_prediction", ms(theirs[3]["images"]))]  # fmt: skip
    for setting, tool, value in rows:
        print(f"{setting:<31}{tool:<30}{value:>9.1f}")


def accuracy(sides: Sides, args: argparse.Namespace) -> None:
    ids = [im["id"] for im in sides.gt["images"]]
    categories = [c["id"] for c in sides.gt["categories"]]
    print(f"\naccuracy: COCO bbox on {len(ids)} images ({args.split}), detections > {args.eval_score}, "
          f"maxDets 100, merge threshold {args.threshold}")  # fmt: skip
    print(f"{'inference':<24}{'merge':<16}{'AP':>7}{'AP50':>7}{'AP_small':>10}{'AR100':>7}")
    settings = (("full image", None, False, "", ""), ("slices", args.tile, False, "greedy-nmm", "ios"),
                ("slices + full image", args.tile, True, "greedy-nmm", "ios"),
                ("slices + full image", args.tile, True, "nms", "iou"))  # fmt: skip
    for name, tile, full, merge, match in settings:
        found = sides.detseg(args.eval_score, merge, match, full, args.tile_batch, tile)
        results = [{"image_id": i, "category_id": categories[label], "score": score,
                    "bbox": [x1, y1, x2 - x1, y2 - y1]}
                   for i, image in zip(ids, found, strict=True)
                   for (x1, y1, x2, y2), score, label in zip(image["boxes"], image["scores"], image["labels"],
                                                             strict=True)]  # fmt: skip
        stats = evaluate(sides.gt, results).to_dict()
        merged = f"{merge} {match}" if merge else "-"
        print(f"{name:<24}{merged:<16}{stats['AP']:>7.3f}{stats['AP50']:>7.3f}{stats['APs']:>10.3f}"
              f"{stats['AR100']:>7.3f}")  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--weights", required=True, help="a detseg detector checkpoint (RUN/last.pt)")
    p.add_argument("--data", required=True, help="its dataset spec (large images)")
    p.add_argument("--split", default="val")
    p.add_argument("--images", type=int, help="the first N images of the split (default all)")
    p.add_argument("--sahi-python", required=True, help="the venv interpreter with sahi and supervision")
    p.add_argument("--tile", type=int, default=256)
    p.add_argument("--overlap", type=float, default=0.2)
    p.add_argument("--threshold", type=float, default=0.5, help="merge threshold (IoU or IoS)")
    p.add_argument("--tile-batch", type=int, default=8)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--confidence", type=float, default=0.3, help="parity and speed: detections above it")
    p.add_argument("--eval-score", type=float, default=0.05, help="accuracy: detections above it")
    p.add_argument("--parts", nargs="+", choices=("parity", "speed", "accuracy"),
                   default=["parity", "speed", "accuracy"])  # fmt: skip
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as work:
        sides = Sides(args, Path(work))
        for part in args.parts:
            {"parity": parity, "speed": speed, "accuracy": accuracy}[part](sides, args)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
