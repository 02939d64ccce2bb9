"""``--box-convention voc|coco``: whole-pixel boxes (+1) or continuous ones, for any input.

Padilla's 7-image example (rafaelpadilla/Object-Detection-Metrics, MIT licence, groundtruths/ and
detections/ at commit dcb285e7; README and results/results.txt): 15 'person' objects, 24 detections,
text files ``class [score] left top width height``. Published at IoU 0.3 (its ``pascalvoc.py -t 0.3``,
which counts pixels as the VOC devkit: width = x2 - x1 + 1): AP 24.57 % all-point (results.txt;
the README's hand computation rounds to 24.56 %) and 26.84 % 11-point.
"""

from __future__ import annotations

import json

import pytest

from detseg.cli import main
from detseg.metrics.evaluate import evaluate_detection_files, load_detection_inputs

PADILLA_GT = {
    "00001": ["25 16 38 56", "129 123 41 62"],
    "00002": ["123 11 43 55", "38 132 59 45"],
    "00003": ["16 14 35 48", "123 30 49 44", "99 139 47 47"],
    "00004": ["53 42 40 52", "154 43 31 34"],
    "00005": ["59 31 44 51", "48 128 34 52"],
    "00006": ["36 89 52 76", "62 58 44 67"],
    "00007": ["28 31 55 63", "58 67 50 58"],
}
PADILLA_DT = {
    "00001": [".88 5 67 31 48", ".70 119 111 40 67", ".80 124 9 49 67"],
    "00002": [".71 64 111 64 58", ".54 26 140 60 47", ".74 19 18 43 35"],
    "00003": [
        ".18 109 15 77 39",
        ".67 86 63 46 45",
        ".38 160 62 36 53",
        ".91 105 131 47 47",
        ".44 18 148 40 44",
    ],
    "00004": [".35 83 28 28 26", ".78 28 68 42 67", ".45 87 89 25 39", ".14 10 155 60 26"],
    "00005": [".62 50 38 28 46", ".44 95 11 53 28", ".95 29 131 72 29", ".23 29 163 72 29"],
    "00006": [".45 43 48 74 38", ".84 17 155 29 35", ".43 95 110 25 42"],
    "00007": [".48 16 20 101 88", ".95 33 116 37 49"],
}


@pytest.fixture
def padilla(tmp_path):
    gt, dt = tmp_path / "groundtruths", tmp_path / "detections"
    gt.mkdir()
    dt.mkdir()
    for stem, rows in PADILLA_GT.items():
        (gt / f"{stem}.txt").write_text("".join(f"person {r}\n" for r in rows))
    for stem, rows in PADILLA_DT.items():
        (dt / f"{stem}.txt").write_text("".join(f"person {r}\n" for r in rows))
    return gt, dt


@pytest.mark.parametrize(("metric", "published"), [("voc12", 0.2457), ("voc07", 0.2684)])
def test_voc_convention_reproduces_padilla(padilla, metric, published):
    gt, dt = padilla
    out = evaluate_detection_files(gt, dt, metric=metric, iou=0.3, box_format="xywh", box_convention="voc")
    assert out["json"]["mAP"] == pytest.approx(published, abs=5e-5)
    # The README's curve: 7 of 15 found, the last true positive (G, 0.18) at precision 7/23.
    if metric == "voc12":
        exact = 1 / 15 + (1 / 15) * (2 / 3) + (4 / 15) * (3 / 7) + (1 / 15) * (7 / 23)
        assert out["json"]["mAP"] == pytest.approx(exact, abs=1e-12)


def test_coco_convention_differs_on_the_same_files(padilla):
    gt, dt = padilla
    voc = evaluate_detection_files(gt, dt, metric="voc12", iou=0.3, box_format="xywh", box_convention="voc")
    coco = evaluate_detection_files(gt, dt, metric="voc12", iou=0.3, box_format="xywh")
    assert coco["json"]["mAP"] != pytest.approx(voc["json"]["mAP"], abs=1e-4)
    explicit = evaluate_detection_files(
        gt, dt, metric="voc12", iou=0.3, box_format="xywh", box_convention="coco"
    )
    assert explicit["json"]["mAP"] == coco["json"]["mAP"]  # text files: coco is the default


def test_boxes_are_shifted_into_the_continuous_frame(padilla, shared_data):
    gt, dt = padilla
    g, d = load_detection_inputs(gt, dt, "xywh", "voc")
    a = g["annotations"][0]
    assert a["bbox"] == [24.0, 15.0, 39.0, 57.0] and a["area"] == 39.0 * 57.0
    assert d[0]["bbox"][2:] == [32.0, 49.0]
    # VOC XML is whole-pixel by default; reading it continuously undoes the -1 on x1, y1.
    toy = shared_data / "voc_toy"
    xml, txt = toy / "gts_vocpascal_format", toy / "dets_classname_abs_xyx2y2"
    g_default, d_default = load_detection_inputs(xml, txt)
    g_voc, d_voc = load_detection_inputs(xml, txt, box_convention="voc")
    assert g_voc == g_default and d_voc == d_default
    g_coco, d_coco = load_detection_inputs(xml, txt, box_convention="coco")
    b0, b1 = g_default["annotations"][0]["bbox"], g_coco["annotations"][0]["bbox"]
    assert b1 == [b0[0] + 1, b0[1] + 1, b0[2] - 1, b0[3] - 1]
    assert d_coco[0]["bbox"][0] == d_default[0]["bbox"][0] + 1


def test_cli_box_convention(padilla, tmp_path, capsys):
    gt, dt = padilla
    out = tmp_path / "m.json"
    args = ["eval", "det", "--gt", str(gt), "--dt", str(dt), "--metric", "voc12", "--iou", "0.3"]
    args += ["--box-format", "xywh", "--box-convention", "voc", "--json", str(out)]
    assert main(args) == 0
    assert json.loads(out.read_text())["mAP"] == pytest.approx(0.2457, abs=5e-5)
    assert "24.57%" in capsys.readouterr().out
