"""torchvision's pre-trained models used as is, by name: ``detseg predict --model --pretrained``,
``detseg.load(...).predict``, ``detseg eval det|seg --model --pretrained [--class-map]``. The weights are
torchvision's own builders' (seeded, random), saved under the real file name in a temporary torch.hub
cache; the reference is torchvision's model run on the same images."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.models import detection as tvd
from torchvision.models import segmentation as tvs

import detseg
from detseg.cli import main
from detseg.viz.draw import upscale, upscale_factor

COCO = tvd.SSDLite320_MobileNet_V3_Large_Weights.COCO_V1
VOC = tvs.LRASPP_MobileNet_V3_Large_Weights.COCO_WITH_VOC_LABELS_V1
MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


@pytest.fixture
def hub(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    folder = Path(torch.hub.get_dir()) / "checkpoints"
    folder.mkdir(parents=True)
    return folder


@pytest.fixture
def ssdlite(hub) -> torch.nn.Module:
    """torchvision's SSDLite with COCO's 91 outputs (seeded; class scores made confident), cached as the
    COCO_V1 file."""
    torch.manual_seed(0)
    model = tvd.ssdlite320_mobilenet_v3_large(weights=None, weights_backbone=None)
    for m in model.modules():  # batch-norm statistics from random images, as a trained network has them
        if isinstance(m, torch.nn.BatchNorm2d):
            m.momentum = None
    model.train()
    generator = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for _ in range(2):
            model.head(list(model.backbone(torch.rand(2, 3, 320, 320, generator=generator) * 2 - 1).values()))
        for block in model.head.classification_head.module_list:
            block[1].weight.mul_(5.0)
            block[1].bias.copy_(torch.randn(block[1].bias.shape, generator=generator))
    model.eval()
    torch.save(model.state_dict(), hub / os.path.basename(COCO.url))
    return model


def _lraspp(hub: Path) -> torch.nn.Module:
    """torchvision's LR-ASPP (21 VOC classes, seeded, batch-norm statistics from random images), cached
    as its COCO_WITH_VOC_LABELS_V1 file."""
    torch.manual_seed(0)
    model = tvs.lraspp_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=21)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.momentum = None
    model.train()
    with torch.no_grad():
        model((torch.rand(2, 3, 96, 96, generator=torch.Generator().manual_seed(2)) - MEAN) / STD)
    torch.save(model.state_dict(), hub / os.path.basename(VOC.url))
    return model.eval()


def _images(folder: Path, sizes=((120, 160), (96, 128))) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    paths = []
    for i, (h, w) in enumerate(sizes):
        array = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        array[h // 4 : h // 2, w // 4 : w // 2] = (200, 40, 40)  # some structure
        paths.append(folder / f"img{i}.png")
        Image.fromarray(array).save(paths[-1])
    return paths


def _tensor(path: Path) -> torch.Tensor:
    return torch.from_numpy(np.array(Image.open(path).convert("RGB"))).permute(2, 0, 1).float() / 255


def test_predict_cli_gives_torchvision_detections_with_coco_ids_and_names(ssdlite, tmp_path, capsys):
    paths = _images(tmp_path / "images")
    out = tmp_path / "out"
    code = main(["predict", "--model", "ssdlite320_mobilenet_v3_large", "--pretrained", "COCO_V1",
                 "--source", str(tmp_path / "images"), "--out", str(out), "--score-threshold", "0.2"])
    assert code == 0, capsys.readouterr().err
    results = json.loads((out / "results.json").read_text())
    for image_id, path in enumerate(paths, start=1):
        with torch.inference_mode():
            ref = ssdlite([_tensor(path)])[0]
        mine = [r for r in results if r["image_id"] == image_id]
        assert len(mine) == len(ref["boxes"]) > 0
        # torchvision's labels are COCO's category ids (1..90): results.json keeps them
        assert [r["category_id"] for r in mine] == ref["labels"].tolist()
        xywh = torch.tensor([r["bbox"] for r in mine])
        ref_xywh = torch.cat([ref["boxes"][:, :2], ref["boxes"][:, 2:] - ref["boxes"][:, :2]], 1)
        torch.testing.assert_close(xywh, ref_xywh, atol=0.011, rtol=0)  # written with 2 decimals
        # the text files name COCO's classes
        kept = ref["scores"] >= 0.2
        names = [COCO.meta["categories"][i] for i in ref["labels"][kept].tolist()]
        text = (out / "labels" / f"{path.stem}.txt").read_text().splitlines()
        assert len(text) == len(names)
        assert all(line.startswith(name + " ") for line, name in zip(text, names, strict=True))
    categories = json.loads((out / "images.json").read_text())["categories"]
    assert {"id": 1, "name": "person"} in categories and {"id": 90, "name": "toothbrush"} in categories


def test_api_load_predict_plot_to_coco(ssdlite, hub, tmp_path):
    paths = _images(tmp_path / "images")
    model = detseg.load("ssdlite320_mobilenet_v3_large", pretrained="COCO_V1")
    assert model.task == "detect" and model.names[0] == "person" and len(model.names) == 90
    results = model.predict([str(p) for p in paths], score_threshold=0.0)
    with torch.inference_mode():
        ref = ssdlite([_tensor(paths[0])])[0]
    first = results[0]
    torch.testing.assert_close(first.boxes, ref["boxes"], atol=1e-3, rtol=0)
    assert first.label_names == [COCO.meta["categories"][i] for i in ref["labels"].tolist()]
    coco = first.to_coco(image_id=7)
    assert [d["category_id"] for d in coco] == ref["labels"].tolist() and coco[0]["image_id"] == 7
    drawn = first.plot(tmp_path / "drawn.png")
    factor = upscale_factor(120, 160)  # the picture detseg predict draws: >= 512 px, a legend below
    assert drawn.shape[1] == 160 * factor and drawn.shape[0] > 120 * factor
    assert (tmp_path / "drawn.png").is_file()
    assert not np.array_equal(drawn, upscale(first.image, factor)[: 120 * factor])  # boxes were drawn
    # A segmenter: VOC's 21 names, masks of the image's size, torchvision's argmax.
    lraspp = _lraspp(hub)
    seg = detseg.load("lraspp_mobilenet_v3_large", pretrained="COCO_WITH_VOC_LABELS_V1")
    assert seg.names == VOC.meta["categories"]
    masks = seg.predict(paths[1])[0].masks
    with torch.inference_mode():
        expected = lraspp((_tensor(paths[1])[None] - MEAN) / STD)["out"][0].argmax(0)
    assert masks.shape == (96, 128) and torch.equal(masks, expected)


def test_a_bare_state_dict_gets_its_class_count_from_the_head_and_class_names(hub, tmp_path):
    torch.manual_seed(0)
    theirs = tvd.ssdlite320_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=4).eval()
    path = tmp_path / "my_detector.pth"
    torch.save(theirs.state_dict(), path)
    model = detseg.load("ssdlite320_mobilenet_v3_large", pretrained=str(path))
    assert model.names == ["class_0", "class_1", "class_2"]  # 4 outputs = 3 classes + background
    image = _tensor(_images(tmp_path / "images")[0])
    with torch.inference_mode():
        ref = theirs([image])[0]
    got = model.predict([image], score_threshold=0.0)[0]
    torch.testing.assert_close(got.boxes, ref["boxes"], atol=1e-3, rtol=0)
    assert torch.equal(got.labels, ref["labels"] - 1)


def _coco_spec(folder: Path, paths: list[Path], boxes: list[list[tuple[str, list[float]]]], names: list[str]):
    """A COCO data set of ``paths`` with ``boxes[i] = [(class name, xyxy)]``, and its YAML spec."""
    categories = [{"id": i + 1, "name": n} for i, n in enumerate(names)]
    images, annotations = [], []
    for i, (path, objects) in enumerate(zip(paths, boxes, strict=True), start=1):
        h, w = np.asarray(Image.open(path)).shape[:2]
        images.append({"id": i, "file_name": path.name, "height": h, "width": w})
        for name, (x1, y1, x2, y2) in objects:
            annotations.append({"id": len(annotations) + 1, "image_id": i, "iscrowd": 0,
                                "category_id": names.index(name) + 1, "bbox": [x1, y1, x2 - x1, y2 - y1],
                                "area": (x2 - x1) * (y2 - y1)})
    (folder / "val.json").write_text(json.dumps({"images": images, "annotations": annotations,
                                                 "categories": categories}))
    spec = folder / "data.yaml"
    spec.write_text(f"task: detect\nformat: coco\nroot: .\nclasses: {json.dumps(names)}\n"
                    "val: {images: images, annotations: val.json}\n")
    return spec


def test_eval_det_as_is_maps_classes_and_leaves_unknown_ones_out(ssdlite, tmp_path, capsys):
    paths = _images(tmp_path / "images")
    categories = COCO.meta["categories"]
    # Ground truth = torchvision's own confident detections of two COCO classes (a known answer: AP 1),
    # one named as COCO names it, one under another name (--class-map), plus a class COCO does not have.
    refs = []
    with torch.inference_mode():
        for path in paths:
            refs.append(ssdlite([_tensor(path)])[0])
    confident = 0.6  # detections above it are the truth; the rest rank below every true one
    labels = torch.cat([r["labels"][r["scores"] >= confident] for r in refs])
    counts = torch.bincount(labels, minlength=91)
    top = torch.argsort(-counts)[:2].tolist()
    assert counts[top[1]] > 0
    named, renamed = categories[top[0]], categories[top[1]]
    data_names = [named, "my_thing", "unicorn"]
    boxes = []
    for r in refs:
        objects = [(named if int(lab) == top[0] else "my_thing", b.tolist())
                   for b, lab, s in zip(r["boxes"], r["labels"], r["scores"], strict=True)
                   if s >= confident and int(lab) in top]
        boxes.append(objects + [("unicorn", [1.0, 1.0, 30.0, 30.0])])
    spec = _coco_spec(tmp_path, paths, boxes, data_names)
    args = ["eval", "det", "--model", "ssdlite320_mobilenet_v3_large", "--pretrained", "COCO_V1",
            "--data", str(spec), "--json", str(tmp_path / "m.json"), "--class-map", f"my_thing={renamed}"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert f"classes matched to ssdlite320_mobilenet_v3_large's: {named}, my_thing={renamed}" in out
    assert "does not know, left out of the mean: unicorn" in out
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert metrics["stats"][0] == pytest.approx(1.0)  # AP: the unicorn's would-be 0 is not in the mean
    assert metrics["per_category"]["unicorn"]["num_gt"] == 0
    # A class map naming a class that is not there: one line, exit 2.
    assert main([*args[:-1], "my_thing=dragon"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "'dragon' is not a class of the model" in err[0]


def test_eval_seg_as_is_with_voc_names(hub, tmp_path, capsys):
    lraspp = _lraspp(hub)
    paths = _images(tmp_path / "images")
    (tmp_path / "masks").mkdir()
    voc = VOC.meta["categories"]
    seen = set()
    for path in paths:  # the truth: torchvision's argmax, written in the data's own class order
        with torch.inference_mode():
            pred = lraspp((_tensor(path)[None] - MEAN) / STD)["out"][0].argmax(0)
        seen |= set(pred.unique().tolist())
        Image.fromarray(pred.numpy().astype(np.uint8)).save(tmp_path / "masks" / path.name)
    names = ["background" if i == 0 else voc[i] for i in range(21)]
    spec = tmp_path / "seg.yaml"
    spec.write_text(f"task: segment\nformat: masks\nroot: .\nclasses: {json.dumps(names + ['unicorn'])}\n"
                    "val: {images: images, masks: masks}\n")
    assert main(["eval", "seg", "--model", "lraspp_mobilenet_v3_large", "--pretrained",
                 "COCO_WITH_VOC_LABELS_V1", "--data", str(spec), "--class-map", "background=__background__",
                 "--json", str(tmp_path / "s.json")]) == 0
    out = capsys.readouterr().out
    assert "left out of the mean: unicorn" in out
    metrics = json.loads((tmp_path / "s.json").read_text())
    assert metrics["miou"] == pytest.approx(1.0) and len(seen) > 1


def test_fine_tuning_from_coco_weights_keeps_all_but_the_class_layers(ssdlite, hub, tmp_path, capsys):
    from detseg.data.synthetic import SynthConfig, generate
    from detseg.engine.checkpoint import load_checkpoint

    root = generate(SynthConfig(seed=3, num_train=4, num_val=2, image_size=(64, 64)), tmp_path / "shapes")
    out = tmp_path / "run"
    # lr 0: the weights stay where they were loaded, so what came from the COCO file can be checked
    assert main(["train", "--model", "ssdlite320_mobilenet_v3_large", "--pretrained", "COCO_V1",
                 "--data", str(root / "detect.yaml"), "--iters", "1", "--batch-size", "2", "--lr", "0",
                 "--img-size", "64", "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert "loaded" in err and "mismatched" in err and "classification_head" in err  # reported
    best = load_checkpoint(out / "best.pt")
    meta, weights = best["meta"], best["model"]
    assert meta["classes"] == ["circle", "square", "triangle"]
    assert meta["pretrained_weights"]["classes"][0] == "person"  # the weights' classes travel along
    assert meta["model_kwargs"]["reduced_tail"] is True  # the COCO weights' architecture, rebuilt later
    coco = ssdlite.state_dict()
    kept = [k for k in coco if "classification_head" not in k and not k.endswith("num_batches_tracked")]
    assert all(torch.equal(weights[k], coco[k]) for k in kept if "running" not in k)
    head = "head.classification_head.module_list.0.1.weight"
    assert weights[head].shape[0] == 6 * 4 and coco[head].shape[0] == 6 * 91  # 3 classes + background
    # The run's checkpoint predicts with its own classes.
    _images(tmp_path / "images")
    assert main(["predict", "--weights", str(out / "best.pt"), "--source", str(tmp_path / "images"),
                 "--out", str(tmp_path / "pred")]) == 0


def test_transfer_study_starts_from_coco_weights_by_name(ssdlite, hub, tmp_path):
    from detseg.data.synthetic import SynthConfig, generate
    from detseg.engine.checkpoint import load_checkpoint
    from detseg.transfer.study import run_study

    root = generate(SynthConfig(seed=3, num_train=4, num_val=2, image_size=(64, 64)), tmp_path / "shapes")
    spec = root / "detect.yaml"
    report = run_study(spec, spec, "ssdlite320_mobilenet_v3_large", tmp_path / "study", epochs=1,
                       img_size=64, batch_size=2, lr=0.0, source_weights="COCO_V1", modes=("fine_tuning",),
                       add_class=None)
    source = load_checkpoint(report["source_model"]["checkpoint"])
    assert source["meta"]["classes"][0] == "person"  # the COCO model, not trained here
    head = "head.regression_head.module_list.0.1.weight"
    assert torch.equal(source["model"][head], ssdlite.state_dict()[head])
    assert report["source_model"]["target"] is None  # other classes: not scored as is
    (row,) = report["rows"]
    assert row["mode"] == "fine_tuning" and row["init"] == "source weights, new head"


def test_extend_from_a_coco_model_adds_the_data_classes_after_cocos(ssdlite, hub, tmp_path, capsys):
    from detseg.data.synthetic import SynthConfig, generate
    from detseg.engine.checkpoint import load_checkpoint

    config = SynthConfig(seed=3, num_train=4, num_val=2, image_size=(64, 64), classes=("circle", "square"))
    root = generate(config, tmp_path / "shapes")
    for path in [root / "detect.yaml", *(root / "annotations").glob("*.json")]:  # squares are persons now
        path.write_text(path.read_text().replace("square", "person"))
    out = tmp_path / "run"
    assert main(["train", "--model", "ssdlite320_mobilenet_v3_large", "--extend-from", "COCO_V1",
                 "--data", str(root / "detect.yaml"), "--iters", "1", "--batch-size", "2", "--lr", "0",
                 "--img-size", "64", "--out", str(out)]) == 0
    meta = load_checkpoint(out / "best.pt")["meta"]
    coco_names = COCO.meta["categories"][1:]
    assert meta["classes"] == [*coco_names, "circle"]  # "person" is COCO's person
    assert meta["category_ids"] == [*range(1, 92)]
    weights, coco = load_checkpoint(out / "best.pt")["model"], ssdlite.state_dict()
    key = "head.classification_head.module_list.0.1.weight"
    old, new = coco[key].reshape(6, 91, -1), weights[key].reshape(6, 92, -1)  # 6 boxes per place
    assert torch.equal(new[:, :91], old)  # background and COCO's 90 rows kept, the circle's row added
    assert "extended head" in capsys.readouterr().err
