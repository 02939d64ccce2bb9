"""The HTML evaluation reports, rendered in headless Chromium: no JavaScript error, every image loads,
the figures on the page equal the JSON's; galleries, missing images and no detections at all."""

from __future__ import annotations

import json
import math
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from detseg.cli import main

# Injected into a copy of the page: collect errors from the start, then at load report every image's
# natural width, every data-key figure, and what sorting the first sortable table by a column gives.
PROBE_HEAD = """<script>
window.__errors = [];
window.addEventListener('error', function (e) { window.__errors.push(String(e.message || e.type)); }, true);
</script>"""
PROBE_TAIL = """<script>
window.addEventListener('load', function () {
  var out = {errors: window.__errors, images: [], figures: [], sorted: null};
  document.querySelectorAll('img').forEach(function (im) {
    out.images.push({src: im.getAttribute('src'), width: im.naturalWidth, complete: im.complete});
  });
  document.querySelectorAll('[data-key]').forEach(function (el) {
    if (!el.dataset.key) return;
    out.figures.push({key: el.dataset.key, value: el.dataset.value, text: el.textContent});
  });
  var table = document.querySelector('table.sortable');
  if (table && table.tHead.rows[0].cells.length > 3) {
    table.tHead.rows[0].cells[3].click();
    table.tHead.rows[0].cells[3].click();
    out.sorted = Array.prototype.map.call(table.tBodies[0].rows,
                                          function (r) { return r.cells[3].dataset.v; });
  }
  var pre = document.createElement('pre');
  pre.id = 'probe';
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
});
</script>"""


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        path = shutil.which(name)
        if path:
            return path
    pytest.skip("no Chromium on this machine (.ci/run installs the Debian package 'chromium')")


def render(index: Path, tmp_path: Path) -> dict:
    """Load ``index`` (with the probe) in headless Chromium, images loading lazily included."""
    page = index.read_text().replace('loading="lazy"', 'loading="eager"')
    page = page.replace("<head>", "<head>" + PROBE_HEAD, 1).replace("</body>", PROBE_TAIL + "</body>", 1)
    probe = index.with_name("probe.html")
    probe.write_text(page)
    flags = [
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        f"--user-data-dir={tmp_path / 'chromium-profile'}", "--virtual-time-budget=10000",
        "--window-size=1280,2000", "--dump-dom",
    ]  # fmt: skip
    done = subprocess.run([chromium(), *flags, probe.as_uri()], capture_output=True, text=True, timeout=120)
    probe.unlink()
    found = re.search(r'<pre id="probe">(.*?)</pre>', done.stdout, re.S)
    assert found, f"the page did not load: {done.stderr[-2000:]}"
    import html

    return json.loads(html.unescape(found.group(1)))


def lookup(data: dict, key: list[str]):
    for part in key:
        data = data[part]
    return data


def check_page(index: Path, metrics: dict, tmp_path: Path) -> dict:
    """The checks every report passes; returns the probe's findings."""
    page = index.read_text()
    assert not re.search(r"""(src|href)\s*=\s*["'](https?:)?//""", page), "a network reference"
    assert "@import" not in page and "url(" not in page
    for src in re.findall(r'<img src="([^"]+)"', page):
        assert (index.parent / src).is_file(), src
    seen = render(index, tmp_path)
    assert seen["errors"] == []
    bad = [im for im in seen["images"] if not im["width"]]
    assert not bad, f"images that did not load: {bad}"
    assert len(seen["images"]) == page.count("<img ")
    assert seen["figures"]
    for fig in seen["figures"]:
        expected = lookup(metrics, json.loads(fig["key"]))
        assert float(fig["value"]) == expected, fig
        shown = re.search(r"-?\d+\.\d+|-?\d+", fig["text"]).group(0)
        decimals = len(shown.split(".")[1]) if "." in shown else 0
        scale = 100 if "AP" in fig["text"] and "dAP" in fig["key"] else 1
        assert float(shown) == pytest.approx(expected * scale, abs=0.51 * 10**-decimals), fig
    return seen


def test_voc_report_renders_in_chromium(shared_data, tmp_path, capsys):
    toy = shared_data / "voc_toy"
    out, metrics_path = tmp_path / "report", tmp_path / "metrics.json"
    args = [
        "eval",
        "det",
        "--gt",
        str(toy / "gts_vocpascal_format"),
        "--dt",
        str(toy / "dets_classname_abs_xyx2y2"),
    ]
    args += [
        "--metric",
        "voc12",
        "--images",
        str(toy / "images"),
        "--report",
        str(out),
        "--json",
        str(metrics_path),
    ]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert f"wrote {out / 'index.html'}" in printed and "not found" not in printed
    metrics = json.loads(metrics_path.read_text())
    assert metrics["mAP"] == pytest.approx(0.8958, abs=5e-5)  # the published all-point AP at IoU 0.5
    assert json.loads((out / "metrics.json").read_text()) == metrics
    page = (out / "index.html").read_text()
    for kind in ("classification", "localization", "both", "duplicate", "background", "missed"):
        assert kind in page
    # The toy at IoU 0.5: 11 of 12 cats found, one false alarm (0.85 on 2007_000733, a picture without a
    # cat), one cat missed.
    assert metrics["tide"]["counts"] == {
        "classification": 0, "localization": 0, "both": 0, "duplicate": 0, "background": 1, "missed": 1,
    }  # fmt: skip
    assert "2007_000733.jpg" in page
    seen = check_page(out / "index.html", metrics, tmp_path)
    keys = {tuple(json.loads(f["key"])) for f in seen["figures"]}
    assert (
        ("mAP",) in keys
        and ("best_f1", "all classes", "threshold") in keys
        and ("tide", "dAP", "missed") in keys
    )
    gallery = [im for im in seen["images"] if im["src"].endswith(".jpg")]
    assert len(gallery) >= 3  # the worst images, the false positive, the missed cat


def test_coco_report_sorts_and_says_galleries_need_images(shared_data, tmp_path):
    d = shared_data / "coco_eval" / "faster_coco_eval_mini"
    out, metrics_path = tmp_path / "report", tmp_path / "m.json"
    args = ["eval", "det", "--gt", str(d / "gt_dataset.json"), "--dt", str(d / "dt_dataset.json")]
    assert main([*args, "--report", str(out), "--json", str(metrics_path)]) == 0
    metrics = json.loads(metrics_path.read_text())
    page = (out / "index.html").read_text()
    assert "--images DIR" in page
    seen = check_page(out / "index.html", metrics, tmp_path)
    assert ("AP",) in {tuple(json.loads(f["key"])) for f in seen["figures"]}
    # Clicking the AP column twice sorts the per-class table by AP, descending (text rows last).
    values = [float(v) if v else -math.inf for v in seen["sorted"]]
    assert len(values) == 5 and values == sorted(values, reverse=True)


def test_missing_image_is_named_and_counted(shared_data, tmp_path, capsys):
    toy = shared_data / "voc_toy"
    images = tmp_path / "images"
    shutil.copytree(toy / "images", images)
    (images / "2007_000733.jpg").unlink()  # the image with the false alarm
    out = tmp_path / "report"
    args = [
        "eval",
        "det",
        "--gt",
        str(toy / "gts_vocpascal_format"),
        "--dt",
        str(toy / "dets_classname_abs_xyx2y2"),
    ]
    assert main([*args, "--images", str(images), "--report", str(out)]) == 0
    assert "1 image(s) not found" in capsys.readouterr().out
    page = (out / "index.html").read_text()
    assert page.count("image not found: 2007_000733.jpg") == 2  # whole image and false-positive crop
    for src in re.findall(r'<img src="([^"]+)"', page):
        assert (out / src).is_file()


def test_no_detections_at_all(shared_data, tmp_path, capsys):
    d = shared_data / "coco_eval" / "faster_coco_eval_mini"
    empty = tmp_path / "dt.json"
    empty.write_text("[]")
    out, metrics_path = tmp_path / "report", tmp_path / "m.json"
    args = ["eval", "det", "--gt", str(d / "gt_dataset.json"), "--dt", str(empty), "--report", str(out)]
    assert main([*args, "--json", str(metrics_path)]) == 0
    assert "no detections at all" in capsys.readouterr().out
    page = (out / "index.html").read_text()
    assert "No detections at all" in page
    metrics = json.loads(metrics_path.read_text())
    gt = json.loads((d / "gt_dataset.json").read_text())
    objects = sum(not a.get("iscrowd", 0) for a in gt["annotations"])
    assert metrics["AP"] == 0 and metrics["tide"]["counts"]["missed"] == objects > 0
    check_page(out / "index.html", metrics, tmp_path)


def test_segmentation_report_on_membrane(shared_data, tmp_path, capsys):
    """Otsu's threshold as the prediction on the membrane val slices; the worst images by mIoU."""
    import cv2
    import numpy as np

    from detseg.metrics.segmentation import SegmentationMetrics

    root = shared_data / "membrane"
    spec = tmp_path / "membrane.yaml"
    spec.write_text(
        f"task: segment\nformat: masks\nroot: {root}\nclasses: [membrane, cell]\nvalues: {{0: 0, 255: 1}}\n"
        'val:\n  images: train/image\n  masks: train/label\n  list: ["18", "19", "20", "21"]\n'
    )
    pred = tmp_path / "pred"
    pred.mkdir()
    per_image = {}
    for stem in ("18", "19", "20", "21"):
        grey = cv2.imread(str(root / "train" / "image" / f"{stem}.png"), cv2.IMREAD_GRAYSCALE)
        threshold, _ = cv2.threshold(grey, 0, 255, cv2.THRESH_OTSU)
        p = (grey > threshold).astype(np.uint8)
        cv2.imwrite(str(pred / f"{stem}.png"), p)
        truth = (
            cv2.imread(str(root / "train" / "label" / f"{stem}.png"), cv2.IMREAD_GRAYSCALE) > 127
        ).astype(int)
        m = SegmentationMetrics(2)
        m.update(p.astype(np.int64), truth)
        per_image[stem] = m.compute()["miou"]
    out, metrics_path = tmp_path / "report", tmp_path / "m.json"
    args = [
        "eval",
        "seg",
        "--gt",
        str(spec),
        "--pred",
        str(pred),
        "--report",
        str(out),
        "--json",
        str(metrics_path),
    ]
    assert main(args) == 0
    assert "not found" not in capsys.readouterr().out
    metrics = json.loads(metrics_path.read_text())
    page = (out / "index.html").read_text()
    # The worst images in order of their mIoU, each with its figure.
    worst = sorted(per_image, key=per_image.get)
    shown = re.findall(r'<span class="file">([^<]+)</span>', page)
    assert shown == worst
    for stem in worst:
        assert f"mIoU {per_image[stem]:.3f}" in page
    seen = check_page(out / "index.html", metrics, tmp_path)
    assert {tuple(json.loads(f["key"])) for f in seen["figures"]} >= {
        ("miou",),
        ("mdice",),
        ("pixel_accuracy",),
    }
    assert len(seen["images"]) == 1 + 4  # the confusion matrix and four side-by-side rows


def test_segmentation_report_on_label_folders_names_a_missing_image(tmp_path, capsys):
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    gt_dir, pred_dir, images = tmp_path / "gt", tmp_path / "pred", tmp_path / "images"
    for d in (gt_dir, pred_dir, images):
        d.mkdir()
    for i, noise in enumerate((0.1, 0.5, 0.3)):  # im1 is the worst, then im2, im0
        t = np.repeat(np.arange(3), 8)[None, :].repeat(12, 0).astype(np.uint8)
        p = np.where(rng.random(t.shape) < noise, (t + 1) % 3, t).astype(np.uint8)
        Image.fromarray(t).save(gt_dir / f"im{i}.png")
        Image.fromarray(p).save(pred_dir / f"im{i}.png")
        if i != 1:
            Image.fromarray(rng.integers(0, 255, (12, 24, 3), dtype=np.uint8)).save(images / f"im{i}.jpg")
    out = tmp_path / "report"
    args = ["eval", "seg", "--gt", str(gt_dir), "--pred", str(pred_dir), "--images", str(images)]
    assert main([*args, "--report", str(out)]) == 0
    assert "1 image(s) not found" in capsys.readouterr().out
    page = (out / "index.html").read_text()
    assert re.findall(r'<span class="file">([^<]+)</span>', page) == ["im1", "im2", "im0"]
    assert page.count("image not found: im1") == 1
    for src in re.findall(r'<img src="([^"]+)"', page):
        assert (out / src).is_file()
