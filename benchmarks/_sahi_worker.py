"""The SAHI / supervision side of ``benchmarks/sliced_inference.py``, run in their own virtual environment
(their opencv-python beside detseg's opencv-python-headless would clash in one):

    python benchmarks/_sahi_worker.py JOB.json OUT.json

JOB.json (written by the benchmark): ``repo`` (detseg's checkout, for the detector's architecture),
``model`` (``name``, ``kwargs``, ``weights``: a state-dict file, ``score_thresh``: the detector's own
filter), ``classes``, ``images`` (PNG paths), ``tile``, ``overlap``, ``threshold``, ``confidence``,
``threads``, ``warmup`` (images run before timing), and ``runs``: each a ``tool`` (``sahi`` or
``supervision``), ``merge`` (SAHI's ``NMS`` / ``NMM`` / ``GREEDYNMM``), ``match`` (``IOU`` / ``IOS``),
``full_image`` and ``batch``. The detector is detseg's (a subclass of torchvision's SSD or Faster R-CNN
class, the same weights detseg's side runs) given to SAHI's ``TorchVisionDetectionModel(model=...)``;
supervision's ``InferenceSlicer`` calls it on each slice (or each batch of slices) through a callback.
OUT.json: per run the versions used and per image the merged ``boxes`` (x1, y1, x2, y2), ``scores``,
``labels`` and ``seconds`` (wall time of the sliced prediction, the image in memory).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image


def load_model(job: dict) -> torch.nn.Module:
    sys.path.insert(0, job["repo"])
    from detseg.models.zoo import create_model

    spec = job["model"]
    model = create_model(spec["name"], **spec["kwargs"])
    model.load_state_dict(torch.load(spec["weights"], map_location="cpu", weights_only=True))
    if hasattr(model, "score_thresh"):  # the same filter as detseg's side (SSD, else Faster R-CNN)
        model.score_thresh = spec["score_thresh"]
    else:
        model.roi_heads.score_thresh = spec["score_thresh"]
    return model.eval()


def sahi_predictor(job: dict, model: torch.nn.Module):
    from sahi.models.torchvision import TorchVisionDetectionModel
    from sahi.predict import get_sliced_prediction

    wrapped = TorchVisionDetectionModel(
        model=model,
        device="cpu",
        confidence_threshold=job["confidence"],
        category_mapping={str(i): name for i, name in enumerate(job["classes"])},
    )

    def predict(image: np.ndarray) -> tuple[list, list, list]:
        result = get_sliced_prediction(
            image,
            wrapped,
            slice_height=job["tile"],
            slice_width=job["tile"],
            overlap_height_ratio=job["overlap"],
            overlap_width_ratio=job["overlap"],
            perform_standard_pred=job["full_image"],
            postprocess_type=job["merge"],
            postprocess_match_metric=job["match"],
            postprocess_match_threshold=job["threshold"],
            verbose=0,
            batch_size=job["batch"],
            force_postprocess_type=True,  # no silent switch to NMS below a confidence of 0.1
        )
        preds = result.object_prediction_list
        return ([p.bbox.to_xyxy() for p in preds], [float(p.score.value) for p in preds],
                [int(p.category.id) for p in preds])  # fmt: skip

    return predict


def supervision_predictor(job: dict, model: torch.nn.Module):
    import supervision as sv

    def detections(output: dict) -> sv.Detections:
        keep = output["scores"] > job["confidence"]
        return sv.Detections(xyxy=output["boxes"][keep].numpy().astype(np.float32).reshape(-1, 4),
                             confidence=output["scores"][keep].numpy(),
                             class_id=output["labels"][keep].numpy().astype(int))  # fmt: skip

    def tensor(image: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float() / 255

    def callback(images):
        with torch.no_grad():
            if isinstance(images, list):
                return [detections(o) for o in model([tensor(im) for im in images])]
            return detections(model([tensor(images)])[0])

    if job["merge"] != "NMS" or job["full_image"]:
        raise ValueError("the supervision runs here use NMS by IoU on the slices alone")
    slicer = sv.InferenceSlicer(
        callback=callback,
        slice_wh=job["tile"],
        overlap_wh=int(job["overlap"] * job["tile"]),
        overlap_filter=sv.OverlapFilter.NON_MAX_SUPPRESSION,
        iou_threshold=job["threshold"],
        overlap_metric=sv.OverlapMetric.IOU if job["match"] == "IOU" else sv.OverlapMetric.IOS,
        batch_size=job["batch"],
    )

    def predict(image: np.ndarray) -> tuple[list, list, list]:
        found = slicer(image)
        return found.xyxy.tolist(), found.confidence.tolist(), found.class_id.tolist()

    return predict


def versions(tool: str) -> dict:
    import importlib.metadata as md

    found = {"tool": tool, tool: md.version(tool), "torch": torch.__version__}
    if tool == "sahi":
        from sahi.postprocess.backends import resolve_backend

        found["postprocess_backend"] = resolve_backend()
    return found


def main(job_path: str, out_path: str) -> None:
    job = json.loads(Path(job_path).read_text())
    torch.set_num_threads(job["threads"])
    model = load_model(job)
    images = [np.array(Image.open(p).convert("RGB")) for p in job["images"]]
    runs = []
    for run in job["runs"]:
        setting = {**job, **run}
        predict = (sahi_predictor if run["tool"] == "sahi" else supervision_predictor)(setting, model)
        with torch.no_grad():
            for image in images[: job["warmup"]]:
                predict(image)
            out = []
            for image in images:
                start = time.perf_counter()
                boxes, scores, labels = predict(image)
                out.append({"boxes": boxes, "scores": scores, "labels": labels,
                            "seconds": time.perf_counter() - start})  # fmt: skip
        runs.append({"images": out, "versions": versions(run["tool"])})
    Path(out_path).write_text(json.dumps({"runs": runs}))


if __name__ == "__main__":
    main(*sys.argv[1:3])
