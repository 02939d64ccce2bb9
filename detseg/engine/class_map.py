"""Evaluating a model as is on a data set with other classes: the data's class names mapped onto the
model's (exact names, then ``--class-map data_name=model_name``), the model's other classes ignored, and
the data's classes the model does not know reported and left out of the mean (never scored 0).

Detection: detections of unmapped model classes are dropped and the rest relabelled to the data's
indices; ground-truth boxes of unknown classes are left out (their class then has no ground truth, so
COCO's mean skips it). Segmentation: logits of the mapped classes in the data's order (unknown classes
never predicted) and pixels of unknown classes ignored (IoU NaN, left out of mIoU). Classification
(:class:`MappedClassifier`, the transfer study's as-is classifier): the mapped classes' logits in the
data's order, the model's other classes left out of the argmax.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from detseg.models.torchvision_weights import NOT_A_CLASS


def parse_class_map(items: list[str] | None) -> dict[str, str]:
    """``["cat=dog", "motorbike=motorcycle"]`` -> ``{"cat": "dog", ...}`` (data name = model name)."""
    out: dict[str, str] = {}
    for item in items or []:
        for pair in item.split(","):
            data, sep, model = (part.strip() for part in pair.partition("="))
            if not sep or not data or not model:
                raise ValueError(f"--class-map {pair!r}: write DATA_NAME=MODEL_NAME, e.g. cat=dog")
            out[data] = model
    return out


def match_classes(
    data_classes: list[str], model_classes: list[str], class_map: dict[str, str] | None = None,
    task: str = "detect",
) -> tuple[dict[int, int], list[str]]:
    """``({data index: model index}, [data classes the model does not know])``. A class map naming a
    class that is not there raises ValueError in one line. A detector's ``__background__`` and ``N/A``
    slots are no classes; a segmenter's ``__background__`` is one (VOC's class 0)."""
    class_map = class_map or {}
    skip = NOT_A_CLASS if task != "segment" else {"N/A"}
    model_index: dict[str, int] = {}
    for i, name in enumerate(model_classes):
        if name not in skip:
            model_index.setdefault(name, i)
    for data, model in class_map.items():
        if data not in data_classes:
            raise ValueError(f"--class-map {data}={model}: {data!r} is not a class of the data "
                             f"({', '.join(data_classes)})")
        if model not in model_index:
            sample = ", ".join(list(model_index)[:12])
            raise ValueError(f"--class-map {data}={model}: {model!r} is not a class of the model "
                             f"({len(model_index)} classes: {sample}, ...)")
    mapping = {d: model_index[class_map.get(n, n)] for d, n in enumerate(data_classes)
               if class_map.get(n, n) in model_index}
    taken: dict[int, int] = {}
    for d, m in mapping.items():
        if m in taken:
            raise ValueError(f"data classes {data_classes[taken[m]]!r} and {data_classes[d]!r} both map to "
                             f"the model's {model_classes[m]!r}")
        taken[m] = d
    if not mapping:
        raise ValueError(f"none of the data's classes ({', '.join(data_classes)}) is a class of the model; "
                         "map them with --class-map DATA_NAME=MODEL_NAME")
    unknown = [n for d, n in enumerate(data_classes) if d not in mapping]
    return mapping, unknown


class MappedDetector(nn.Module):
    """A detector whose labels are turned into the data's (``mapping``: data index -> model index);
    detections of the model's other classes are dropped."""

    def __init__(self, model: nn.Module, mapping: dict[int, int], num_model_classes: int) -> None:
        super().__init__()
        self.model = model
        lookup = torch.full((num_model_classes,), -1, dtype=torch.int64)
        for data, model_index in mapping.items():
            lookup[model_index] = data
        self.register_buffer("lookup", lookup, persistent=False)

    def forward(self, images: Any, targets: Any = None) -> list[dict[str, torch.Tensor]]:
        outputs = self.model(images)
        mapped = []
        for det in outputs:
            labels = self.lookup.to(det["labels"].device)[det["labels"]]
            keep = labels >= 0
            mapped.append({**{k: v[keep] for k, v in det.items()}, "labels": labels[keep]})
        return mapped


class MappedSegmenter(nn.Module):
    """A segmenter whose logits are the mapped classes' in the data's order; unknown classes get a
    very low logit (never predicted)."""

    def __init__(self, model: nn.Module, mapping: dict[int, int], num_data_classes: int) -> None:
        super().__init__()
        self.model, self.mapping, self.num_data_classes = model, dict(mapping), num_data_classes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        from detseg.engine.tasks import class_logits

        logits = class_logits(self.model(x))
        out = logits.new_full((logits.shape[0], self.num_data_classes, *logits.shape[2:]), -1e4)
        for data, model_index in self.mapping.items():
            out[:, data] = logits[:, model_index]
        return out


class MappedClassifier(nn.Module):
    """A classifier whose logits are the mapped classes' in the data's order (``mapping``: data index ->
    model index): its top-1 is the data class whose model class scores highest; unmapped data classes get
    a very low logit (never predicted), the model's other classes are left out."""

    def __init__(self, model: nn.Module, mapping: dict[int, int], num_data_classes: int) -> None:
        super().__init__()
        self.model, self.mapping, self.num_data_classes = model, dict(mapping), num_data_classes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.model(x)
        out = logits.new_full((logits.shape[0], self.num_data_classes), -1e4)
        for data, model_index in self.mapping.items():
            out[:, data] = logits[:, model_index]
        return out


class WithoutClasses(torch.utils.data.Dataset):
    """``dataset`` with the ground truth of ``classes`` (indices) left out: their boxes dropped, their
    pixels set to ``ignore_index``."""

    def __init__(self, dataset: Any, classes: list[int], ignore_index: int = 255) -> None:
        self.dataset, self.ignore_index = dataset, ignore_index
        self.dropped = torch.tensor(classes, dtype=torch.int64)

    def __len__(self) -> int:
        return len(self.dataset)

    @property
    def classes(self) -> list[str]:
        return list(self.dataset.classes)

    def __getitem__(self, index: int):
        image, target = self.dataset[index]
        target = dict(target)
        if "semantic" in target:
            semantic = torch.as_tensor(target["semantic"])
            drop = torch.isin(semantic.long(), self.dropped)
            target["semantic"] = semantic.masked_fill(drop, self.ignore_index)
        elif "labels" in target:
            keep = ~torch.isin(torch.as_tensor(target["labels"]), self.dropped)
            for key in ("boxes", "labels", "iscrowd", "area", "masks", "difficult"):
                if key in target and target[key] is not None:
                    target[key] = target[key][keep]
        return image, target


def map_to_data(
    model: nn.Module, meta: dict[str, Any], dataset: Any, task: str, class_map: dict[str, str] | None,
    ignore_index: int = 255,
) -> tuple[nn.Module, Any, dict[str, Any]]:
    """The model and dataset to evaluate a model with its own classes (``meta["classes"]``) on
    ``dataset``'s, and what was matched: ``{"mapped": {data: model}, "unknown": [...]}``."""
    data_classes, model_classes = list(dataset.classes), list(meta["classes"])
    mapping, unknown = match_classes(data_classes, model_classes, class_map, task)
    if task == "segment":
        wrapped: nn.Module = MappedSegmenter(model, mapping, len(data_classes))
    else:
        wrapped = MappedDetector(model, mapping, len(model_classes))
    unknown_idx = [data_classes.index(n) for n in unknown]
    if unknown_idx:
        dataset = WithoutClasses(dataset, unknown_idx, ignore_index)
    matched = {data_classes[d]: model_classes[m] for d, m in mapping.items()}
    return wrapped, dataset, {"mapped": matched, "unknown": unknown}


def extended_classes(old_classes: list[str], data_classes: list[str]) -> tuple[list[str], list[int]]:
    """Adding a data set's classes to a pre-trained model's (``--extend-from COCO_V1``): ``(classes,
    data_to_model)``, the model's classes followed by the data's that it does not have, and each data
    class's index among them (a data class named as one of the model's is that class)."""
    classes = list(old_classes)
    index = {}
    for i, name in enumerate(old_classes):
        if name not in NOT_A_CLASS:
            index.setdefault(name, i)
    for name in data_classes:
        if name not in index:
            index[name] = len(classes)
            classes.append(name)
    return classes, [index[name] for name in data_classes]


class Relabelled(torch.utils.data.Dataset):
    """``dataset`` with its labels (and semantic pixels) renumbered by ``data_to_model`` and ``classes``
    as its class list."""

    def __init__(self, dataset: Any, data_to_model: list[int], classes: list[str]) -> None:
        self.dataset, self.classes = dataset, list(classes)
        self.lookup = torch.tensor(data_to_model, dtype=torch.int64)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        image, target = self.dataset[index]
        target = dict(target)
        if "labels" in target:
            target["labels"] = self.lookup[torch.as_tensor(target["labels"]).long()]
        return image, target
