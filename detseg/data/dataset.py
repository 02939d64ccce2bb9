"""torch Datasets for detection and segmentation over any spec format, and their collate functions.

A sample is ``(image, target)`` as DEVELOPING.md describes: ``image`` a ``tv_tensors.Image`` uint8
``[C, H, W]``; ``target`` a dict with ``boxes`` (``BoundingBoxes`` XYXY), ``labels`` (0-based into
``classes``), ``iscrowd``, ``area``, optional ``masks`` / ``difficult``, or ``semantic`` (segmentation),
plus ``image_id`` and ``file_name``.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset
from torchvision import tv_tensors

from detseg.data.coco import (
    CategoryMap,
    category_map,
    check_coco,
    ensure_annotation_ids,
    load_coco,
    segmentation_to_mask,
)
from detseg.data.errors import DataError, warn_skipped
from detseg.data.instances import instance_mask_problem
from detseg.data.masks import (
    image_size,
    map_mask_values,
    mask_pairs,
    masks_to_coco,
    read_image,
    read_mask,
    value_table,
)
from detseg.data.spec import DatasetSpec, load_spec

Transform = Callable[[tv_tensors.Image, dict], tuple]


def _as_spec(spec: DatasetSpec | str | Path) -> DatasetSpec:
    return spec if isinstance(spec, DatasetSpec) else load_spec(spec)


def mask_table(spec: DatasetSpec) -> np.ndarray:
    """The raw-value -> class table for a spec's semantic masks."""
    if spec.format == "cityscapes":
        from detseg.data.cityscapes import train_id_table

        table = np.full(65536, -1, dtype=np.int64)
        table[:256] = train_id_table()
        return table
    return value_table(spec.values, spec.num_classes, spec.ignore_index)


def _background(classes: list[str] | None) -> tuple[int, ...]:
    return (0,) if classes and classes[0].lower() in ("background", "bg", "_background_") else ()


def load_split_coco(spec: DatasetSpec, split: str, problems: list[DataError] | None = None) -> dict:
    """The detection annotations of one split as a COCO dataset dict (not yet checked)."""
    s = spec.split(split)
    if spec.format == "coco":
        coco = load_coco(s.annotations, problems)
        if s.stems is not None:
            keep = set(s.stems)
            coco["images"] = [img for img in coco["images"] if Path(img["file_name"]).stem in keep]
            ids = {img["id"] for img in coco["images"]}
            coco["annotations"] = [a for a in coco["annotations"] if a["image_id"] in ids]
        return coco
    if spec.format == "voc":
        from detseg.data.voc import voc_to_coco

        return voc_to_coco(s.annotations, s.images, spec.classes, s.stems, problems)
    if spec.format == "text":
        from detseg.data.textboxes import text_to_coco

        return text_to_coco(
            s.annotations, s.images, spec.classes, spec.box_format, spec.id_names, s.stems, problems
        )
    if spec.format == "cityscapes":
        from detseg.data.cityscapes import cityscapes_to_coco

        return cityscapes_to_coco(s.images, s.masks, problems)
    if s.instances is not None:
        from detseg.data.instances import instance_masks_to_coco

        return instance_masks_to_coco(
            s.images, s.masks, s.instances, mask_table(spec), spec.classes, spec.ignore_index,
            _background(spec.classes), s.stems, s.mask_suffix, problems,
        )
    pairs = mask_pairs(s.images, s.masks, s.stems, s.mask_suffix, problems)
    return masks_to_coco(
        pairs, mask_table(spec), spec.classes, spec.ignore_index, _background(spec.classes), "rle", problems
    )


def _drop_images(coco: dict, problems: list[DataError]) -> dict:
    """Remove the images that any problem names (by id or by file stem) with their annotations."""
    bad_ids = {p.image for p in problems if isinstance(p.image, int)}
    bad_stems = {p.image for p in problems if isinstance(p.image, str)}
    keep = [
        img
        for img in coco["images"]
        if img["id"] not in bad_ids and Path(img["file_name"]).stem not in bad_stems
    ]
    ids = {img["id"] for img in keep}
    coco["images"] = keep
    coco["annotations"] = [a for a in coco["annotations"] if a["image_id"] in ids]
    return coco


class _SkipMixin:
    """Decode failures at read time: raise, or with ``skip_bad`` warn, count and take the next sample."""

    skip_bad: bool
    skipped: int

    def _init_split(self, spec, split: str, transforms, skip_bad: bool) -> None:
        """What both datasets keep of their arguments."""
        self.spec = _as_spec(spec)
        self.split = split
        self.transforms = transforms
        self.skip_bad = skip_bad
        self.skipped = 0

    def _load(self, index: int, read: Callable[[int], tuple]):
        tries = len(self)
        while True:
            try:
                return read(index)
            except DataError as exc:
                if not self.skip_bad or tries <= 1:
                    raise
                self.skipped += 1
                warnings.warn(f"skipped bad sample ({self.skipped} so far): {exc}", stacklevel=3)
                index, tries = (index + 1) % len(self), tries - 1


class DetectionDataset(_SkipMixin, Dataset):
    """Boxes (and instance masks where the annotations have them) of one split of a spec.

    ``classes``: the label names; ``category_map``: COCO category ids <-> labels; ``coco_gt()``: the
    split's ground truth as a COCO dataset dict for evaluators. With ``skip_bad`` bad samples are
    dropped with one warning (``skipped`` counts them) instead of raising DataError.

    An ``instance`` spec needs a mask for every annotation (a box without one raises DataError naming
    the file and the annotation, unless ``boxes_only``), and refuses, when a sample is read, an empty
    mask or one with no pixel inside its box, naming the annotation id.
    """

    def __init__(
        self,
        spec: DatasetSpec | str | Path,
        split: str = "train",
        transforms: Transform | None = None,
        skip_bad: bool = False,
        boxes_only: bool = False,
    ):
        self._init_split(spec, split, transforms, skip_bad)
        self.image_dir = self.spec.split(split).images
        self.instance = self.spec.task == "instance" and not boxes_only
        problems: list[DataError] | None = [] if skip_bad else None
        source = self.spec.split(split).annotations or self.spec.split(split).masks
        coco = check_coco(load_split_coco(self.spec, split, problems), source, problems)
        self.category_map: CategoryMap = category_map(coco["categories"], self.spec.classes, source)
        self.classes = self.category_map.classes
        label_of = self.category_map.label_of
        names = {c["id"]: c["name"] for c in coco["categories"]}
        annotations = []
        for ann in coco["annotations"]:
            if ann["category_id"] not in label_of:
                where = ann.get("source") or f"annotation id {ann.get('id')}"
                error = DataError(
                    source,
                    f"unknown class '{names[ann['category_id']]}' (not in the spec's classes)",
                    where,
                    image=ann["image_id"],
                )
                if problems is None:
                    raise error
                problems.append(error)
                continue
            annotations.append(ann)
        coco["annotations"] = annotations
        for img in coco["images"]:
            if not (self.image_dir / img["file_name"]).is_file():
                error = DataError(
                    self.image_dir / img["file_name"],
                    "image file not found",
                    f"image id {img['id']}",
                    image=img["id"],
                )
                if problems is None:
                    raise error
                problems.append(error)
        if problems:
            coco = _drop_images(coco, problems)
            self.skipped = len({(p.file, p.image) for p in problems})
            warn_skipped(problems, "samples")
        self.problems: list[DataError] = problems or []  # what skip_bad dropped at construction
        self.images: list[dict] = coco["images"]
        self.annotations: dict = {img["id"]: [] for img in self.images}
        for ann in coco["annotations"]:
            self.annotations[ann["image_id"]].append(ann)
        self.has_masks = bool(coco["annotations"]) and all(a.get("segmentation") for a in coco["annotations"])
        if self.instance and not self.has_masks:
            bare = next((a for a in coco["annotations"] if not a.get("segmentation")), None)
            raise DataError(
                source,
                "a box without a mask ('segmentation'): an instance data set needs a polygon or RLE for "
                "every object (or train with --boxes-only, or use task: detect: a Mask R-CNN then trains its "
                "box branch alone)"
                if bare else "no annotations: an instance data set needs objects with masks",
                f"annotation id {bare.get('id')}" if bare else None,
            )
        self.has_masks = self.has_masks and not boxes_only
        self.has_difficult = any("difficult" in a for a in coco["annotations"])
        self._coco = coco

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int):
        image, target = self._load(index, self._read)
        if self.transforms is not None:
            image, target = self.transforms(image, target)
        return image, target

    def _read(self, index: int):
        info = self.images[index]
        path = self.image_dir / info["file_name"]
        array = read_image(path, self.spec.channels)
        height, width = array.shape[:2]
        if info.get("height") and info.get("width") and (info["height"], info["width"]) != (height, width):
            raise DataError(
                path,
                f"image is {width}x{height} but its annotation says {info['width']}x{info['height']}",
                f"image id {info['id']}",
            )
        target = self._target(info, height, width, path)
        image = tv_tensors.Image(torch.from_numpy(array).permute(2, 0, 1).contiguous())
        return image, target

    def target(self, index: int) -> dict:
        """The target of sample ``index`` without decoding its image (size from the annotation or header)."""
        info = self.images[index]
        path = self.image_dir / info["file_name"]
        if info.get("height") and info.get("width"):
            height, width = info["height"], info["width"]
        else:
            height, width = image_size(path)
        return self._target(info, height, width, path)

    def _target(self, info: dict, height: int, width: int, path: Path) -> dict:
        anns = self.annotations[info["id"]]
        boxes = np.array([a["bbox"] for a in anns], dtype=np.float32).reshape(-1, 4)
        boxes[:, 2:] += boxes[:, :2]
        # Boxes reaching past the border are clipped (``detseg data check`` reports them).
        boxes[:, 0::2] = boxes[:, 0::2].clip(0, width)
        boxes[:, 1::2] = boxes[:, 1::2].clip(0, height)
        label_of = self.category_map.label_of
        target = {
            "boxes": tv_tensors.BoundingBoxes(
                torch.from_numpy(boxes), format="XYXY", canvas_size=(height, width)
            ),
            "labels": torch.tensor([label_of[a["category_id"]] for a in anns], dtype=torch.int64),
            "iscrowd": torch.tensor([int(a.get("iscrowd", 0)) for a in anns], dtype=torch.int64),
            "area": torch.tensor(
                [float(a.get("area", a["bbox"][2] * a["bbox"][3])) for a in anns], dtype=torch.float32
            ),
            "image_id": int(info["id"]),
            "file_name": info["file_name"],
        }
        if self.has_difficult:
            target["difficult"] = torch.tensor([bool(a.get("difficult", 0)) for a in anns], dtype=torch.bool)
        if self.has_masks:
            masks = np.zeros((len(anns), height, width), dtype=np.uint8)
            for k, a in enumerate(anns):
                try:
                    masks[k] = segmentation_to_mask(a["segmentation"], height, width)
                except ValueError as exc:
                    raise DataError(
                        path, f"bad segmentation ({exc})", f"annotation id {a.get('id')}"
                    ) from exc
                problem = instance_mask_problem(masks[k], boxes[k]) if self.instance else None
                if problem and not a.get("iscrowd"):
                    raise DataError(path, problem, f"annotation id {a.get('id')}")
            target["masks"] = tv_tensors.Mask(torch.from_numpy(masks))
        return target

    @property
    def label_to_category_id(self) -> list[int]:
        return list(self.category_map.category_ids)

    @property
    def category_id_to_label(self) -> dict[int, int]:
        return self.category_map.label_of

    def coco_gt(self) -> dict:
        """The split's ground truth as a COCO dataset dict (original category ids, annotation ids >= 1).

        Detections labelled ``l`` go into COCO results with ``category_id = label_to_category_id[l]``.
        """
        images = [
            {k: img[k] for k in ("id", "file_name", "width", "height") if k in img} for img in self.images
        ]
        annotations = []
        for img in self.images:
            for a in self.annotations[img["id"]]:
                ann = {k: v for k, v in a.items() if k != "source"}
                ann.setdefault("area", float(a["bbox"][2] * a["bbox"][3]))
                ann.setdefault("iscrowd", 0)
                annotations.append(ann)
        categories = [
            {"id": cid, "name": name, "supercategory": "none"}
            for name, cid in zip(self.classes, self.label_to_category_id, strict=True)
        ]
        coco = {"images": images, "annotations": [dict(a) for a in annotations], "categories": categories}
        return ensure_annotation_ids(coco)


class SegmentationDataset(_SkipMixin, Dataset):
    """Images and semantic masks (``int64 [H, W]`` class indices, ``ignore_index`` for void) of one split."""

    def __init__(
        self,
        spec: DatasetSpec | str | Path,
        split: str = "train",
        transforms: Transform | None = None,
        skip_bad: bool = False,
    ):
        self._init_split(spec, split, transforms, skip_bad)
        s = self.spec.split(split)
        self.ignore_index = self.spec.ignore_index
        problems: list[DataError] | None = [] if skip_bad else None
        self._coco = None
        if self.spec.format == "cityscapes":
            from detseg.data.cityscapes import IGNORE, TRAIN_CLASSES, cityscapes_pairs

            self.classes = list(self.spec.classes or TRAIN_CLASSES)
            self.ignore_index = IGNORE
            self.entries = [(img, lab, name) for img, lab, _, name in cityscapes_pairs(s.images, s.masks)]
        elif self.spec.format == "coco":
            self._coco = check_coco(load_split_coco(self.spec, split, problems), s.annotations, problems)
            cmap = category_map(self._coco["categories"], self.spec.classes, s.annotations)
            self.classes = cmap.classes
            self._label_of = cmap.label_of
            names = {c["id"]: c["name"] for c in self._coco["categories"]}
            for ann in self._coco["annotations"]:
                if ann["category_id"] not in self._label_of:
                    error = DataError(
                        s.annotations,
                        f"unknown class '{names[ann['category_id']]}' (not in the spec's classes)",
                        f"annotation id {ann.get('id')}",
                        image=ann["image_id"],
                    )
                    if problems is None:
                        raise error
                    problems.append(error)
            if problems:
                self._coco = _drop_images(self._coco, problems)
            self._by_image = {img["id"]: [] for img in self._coco["images"]}
            for ann in self._coco["annotations"]:
                self._by_image[ann["image_id"]].append(ann)
            self.entries = [
                (s.images / img["file_name"], img, img["file_name"]) for img in self._coco["images"]
            ]
        elif self.spec.format in ("masks", "voc"):
            self.classes = list(self.spec.classes)
            self.entries = mask_pairs(s.images, s.masks, s.stems, s.mask_suffix, problems)
        else:
            raise DataError(self.spec.path or s.images, f"format {self.spec.format} has no semantic masks")
        self.table = mask_table(self.spec) if self.spec.format != "coco" else None
        kept = []
        for entry in self.entries:
            missing = [p for p in entry[:2] if isinstance(p, Path) and not p.is_file()]
            if missing:
                error = DataError(
                    missing[0],
                    "image file not found"
                    if missing[0] == entry[0]
                    else f"mask file not found for image {entry[0]}",
                )
                if problems is None:
                    raise error
                problems.append(error)
                continue
            kept.append(entry)
        self.entries = kept
        if problems:
            self.skipped = len(problems)
            warn_skipped(problems, "samples")
        self.problems: list[DataError] = problems or []  # what skip_bad dropped at construction

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, index: int):
        image, target = self._load(index, self._read)
        if self.transforms is not None:
            image, target = self.transforms(image, target)
        return image, target

    def verify(self) -> None:
        """Read every label file before any training: the first mask whose values are outside the spec's
        ``values`` or whose size differs from its image's raises a DataError naming the file(s)."""
        if self._coco is not None:
            return  # COCO annotations are checked at construction
        for index, (image_path, _, _) in enumerate(self.entries):
            self.read_semantic(index, image_size(image_path))

    def read_semantic(self, index: int, size: tuple[int, int] | None = None) -> np.ndarray:
        """The class-index mask ``int64 [H, W]`` of sample ``index`` (checked against ``size`` = (H, W))."""
        image_path, mask_ref, file_name = self.entries[index]
        if self._coco is not None:
            return self._rasterise(mask_ref, size)
        raw = read_mask(mask_ref)
        if size is not None and raw.shape != tuple(size):
            raise DataError(
                mask_ref,
                f"mask is {raw.shape[1]}x{raw.shape[0]} but the image {file_name} is {size[1]}x{size[0]} "
                f"({image_path})",
            )
        return map_mask_values(raw, self.table, mask_ref)

    def _rasterise(self, info: dict, size: tuple[int, int] | None) -> np.ndarray:
        height, width = size or (info["height"], info["width"])
        background = self.classes.index("background") if "background" in self.classes else self.ignore_index
        semantic = np.full((height, width), background, dtype=np.int64)
        for ann in self._by_image[info["id"]]:
            if ann["category_id"] not in self._label_of or not ann.get("segmentation"):
                continue
            mask = segmentation_to_mask(ann["segmentation"], height, width).astype(bool)
            semantic[mask] = self.ignore_index if ann.get("iscrowd") else self._label_of[ann["category_id"]]
        return semantic

    def _read(self, index: int):
        image_path, _, file_name = self.entries[index]
        array = read_image(image_path, self.spec.channels)
        semantic = self.read_semantic(index, array.shape[:2])
        image = tv_tensors.Image(torch.from_numpy(array).permute(2, 0, 1).contiguous())
        target = {
            "semantic": tv_tensors.Mask(torch.from_numpy(semantic)),
            "image_id": index,
            "file_name": file_name,
        }
        return image, target


def build_dataset(
    spec: DatasetSpec | str | Path,
    split: str,
    transforms: Transform | None = None,
    skip_bad: bool = False,
    boxes_only: bool = False,
) -> DetectionDataset | SegmentationDataset:
    """The Dataset the spec's task asks for (``instance``: boxes and masks; ``boxes_only``: boxes alone)."""
    spec = _as_spec(spec)
    if spec.task in ("detect", "instance"):
        return DetectionDataset(spec, split, transforms=transforms, skip_bad=skip_bad, boxes_only=boxes_only)
    return SegmentationDataset(spec, split, transforms=transforms, skip_bad=skip_bad)


def collate_detection(batch):
    """``[(image, target)]`` -> ``(list[Tensor[3, H, W]], list[dict])`` (images may differ in size)."""
    images, targets = zip(*batch, strict=True)
    return list(images), list(targets)


def collate_segmentation(batch):
    """``[(image, target)]`` -> ``(Tensor[B, 3, H, W], Tensor[B, H, W] int64)``; sizes must agree."""
    images = torch.stack([torch.as_tensor(image) for image, _ in batch])
    masks = torch.stack([torch.as_tensor(target["semantic"]).long() for _, target in batch])
    return images, masks
