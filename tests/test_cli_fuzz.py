"""Malformed input never gives a traceback: every command that reads data answers with exit 2 and one
line on stderr (or accepts the input), and writes nothing when it refuses.

Hypothesis mutates a small valid data set (COCO json, VOC XML, text boxes, mask PNGs, spec YAML) and
feeds it to ``detseg.cli.main`` in-process: data check, data show, convert, eval det, eval seg,
classic --data and train. ``data check`` may also answer 1 (it lists the problems it found).
"""

from __future__ import annotations

import copy
import io
import itertools
import json
import os
import warnings
import xml.etree.ElementTree as ET
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from detseg.cli import main

# DETSEG_FUZZ_EXAMPLES=500 explores further (random seeds, no shrinking); CI runs the fixed few.
EXPLORE = int(os.environ.get("DETSEG_FUZZ_EXAMPLES", 0))
FUZZ = settings(
    max_examples=EXPLORE or 10,
    deadline=None,
    derandomize=not EXPLORE,  # the same examples on every run: CI stays reproducible
    phases=[Phase.generate] if EXPLORE else list(Phase),
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
IMAGES = {"a": (24, 32), "b": (32, 24), "c": (28, 28)}  # stem -> (height, width)
BOXES = {"a": [[2, 3, 12, 14]], "b": [[4, 4, 20, 30], [1, 1, 6, 8]], "c": [[5, 6, 25, 20]]}  # xyxy
LABELS = {"a": [0], "b": [1, 0], "c": [1]}
CLASSES = ["x", "y"]

json_leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 10**12),
    st.floats(width=32),  # nan and inf included
    st.text(max_size=4),
)
json_value = st.recursive(
    json_leaf,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=2),
    max_leaves=5,
)


# ---------------------------------------------------------------- a small valid data set
def _coco() -> dict:
    images, annotations = [], []
    for i, (stem, (h, w)) in enumerate(IMAGES.items(), start=1):
        images.append({"id": i, "file_name": f"{stem}.png", "height": h, "width": w})
        for (x1, y1, x2, y2), label in zip(BOXES[stem], LABELS[stem], strict=True):
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": i,
                    "category_id": label + 1,
                    "bbox": [x1, y1, x2 - x1, y2 - y1],
                    "area": (x2 - x1) * (y2 - y1),
                    "iscrowd": 0,
                    "segmentation": [[x1, y1, x2, y1, x2, y2, x1, y2]],
                }
            )
    categories = [{"id": k + 1, "name": n} for k, n in enumerate(CLASSES)]
    return {"images": images, "annotations": annotations, "categories": categories}


def _results() -> list[dict]:
    return [
        {**{k: a[k] for k in ("image_id", "category_id", "bbox")}, "score": 0.9 - 0.1 * a["id"]}
        for a in _coco()["annotations"]
    ]


def _voc_xml(stem: str) -> str:
    h, w = IMAGES[stem]
    objects = "".join(
        f"<object><name>{CLASSES[label]}</name><difficult>0</difficult><bndbox><xmin>{x1 + 1}</xmin>"
        f"<ymin>{y1 + 1}</ymin><xmax>{x2}</xmax><ymax>{y2}</ymax></bndbox></object>"
        for (x1, y1, x2, y2), label in zip(BOXES[stem], LABELS[stem], strict=True)
    )
    return (
        f"<annotation><filename>{stem}.png</filename><size><width>{w}</width><height>{h}</height>"
        f"<depth>3</depth></size>{objects}</annotation>"
    )


def _text_lines(stem: str, score: bool = False) -> list[str]:
    return [
        f"{CLASSES[label]}{' 0.8' if score else ''} {x1} {y1} {x2} {y2}"
        for (x1, y1, x2, y2), label in zip(BOXES[stem], LABELS[stem], strict=True)
    ]


def _mask(stem: str) -> np.ndarray:
    mask = np.zeros(IMAGES[stem], np.uint8)
    for (x1, y1, x2, y2), label in zip(BOXES[stem], LABELS[stem], strict=True):
        mask[y1:y2, x1:x2] = label + 1
    return mask


def _specs(images: Path) -> dict:
    both = lambda **kw: {"train": {"images": str(images), **kw}, "val": {"images": str(images), **kw}}  # noqa: E731
    return {
        "coco": {"task": "detect", "format": "coco", **both(annotations="coco.json")},
        "voc": {"task": "detect", "format": "voc", "classes": CLASSES, **both(annotations="voc")},
        "text": {"task": "detect", "format": "text", "classes": CLASSES, **both(annotations="text")},
        "masks": {
            "task": "segment",
            "format": "masks",
            "classes": ["background", *CLASSES],
            **both(masks="masks"),
        },
    }


@pytest.fixture(scope="module")
def clean(tmp_path_factory) -> Path:
    """The valid data set every example starts from (images/ are shared, never mutated)."""
    root = tmp_path_factory.mktemp("fuzz")
    (root / "images").mkdir()
    rng = np.random.default_rng(0)
    for stem, (h, w) in IMAGES.items():
        cv2.imwrite(str(root / "images" / f"{stem}.png"), rng.integers(0, 255, (h, w, 3), dtype=np.uint8))
    return root


_counter = itertools.count()


def _case(clean: Path) -> Path:
    """A fresh folder for one example, holding the valid annotations in every format."""
    case = clean / f"case{next(_counter)}"
    case.mkdir()
    (case / "coco.json").write_text(json.dumps(_coco()))
    (case / "dt.json").write_text(json.dumps(_results()))
    for folder in ("voc", "text", "dt_text", "masks"):
        (case / folder).mkdir()
    for stem in IMAGES:
        (case / "voc" / f"{stem}.xml").write_text(_voc_xml(stem))
        (case / "text" / f"{stem}.txt").write_text("\n".join(_text_lines(stem)) + "\n")
        (case / "dt_text" / f"{stem}.txt").write_text("\n".join(_text_lines(stem, score=True)) + "\n")
        cv2.imwrite(str(case / "masks" / f"{stem}.png"), _mask(stem))
    for name, spec in _specs(clean / "images").items():
        (case / f"{name}.yaml").write_text(yaml.safe_dump(spec))
    return case


def run_cli(args: list, outputs: tuple[Path, ...] = (), accept: tuple[int, ...] = (0,), partial=()) -> int:
    """Run one command in-process; a refusal must be one line on stderr and leave no output behind
    (``partial``: names of files that must not appear where a command may have started writing).

    An exception escaping ``main`` fails the test with its traceback: that is the bug it looks for.
    """
    for out in outputs:
        assert not out.exists()
    err, out = io.StringIO(), io.StringIO()
    with redirect_stderr(err), redirect_stdout(out), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # skipped-sample warnings are not the error line
        code = main([str(a) for a in args])
    text = err.getvalue()
    shown = f"detseg {' '.join(map(str, args))} -> {code}: {text!r}"
    assert code in (*accept, 2) and "Traceback" not in text, shown
    if code == 2:
        # One error line, the last (train prints its settings to stderr before it reads the data).
        errors = [line for line in text.splitlines() if f"detseg {args[0]}: error: " in line]
        assert len(errors) == 1 and text.rstrip("\n").endswith(errors[0]), shown
        for path in outputs:
            if partial:
                left = [name for name in partial if (path / name).exists()]
                assert not left, f"{shown}: half-written {path}: {left}"
            else:
                assert not path.exists(), f"{shown}: half-written {path}"
    return code


# ---------------------------------------------------------------- mutations
@st.composite
def mutated_json(draw, document, cut: bool = True):
    """``document`` with one to three values replaced by any JSON value, or removed; or (``cut``) its
    text cut short."""
    doc = copy.deepcopy(document)
    for _ in range(draw(st.integers(1, 3))):
        node = doc
        while True:
            keys = list(node) if isinstance(node, dict) else list(range(len(node)))
            if not keys:
                break
            key = draw(st.sampled_from(keys))
            child = node[key]
            if isinstance(child, dict | list) and child and draw(st.booleans()):
                node = child
                continue
            if draw(st.integers(0, 3)) == 0:
                del node[key]
            else:
                node[key] = draw(json_value)
            break
    text = json.dumps(doc)
    if cut and draw(st.integers(0, 9)) == 0:
        text = text[: draw(st.integers(0, len(text)))]
    return text


@st.composite
def mutated_xml(draw, text: str):
    """VOC XML with one element's text replaced or the element removed, or the file cut short."""
    root = ET.fromstring(text)
    elements = list(root.iter())[1:]
    element = draw(st.sampled_from(elements))
    if draw(st.booleans()):
        element.text = draw(st.sampled_from(["", "nan", "inf", "-1", "1e30", "3.5", "x", "0", "200"]))
    else:
        parent = next(p for p in root.iter() if element in list(p))
        parent.remove(element)
    out = ET.tostring(root, encoding="unicode")
    if draw(st.integers(0, 7)) == 0:
        out = out[: draw(st.integers(0, len(out)))]
    return out


token = st.sampled_from(["x", "y", "z", "0", "1", "-3", "1e30", "nan", "inf", "2.5", "difficult", "#", "7"])
text_lines = st.lists(st.lists(token, min_size=0, max_size=7).map(" ".join), min_size=1, max_size=3)


@st.composite
def odd_mask(draw, stem: str):
    """Bytes of a mask PNG: a wrong size, unexpected values, 16 bits, colour, or not a PNG at all."""
    kind = draw(st.sampled_from(["values", "size", "uint16", "colour", "garbage", "empty"]))
    h, w = IMAGES[stem]
    if kind == "garbage":
        return draw(st.binary(max_size=20))
    if kind == "empty":
        return b""
    if kind == "size":
        h, w = draw(st.integers(1, 40)), draw(st.integers(1, 40))
    values = draw(st.lists(st.sampled_from([0, 1, 2, 3, 9, 255]), min_size=1, max_size=3))
    mask = np.asarray(values, np.uint8)[np.random.default_rng(len(values)).integers(0, len(values), (h, w))]
    if kind == "uint16":
        mask = mask.astype(np.uint16) * 300
    if kind == "colour":
        mask = np.repeat(mask[..., None], 3, axis=2)
    ok, data = cv2.imencode(".png", mask)
    return data.tobytes()


# ---------------------------------------------------------------- the commands
@FUZZ
@given(data=st.data())
def test_malformed_coco_ground_truth_and_results(clean, data):
    case = _case(clean)
    target = data.draw(st.sampled_from(["gt", "results"]))
    if target == "gt":
        (case / "coco.json").write_text(data.draw(mutated_json(_coco())))
        run_cli(["data", "check", case / "coco.yaml"], accept=(0, 1))
        run_cli(["data", "show", case / "coco.yaml", "--out", case / "show"], (case / "show",))
        run_cli(
            ["convert", case / "coco.json", case / "voc_out", "--from", "coco", "--to", "voc"],
            (case / "voc_out",),
        )
    else:
        (case / "dt.json").write_text(data.draw(mutated_json(_results())))
        run_cli(
            [
                "convert",
                case / "dt.json",
                case / "dt_out",
                "--from",
                "coco",
                "--to",
                "text",
                "--gt",
                case / "coco.json",
            ],
            (case / "dt_out",),
        )
    run_cli(
        ["eval", "det", "--gt", case / "coco.json", "--dt", case / "dt.json", "--json", case / "m.json"],
        (case / "m.json",),
    )


@FUZZ
@given(data=st.data())
def test_malformed_voc_xml(clean, data):
    case = _case(clean)
    stem = data.draw(st.sampled_from(sorted(IMAGES)))
    (case / "voc" / f"{stem}.xml").write_text(data.draw(mutated_xml(_voc_xml(stem))))
    run_cli(["data", "check", case / "voc.yaml"], accept=(0, 1))
    run_cli(["data", "show", case / "voc.yaml", "--out", case / "show"], (case / "show",))
    run_cli(
        [
            "convert",
            case / "voc",
            case / "c.json",
            "--from",
            "voc",
            "--to",
            "coco",
            "--images",
            clean / "images",
        ],
        (case / "c.json",),
    )
    run_cli(
        ["eval", "det", "--gt", case / "voc", "--dt", case / "dt_text", "--json", case / "m.json"],
        (case / "m.json",),
    )


@FUZZ
@given(data=st.data())
def test_malformed_text_boxes(clean, data):
    case = _case(clean)
    stem = data.draw(st.sampled_from(sorted(IMAGES)))
    folder = data.draw(st.sampled_from(["text", "dt_text"]))
    (case / folder / f"{stem}.txt").write_text("\n".join(data.draw(text_lines)))
    box_format = data.draw(st.sampled_from(["xyxy", "xywh", "rel_xcycwh"]))
    if folder == "text":
        run_cli(["data", "check", case / "text.yaml"], accept=(0, 1))
        run_cli(
            [
                "convert",
                case / "text",
                case / "c.json",
                "--from",
                "text",
                "--to",
                "coco",
                "--images",
                clean / "images",
                "--box-format",
                box_format,
            ],
            (case / "c.json",),
        )
    run_cli(
        ["eval", "det", "--gt", case / "coco.json", "--dt", case / "dt_text", "--box-format", box_format],
    )


@FUZZ
@given(data=st.data())
def test_malformed_mask_pngs(clean, data):
    case = _case(clean)
    stem = data.draw(st.sampled_from(sorted(IMAGES)))
    (case / "masks" / f"{stem}.png").write_bytes(data.draw(odd_mask(stem)))
    run_cli(["data", "check", case / "masks.yaml"], accept=(0, 1))
    run_cli(["data", "show", case / "masks.yaml", "--out", case / "show"], (case / "show",))
    run_cli(
        [
            "convert",
            case / "masks",
            case / "c.json",
            "--from",
            "masks",
            "--to",
            "coco",
            "--images",
            clean / "images",
            "--classes",
            "background,x,y",
        ],
        (case / "c.json",),
    )
    run_cli(
        ["eval", "seg", "--gt", case / "masks.yaml", "--pred", case / "masks", "--json", case / "m.json"],
        (case / "m.json",),
    )
    run_cli(["classic", "otsu", "--data", case / "masks.yaml", "--json", case / "k.json"], (case / "k.json",))


@FUZZ
@given(data=st.data())
def test_malformed_spec_yaml(clean, data):
    case = _case(clean)
    name = data.draw(st.sampled_from(["coco", "voc", "text", "masks"]))
    spec = _specs(clean / "images")[name]
    if data.draw(st.integers(0, 5)) == 0:
        text = data.draw(st.sampled_from(["{", "- a\nb: [", "task: [detect", "\t: x", "null", "3", "[]"]))
    else:
        text = yaml.safe_dump(json.loads(data.draw(mutated_json(spec, cut=False))))
    (case / f"{name}.yaml").write_text(text)
    run_cli(["data", "check", case / f"{name}.yaml"], accept=(0, 1))
    run_cli(["data", "show", case / f"{name}.yaml", "--out", case / "show"], (case / "show",))
    if name == "masks":
        run_cli(
            ["classic", "otsu", "--data", case / "masks.yaml", "--json", case / "k.json"], (case / "k.json",)
        )


TRAIN = settings(FUZZ, max_examples=EXPLORE or 3)


@TRAIN
@given(data=st.data())
def test_train_refuses_malformed_data_in_one_line(clean, data):
    """``train`` refuses bad data in one line, before it has saved a checkpoint (it writes its run
    folder's config.json first, and reads masks and images only when a batch needs them)."""
    case = _case(clean)
    name = data.draw(st.sampled_from(["coco", "masks"]))
    if name == "coco":
        (case / "coco.json").write_text(data.draw(mutated_json(_coco())))
        model = ["--model", "ssdlite320_mobilenet_v3_large", "--batch-size", "2"]
    else:
        (case / "masks" / "a.png").write_bytes(data.draw(odd_mask("a")))
        model = ["--model", "unet", "--model-arg", "width=4", "--batch-size", "2"]
    options = "--epochs 1 --img-size 32 --workers 0".split()  # (--epochs 0 trains forever)
    run_cli(
        ["train", *model, "--data", case / f"{name}.yaml", *options, "--out", case / "run"],
        (case / "run",),
        partial=("last.pt", "best.pt"),
    )


def _odd(kind: str) -> dict:
    coco = _coco()
    if kind == "null category_id":
        coco["annotations"][1]["category_id"] = None
    elif kind == "fractional category_id":
        coco["annotations"][1]["category_id"] = 1.5
    elif kind == "text category_id":
        coco["annotations"][1]["category_id"] = "2"
    elif kind == "list image id":
        coco["images"][1]["id"] = [2]
    elif kind == "object image_id":
        coco["annotations"][1]["image_id"] = {"id": 2}
    elif kind == "null category id":
        coco["categories"][1]["id"] = None
    elif kind == "string image ids":
        for img in coco["images"]:
            img["id"] = f"frame-{img['file_name']}"
        for ann in coco["annotations"]:
            ann["image_id"] = f"frame-{'abc'[ann['image_id'] - 1]}.png"
    return coco


ODD = {
    "null category_id": "annotation id 2: field 'category_id' must be an integer, got null",
    "fractional category_id": "annotation id 2: field 'category_id' must be an integer, got 1.5",
    "text category_id": "annotation id 2: field 'category_id' must be an integer, got '2'",
    "list image id": "images[1]: field 'id' must be an integer or a string, got [2]",
    "object image_id": "annotation id 2: field 'image_id' must be an integer or a string, got {'id': 2}",
    "null category id": "categories[1]: field 'id' must be an integer, got null",
    "string image ids": None,  # accepted everywhere
}


@pytest.mark.parametrize("kind", list(ODD))
def test_odd_coco_ids_get_the_same_answer_from_every_command(clean, kind, capsys):
    """data check, data show (the data set train builds), convert and eval det accept the same COCO
    files and refuse the same ones with the same line: the file, the entry and the field."""
    case = _case(clean)
    gt = case / "coco.json"
    gt.write_text(json.dumps(_odd(kind)))
    results = _results()
    if kind == "string image ids":  # an exporter that writes string ids writes them in its results too
        for det in results:
            det["image_id"] = f"frame-{'abc'[det['image_id'] - 1]}.png"
    (case / "dt.json").write_text(json.dumps(results))
    capsys.readouterr()
    codes = {
        "check": main(["data", "check", str(case / "coco.yaml")]),
        "show": main(["data", "show", str(case / "coco.yaml"), "--out", str(case / "show")]),
        "convert": main(["convert", str(gt), str(case / "xml"), "--from", "coco", "--to", "voc"]),
        "eval": main(["eval", "det", "--gt", str(gt), "--dt", str(case / "dt.json")]),
    }
    out, err = capsys.readouterr()
    if ODD[kind] is None:
        assert codes == {"check": 0, "show": 0, "convert": 0, "eval": 0}, err
        assert "Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all | maxDets=100 ] = 1.000" in out
        assert sorted(p.name for p in (case / "xml").iterdir()) == ["a.xml", "b.xml", "c.xml"]
        return
    assert codes == {"check": 1, "show": 2, "convert": 2, "eval": 2}, err
    expected = f"{gt}: {ODD[kind]}"
    assert f"    {expected}" in out.splitlines()  # data check lists it among its problems
    assert err.splitlines() == [f"detseg {c}: error: {expected}" for c in ("data", "convert", "eval")]
    assert not (case / "show").exists() and not (case / "xml").exists()
