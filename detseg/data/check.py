"""``detseg data check``: count what a data set holds and list every problem in it.

Counts: images, objects per class, box sizes (COCO small / medium / large and width, height
quantiles), mask pixels per class. Problems: missing or unreadable images, malformed annotation
files, boxes outside the image, degenerate boxes, unknown classes, masks whose size differs from the
image, unexpected mask values. Each problem names the file and the entry.
"""

from __future__ import annotations

import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from detseg.data.coco import box_problems, category_map, check_coco, segmentation_to_rle
from detseg.data.errors import DataError
from detseg.data.masks import image_size, map_mask_values, mask_pairs, read_image, read_mask
from detseg.data.spec import DatasetSpec, load_spec


@dataclass
class SplitReport:
    """What one split holds and what is wrong with it."""

    split: str
    images: int = 0
    objects: Counter = field(default_factory=Counter)  # class name -> boxes
    box_sizes: dict = field(default_factory=dict)  # small / medium / large counts, width / height quantiles
    pixels: Counter = field(default_factory=Counter)  # class name (or "ignore") -> mask pixels
    problems: list[DataError] = field(default_factory=list)


@dataclass
class CheckReport:
    spec: DatasetSpec
    splits: list[SplitReport]

    @property
    def problems(self) -> list[DataError]:
        return [p for s in self.splits for p in s.problems]

    @property
    def ok(self) -> bool:
        return not self.problems


def check_dataset(
    spec: DatasetSpec | str | Path, splits: list[str] | None = None, decode_images: bool = True
) -> CheckReport:
    """Check every split of a spec (or only ``splits``); ``decode_images=False`` reads only headers."""
    spec = spec if isinstance(spec, DatasetSpec) else load_spec(spec)
    reports, seen = [], []
    for split in splits or list(spec.splits):
        if spec.split(split) in seen:
            continue  # a bare COCO json serves train and val from one file: check it once
        seen.append(spec.split(split))
        report = SplitReport(split)
        try:
            if spec.task in ("detect", "instance"):  # instance: boxes with masks, checked as detection
                _check_detection(spec, split, report, decode_images)
            else:
                _check_segmentation(spec, split, report, decode_images)
        except DataError as exc:  # a problem that stops the split (malformed json, missing folder)
            report.problems.append(exc)
        reports.append(report)
    return CheckReport(spec, reports)


def _read_size(path: Path, decode: bool, problems: list[DataError]) -> tuple[int, int] | None:
    try:
        return read_image(path).shape[:2] if decode else image_size(path)
    except DataError as exc:
        problems.append(exc)
        return None


def _check_detection(spec: DatasetSpec, split: str, report: SplitReport, decode: bool) -> None:
    from detseg.data.dataset import load_split_coco

    s = spec.split(split)
    source = s.annotations or s.masks
    problems = report.problems
    coco = check_coco(load_split_coco(spec, split, problems), source, problems)
    cmap = category_map(coco["categories"], spec.classes, source)
    label_of = cmap.label_of
    names = {c["id"]: c["name"] for c in coco["categories"]}
    for img in coco["images"]:
        size = _read_size(s.images / img["file_name"], decode, problems)
        if size is None:
            continue
        if img.get("height") and img.get("width") and tuple(size) != (img["height"], img["width"]):
            problems.append(
                DataError(
                    s.images / img["file_name"],
                    f"image is {size[1]}x{size[0]} but its annotation says {img['width']}x{img['height']}",
                    f"image id {img['id']}",
                )
            )
        img["height"], img["width"] = size
    report.images = len(coco["images"])
    problems.extend(box_problems(coco, source))
    widths, heights, areas = [], [], []
    for ann in coco["annotations"]:
        if ann["category_id"] not in label_of:
            where = ann.get("source") or f"annotation id {ann.get('id')}"
            problems.append(
                DataError(
                    source, f"unknown class '{names[ann['category_id']]}' (not in the spec's classes)", where
                )
            )
            continue
        report.objects[names[ann["category_id"]]] += 1
        widths.append(ann["bbox"][2])
        heights.append(ann["bbox"][3])
        areas.append(ann["bbox"][2] * ann["bbox"][3])
    if areas:
        a = np.asarray(areas)
        report.box_sizes = {
            "small (<32^2)": int((a < 32**2).sum()),
            "medium": int(((a >= 32**2) & (a < 96**2)).sum()),
            "large (>=96^2)": int((a >= 96**2).sum()),
            "width min/median/max": [float(np.min(widths)), float(np.median(widths)), float(np.max(widths))],
            "height min/median/max": [
                float(np.min(heights)),
                float(np.median(heights)),
                float(np.max(heights)),
            ],
        }
    sizes = {img["id"]: (img.get("height"), img.get("width")) for img in coco["images"]}
    for ann in coco["annotations"]:
        if ann.get("segmentation"):
            try:
                segmentation_to_rle(ann["segmentation"], *sizes[ann["image_id"]])
            except (ValueError, TypeError) as exc:
                problems.append(
                    DataError(source, f"bad segmentation ({exc})", f"annotation id {ann.get('id')}")
                )


def _check_segmentation(spec: DatasetSpec, split: str, report: SplitReport, decode: bool) -> None:
    from detseg.data.dataset import SegmentationDataset, mask_table

    s = spec.split(split)
    problems = report.problems
    if spec.format in ("coco", "cityscapes"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the problems are listed in the report instead
            dataset = SegmentationDataset(spec, split, skip_bad=True)
        problems.extend(dataset.problems)
        pairs = [(entry[0], entry[1], entry[2]) for entry in dataset.entries]
        classes, ignore = dataset.classes, dataset.ignore_index
    else:
        pairs = mask_pairs(s.images, s.masks, s.stems, s.mask_suffix, problems)
        classes, ignore = spec.classes, spec.ignore_index
        dataset = None
    table = mask_table(spec) if spec.format != "coco" else None
    report.images = len(pairs)
    counts = np.zeros(len(classes), dtype=np.int64)
    ignored = 0
    for index, (image, mask_ref, file_name) in enumerate(pairs):
        size = _read_size(image, decode, problems)
        try:
            if dataset is not None and spec.format == "coco":
                semantic = dataset.read_semantic(index, size)
            else:
                raw = read_mask(mask_ref)
                if size is not None and raw.shape != tuple(size):
                    problems.append(
                        DataError(
                            mask_ref,
                            f"mask is {raw.shape[1]}x{raw.shape[0]} but the image "
                            f"{file_name} is {size[1]}x{size[0]}",
                        )
                    )
                    continue
                semantic = map_mask_values(raw, table, mask_ref)
        except DataError as exc:
            problems.append(exc)
            continue
        valid = semantic[semantic != ignore]
        counts += np.bincount(valid.ravel(), minlength=len(classes))[: len(classes)]
        ignored += int((semantic == ignore).sum())
    report.pixels = Counter({name: int(c) for name, c in zip(classes, counts, strict=True)})
    if ignored:
        report.pixels["ignore"] = ignored


def format_report(report: CheckReport, max_problems: int = 50) -> str:
    """The report as text, counts first, then every problem (up to ``max_problems`` per split)."""
    spec = report.spec
    lines = [
        f"dataset {spec.path or spec.root}: task {spec.task}, format {spec.format}, "
        f"{spec.num_classes or len(report.splits[0].objects if report.splits else [])} classes"
    ]
    for s in report.splits:
        lines.append(f"[{s.split}] {s.images} images")
        if s.objects:
            total = sum(s.objects.values())
            per_class = ", ".join(f"{name} {n}" for name, n in sorted(s.objects.items()))
            lines.append(f"  objects: {total} ({per_class})")
        for key, value in s.box_sizes.items():
            lines.append(f"  boxes {key}: {value}")
        if sum(s.pixels.values()):
            total = sum(s.pixels.values())
            lines.append(
                "  mask pixels: "
                + ", ".join(f"{name} {100.0 * n / total:.1f}%" for name, n in s.pixels.items())
            )
        lines.append(f"  problems: {len(s.problems)}")
        for p in s.problems[:max_problems]:
            lines.append(f"    {p}")
        if len(s.problems) > max_problems:
            lines.append(f"    ... and {len(s.problems) - max_problems} more")
    lines.append("OK: no problems found" if report.ok else f"FAILED: {len(report.problems)} problems")
    return "\n".join(lines)
