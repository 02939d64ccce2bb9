"""Text box files, one per image, as popular mAP tools use (rafaelpadilla's, Cartucho's).

Ground truth lines: ``class x1 y1 x2 y2 [difficult]``; detection lines: ``class score x1 y1 x2 y2``.
The four numbers follow ``box_format``:

- ``xyxy``: absolute corners (the default);
- ``xywh``: absolute top-left corner, width and height;
- ``rel_xcycwh``: centre, width and height relative to the image size (YOLO style; needs the images).

``class`` is a name, or a number indexing ``id_names`` (e.g. voc.names) when that list is given.
The image of ``foo.txt`` is the image with stem ``foo``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from detseg.data.coco import box_annotation, categories_of
from detseg.data.errors import DataError, report
from detseg.data.masks import IMAGE_EXTENSIONS, image_size

BOX_FORMATS = ("xyxy", "xywh", "rel_xcycwh")


def to_xyxy(values: Sequence[float], box_format: str, size: tuple[int, int] | None = None) -> list[float]:
    """Four numbers in ``box_format`` -> absolute ``[x1, y1, x2, y2]``; ``size`` is ``(H, W)``."""
    a, b, c, d = (float(v) for v in values)
    if box_format == "xyxy":
        return [a, b, c, d]
    if box_format == "xywh":
        return [a, b, a + c, b + d]
    if box_format == "rel_xcycwh":
        if size is None:
            raise ValueError("relative boxes need the image size")
        height, width = size
        return [(a - c / 2) * width, (b - d / 2) * height, (a + c / 2) * width, (b + d / 2) * height]
    raise ValueError(f"unknown box format {box_format!r}; use one of {', '.join(BOX_FORMATS)}")


def from_xyxy(box: Sequence[float], box_format: str, size: tuple[int, int] | None = None) -> list[float]:
    """Absolute ``[x1, y1, x2, y2]`` -> four numbers in ``box_format``."""
    x1, y1, x2, y2 = (float(v) for v in box)
    if box_format == "xyxy":
        return [x1, y1, x2, y2]
    if box_format == "xywh":
        return [x1, y1, x2 - x1, y2 - y1]
    if box_format == "rel_xcycwh":
        if size is None:
            raise ValueError("relative boxes need the image size")
        height, width = size
        return [(x1 + x2) / 2 / width, (y1 + y2) / 2 / height, (x2 - x1) / width, (y2 - y1) / height]
    raise ValueError(f"unknown box format {box_format!r}; use one of {', '.join(BOX_FORMATS)}")


def read_text_boxes(
    path: str | Path,
    with_score: bool = False,
    box_format: str = "xyxy",
    size: tuple[int, int] | None = None,
    id_names: Sequence[str] | None = None,
) -> list[dict]:
    """Parse one text box file into ``[{"name", "score" (detections), "box": xyxy, "difficult", "line"}]``."""
    path = Path(path)
    if box_format not in BOX_FORMATS:
        raise ValueError(f"unknown box format {box_format!r}; use one of {', '.join(BOX_FORMATS)}")
    if box_format == "rel_xcycwh" and size is None:
        raise DataError(path, "relative (rel_xcycwh) boxes need the image size: give the image folder")
    expected = 6 if with_score else 5
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        words = line.split()
        if not words or words[0].startswith("#"):
            continue
        entry = f"line {number}"
        difficult = 0
        if not with_score and len(words) == expected + 1 and words[-1].lower() == "difficult":
            difficult, words = 1, words[:-1]
        if len(words) != expected:
            layout = "class score a b c d" if with_score else "class a b c d [difficult]"
            raise DataError(path, f"expected '{layout}', got {line.strip()!r}", entry)
        try:
            numbers = [float(w) for w in words[1:]]
        except ValueError as exc:
            raise DataError(path, f"not a number in {line.strip()!r}", entry) from exc
        name = words[0]
        if id_names is not None and name.isdigit() and name not in id_names:
            index = int(name)
            if index >= len(id_names):
                raise DataError(path, f"class id {index} is beyond the {len(id_names)} class names", entry)
            name = id_names[index]
        row = {
            "name": name,
            "box": to_xyxy(numbers[-4:], box_format, size),
            "difficult": difficult,
            "line": number,
        }
        if with_score:
            row["score"] = numbers[0]
        rows.append(row)
    return rows


def find_image(image_dir: Path | None, stem: str) -> Path | None:
    """The image with this stem in ``image_dir``, if any."""
    if image_dir is None:
        return None
    for ext in IMAGE_EXTENSIONS:
        for candidate in (image_dir / f"{stem}{ext}", image_dir / f"{stem}{ext.upper()}"):
            if candidate.is_file():
                return candidate
    return None


def text_to_coco(
    text_dir: str | Path,
    image_dir: str | Path | None = None,
    classes: Sequence[str] | None = None,
    box_format: str = "xyxy",
    id_names: Sequence[str] | None = None,
    stems: Sequence[str] | None = None,
    problems: list[DataError] | None = None,
) -> dict:
    """A folder of ground-truth text files -> COCO dataset dict (image ids 1..N in stem order)."""
    text_dir = Path(text_dir)
    image_dir = Path(image_dir) if image_dir is not None else None
    if not text_dir.is_dir():
        raise DataError(text_dir, "text box folder not found")
    files = sorted(text_dir.glob("*.txt")) if stems is None else [text_dir / f"{s}.txt" for s in stems]
    parsed = []
    for path in files:
        if not path.is_file():
            report(problems, DataError(path, "box file not found"))
            continue
        image = find_image(image_dir, path.stem)
        size = image_size(image) if image is not None else None
        try:
            parsed.append((path, image, size, read_text_boxes(path, False, box_format, size, id_names)))
        except DataError as exc:
            report(problems, exc)
    names = list(classes) if classes is not None else sorted({r["name"] for *_, rows in parsed for r in rows})
    cat_id = {name: i for i, name in enumerate(names, start=1)}
    images, annotations = [], []
    for image_id, (path, image, size, rows) in enumerate(parsed, start=1):
        height, width = size if size is not None else (0, 0)
        file_name = image.name if image is not None else f"{path.stem}.jpg"
        images.append({"id": image_id, "file_name": file_name, "width": width, "height": height})
        for row in rows:
            entry = f"line {row['line']}"
            if row["name"] not in cat_id:
                report(problems, DataError(path, f"unknown class '{row['name']}'", entry, image=path.stem))
                continue
            x1, y1, x2, y2 = row["box"]
            if x2 <= x1 or y2 <= y1:
                report(
                    problems,
                    DataError(
                        path, f"degenerate box: x2 <= x1 or y2 <= y1 ({row['box']})", entry, image=path.stem
                    ),
                )
                continue
            annotations.append(
                box_annotation(
                    image_id,
                    cat_id[row["name"]],
                    row["box"],
                    len(annotations) + 1,
                    row["difficult"],
                    source=f"{path.name} {entry}",
                )
            )
    return {"images": images, "annotations": annotations, "categories": categories_of(cat_id)}


def write_text_boxes(
    path: str | Path, rows: Sequence[dict], box_format: str = "xyxy", size: tuple[int, int] | None = None
) -> None:
    """Write one text box file; rows ``{"name", "box": xyxy, "score"?, "difficult"?}``."""
    lines = []
    for row in rows:
        numbers = " ".join(f"{v:g}" for v in from_xyxy(row["box"], box_format, size))
        score = f" {row['score']:g}" if "score" in row else ""
        flag = " difficult" if row.get("difficult") and "score" not in row else ""
        lines.append(f"{row['name']}{score} {numbers}{flag}")
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")


def coco_to_text(
    coco: dict, out_dir: str | Path, results: Sequence[dict] | None = None, box_format: str = "xyxy"
) -> list[Path]:
    """Write one text file per image: the ground truth of ``coco``, or ``results`` (with scores) on it.

    Results on VOC XML ground truth go back to VOC's 1-based pixel frame, as
    ``detseg.data.convert.load_detection_results`` read them.
    """
    out_dir = Path(out_dir)
    names = {c["id"]: c["name"] for c in coco["categories"]}
    by_image: dict = {img["id"]: [] for img in coco["images"]}
    voc_frame = results is not None and coco.get("info", {}).get("box_convention") == "voc"
    for ann in results if results is not None else coco["annotations"]:
        x, y, w, h = ann["bbox"]
        box = [x + 1, y + 1, x + w, y + h] if voc_frame else [x, y, x + w, y + h]
        row = {"name": names[ann["category_id"]], "box": box}
        if results is not None:
            row["score"] = ann["score"]
        elif ann.get("difficult"):
            row["difficult"] = 1
        by_image[ann["image_id"]].append(row)
    written = []
    for img in coco["images"]:
        path = out_dir / f"{Path(img['file_name']).stem}.txt"
        size = (img.get("height"), img.get("width")) if img.get("height") else None
        write_text_boxes(path, by_image[img["id"]], box_format, size)
        written.append(path)
    return written
