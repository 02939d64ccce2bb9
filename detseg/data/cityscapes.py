"""Cityscapes gtFine: labelIds / instanceIds PNGs and the official label-id -> train-id table.

Layout: ``leftImg8bit/<split>/<city>/<stem>_leftImg8bit.png`` beside
``gtFine/<split>/<city>/<stem>_gtFine_labelIds.png`` and ``..._gtFine_instanceIds.png``. Semantic
training uses the 19 train ids (255 = ignore). In instanceIds, a value >= 1000 is
``label_id * 1000 + instance number``; smaller values are label ids of pixels without instances.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from detseg.data.errors import DataError, report

# (name, label id, train id, has instances) from cityscapesScripts helpers/labels.py
LABELS = (
    ("unlabeled", 0, 255, False),
    ("ego vehicle", 1, 255, False),
    ("rectification border", 2, 255, False),
    ("out of roi", 3, 255, False),
    ("static", 4, 255, False),
    ("dynamic", 5, 255, False),
    ("ground", 6, 255, False),
    ("road", 7, 0, False),
    ("sidewalk", 8, 1, False),
    ("parking", 9, 255, False),
    ("rail track", 10, 255, False),
    ("building", 11, 2, False),
    ("wall", 12, 3, False),
    ("fence", 13, 4, False),
    ("guard rail", 14, 255, False),
    ("bridge", 15, 255, False),
    ("tunnel", 16, 255, False),
    ("pole", 17, 5, False),
    ("polegroup", 18, 255, False),
    ("traffic light", 19, 6, False),
    ("traffic sign", 20, 7, False),
    ("vegetation", 21, 8, False),
    ("terrain", 22, 9, False),
    ("sky", 23, 10, False),
    ("person", 24, 11, True),
    ("rider", 25, 12, True),
    ("car", 26, 13, True),
    ("truck", 27, 14, True),
    ("bus", 28, 15, True),
    ("caravan", 29, 255, True),
    ("trailer", 30, 255, True),
    ("train", 31, 16, True),
    ("motorcycle", 32, 17, True),
    ("bicycle", 33, 18, True),
    ("license plate", -1, -1, False),
)
IGNORE = 255
TRAIN_CLASSES = tuple(name for name, _, train, _ in sorted(LABELS, key=lambda r: r[2]) if 0 <= train < 255)
INSTANCE_CLASSES = tuple(name for name, _, train, inst in LABELS if inst and 0 <= train < 255)
#: Average instance size in pixels per instance class (cityscapesScripts' ``avgClassSize``, measured on
#: the training set at 2048 x 1024): the iIoU weights (see :mod:`detseg.metrics.instance_iou`).
AVG_INSTANCE_SIZE = {
    "person": 3462.4756337644,
    "rider": 3930.4788056518,
    "car": 12794.0202738185,
    "truck": 27855.1264367816,
    "bus": 35732.1511111111,
    "train": 67583.7075812274,
    "motorcycle": 6298.7200839748,
    "bicycle": 4672.3249222261,
}
IMAGE_SUFFIX = "_leftImg8bit"
LABEL_SUFFIX = "_gtFine_labelIds"
INSTANCE_SUFFIX = "_gtFine_instanceIds"


_INSTANCE_TRAIN_IDS = [t for name, _, t, inst in LABELS if name in INSTANCE_CLASSES]


def train_id_table() -> np.ndarray:
    """``int64 [256]``: label id -> train id (0..18), 255 for every ignored or unknown id."""
    table = np.full(256, IGNORE, dtype=np.int64)
    for _, label_id, train_id, _ in LABELS:
        if label_id >= 0 and 0 <= train_id < 255:
            table[label_id] = train_id
    return table


def label_ids_to_train_ids(label_ids: np.ndarray) -> np.ndarray:
    """A labelIds image ``[H, W]`` -> train ids ``int64 [H, W]`` (255 = ignore)."""
    return train_id_table()[np.clip(label_ids.astype(np.int64), 0, 255)]


def instances_from_ids(instance_ids: np.ndarray) -> list[tuple[str, np.ndarray]]:
    """An instanceIds image -> ``[(class name, mask uint8 [H, W])]`` for instances of the 19 train classes."""
    names = {label_id: name for name, label_id, _, _ in LABELS}
    out = []
    for value in np.unique(instance_ids):
        if value < 1000:
            continue  # crowd regions and stuff carry only their label id
        name = names.get(int(value) // 1000)
        if name in INSTANCE_CLASSES:
            out.append((name, (instance_ids == value).astype(np.uint8)))
    return out


def instance_map(instance_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """An instanceIds image ``[H, W]`` -> ``(instances int64 [H, W], classes int64 [K + 1])``: instance k
    (1..K, in id order) of the 8 evaluated instance classes on its pixels, 0 elsewhere (stuff, crowds,
    caravans and trailers); ``classes[k]`` is its train id (``classes[0] = -1``)."""
    table = train_id_table()
    ids = np.asarray(instance_ids).astype(np.int64)
    values = np.unique(ids[ids >= 1000])
    values = values[np.isin(table[np.minimum(values // 1000, 255)], _INSTANCE_TRAIN_IDS)]
    out = np.zeros(ids.shape, np.int64)
    if len(values):
        pos = np.searchsorted(values, ids)
        hit = (pos < len(values)) & (values[np.minimum(pos, len(values) - 1)] == ids)
        out[hit] = pos[hit] + 1
    return out, np.concatenate([[-1], table[values // 1000]]).astype(np.int64)


def instance_masks(instance_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """An instanceIds image -> ``(masks uint8 [N, H, W], labels int64 [N])``, one binary mask per instance
    of the 8 instance classes, labels in train ids (11 person ... 18 bicycle), in instance-id order."""
    instances, classes = instance_map(instance_ids)
    n = len(classes) - 1
    masks = (instances[None] == np.arange(1, n + 1).reshape(-1, 1, 1)).astype(np.uint8)
    return masks, classes[1:]


def read_instances(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """:func:`instance_masks` of a ``*_gtFine_instanceIds.png`` file (a DataError names a bad file)."""
    from detseg.data.masks import read_mask

    ids = read_mask(path)
    if ids.ndim != 2:
        raise DataError(path, f"instanceIds image must be single-channel, got shape {ids.shape}")
    return instance_masks(ids)


def avg_instance_sizes() -> dict[int, float]:
    """Train id -> average instance size, for :class:`detseg.metrics.instance_iou.InstanceIoU`."""
    train = {name: t for name, _, t, _ in LABELS}
    return {train[name]: size for name, size in AVG_INSTANCE_SIZE.items()}


def cityscapes_pairs(image_dir: str | Path, gt_dir: str | Path) -> list[tuple[Path, Path, Path, str]]:
    """``(image, labelIds, instanceIds, file_name)`` for every ``*_leftImg8bit.png`` under ``image_dir``.

    ``file_name`` is relative to ``image_dir`` (``city/stem_leftImg8bit.png``); the gt files are at the
    same relative place under ``gt_dir``.
    """
    image_dir, gt_dir = Path(image_dir), Path(gt_dir)
    if not image_dir.is_dir():
        raise DataError(image_dir, "image folder not found")
    pairs = []
    for image in sorted(image_dir.rglob(f"*{IMAGE_SUFFIX}.png")):
        rel = image.relative_to(image_dir)
        stem = image.name[: -len(f"{IMAGE_SUFFIX}.png")]
        base = gt_dir / rel.parent / stem
        pairs.append(
            (image, Path(f"{base}{LABEL_SUFFIX}.png"), Path(f"{base}{INSTANCE_SUFFIX}.png"), str(rel))
        )
    return pairs


def cityscapes_to_coco(
    image_dir: str | Path, gt_dir: str | Path, problems: list[DataError] | None = None
) -> dict:
    """Cityscapes instances -> COCO dict (RLE segmentation, category id = Cityscapes label id)."""
    from detseg.data.coco import mask_annotation
    from detseg.data.masks import read_mask

    label_id = {name: lid for name, lid, _, _ in LABELS}
    images, annotations = [], []
    for image_id, (_, _, inst_path, file_name) in enumerate(cityscapes_pairs(image_dir, gt_dir), start=1):
        try:
            ids = read_mask(inst_path)
        except DataError as exc:
            report(problems, exc)
            continue
        height, width = ids.shape
        images.append({"id": image_id, "file_name": file_name, "width": width, "height": height})
        for name, mask in instances_from_ids(ids):
            annotations.append(
                mask_annotation(image_id, label_id[name], mask, len(annotations) + 1, source=inst_path.name)
            )
    categories = [{"id": label_id[n], "name": n, "supercategory": "none"} for n in INSTANCE_CLASSES]
    return {"images": images, "annotations": annotations, "categories": categories}
