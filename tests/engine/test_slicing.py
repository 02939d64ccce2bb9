"""Sliced inference for detectors (detseg.engine.slicing): the grid, merging cut boxes and masks back into
whole objects, batching, the streaming bound, and the command line's bad input."""

import types
import weakref

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from detseg.cli import main
from detseg.data.tiles import iter_windows, slice_starts
from detseg.engine.checkpoint import save_checkpoint
from detseg.engine.slicing import SlicedDetector, SliceOptions, slice_count, with_slicing


def test_the_grid_is_sahis_with_the_last_window_flush_with_the_border():
    assert slice_starts(1000, 512, 0.2) == [0, 410, 488]  # stride 512 - int(102.4) = 410; 820 + 512 > 1000
    assert slice_starts(1024, 512, 0.25) == [0, 384, 512]
    assert slice_starts(1024, 512, 0.0) == [0, 512]
    assert slice_starts(512, 512, 0.5) == [0] and slice_starts(300, 512, 0.2) == [0]
    windows = [(0, 0, 512, 300), (410, 0, 512, 300), (488, 0, 512, 300)]
    assert list(iter_windows(300, 1000, 512, 0.2)) == windows
    assert slice_count(1000, 1000, 512, 0.2) == 9 and slice_count(100, 100, 512, 0.2) == 1
    with pytest.raises(ValueError, match=r"in \[0, 1\)"):
        slice_starts(100, 10, 1.0)


class BrightBoxDetector(nn.Module):
    """Finds the bright pixels (> 0.5) of each image: one box of label 1, score 0.9, and its mask.
    Remembers each call's batch size and how many of the slices it was given are still alive."""

    def __init__(self, masks: bool = False):
        super().__init__()
        self.p = nn.Parameter(torch.zeros(1))
        self.masks, self.batches, self.alive, self.seen = masks, [], [], []

    def forward(self, images):
        self.seen = [ref for ref in self.seen if ref() is not None] + [weakref.ref(im) for im in images]
        self.alive.append(len(self.seen))
        self.batches.append(len(images))
        out = []
        for image in images:
            bright = image[0] > 0.5
            rows, cols = torch.nonzero(bright.any(1)).flatten(), torch.nonzero(bright.any(0)).flatten()
            found = len(rows) > 0
            box = [[cols[0], rows[0], cols[-1] + 1, rows[-1] + 1]] if found else []
            n = int(found)
            det = {"boxes": torch.tensor(box, dtype=torch.float32).reshape(-1, 4),
                   "labels": torch.ones(n, dtype=torch.int64), "scores": torch.full((n,), 0.9)}
            if self.masks:
                det["masks"] = bright.float()[None, None].repeat(int(found), 1, 1, 1)
            out.append(det)
        return out


def _image(h=100, w=100, box=(30, 10, 70, 20)):
    image = torch.zeros(3, h, w)
    x1, y1, x2, y2 = box
    image[:, y1:y2, x1:x2] = 1.0
    return image


def test_a_box_cut_by_two_slices_merges_into_the_original():
    # Tile 60, overlap 0.2: windows x 0..60 and 40..100. The object x 30..70 is cut by both: the left
    # slice sees 30..60, the right one 40..70; IoS 20/30, so greedy-NMM merges them into 30..70.
    sliced = SlicedDetector(BrightBoxDetector(masks=True), SliceOptions(60, 0.2))
    out = sliced([_image()])[0]
    assert out["boxes"].tolist() == [[30, 10, 70, 20]] and out["labels"].tolist() == [1]
    assert out["masks"].shape == (1, 1, 100, 100)  # Mask R-CNN's masks: pasted and merged, whole image
    assert torch.equal(out["masks"][0, 0].bool(), _image()[0] > 0.5)
    options = SliceOptions(60, 0.2, match="iou", threshold=0.6)
    iou = SlicedDetector(BrightBoxDetector(), options)([_image()])[0]
    assert len(iou["boxes"]) == 2  # IoU 20/40 = 0.5 < 0.6: the two parts stay apart


def test_batches_of_slices_give_the_same_boxes_as_one_at_a_time():
    image = _image(130, 170, (50, 40, 120, 90))
    one, four = BrightBoxDetector(), BrightBoxDetector()
    a = SlicedDetector(one, SliceOptions(48, 0.25, batch=1))([image])[0]
    b = SlicedDetector(four, SliceOptions(48, 0.25, batch=4))([image])[0]
    assert torch.equal(a["boxes"], b["boxes"]) and torch.equal(a["scores"], b["scores"])
    n = slice_count(130, 170, 48, 0.25)
    assert one.batches == [1] * n and sum(four.batches) == n and len(four.batches) == -(-n // 4)


def test_slices_stream_a_batch_at_a_time():
    assert isinstance(iter_windows(10_000, 10_000, 512, 0.2), types.GeneratorType)
    detector = BrightBoxDetector()
    SlicedDetector(detector, SliceOptions(20, 0.0, batch=8))([_image(400, 400)])
    assert len(detector.batches) == 50 and max(detector.alive) <= 8  # 400 slices, at most 8 alive at once


def test_full_image_joins_the_merge_and_a_tile_as_large_as_the_image_runs_it_whole(capsys):
    detector = BrightBoxDetector()
    out = SlicedDetector(detector, SliceOptions(60, 0.2, full_image=True))([_image()])[0]
    assert detector.batches == [1, 1, 1, 1, 1] and out["boxes"].tolist() == [[30, 10, 70, 20]]
    detector = BrightBoxDetector()
    sliced = SlicedDetector(detector, SliceOptions(128, 0.2))
    sliced([_image(), _image()])
    assert detector.batches == [1, 1]
    assert capsys.readouterr().err.count("warning: --tile 128 is not smaller than the image") == 1


def test_merge_options_apply_to_detectors_only():
    model = nn.Identity()
    assert with_slicing(model, "segment", 64) is model and with_slicing(model, "detect") is model
    assert isinstance(with_slicing(model, "instance", 64, tile_batch=4), SlicedDetector)
    with pytest.raises(ValueError, match="--merge, --full-image|--full-image, --merge"):
        with_slicing(model, "segment", 64, full_image=True, merge="nms")
    with pytest.raises(ValueError, match="go with --tile"):
        with_slicing(model, "detect", None, merge="nms")
    with pytest.raises(ValueError, match=r"overlap must be in \[0, 1\)"):
        with_slicing(model, "detect", 64, overlap=-0.1)


def test_a_torchvision_detector_sliced_in_batches_gives_the_same_detections():
    from detseg.models.zoo import create_model

    torch.manual_seed(0)
    model = create_model("ssdlite320_mobilenet_v3_large", num_classes=2, size=64, score_thresh=0.0).eval()
    image = torch.rand(3, 90, 120)
    with torch.no_grad():
        a = with_slicing(model, "detect", 64, 0.25, tile_batch=1)([image])[0]
        b = with_slicing(model, "detect", 64, 0.25, tile_batch=4)([image])[0]
    assert len(a["boxes"]) > 0 and torch.allclose(a["boxes"], b["boxes"], atol=1e-4)
    assert (a["boxes"][:, 2] <= 120 + 1e-3).all() and (a["boxes"][:, 3] <= 90 + 1e-3).all()


def _checkpoint(path, model, meta):
    save_checkpoint({"meta": meta, "model": model.state_dict()}, path)
    return str(path)


def test_cli_bad_input_says_one_line(tmp_path, capsys):
    from detseg.models.zoo import create_model

    Image.fromarray(np.zeros((40, 50, 3), np.uint8)).save(tmp_path / "a.png")
    kwargs = {"num_classes": 2, "size": 32}
    det = _checkpoint(tmp_path / "det.pt", create_model("ssdlite320_mobilenet_v3_large", **kwargs),
                      {"task": "detect", "model": "ssdlite320_mobilenet_v3_large", "model_kwargs": kwargs,
                       "classes": ["a", "b"], "img_size": 32})
    seg_kwargs = {"num_classes": 2, "depth": 2, "width": 4}
    seg = _checkpoint(tmp_path / "seg.pt", create_model("unet", **seg_kwargs),
                      {"task": "segment", "model": "unet", "model_kwargs": seg_kwargs,
                       "classes": ["bg", "fg"], "img_size": 32})
    source = ["--source", str(tmp_path / "a.png"), "--out", str(tmp_path / "out")]
    sliced = ["--slice", "32", "--tile-batch", "4", "--merge", "nmm"]
    assert main(["predict", "--weights", det, *source, *sliced]) == 0
    capsys.readouterr()
    assert main(["predict", "--weights", det, *source, "--tile", "32", "--overlap", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "overlap must be in [0, 1)" in err
    assert main(["predict", "--weights", seg, *source, "--merge", "nms"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--merge apply to detectors" in err
    assert main(["predict", "--weights", det, *source, "--tile", "64"]) == 0
    assert capsys.readouterr().err.count("is not smaller than the image (50x40)") == 1


def test_eval_det_and_train_run_on_tiles(tmp_path, capsys):
    from detseg.data.synthetic import SynthConfig, generate
    from detseg.models.zoo import create_model

    root = generate(SynthConfig(seed=1, num_train=1, num_val=2, image_size=(80, 96)), tmp_path / "shapes")
    kwargs = {"num_classes": 3, "size": 32}
    det = _checkpoint(tmp_path / "det.pt", create_model("ssdlite320_mobilenet_v3_large", **kwargs),
                      {"task": "detect", "model": "ssdlite320_mobilenet_v3_large", "model_kwargs": kwargs,
                       "classes": ["circle", "square", "triangle"], "img_size": 32})
    spec = str(root / "detect.yaml")
    assert main(["eval", "det", "--weights", det, "--data", spec, "--tile", "48", "--tile-batch", "4",
                 "--full-image", "--merge", "nms", "--match", "iou"]) == 0
    assert "Average Precision" in capsys.readouterr().out
    run = tmp_path / "run"
    model = ["--model", "ssdlite320_mobilenet_v3_large", "--model-arg", "size=32", "--img-size", "32"]
    tiles = ["--tile", "48", "--tile-overlap", "0.5"]
    assert main(["train", *model, "--data", spec, "--val-split", "none", *tiles, "--iters", "1",
                 "--batch-size", "2", "--quiet", "--out", str(run)]) == 0
    assert (run / "last.pt").is_file()
