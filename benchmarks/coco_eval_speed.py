"""COCO bbox evaluation speed: ``detseg eval det`` against faster-coco-eval and pycocotools.

Generates a deterministic workload (default 5000 images, 80 categories, 500,000 detections; crowds,
ties in scores, all object sizes) as two JSON files, then runs each evaluator as a whole fresh process
(interpreter start, imports, reading the files, evaluation, summary) and prints wall time, peak memory
(max RSS) and the largest difference of the 12 stats from pycocotools'. Minutes of CPU; not a test.

    python benchmarks/coco_eval_speed.py [--images 5000] [--dets 500000] [--out /tmp/coco_bench] [--repeat 1]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

CHILD = {
    "pycocotools": """
import contextlib, io, json, resource, sys
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
with contextlib.redirect_stdout(io.StringIO()):
    gt = COCO(sys.argv[1]); dt = gt.loadRes(sys.argv[2])
    e = COCOeval(gt, dt, sys.argv[4]); e.evaluate(); e.accumulate(); e.summarize()
print(json.dumps({"stats": list(map(float, e.stats)),
                  "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "cpu_s": sum(resource.getrusage(resource.RUSAGE_SELF)[:2])}))
""",
    "faster-coco-eval": """
import contextlib, io, json, resource, sys
from faster_coco_eval import COCO, COCOeval_faster
with contextlib.redirect_stdout(io.StringIO()):
    gt = COCO(sys.argv[1]); dt = gt.loadRes(sys.argv[2])
    e = COCOeval_faster(gt, dt, sys.argv[4]); e.evaluate(); e.accumulate(); e.summarize()
print(json.dumps({"stats": list(map(float, e.stats[:12])),
                  "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "cpu_s": sum(resource.getrusage(resource.RUSAGE_SELF)[:2])}))
""",
    "detseg": """
import contextlib, io, json, resource, sys
from detseg.cli import main
with contextlib.redirect_stdout(io.StringIO()):
    rc = main(["eval", "det", "--gt", sys.argv[1], "--dt", sys.argv[2], "--json", sys.argv[3],
               "--iou-type", sys.argv[4]])
out = json.load(open(sys.argv[3]))
names = ["AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl"]
print(json.dumps({"stats": [out[n] for n in names],
                  "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "cpu_s": sum(resource.getrusage(resource.RUSAGE_SELF)[:2])}))
""",
}


def make_workload(n_images: int, n_cats: int, n_dets: int, seed: int = 0) -> tuple[dict, list[dict]]:
    """A COCO-like ground truth (about 7 objects per image, 1 % crowds) and ``n_dets`` results."""
    rng = np.random.default_rng(seed)
    images, anns = [], []
    gt_boxes = []  # (image_id, category_id, x, y, w, h)
    for i in range(n_images):
        w, h = int(rng.integers(320, 641)), int(rng.integers(240, 481))
        images.append({"id": i + 1, "file_name": f"{i + 1:06d}.jpg", "width": w, "height": h})
        for _ in range(int(rng.poisson(7))):
            # Log-uniform sizes: small, medium and large objects all present.
            bw = float(np.exp(rng.uniform(np.log(4), np.log(w * 0.9))))
            bh = float(np.clip(bw * np.exp(rng.normal(0, 0.4)), 2, h * 0.95))
            x, y = float(rng.uniform(0, w - bw)), float(rng.uniform(0, h - bh))
            cat = int(rng.integers(1, n_cats + 1))
            box = [round(x, 2), round(y, 2), round(bw, 2), round(bh, 2)]
            anns.append(
                {
                    "id": len(anns) + 1,
                    "image_id": i + 1,
                    "category_id": cat,
                    "bbox": box,
                    "area": round(box[2] * box[3], 2),
                    "iscrowd": int(rng.random() < 0.01),
                }
            )
            gt_boxes.append((i + 1, cat, *box))
    cats = [{"id": c, "name": f"class_{c}"} for c in range(1, n_cats + 1)]
    gt = {"images": images, "annotations": anns, "categories": cats}
    g = np.array(gt_boxes)
    # Detections: 60 % jittered copies of ground truth (some with a wrong class), 40 % random boxes.
    n_near = int(n_dets * 0.6)
    src = g[rng.integers(0, len(g), n_near)]
    jit = rng.normal(0, 0.12, (n_near, 4)) * np.c_[src[:, 4], src[:, 5], src[:, 4], src[:, 5]]
    near = np.c_[src[:, 0], src[:, 1], src[:, 2:4] + jit[:, :2], np.abs(src[:, 4:6] + jit[:, 2:])]
    wrong = rng.random(n_near) < 0.1
    near[wrong, 1] = rng.integers(1, n_cats + 1, int(wrong.sum()))
    n_far = n_dets - n_near
    img = rng.integers(1, n_images + 1, n_far)
    wh = np.array([[im["width"], im["height"]] for im in images])[img - 1]
    bw = np.exp(rng.uniform(np.log(4), np.log(wh[:, 0] * 0.8)))
    bh = np.exp(rng.uniform(np.log(4), np.log(wh[:, 1] * 0.8)))
    far = np.c_[
        img,
        rng.integers(1, n_cats + 1, n_far),
        rng.uniform(0, wh[:, 0] - bw),
        rng.uniform(0, wh[:, 1] - bh),
        bw,
        bh,
    ]
    dets = np.r_[near, far]
    dets = dets[rng.permutation(len(dets))]
    # Scores with 3 decimals: many exact ties, which exercise the stable-sort semantics.
    score = np.round(np.where(np.arange(len(dets)) < 0, 0, rng.beta(2, 2, len(dets))), 3)
    results = [
        {
            "image_id": int(r[0]),
            "category_id": int(r[1]),
            "bbox": [
                round(float(r[2]), 2),
                round(float(r[3]), 2),
                round(float(r[4]), 2),
                round(float(r[5]), 2),
            ],
            "score": float(s),
        }
        for r, s in zip(dets, score, strict=True)
    ]
    return gt, results


def octagon(x: float, y: float, w: float, h: float) -> list[float]:
    """An octagon inscribed in the box (x, y, w, h): a polygon that is not just the box."""
    a, b = w * 0.25, h * 0.25
    pts = [
        x + a,
        y,
        x + w - a,
        y,
        x + w,
        y + b,
        x + w,
        y + h - b,
        x + w - a,
        y + h,
        x + a,
        y + h,
        x,
        y + h - b,
        x,
        y + b,
    ]
    return [round(v, 2) for v in pts]


def to_segm(gt: dict, results: list[dict]) -> tuple[dict, list[dict]]:
    """The bbox workload as segm: octagon polygons for the ground truth, RLE octagons for results."""
    from pycocotools import mask as mask_utils

    size = {im["id"]: (im["height"], im["width"]) for im in gt["images"]}
    for a in gt["annotations"]:
        a["segmentation"] = [octagon(*a["bbox"])]
        a["area"] = round(a["area"] * 0.875, 2)
    out = []
    for r in results:
        h, w = size[r["image_id"]]
        rle = mask_utils.frPyObjects([octagon(*r["bbox"])], h, w)[0]
        rle["counts"] = rle["counts"].decode()
        out.append(
            {
                "image_id": r["image_id"],
                "category_id": r["category_id"],
                "segmentation": rle,
                "score": r["score"],
            }
        )
    return gt, out


def run(tool: str, gt: Path, dt: Path, out: Path, iou_type: str = "bbox") -> dict:
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", CHILD[tool], str(gt), str(dt), str(out / f"{tool}.json"), iou_type],
        capture_output=True,
        text=True,
    )
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{tool} failed:\n{proc.stderr[-3000:]}")
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    res["seconds"] = wall
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=5000)
    ap.add_argument("--cats", type=int, default=80)
    ap.add_argument("--dets", type=int, default=500_000)
    ap.add_argument("--out", type=Path, default=Path("/tmp/detseg_coco_bench"))
    ap.add_argument("--repeat", type=int, default=1, help="runs per tool; the fastest is reported")
    ap.add_argument("--tools", default="detseg,faster-coco-eval,pycocotools")
    ap.add_argument(
        "--iou-type",
        choices=("bbox", "segm"),
        default="bbox",
        help="segm: octagon polygons / RLE results (try --images 1000 --dets 100000)",
    )
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    tag = "" if args.iou_type == "bbox" else "_segm"
    gt_path = args.out / f"gt_{args.images}_{args.cats}{tag}.json"
    dt_path = args.out / f"dt_{args.images}_{args.cats}_{args.dets}{tag}.json"
    if not (gt_path.exists() and dt_path.exists()):
        t0 = time.perf_counter()
        gt, results = make_workload(args.images, args.cats, args.dets)
        if args.iou_type == "segm":
            gt, results = to_segm(gt, results)
        gt_path.write_text(json.dumps(gt))
        dt_path.write_text(json.dumps(results))
        print(
            f"workload written in {time.perf_counter() - t0:.1f} s: {len(gt['images'])} images, "
            f"{len(gt['annotations'])} objects, {len(results)} detections"
        )
    # One untimed detseg run first so that numba's compiled kernels are in its on-disk cache.
    run("detseg", gt_path, dt_path, args.out, args.iou_type)
    rows = {}
    for tool in args.tools.split(","):
        best = None
        for _ in range(args.repeat):
            r = run(tool, gt_path, dt_path, args.out, args.iou_type)
            best = r if best is None or r["seconds"] < best["seconds"] else best
        rows[tool] = best
    ref = np.array(rows["pycocotools"]["stats"]) if "pycocotools" in rows else None
    print(f"{'tool':<18} {'seconds':>8} {'CPU s':>8} {'peak MB':>8} {'max |stat - pycocotools|':>26}  AP")
    for tool, r in rows.items():
        diff = f"{np.abs(np.array(r['stats']) - ref).max():.3e}" if ref is not None else "n/a"
        ap0 = r["stats"][0]
        print(f"{tool:<18} {r['seconds']:8.2f} {r['cpu_s']:8.2f} {r['rss_mb']:8.0f} {diff:>26}  {ap0:.6f}")
    if "detseg" in rows:
        for tool in ("faster-coco-eval", "pycocotools"):
            if tool in rows:
                wall = rows["detseg"]["seconds"] / rows[tool]["seconds"]
                cpu = rows["detseg"]["cpu_s"] / rows[tool]["cpu_s"]
                print(f"detseg / {tool}: wall time {wall:.3f}, CPU time {cpu:.3f}")


if __name__ == "__main__":
    main()
