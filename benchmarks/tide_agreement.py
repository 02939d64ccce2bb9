"""detseg's TIDE (``detseg.metrics.tide``) against the TIDE toolbox itself (``tidecv``, Bolya et al.).

Generates deterministic workloads (jittered and relabelled copies of the objects, false alarms; every
class with ground truth), runs both, and prints per workload the AP, the six error kinds' dAP, the
false-positive / false-negative dAP and the error counts of each, and the largest difference. With
``recall_grid="tide"`` the figures should agree to rounding; with detseg's default ("coco":
pycocotools' recall points) the dAPs may differ by a few hundredths of a point where a recall falls
exactly on a recall point. Seconds of CPU; not a test (tidecv is not a dependency of detseg).

tidecv 1.0.1 asks for opencv-python, seaborn and pandas; beside detseg's opencv-python-headless:

    pip install --no-deps tidecv==1.0.1 seaborn pandas pytz tzdata
    python benchmarks/tide_agreement.py [--workloads 8] [--images 60]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np

from detseg.metrics.tide import tide

SHORT = {"Cls": "classification", "Loc": "localization", "Both": "both", "Dupe": "duplicate",
         "Bkg": "background", "Miss": "missed"}  # fmt: skip


def workload(seed: int, images: int = 60, classes: int = 4) -> tuple[dict, list[dict]]:
    rng = np.random.default_rng(seed)
    imgs = [{"id": i, "width": 200, "height": 200, "file_name": f"{i}.jpg"} for i in range(1, images + 1)]
    anns, dets = [], []
    for im in imgs:
        for _ in range(rng.integers(1, 6)):
            x, y = rng.uniform(0, 150, 2)
            w, h = rng.uniform(8, 50, 2)
            c = int(rng.integers(1, classes + 1))
            polygon = [[x, y, x + w, y, x + w, y + h, x, y + h]]  # tidecv's reader wants one
            anns.append({"id": len(anns) + 1, "image_id": im["id"], "category_id": c, "bbox": [x, y, w, h],
                         "area": w * h, "iscrowd": 0, "segmentation": polygon})  # fmt: skip
            for _ in range(rng.integers(0, 3)):
                j = rng.normal(0, rng.choice([2, 6, 12]), 4)
                label = c if rng.random() < 0.75 else int(rng.integers(1, classes + 1))
                box = [x + j[0], y + j[1], max(w + j[2], 2), max(h + j[3], 2)]
                dets.append(
                    {"image_id": im["id"], "category_id": label, "score": float(rng.random()), "bbox": box}
                )
        for _ in range(rng.integers(0, 3)):
            box = [*rng.uniform(0, 170, 2).tolist(), 20.0, 20.0]
            label = int(rng.integers(1, classes + 1))
            dets.append(
                {"image_id": im["id"], "category_id": label, "score": float(rng.random()), "bbox": box}
            )
    cats = [{"id": c, "name": f"c{c}"} for c in range(1, classes + 1)]
    return {"images": imgs, "annotations": anns, "categories": cats}, dets


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workloads", type=int, default=8)
    ap.add_argument("--images", type=int, default=60)
    args = ap.parse_args()
    from tidecv import TIDE, datasets

    worst = {"tide": 0.0, "coco": 0.0}
    with tempfile.TemporaryDirectory() as tmp:
        gt_path, dt_path = Path(tmp) / "gt.json", Path(tmp) / "dt.json"
        for seed in range(args.workloads):
            gt, dets = workload(seed, args.images)
            gt_path.write_text(json.dumps(gt, default=float))
            dt_path.write_text(json.dumps(dets))
            ref = TIDE()
            run = ref.evaluate(
                datasets.COCO(str(gt_path)), datasets.COCOResult(str(dt_path)), mode=TIDE.BOX, name="r"
            )
            errors = ref.get_all_errors()
            ref_fig = {"AP": run.ap}
            ref_fig.update({SHORT[k]: v for k, v in errors["main"]["r"].items()})
            ref_fig.update(false_positives=errors["special"]["r"]["FalsePos"])
            ref_fig.update(false_negatives=errors["special"]["r"]["FalseNeg"])
            ref_counts = {
                SHORT[e.short_name]: len(v) for e, v in run.error_dict.items() if e.short_name in SHORT
            }
            line = [f"workload {seed}: {len(gt['annotations'])} objects, {len(dets)} detections"]
            for grid in ("tide", "coco"):
                ours = tide(gt, dets, recall_grid=grid)
                fig = {"AP": ours.ap * 100}
                # The toolbox reports max(dAP, 0) for the six kinds.
                fig.update({k: max(ours.dap[k], 0) * 100 for k in SHORT.values()})
                fig.update({k: ours.dap[k] * 100 for k in ("false_positives", "false_negatives")})
                diff = max(abs(fig[k] - ref_fig[k]) for k in ref_fig)
                worst[grid] = max(worst[grid], diff)
                line.append(
                    f"grid {grid}: max |dAP diff| {diff:.2e}, counts equal {ours.counts == ref_counts}"
                )
            print("; ".join(line))
            print("   tidecv: " + ", ".join(f"{k} {v:.2f}" for k, v in ref_fig.items()))
    print(
        f"largest difference in AP points: recall grid 'tide' {worst['tide']:.2e}, 'coco' {worst['coco']:.2e}"
    )


if __name__ == "__main__":
    main()
