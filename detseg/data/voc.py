"""PASCAL VOC: detection XML, ImageSets split lists and palette segmentation PNGs.

VOC boxes are 1-based inclusive integers; detseg keeps COCO's convention in memory (a box covering
pixels 0..9 is ``[0, 10)``), so on read ``x1 = xmin - 1, y1 = ymin - 1, x2 = xmax, y2 = ymax`` and
the reverse on write.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from detseg.data.coco import box_annotation, categories_of
from detseg.data.errors import DataError, report
from detseg.data.masks import IMAGE_EXTENSIONS, image_size

VOC_CLASSES = (
    "aeroplane",
    "bicycle",
    "bird",
    "boat",
    "bottle",
    "bus",
    "car",
    "cat",
    "chair",
    "cow",
    "diningtable",
    "dog",
    "horse",
    "motorbike",
    "person",
    "pottedplant",
    "sheep",
    "sofa",
    "train",
    "tvmonitor",
)
VOC_IGNORE = 255  # the void / object-border value in SegmentationClass PNGs


def read_voc_xml(path: str | Path) -> dict:
    """Parse one VOC annotation file.

    Returns ``{"filename", "width", "height", "depth", "objects": [{"name", "bbox": [xmin, ymin, xmax,
    ymax] (VOC 1-based), "difficult", "truncated"}]}``; a malformed file raises DataError.
    """
    path = Path(path)
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as exc:
        line, col = exc.position
        raise DataError(path, f"malformed XML ({exc})", f"line {line} column {col}") from exc
    except OSError as exc:
        raise DataError(path, f"cannot read ({exc})") from exc
    if root.tag != "annotation":
        raise DataError(path, f"root element is <{root.tag}>, expected <annotation>")

    def number(node, tag: str, entry: str, default=None):
        text = node.findtext(tag)
        if text is None or not text.strip():
            if default is not None:
                return default
            raise DataError(path, f"missing <{tag}>", entry)
        try:
            value = float(text)
        except ValueError as exc:
            raise DataError(path, f"<{tag}> is not a number: {text.strip()!r}", entry) from exc
        if not np.isfinite(value):
            raise DataError(path, f"<{tag}> is not a finite number: {text.strip()!r}", entry)
        return value

    size = root.find("size")
    width = int(number(size, "width", "size", 0)) if size is not None else 0
    height = int(number(size, "height", "size", 0)) if size is not None else 0
    depth = int(number(size, "depth", "size", 3)) if size is not None else 3
    objects = []
    for k, obj in enumerate(root.findall("object"), start=1):
        entry = f"object {k}"
        name = (obj.findtext("name") or "").strip()
        if not name:
            raise DataError(path, "missing <name>", entry)
        box = obj.find("bndbox")
        if box is None:
            raise DataError(path, "missing <bndbox>", entry)
        bbox = [number(box, tag, entry) for tag in ("xmin", "ymin", "xmax", "ymax")]
        objects.append(
            {
                "name": name,
                "bbox": bbox,
                "difficult": int(number(obj, "difficult", entry, 0.0)),
                "truncated": int(number(obj, "truncated", entry, 0.0)),
            }
        )
    return {
        "filename": (root.findtext("filename") or "").strip(),
        "width": width,
        "height": height,
        "depth": depth,
        "objects": objects,
    }


def voc_to_xyxy(bbox: Sequence[float]) -> list[float]:
    """VOC 1-based inclusive ``[xmin, ymin, xmax, ymax]`` -> detseg/COCO ``[x1, y1, x2, y2]``."""
    xmin, ymin, xmax, ymax = bbox
    return [xmin - 1.0, ymin - 1.0, float(xmax), float(ymax)]


def xyxy_to_voc(box: Sequence[float]) -> list[int]:
    """detseg/COCO ``[x1, y1, x2, y2]`` -> VOC 1-based inclusive integers."""
    x1, y1, x2, y2 = box
    return [int(round(x1)) + 1, int(round(y1)) + 1, int(round(x2)), int(round(y2))]


def read_split_list(path: str | Path) -> list[str]:
    """Stems from an ImageSets list (first word of each non-empty line; ``stem -1`` lines are kept)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "split list not found")
    stems = []
    for line in path.read_text(encoding="utf-8").splitlines():
        words = line.split()
        if words and not words[0].startswith("#"):
            stems.append(words[0])
    return stems


def _image_for(image_dir: Path | None, stem: str, filename: str) -> str:
    """The image's file name: the XML's <filename> when it exists on disk, else ``stem.<ext>``."""
    if image_dir is None:
        return filename or f"{stem}.jpg"
    if filename and (image_dir / filename).is_file():
        return filename
    for ext in IMAGE_EXTENSIONS:
        if (image_dir / f"{stem}{ext}").is_file():
            return f"{stem}{ext}"
    return filename or f"{stem}.jpg"


def voc_to_coco(
    annotations_dir: str | Path,
    image_dir: str | Path | None = None,
    classes: Sequence[str] | None = None,
    stems: Sequence[str] | None = None,
    problems: list[DataError] | None = None,
) -> dict:
    """A folder of VOC XML files -> COCO dataset dict.

    Image ids are 1..N in stem order, category ids 1..K in ``classes`` order (sorted names found when
    none given). ``difficult`` objects keep ``difficult: 1`` and ``ignore: 1``. Bad files and objects
    raise DataError naming the XML file and the object, or go to ``problems`` and are dropped.
    """
    annotations_dir = Path(annotations_dir)
    image_dir = Path(image_dir) if image_dir is not None else None
    if not annotations_dir.is_dir():
        raise DataError(annotations_dir, "annotation folder not found")
    if stems is None:
        files = sorted(annotations_dir.glob("*.xml"))
    else:
        files = [annotations_dir / f"{s}.xml" for s in stems]
    parsed = []
    for path in files:
        if not path.is_file():
            report(problems, DataError(path, "annotation file not found"))
            continue
        try:
            parsed.append((path, read_voc_xml(path)))
        except DataError as exc:
            report(problems, exc)
    names = (
        list(classes) if classes is not None else sorted({o["name"] for _, x in parsed for o in x["objects"]})
    )
    cat_id = {name: i for i, name in enumerate(names, start=1)}
    images, annotations = [], []
    for image_id, (path, xml) in enumerate(parsed, start=1):
        file_name = _image_for(image_dir, path.stem, xml["filename"])
        height, width = xml["height"], xml["width"]
        if (not height or not width) and image_dir is not None and (image_dir / file_name).is_file():
            height, width = image_size(image_dir / file_name)
        images.append({"id": image_id, "file_name": file_name, "width": width, "height": height})
        for k, obj in enumerate(xml["objects"], start=1):
            entry = f"object {k}"
            if obj["name"] not in cat_id:
                report(problems, DataError(path, f"unknown class '{obj['name']}'", entry, image=path.stem))
                continue
            x1, y1, x2, y2 = voc_to_xyxy(obj["bbox"])
            if x2 <= x1 or y2 <= y1:
                report(
                    problems,
                    DataError(
                        path,
                        f"degenerate box: xmax < xmin or ymax < ymin (bndbox {obj['bbox']})",
                        entry,
                        image=path.stem,
                    ),
                )
                continue
            annotations.append(
                box_annotation(
                    image_id,
                    cat_id[obj["name"]],
                    (x1, y1, x2, y2),
                    len(annotations) + 1,
                    obj["difficult"],
                    truncated=obj["truncated"],
                    source=f"{path.name} {entry}",
                )
            )
    return {"images": images, "annotations": annotations, "categories": categories_of(cat_id)}


def write_voc_xml(
    path: str | Path, file_name: str, width: int, height: int, objects: Sequence[dict], depth: int = 3
) -> None:
    """Write one VOC XML file. ``objects``: ``{"name", "box": [x1, y1, x2, y2] (detseg), "difficult"}``."""
    root = ET.Element("annotation")
    ET.SubElement(root, "folder").text = "images"
    ET.SubElement(root, "filename").text = file_name
    size = ET.SubElement(root, "size")
    for tag, value in (("width", width), ("height", height), ("depth", depth)):
        ET.SubElement(size, tag).text = str(int(value))
    ET.SubElement(root, "segmented").text = "0"
    for obj in objects:
        node = ET.SubElement(root, "object")
        ET.SubElement(node, "name").text = obj["name"]
        ET.SubElement(node, "pose").text = "Unspecified"
        ET.SubElement(node, "truncated").text = str(int(obj.get("truncated", 0)))
        ET.SubElement(node, "difficult").text = str(int(obj.get("difficult", 0)))
        box = ET.SubElement(node, "bndbox")
        for tag, value in zip(("xmin", "ymin", "xmax", "ymax"), xyxy_to_voc(obj["box"]), strict=True):
            ET.SubElement(box, tag).text = str(value)
    ET.indent(root, space="\t")
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    ET.ElementTree(root).write(path, encoding="utf-8")


def coco_to_voc(coco: dict, out_dir: str | Path) -> list[Path]:
    """Write one VOC XML per image of a COCO dict (boxes converted back to VOC 1-based integers)."""
    out_dir = Path(out_dir)
    names = {c["id"]: c["name"] for c in coco["categories"]}
    by_image: dict = {img["id"]: [] for img in coco["images"]}
    for ann in coco["annotations"]:
        x, y, w, h = ann["bbox"]
        by_image[ann["image_id"]].append(
            {
                "name": names[ann["category_id"]],
                "box": [x, y, x + w, y + h],
                "difficult": ann.get("difficult", 0),
                "truncated": ann.get("truncated", 0),
            }
        )
    written = []
    for img in coco["images"]:
        path = out_dir / f"{Path(img['file_name']).stem}.xml"
        write_voc_xml(path, img["file_name"], img.get("width", 0), img.get("height", 0), by_image[img["id"]])
        written.append(path)
    return written


def voc_palette() -> list[int]:
    """The PASCAL VOC colour map (256 RGB entries, flattened) used by SegmentationClass PNGs."""
    palette = []
    for i in range(256):
        r = g = b = 0
        c = i
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        palette += [r, g, b]
    return palette


def write_voc_mask(path: str | Path, mask: np.ndarray) -> None:
    """Save class indices ``[H, W]`` (255 = void) as a VOC palette PNG."""
    im = Image.fromarray(np.asarray(mask, dtype=np.uint8), mode="P")
    im.putpalette(voc_palette())
    im.save(path)
