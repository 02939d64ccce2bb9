"""Mosaic, mixup and copy-paste (detseg.data.mix): objects stay consistent with their boxes, masks and
labels, pasted objects occlude what is under them, draws repeat for a seed, bad settings are refused."""

from __future__ import annotations

import json

import pytest
import torch
from torchvision import tv_tensors

from detseg.cli import main
from detseg.data.dataset import build_dataset
from detseg.data.errors import DataError
from detseg.data.mix import MixDataset, copy_paste, mosaic
from detseg.data.synthetic import SynthConfig, generate


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    config = SynthConfig(seed=1, num_train=6, num_val=2, image_size=(48, 48), object_size=(12, 24))
    return generate(config, tmp_path_factory.mktemp("mix") / "shapes")


def assert_consistent(image, target):
    """Every box inside the image, as many labels as boxes, every mask inside its box and the box tight."""
    h, w = image.shape[-2:]
    boxes = target["boxes"]
    assert tuple(boxes.canvas_size) == (h, w)
    n = len(boxes)
    assert len(target["labels"]) == len(target["iscrowd"]) == len(target["area"]) == n
    assert (boxes[:, :2] >= 0).all() and (boxes[:, 2] <= w).all() and (boxes[:, 3] <= h).all()
    assert (boxes[:, 2:] > boxes[:, :2]).all()
    if "masks" in target:
        assert target["masks"].shape == (n, h, w)
        for box, mask in zip(boxes.tolist(), target["masks"], strict=True):
            ys, xs = torch.nonzero(mask, as_tuple=True)
            assert box == [xs.min().item(), ys.min().item(), xs.max().item() + 1, ys.max().item() + 1]


def sample(size, squares, labels=None, colour=0):
    """A sample of ``size`` (H, W) with one square object per (y0, x0, side), instance masks and a
    semantic mask (class = label + 1 on background 0)."""
    h, w = size
    masks = torch.zeros((len(squares), h, w), dtype=torch.uint8)
    for k, (y, x, s) in enumerate(squares):
        masks[k, y : y + s, x : x + s] = 1
    labels = torch.tensor(labels if labels is not None else [0] * len(squares), dtype=torch.int64)
    semantic = torch.zeros((h, w), dtype=torch.int64)
    for k in range(len(squares)):
        semantic[masks[k].bool()] = labels[k] + 1
    boxes = [[x, y, x + s, y + s] for y, x, s in squares]
    target = {
        "boxes": tv_tensors.BoundingBoxes(torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
                                          format="XYXY", canvas_size=size),  # fmt: skip
        "labels": labels,
        "iscrowd": torch.zeros(len(squares), dtype=torch.int64),
        "area": masks.flatten(1).sum(1).float(),
        "masks": tv_tensors.Mask(masks),
        "semantic": tv_tensors.Mask(semantic),
        "image_id": 1,
        "file_name": "x.png",
    }
    return tv_tensors.Image(torch.full((3, h, w), colour, dtype=torch.uint8)), target


def test_a_pasted_square_takes_exactly_the_overlap_from_the_square_under_it():
    image, target = sample((32, 32), [(4, 4, 8), (9, 9, 3)], labels=[0, 2], colour=10)
    source = sample((32, 32), [(8, 8, 8)], labels=[1], colour=200)
    out, pasted = copy_paste((image, target), source, torch.tensor([True]))
    assert_consistent(out, pasted)
    # The small square lay wholly under the pasted one: dropped with its label; the big one lost the overlap.
    assert pasted["labels"].tolist() == [0, 1]
    expected = target["masks"][0].clone()
    expected[8:12, 8:12] = 0
    assert torch.equal(pasted["masks"][0], expected)
    assert pasted["boxes"][0].tolist() == [4, 4, 12, 12]  # an L-shape: its box spans what is left
    assert pasted["boxes"][1].tolist() == [8, 8, 16, 16]
    assert (out[:, 8:16, 8:16] == 200).all() and (out[:, 4:8, 4:8] == 10).all()
    # The semantic mask: the pasted object's class where it lies, the rest unchanged.
    semantic = pasted["semantic"]
    assert (semantic[8:16, 8:16] == 2).all()
    outside = torch.ones_like(semantic, dtype=torch.bool)
    outside[8:16, 8:16] = False
    assert torch.equal(semantic[outside], target["semantic"][outside])


def test_semantic_copy_paste_pastes_connected_components_with_their_class():
    image, target = sample((32, 32), [(4, 4, 8)], labels=[0])
    source = sample((32, 32), [(8, 8, 8), (20, 20, 6)], labels=[1, 2], colour=99)
    seg_target = {k: v for k, v in target.items() if k in ("semantic", "image_id", "file_name")}
    seg_source = source[0], {"semantic": source[1]["semantic"]}
    out, pasted = copy_paste((image, seg_target), seg_source, torch.tensor([True, False]))
    assert (pasted["semantic"][8:16, 8:16] == 2).all()  # class 1 + 1 of the pasted square
    assert (pasted["semantic"][20:26, 20:26] == 0).all()  # the other component was not chosen
    assert (pasted["semantic"][4:8, 4:12] == 1).all() and (out[:, 8:16, 8:16] == 99).all()


def test_mosaic_places_four_samples_around_the_join_and_drops_objects_mostly_cut_off():
    samples = [sample((16, 16), [(0, 0, 16)], labels=[k], colour=40 * k) for k in range(4)]
    image, target = mosaic(samples, (32, 32), (16, 16))
    assert_consistent(image, target)
    assert target["labels"].tolist() == [0, 1, 2, 3]
    assert target["boxes"].tolist() == [[0, 0, 16, 16], [16, 0, 32, 16], [0, 16, 16, 32], [16, 16, 32, 32]]
    assert image[0, 0, 0] == 0 and image[0, 0, 31] == 40 and image[0, 31, 0] == 80 and image[0, 31, 31] == 120
    # Joined at (4, 4): the top-left sample shows 4 x 4 of its 32 x 32 (1.6 % < 10 %): dropped.
    image, target = mosaic(samples, (32, 32), (4, 4))
    assert target["labels"].tolist() == [1, 2, 3]
    # A wide sample leaves the canvas above it uncovered: grey image, void (ignore_index) mask.
    wide = [sample((8, 32), [(0, 24, 8)]) for _ in range(4)]
    image, target = mosaic(wide, (32, 32), (16, 16), ignore_index=255)
    assert (target["semantic"][:8] == 255).all() and (image[:, :8] == 114).all()
    assert (target["semantic"][8:16, 8:16] == 1).all()


@pytest.mark.parametrize("kind", ["mosaic", "mixup", "copy_paste", "all"])
def test_mixed_instance_samples_stay_consistent_and_repeat_for_a_seed(shapes, kind):
    dataset = build_dataset(shapes / "instance.yaml", "train")
    chances = {"mosaic": 0.0, "mixup": 0.0, "copy_paste": 0.0}
    chances.update(dict.fromkeys(chances, 1.0) if kind == "all" else {kind: 1.0})
    mixed = MixDataset(dataset, None, size=48, **chances)
    draws = []
    for seed in (0, 0, 1):
        torch.manual_seed(seed)
        draws.append([mixed[i] for i in range(len(mixed))])
    for image, target in draws[0]:
        assert_consistent(image, target)
    same = all(torch.equal(a[0], b[0]) and torch.equal(a[1]["boxes"], b[1]["boxes"])
               for a, b in zip(draws[0], draws[1], strict=True))  # fmt: skip
    assert same
    assert any(not torch.equal(a[0], b[0]) for a, b in zip(draws[0], draws[2], strict=True))
    plain = [dataset[i][1] for i in range(len(dataset))]
    if kind in ("mixup", "all"):  # both samples' objects
        assert sum(len(t["boxes"]) for _, t in draws[0]) > sum(len(t["boxes"]) for t in plain)


def test_mixed_segmentation_samples_keep_the_classes_and_close_mosaic_turns_it_off(shapes):
    dataset = build_dataset(shapes / "segment.yaml", "train")
    mixed = MixDataset(dataset, None, size=48, mosaic=1.0, mixup=1.0, copy_paste=1.0, close_mosaic=2)
    torch.manual_seed(0)
    for i in range(len(mixed)):
        image, target = mixed[i]
        assert image.shape[-2:] == target["semantic"].shape == (48, 48)
        assert set(target["semantic"].unique().tolist()) <= {0, 1, 2, 3, 255}
    mixed.copy_paste = 0.0
    mixed.set_epoch(8, 10)  # the last two epochs: samples as they are
    assert torch.equal(mixed[0][0], dataset[0][0])
    mixed.set_epoch(7, 10)
    assert not torch.equal(mixed[0][0], dataset[0][0])


def box_only_spec(shapes):
    """The shapes' detection spec without its masks."""
    coco = json.loads((shapes / "annotations" / "train.json").read_text())
    for annotation in coco["annotations"]:
        annotation.pop("segmentation")
    (shapes / "annotations" / "boxes.json").write_text(json.dumps(coco))
    spec = (shapes / "detect.yaml").read_text().replace("annotations/train.json", "annotations/boxes.json")
    (shapes / "boxes.yaml").write_text(spec)
    return shapes / "boxes.yaml"


def test_copy_paste_on_boxes_alone_and_probabilities_outside_0_1_are_refused(shapes, capsys):
    spec = box_only_spec(shapes)
    with pytest.raises(DataError, match="boxes only"):
        MixDataset(build_dataset(spec, "train", boxes_only=True), None, size=48, copy_paste=0.5)
    with pytest.raises(ValueError, match="mosaic"):
        MixDataset(build_dataset(spec, "train"), None, size=48, mosaic=1.5)
    common = ["train", "--model", "ssdlite320_mobilenet_v3_large", "--iters", "1", "--quiet"]
    capsys.readouterr()
    assert main([*common, "--data", str(spec), "--copy-paste", "0.5", "--out", str(shapes / "r1")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "boxes.yaml" in err[0] and "--copy-paste" in err[0]
    assert main([*common, "--data", str(spec), "--mixup", "-0.1", "--out", str(shapes / "r2")]) == 2
    assert "--mixup must be a probability in [0, 1]" in capsys.readouterr().err
    show = ["data", "show", str(spec), "--augment", "--mosaic", "2", "--out", str(shapes / "show")]
    assert main(show) == 2


def test_train_with_mosaic_runs_for_detection_and_segmentation(shapes):
    detect = ["--model", "ssdlite320_mobilenet_v3_large", "--model-arg", "size=64", "--img-size", "64",
              "--data", str(shapes / "detect.yaml")]  # fmt: skip
    segment = ["--model", "unet", "--model-arg", "width=4", "--img-size", "32", "--data",
               str(shapes / "segment.yaml")]  # fmt: skip
    for name, args in (("det", detect), ("seg", segment)):
        run = shapes / f"run_{name}"
        common = ["train", *args, "--iters", "2", "--batch-size", "2", "--val-split", "none", "--quiet"]
        mixing = ["--mosaic", "1", "--mixup", "0.5", "--copy-paste", "0.5"]
        assert main([*common, *mixing, "--out", str(run)]) == 0
        saved = json.loads((run / "config.json").read_text())["config"]
        assert saved["mosaic"] == 1.0 and saved["copy_paste"] == 0.5 and (run / "last.pt").is_file()


def test_data_show_draws_mosaics(shapes):
    out = shapes / "mosaics"
    args = ["data", "show", str(shapes / "instance.yaml"), "--split", "train", "--num", "2", "--augment",
            "--mosaic", "1", "--img-size", "48", "--out", str(out)]  # fmt: skip
    assert main(args) == 0
    assert len(list(out.glob("train_*.png"))) == 2
