"""detseg data check: no problem on clean data, each planted problem reported on a broken copy."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from PIL import Image

from detseg.cli import main
from detseg.data.check import check_dataset, format_report


@pytest.fixture()
def toy_copy(shared_data, tmp_path):
    toy = shared_data / "voc_toy"
    shutil.copytree(toy / "gts_vocpascal_format", tmp_path / "xml")
    shutil.copytree(toy / "images", tmp_path / "images")
    (tmp_path / "spec.yaml").write_text(
        "task: detect\nformat: voc\nclasses: [cat]\nval: {images: images, annotations: xml}\n"
    )
    return tmp_path


def _edit(path, old, new):
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))


def test_clean_voc_copy_passes(toy_copy, capsys):
    assert main(["data", "check", str(toy_copy / "spec.yaml")]) == 0
    out = capsys.readouterr().out
    assert "[val] 10 images" in out and "objects: 12 (cat 12)" in out and "OK: no problems found" in out


def test_each_planted_detection_problem_is_reported(toy_copy, capsys):
    images, xml = toy_copy / "images", toy_copy / "xml"
    (images / "2007_000549.jpg").unlink()
    (images / "2007_003525.jpg").write_bytes((images / "2007_003525.jpg").read_bytes()[:300])  # truncated
    _edit(xml / "2007_004856.xml", "<xmax>335</xmax>", "<xmax>900</xmax>")  # image is 368 wide
    _edit(xml / "2007_005460.xml", "<xmin>40</xmin>", "<xmin>600</xmin>")  # xmax < xmin
    _edit(xml / "2007_005688.xml", "<name>cat</name>", "<name>dog</name>")
    (xml / "2007_009346.xml").write_text((xml / "2007_009346.xml").read_text()[:200])  # cut short
    _edit(xml / "2008_006599.xml", "<width>300</width>", "<width>301</width>")
    report = check_dataset(toy_copy / "spec.yaml")
    found = [str(p) for p in report.problems]
    expected = [
        ("2007_000549.jpg", "image file not found"),
        ("2007_003525.jpg", "unreadable image"),
        ("2007_004856.xml", "outside the 368x500 image"),
        ("2007_005460.xml: object 1", "degenerate box"),
        ("2007_005688.xml: object 1", "unknown class 'dog'"),
        ("2007_009346.xml: line", "malformed XML"),
        ("2008_006599.jpg", "image is 300x283 but its annotation says 301x283"),
    ]
    for where, what in expected:
        assert any(where in p and what in p for p in found), (where, what, found)
    assert len(found) == len(expected)
    assert main(["data", "check", str(toy_copy / "spec.yaml")]) == 1
    assert "FAILED: 7 problems" in capsys.readouterr().out


def test_planted_coco_and_mask_problems(tmp_path):
    rng = np.random.default_rng(0)
    for sub in ("img", "msk"):
        (tmp_path / sub).mkdir()
    for stem in "abcd":
        Image.fromarray(rng.integers(0, 255, (12, 16, 3), dtype=np.uint8)).save(
            tmp_path / "img" / f"{stem}.png"
        )
    good = np.zeros((12, 16), np.uint8)
    good[2:6, 3:9] = 1
    Image.fromarray(good).save(tmp_path / "msk" / "a.png")
    Image.fromarray(np.zeros((12, 15), np.uint8)).save(tmp_path / "msk" / "b.png")  # wrong size
    bad_values = good.copy()
    bad_values[0, 0] = 9
    Image.fromarray(bad_values).save(tmp_path / "msk" / "c.png")  # value 9 is no class
    # d.png has no mask at all
    (tmp_path / "seg.yaml").write_text(
        "task: segment\nformat: masks\nclasses: [background, thing]\ntrain: {images: img, masks: msk}\n"
    )
    report = check_dataset(tmp_path / "seg.yaml")
    found = [str(p) for p in report.problems]
    assert any("b.png: mask is 15x12 but the image b.png is 16x12" in p for p in found)
    assert any("c.png: unexpected mask values 9" in p for p in found)
    assert any("d.png: mask file not found" in p for p in found)
    assert len(found) == 3
    assert report.splits[0].pixels == {"background": 192 - 24, "thing": 24}  # only a.png is counted

    images = [{"id": i, "file_name": f"{s}.png", "width": 16, "height": 12} for i, s in enumerate("abcd", 1)]
    annotations = [
        {"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 1, 4, 4]},
        {"id": 2, "image_id": 2, "category_id": 5, "bbox": [1, 1, 4, 4]},  # unknown category id
        {"id": 3, "image_id": 3, "category_id": 1, "bbox": [6, 1, 0, 4]},  # x2 == x1
        {"id": 4, "image_id": 4, "category_id": 2, "bbox": [1, 1, 4, 4]},  # class not in the spec
    ]
    categories = [{"id": 1, "name": "thing"}, {"id": 2, "name": "other"}]
    (tmp_path / "gt.json").write_text(
        json.dumps({"images": images, "annotations": annotations, "categories": categories})
    )
    (tmp_path / "det.yaml").write_text(
        "format: coco\nclasses: [thing]\ntrain: {images: img, annotations: gt.json}\n"
    )
    report = check_dataset(tmp_path / "det.yaml")
    found = [str(p) for p in report.problems]
    assert any("gt.json: annotation id 2: unknown category id 5" in p for p in found)
    assert any("gt.json: annotation id 3: degenerate box" in p for p in found)
    assert any("annotation id 4: unknown class 'other'" in p for p in found)
    assert len(found) == 3
    assert "FAILED: 3 problems" in format_report(report)


def test_synthetic_data_checks_clean(tmp_path, capsys):
    from detseg.data.synthetic import SynthConfig, generate

    generate(SynthConfig(seed=3, image_size=(48, 64), num_train=4, num_val=2), tmp_path / "synth")
    for spec in ("detect.yaml", "segment.yaml"):
        assert main(["data", "check", str(tmp_path / "synth" / spec)]) == 0
    out = capsys.readouterr().out
    assert out.count("OK: no problems found") == 2 and "[train] 4 images" in out
    assert (
        main(
            [
                "data",
                "show",
                str(tmp_path / "synth" / "detect.yaml"),
                "--out",
                str(tmp_path / "show"),
                "--num",
                "2",
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "data",
                "show",
                str(tmp_path / "synth" / "segment.yaml"),
                "--out",
                str(tmp_path / "show"),
                "--num",
                "2",
            ]
        )
        == 0
    )
    drawn = sorted(p.name for p in (tmp_path / "show").glob("val_*.png"))
    assert len(drawn) == 2  # same file names for both tasks: the second run overwrote the first
    assert (tmp_path / "show" / "contact_sheet.png").is_file()
    with Image.open(tmp_path / "show" / drawn[0]) as im:
        # 64 x 48 enlarged 11 times (shorter side >= 512), a legend of the class colours below.
        assert im.size[0] == 64 * 11 and im.size[1] > 48 * 11 and im.mode == "RGB"


def test_coco_segmentation_problems_are_listed(tmp_path):
    from detseg.data.synthetic import SynthConfig, generate

    generate(SynthConfig(seed=4, image_size=(48, 48), num_train=3, num_val=1), tmp_path)
    (tmp_path / "seg_coco.yaml").write_text(
        "task: segment\nformat: coco\nclasses: [background, circle, square, triangle]\n"
        "train: {images: images/train, annotations: annotations/train.json}\n"
    )
    assert check_dataset(tmp_path / "seg_coco.yaml").ok
    first = sorted((tmp_path / "images" / "train").glob("*.png"))[0]
    first.unlink()
    report = check_dataset(tmp_path / "seg_coco.yaml")
    assert [p.what for p in report.problems] == ["image file not found"]
    assert report.splits[0].images == 2 and sum(report.splits[0].pixels.values()) == 2 * 48 * 48
    data = json.loads((tmp_path / "annotations" / "train.json").read_text())
    data["categories"].append({"id": 9, "name": "blob"})
    data["annotations"][-1]["category_id"] = 9  # on the last image; the first one is missing
    (tmp_path / "annotations" / "train.json").write_text(json.dumps(data))
    found = [str(p) for p in check_dataset(tmp_path / "seg_coco.yaml").problems]
    last = data["annotations"][-1]["id"]
    assert any(f"annotation id {last}: unknown class 'blob'" in p for p in found) and len(found) == 2
