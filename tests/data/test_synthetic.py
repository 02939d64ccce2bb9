"""detseg.data.synthetic and ``detseg synth``: determinism, COCO/mask agreement, occlusion, domain knobs."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml
from pycocotools import mask as mask_utils

from detseg.cli import main
from detseg.data.synthetic import SHAPES, SynthConfig, generate, render_image, visible_masks

SMALL = dict(image_size=64, num_train=6, num_val=3, object_size=(12, 32), objects_per_image=(2, 5))


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _solidity(mask: np.ndarray) -> float:
    """Mask pixels over the pixels of their filled convex hull: 1 for an uncut convex shape."""
    points = np.argwhere(mask)[:, ::-1].astype(np.int32)
    hull = np.zeros(mask.shape, np.uint8)
    cv2.fillConvexPoly(hull, cv2.convexHull(points), 1, lineType=cv2.LINE_8)
    return mask.sum() / hull.sum()


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    config = SynthConfig(seed=7, classes=SHAPES, **SMALL)
    return generate(config, tmp_path_factory.mktemp("synth") / "shapes")


def test_same_seed_writes_byte_identical_files_and_another_seed_does_not(dataset, tmp_path):
    again = generate(SynthConfig(seed=7, classes=SHAPES, **SMALL), tmp_path / "again")
    first, second = _files(dataset), _files(again)
    assert first.keys() == second.keys()
    assert len(first) == 2 * (6 + 3) + 2 + 4  # images + masks, 2 json, 3 specs + synth.json
    assert first == second

    other = _files(generate(SynthConfig(seed=8, classes=SHAPES, **SMALL), tmp_path / "other"))
    images = [k for k in first if k.startswith("images/")]
    assert sum(first[k] != other[k] for k in images) == len(images)


def test_validation_images_do_not_depend_on_the_training_count(tmp_path):
    a = _files(generate(SynthConfig(seed=3, **{**SMALL, "num_train": 2}), tmp_path / "a"))
    b = _files(generate(SynthConfig(seed=3, **{**SMALL, "num_train": 5}), tmp_path / "b"))
    val = [k for k in a if "/val/" in k]
    assert len(val) == 6 and all(a[k] == b[k] for k in val)


def test_coco_boxes_and_areas_equal_those_of_their_rle_masks(dataset):
    for split, count in (("train", 6), ("val", 3)):
        coco = json.loads((dataset / "annotations" / f"{split}.json").read_text())
        assert [c["id"] for c in coco["categories"]] == list(range(1, len(SHAPES) + 1))
        assert [c["name"] for c in coco["categories"]] == list(SHAPES)
        assert [im["id"] for im in coco["images"]] == list(range(1, count + 1))
        assert len({a["id"] for a in coco["annotations"]}) == len(coco["annotations"]) > count
        for ann in coco["annotations"]:
            rle = dict(ann["segmentation"], counts=ann["segmentation"]["counts"].encode())
            assert isinstance(ann["segmentation"]["counts"], str) and ann["iscrowd"] == 0
            np.testing.assert_array_equal(ann["bbox"], mask_utils.toBbox(rle))
            assert ann["area"] == mask_utils.area(rle) > 0


def test_semantic_png_is_the_union_of_instance_masks_and_masks_are_the_drawn_pixels(dataset):
    coco = json.loads((dataset / "annotations" / "train.json").read_text())
    for image in coco["images"]:
        pixels = cv2.imread(str(dataset / "images" / "train" / image["file_name"]))[..., ::-1]
        semantic = cv2.imread(str(dataset / "masks" / "train" / image["file_name"]), cv2.IMREAD_UNCHANGED)
        assert semantic.dtype == np.uint8 and semantic.shape == pixels.shape[:2] == (64, 64)
        union = np.zeros_like(semantic)
        for ann in (a for a in coco["annotations"] if a["image_id"] == image["id"]):
            seg = ann["segmentation"]
            mask = mask_utils.decode({"size": seg["size"], "counts": seg["counts"].encode()}).astype(bool)
            assert not union[mask].any(), "visible parts of two objects overlap"
            union[mask] = ann["category_id"]
            # A flat-coloured shape without anti-aliasing: one colour under the whole mask.
            assert len(np.unique(pixels[mask], axis=0)) == 1
        np.testing.assert_array_equal(semantic, union)
        # Plain background: everything outside the objects is the one background colour.
        assert len(np.unique(pixels[semantic == 0], axis=0)) == 1


def test_specs_name_the_written_files(dataset):
    detect = yaml.safe_load((dataset / "detect.yaml").read_text())
    segment = yaml.safe_load((dataset / "segment.yaml").read_text())
    assert (detect["task"], detect["format"], detect["classes"]) == ("detect", "coco", list(SHAPES))
    assert (segment["task"], segment["format"]) == ("segment", "masks")
    instance = yaml.safe_load((dataset / "instance.yaml").read_text())
    assert instance == {**detect, "task": "instance"}  # the same json, whose RLE masks it reads too
    assert segment["classes"] == ["background", *SHAPES] and segment["ignore_index"] == 255
    assert segment["values"] == {i: i for i in range(len(SHAPES) + 1)}
    for spec, keys in ((detect, ("images", "annotations")), (segment, ("images", "masks"))):
        for split in ("train", "val"):
            for key in keys:
                assert (dataset / spec["root"] / spec[split][key]).exists()
    assert sorted(p.name for p in (dataset / "images" / "val").iterdir()) == ["000001.png", "000002.png",
                                                                              "000003.png"]


def test_occlusion_cuts_the_masks_of_covered_objects():
    knobs = dict(seed=0, objects_per_image=(4, 6), object_size=(24, 60))
    # All shapes of the default classes are convex: uncut, their masks fill their convex hulls.
    cut = [_solidity(m) for i in range(15) for m in render_image(SynthConfig(**knobs), "train", i).masks]
    whole = [_solidity(m) for i in range(15)
             for m in render_image(SynthConfig(occlusion=False, **knobs), "train", i).masks]
    assert min(whole) > 0.85 and np.mean(np.asarray(cut) < 0.8) > 0.15


def test_visible_masks_hand_worked_scene():
    def rect(x1, y1, x2, y2):
        m = np.zeros((10, 10), bool)
        m[y1:y2, x1:x2] = True
        return m

    bottom = rect(0, 0, 6, 6)  # 36 px
    buried = rect(4, 4, 7, 7)  # 9 px, 8 of them covered by `top`: 1/9 visible -> dropped
    top = rect(4, 4, 10, 10)  # 36 px
    keep, masks = visible_masks([bottom, buried, top], 0.3, (10, 10))
    assert keep == [0, 2]
    # `buried` is gone from the scene, so `bottom` loses only the 2x2 corner under `top`.
    assert masks[0].sum() == 32 and masks[1].sum() == 36
    assert not (masks[0] & masks[1]).any()


def test_domain_knobs_shift_pixel_statistics():
    def stats(**knobs):
        config = SynthConfig(**{"seed": 1, "image_size": 64, "object_size": (16, 32), **knobs})
        samples = [render_image(config, "train", i) for i in range(12)]
        background_std = np.mean([s.image[s.semantic == 0].std(axis=0).mean() for s in samples])
        objects = np.concatenate([s.image[s.semantic > 0] for s in samples])
        box_area = np.mean([(b[2] - b[0]) * (b[3] - b[1]) for s in samples for b in s.boxes])
        return background_std, objects.mean(), box_area

    plain, noise, texture = (stats(background=b) for b in ("plain", "noise", "texture"))
    assert plain[0] < 1 < noise[0] and noise[0] > 15 and texture[0] > 25
    bright, dark = stats(palette="bright"), stats(palette="dark")
    assert dark[1] < 80 < 120 < bright[1]
    explicit = stats(palette=["#000000"], color_jitter=0)
    assert explicit[1] == 0
    big = stats(object_size=(40, 56))
    assert big[2] > 2 * plain[2]
    labels = np.concatenate([render_image(SynthConfig(classes=["star", "cross"]), "val", i).labels
                             for i in range(10)])
    assert set(labels.tolist()) == {0, 1}


@pytest.mark.parametrize(
    ("knobs", "field"),
    [
        (dict(classes=["circle", "blob"]), "classes"),
        (dict(background="fog"), "background"),
        (dict(palette="neon"), "palette"),
        (dict(palette=["#12345"]), "palette"),
        (dict(object_size=(40, 20)), "object_size"),
        (dict(image_size=8), "image_size"),
        (dict(seed=-1), "seed"),
    ],
)
def test_bad_config_names_the_field(knobs, field):
    with pytest.raises(ValueError, match=field):
        SynthConfig(**knobs)


def test_cli_writes_the_data_set_and_refuses_to_overwrite_silently(tmp_path, capsys):
    out = tmp_path / "cli"
    args = ["synth", str(out), "--seed", "5", "--num-train", "4", "--num-val", "2", "--size", "80x64",
            "--domain", "target", "--classes", "circle", "star"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "train: 4 images" in printed and "val: 2 images" in printed
    first = _files(out)
    assert cv2.imread(str(out / "images" / "train" / "000001.png")).shape == (64, 80, 3)
    assert json.loads((out / "synth.json").read_text())["background"] == "texture"
    assert yaml.safe_load((out / "detect.yaml").read_text())["classes"] == ["circle", "star"]

    assert main(args) == 2
    assert "overwrite" in capsys.readouterr().err
    assert main([*args, "--overwrite"]) == 0
    assert _files(out) == first

    assert main(["synth", str(tmp_path / "bad"), "--classes", "blob"]) == 2
    assert "blob" in capsys.readouterr().err
