"""The dataset spec: one YAML file naming the task, the format, the splits and the classes.

Every command that reads data takes ``--data SPEC``. ``load_spec`` also accepts a bare COCO json
(task detect; its categories are the classes; the one file serves every split) and a VOC folder
(``Annotations/`` + ``JPEGImages/``, splits from ``ImageSets/Main/*.txt``). The schema is in
docs/data.md, section "Dataset spec" (docs/data.md#dataset-spec).

Instance segmentation (``task: instance``) reads what detection reads plus a mask per object: COCO
json with polygons or RLE, Cityscapes instanceIds, or (format ``masks``) a folder of semantic masks
beside ``instances:``, a folder of instance-id PNGs (0 = no object; VOC's SegmentationObject).

Image classification (``task: classify``) reads a folder tree, ``SPLIT/CLASS/*.jpg`` (torchvision's
ImageFolder layout): format ``folder`` (the default for that task), a split is ``{images: FOLDER}`` or
just ``FOLDER``, and ``classes`` defaults to the class folders' names, sorted.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from detseg.data.errors import DataError

TASKS = ("detect", "segment", "classify", "instance")
FORMATS = ("coco", "voc", "masks", "cityscapes", "text", "folder")
TOP_KEYS = {
    "task",
    "format",
    "root",
    "classes",
    "ignore_index",
    "values",
    "channels",
    "box_format",
    "id_names",
    "name",
    "train_defaults",
}
SPLIT_KEYS = {"images", "annotations", "masks", "instances", "list", "mask_suffix"}


@dataclass
class SplitSpec:
    """Where one split's files are (absolute paths) and which stems it keeps (None: all)."""

    images: Path
    annotations: Path | None = None
    masks: Path | None = None
    stems: list[str] | None = None
    instances: Path | None = None  # task instance, format masks: PNGs of instance ids (0 = none)
    mask_suffix: str = ""


@dataclass
class DatasetSpec:
    """A loaded dataset spec; every path in it is absolute."""

    task: str
    format: str
    root: Path
    classes: list[str] | None
    splits: dict[str, SplitSpec]
    ignore_index: int = 255
    values: dict[int, int] | None = None  # raw mask value -> class index (ignore -> ignore_index)
    channels: int = 3
    box_format: str = "xyxy"  # text format: xyxy | xywh | rel_xcycwh
    id_names: list[str] | None = None  # text format: names for numeric class ids
    path: Path | None = None
    name: str = ""
    # Training settings that belong to the data (detseg.engine.config: e.g. {vflip: 0.5, rotate: 90}
    # for images with no up or down); the command line overrides them, they override the model's defaults.
    train_defaults: dict | None = None

    @property
    def num_classes(self) -> int:
        return len(self.classes or [])

    def split(self, name: str) -> SplitSpec:
        if name not in self.splits:
            have = ", ".join(self.splits) or "none"
            raise DataError(self.path or self.root, f"no split '{name}' (the spec has: {have})")
        return self.splits[name]


def load_spec(path: str | Path) -> DatasetSpec:
    """Load a spec YAML, a bare COCO json, or a VOC folder."""
    path = Path(path)
    if path.is_dir():
        return _voc_folder_spec(path)
    if not path.is_file():
        raise DataError(path, "dataset spec not found")
    if path.suffix.lower() == ".json":
        return _coco_json_spec(path)
    import yaml

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        entry = f"line {mark.line + 1} column {mark.column + 1}" if mark else None
        raise DataError(path, f"malformed YAML ({getattr(exc, 'problem', exc)})", entry) from exc
    if not isinstance(data, dict):
        raise DataError(path, "a dataset spec must be a YAML mapping")
    return spec_from_dict(data, path.parent, path)


def spec_from_dict(data: dict, base_dir: str | Path, path: Path | None = None) -> DatasetSpec:
    """Build a spec from its parsed YAML; relative paths resolve against ``base_dir``."""
    where = path or Path(base_dir) / "<spec>"

    def fail(what: str, key: str | None = None):
        raise DataError(where, what, f"key '{key}'" if key else None)

    task = data.get("task", "detect")
    if task not in TASKS:
        fail(f"task must be one of {', '.join(TASKS)}, not {task!r}", "task")
    fmt = data.get("format", "folder" if task == "classify" else None)
    if fmt not in FORMATS:
        fail(f"format must be one of {', '.join(FORMATS)}, not {fmt!r}", "format")
    if task == "classify" and fmt != "folder":
        fail(f"task must be one of detect, segment for format {fmt} (classify reads format folder)", "task")
    if fmt == "folder" and task != "classify":
        fail("format folder (one sub-folder of images per class) is for task: classify", "format")
    root = Path(base_dir) / str(data.get("root", "."))
    root = root.resolve()
    classes = _classes(data.get("classes"), root, fail)
    ignore_index = data.get("ignore_index", 255)
    if not isinstance(ignore_index, int):
        fail(f"ignore_index must be an integer, not {ignore_index!r}", "ignore_index")
    values = _values(data.get("values"), ignore_index, classes, fail)
    channels = data.get("channels", 3)
    if channels not in (1, 3, 4):
        fail(f"channels must be 1, 3 or 4, not {channels!r}", "channels")
    box_format = data.get("box_format", "xyxy")
    if box_format not in ("xyxy", "xywh", "rel_xcycwh"):
        fail(f"box_format must be xyxy, xywh or rel_xcycwh, not {box_format!r}", "box_format")
    id_names = _classes(data.get("id_names"), root, fail) if data.get("id_names") is not None else None
    if fmt in ("voc", "text", "masks") and classes is None:
        fail(f"format {fmt} needs 'classes' (label i = classes[i])", "classes")
    if task in ("segment", "instance") and fmt == "text":
        fail("text box files hold no masks; use task: detect", "task")
    if task == "instance" and fmt not in ("coco", "masks", "cityscapes"):
        fail(f"task instance reads format coco, masks or cityscapes, not {fmt}", "format")
    splits = {}
    for key, value in data.items():
        if key in TOP_KEYS:
            continue
        if fmt == "folder" and isinstance(value, str):  # `train: train`, the folder of class folders
            value = {"images": value}
        if not isinstance(value, dict):
            fail("unknown key (a split must be a mapping with 'images', ...)", key)
        splits[key] = _split(key, value, root, fmt, task, fail)
    if not splits:
        fail("no splits: add 'train:' and/or 'val:' with 'images:' and annotations or masks")
    train_defaults = data.get("train_defaults")
    if train_defaults is not None and not isinstance(train_defaults, dict):
        fail("train_defaults must be a mapping of training settings (e.g. {vflip: 0.5})", "train_defaults")
    return DatasetSpec(
        task=task,
        format=fmt,
        root=root,
        classes=classes,
        splits=splits,
        ignore_index=ignore_index,
        values=values,
        channels=channels,
        box_format=box_format,
        id_names=id_names,
        path=path,
        name=str(data.get("name", "")),
        train_defaults=train_defaults,
    )


def _classes(value, root: Path, fail) -> list[str] | None:
    if value is None:
        return None
    if isinstance(value, str):  # a names file, one class per line
        names_file = root / value
        if not names_file.is_file():
            fail(f"class names file {names_file} not found", "classes")
        return [line.strip() for line in names_file.read_text(encoding="utf-8").splitlines() if line.strip()]
    if isinstance(value, list) and value and all(isinstance(v, str | int) for v in value):
        names = [str(v) for v in value]
        if len(set(names)) != len(names):
            fail("class names must be unique", "classes")
        return names
    if isinstance(value, dict):  # {index: name}, as some YOLO files have
        try:
            ordered = [str(value[i]) for i in range(len(value))]
        except KeyError:
            fail("a classes mapping must have keys 0..N-1", "classes")
        return ordered
    fail(f"classes must be a list of names or a names file, not {value!r}", "classes")
    return None


def _values(value, ignore_index: int, classes: list[str] | None, fail) -> dict[int, int] | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        fail("values must map pixel values to class indices or 'ignore'", "values")
    out = {}
    for raw, cls in value.items():
        try:
            raw_int = int(raw)
        except (TypeError, ValueError):
            fail(f"pixel value {raw!r} is not an integer", "values")
        if cls == "ignore":
            out[raw_int] = ignore_index
        elif isinstance(cls, int) and (cls == ignore_index or classes is None or 0 <= cls < len(classes)):
            out[raw_int] = cls
        elif isinstance(cls, str) and classes is not None and cls in classes:
            out[raw_int] = classes.index(cls)
        else:
            fail(f"value {raw} maps to {cls!r}, which is not a class index, class name or 'ignore'", "values")
    return out


def _split(name: str, value: dict, root: Path, fmt: str, task: str, fail) -> SplitSpec:
    unknown = set(value) - SPLIT_KEYS
    if unknown:
        fail(f"unknown keys {sorted(unknown)} (use {', '.join(sorted(SPLIT_KEYS))})", name)
    if "images" not in value:
        fail("missing 'images'", name)
    for field in ("images", "annotations", "masks", "instances", "mask_suffix"):
        if isinstance(value.get(field), int) and not isinstance(value[field], bool):
            value = {**value, field: str(value[field])}  # `images: 2019` is a folder name too
        if value.get(field) is not None and not isinstance(value[field], str):
            fail(f"'{field}' must be a path, not {value[field]!r:.60}", name)
    if fmt == "folder" and set(value) - {"images"}:
        fail("format folder takes only 'images' (the folder holding one sub-folder per class)", name)
    annotations = root / value["annotations"] if value.get("annotations") else None
    masks = root / value["masks"] if value.get("masks") else None
    instances = root / value["instances"] if value.get("instances") else None
    if instances is not None and not (task == "instance" and fmt == "masks"):
        fail("'instances' (instance-id PNGs) is for task: instance with format: masks", name)
    if (fmt in ("coco", "text") or (fmt == "voc" and task == "detect")) and annotations is None:
        fail(f"format {fmt} needs 'annotations'", name)
    if fmt in ("masks", "cityscapes") and masks is None:
        fail(f"format {fmt} needs 'masks'", name)
    if task == "segment" and fmt == "voc" and masks is None:
        fail("VOC segmentation needs 'masks' (SegmentationClass)", name)
    stems = None
    listed = value.get("list")
    if isinstance(listed, list):
        stems = [str(s) for s in listed]
    elif isinstance(listed, str):
        from detseg.data.voc import read_split_list

        stems = read_split_list(root / listed)
    elif listed is not None:
        fail("list must be a file of stems or a list of stems", name)
    return SplitSpec(
        images=root / value["images"],
        annotations=annotations,
        masks=masks,
        stems=stems,
        mask_suffix=str(value.get("mask_suffix", "")),
        instances=instances,
    )


def _coco_json_spec(path: Path) -> DatasetSpec:
    from detseg.data.coco import coco_ids, read_json

    data = read_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("categories"), list):
        raise DataError(path, "a bare COCO json needs 'images', 'annotations' and 'categories'")
    data = coco_ids(data, path, problems=[])  # the categories checked; image problems: data check lists them
    categories = sorted(data["categories"], key=lambda c: c["id"])
    root = path.parent.resolve()
    images = root
    first = next(iter(data.get("images") or []), None)
    if first is not None:
        # Images beside the json, in images/ beside it, or in images/ one level up (COCO's layout).
        for candidate in (root, root / "images", root.parent / "images"):
            if (candidate / first["file_name"]).is_file():
                images = candidate
                break
    split = SplitSpec(images=images, annotations=path.resolve())
    return DatasetSpec(
        task="detect",
        format="coco",
        root=root,
        classes=[str(c["name"]) for c in categories],
        splits={"train": split, "val": split},
        path=path,
    )


def _voc_folder_spec(folder: Path) -> DatasetSpec:
    from detseg.data.voc import VOC_CLASSES, read_split_list, read_voc_xml

    folder = folder.resolve()
    ann, img = folder / "Annotations", folder / "JPEGImages"
    if not (ann.is_dir() and img.is_dir()):
        raise DataError(folder, "not a VOC folder (no Annotations/ and JPEGImages/); give a spec YAML")
    names = set()
    for xml in sorted(ann.glob("*.xml")):
        names.update(o["name"] for o in read_voc_xml(xml)["objects"])
    classes = list(VOC_CLASSES) if names <= set(VOC_CLASSES) else sorted(names)
    splits = {}
    for list_file in sorted((folder / "ImageSets" / "Main").glob("*.txt")):
        if "_" not in list_file.stem:  # train.txt, val.txt; not the per-class aeroplane_train.txt
            splits[list_file.stem] = SplitSpec(images=img, annotations=ann, stems=read_split_list(list_file))
    if not splits:
        splits = {
            "train": SplitSpec(images=img, annotations=ann),
            "val": SplitSpec(images=img, annotations=ann),
        }
    return DatasetSpec(task="detect", format="voc", root=folder, classes=classes, splits=splits, path=folder)
