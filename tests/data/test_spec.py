"""detseg.data.spec: YAML specs, bare COCO json and VOC folders; clear errors for bad specs."""

from __future__ import annotations

from pathlib import Path

import pytest

from detseg.data.errors import DataError
from detseg.data.spec import load_spec, spec_from_dict
from detseg.data.voc import VOC_CLASSES


def test_yaml_paths_resolve_against_root_and_yaml_folder(tmp_path, shared_data):
    (tmp_path / "specs").mkdir()
    spec_path = tmp_path / "specs" / "camvid.yaml"
    spec_path.write_text(
        f"task: segment\nformat: masks\nroot: {shared_data / 'camvid'}\n"
        "classes: [Sky, Building, Pole, Road, Pavement, Tree, SignSymbol, Fence, Car, Pedestrian,"
        " Bicyclist]\n"
        "values: {11: ignore}\nval: {images: val, masks: valannot, list: [0016E5_07959, 0016E5_07961]}\n"
    )
    spec = load_spec(spec_path)
    assert spec.task == "segment" and spec.num_classes == 11 and spec.values == {11: 255}
    assert spec.split("val").images == (shared_data / "camvid" / "val").resolve()
    assert spec.split("val").stems == ["0016E5_07959", "0016E5_07961"]
    (tmp_path / "specs" / "rel.yaml").write_text(
        "format: coco\nroot: ../data\ntrain: {images: img, annotations: a.json, list: lists/train.txt}\n"
    )
    (tmp_path / "data" / "lists").mkdir(parents=True)
    (tmp_path / "data" / "lists" / "train.txt").write_text("x\ny\n")
    rel = load_spec(tmp_path / "specs" / "rel.yaml")
    assert rel.task == "detect" and rel.root == (tmp_path / "data").resolve()
    assert rel.split("train").annotations == (tmp_path / "data" / "a.json").resolve()
    assert rel.split("train").stems == ["x", "y"]
    with pytest.raises(DataError, match="no split 'val' \\(the spec has: train\\)"):
        rel.split("val")


def test_bare_coco_json(shared_data):
    spec = load_spec(shared_data / "coco_eval" / "faster_coco_eval_mini" / "gt_dataset.json")
    assert spec.task == "detect" and spec.format == "coco"
    assert spec.classes == ["cloud", "heart", "arrow", "star"]
    assert spec.split("val").images.name == "images"  # file names resolve in the images/ beside it
    toy = load_spec(shared_data / "voc_toy" / "gts_coco_format" / "toy_example_coco.JSON")
    assert (
        toy.classes == ["cat"] and toy.split("train").images == (shared_data / "voc_toy" / "images").resolve()
    )


def test_voc_folder(tmp_path, shared_data):
    toy = shared_data / "voc_toy"
    (tmp_path / "Annotations").mkdir()
    (tmp_path / "JPEGImages").mkdir()
    (tmp_path / "ImageSets" / "Main").mkdir(parents=True)
    stems = sorted(p.stem for p in (toy / "gts_vocpascal_format").glob("*.xml"))
    for stem in stems:
        (tmp_path / "Annotations" / f"{stem}.xml").symlink_to(toy / "gts_vocpascal_format" / f"{stem}.xml")
        (tmp_path / "JPEGImages" / f"{stem}.jpg").symlink_to(toy / "images" / f"{stem}.jpg")
    (tmp_path / "ImageSets" / "Main" / "train.txt").write_text("\n".join(stems[:6]))
    (tmp_path / "ImageSets" / "Main" / "val.txt").write_text("\n".join(stems[6:]))
    (tmp_path / "ImageSets" / "Main" / "cat_train.txt").write_text("ignored per-class list")
    spec = load_spec(tmp_path)
    assert spec.format == "voc" and spec.classes == list(VOC_CLASSES)
    assert sorted(spec.splits) == ["train", "val"] and spec.split("val").stems == stems[6:]
    from detseg.data.dataset import DetectionDataset

    assert len(DetectionDataset(spec, "train")) == 6


@pytest.mark.parametrize(
    "data, message",
    [
        ({"task": "classify", "format": "coco"}, "key 'task': task must be one of detect, segment"),
        ({"format": "yolo"}, "key 'format': format must be one of"),
        ({"format": "voc", "train": {"images": "i", "annotations": "a"}}, "key 'classes': format voc needs"),
        ({"format": "coco", "train": {"images": "i"}}, "key 'train': format coco needs 'annotations'"),
        (
            {"format": "coco", "train": {"images": "i", "annotations": "a", "mask": "m"}},
            "unknown keys \\['mask'\\]",
        ),
        ({"format": "coco", "trian": "x"}, "key 'trian': unknown key"),
        ({"format": "coco"}, "no splits"),
        (
            {"format": "masks", "classes": ["a"], "values": {0: 3}, "val": {"images": "i", "masks": "m"}},
            "value 0 maps to 3",
        ),
        ({"format": "coco", "channels": 2, "val": {"images": "i", "annotations": "a"}}, "channels must be"),
    ],
)
def test_bad_specs_name_the_key(tmp_path, data, message):
    with pytest.raises(DataError, match=message):
        spec_from_dict(data, tmp_path, tmp_path / "spec.yaml")


def test_malformed_yaml_and_missing_spec(tmp_path):
    (tmp_path / "s.yaml").write_text("task: detect\nformat: [coco\n")
    with pytest.raises(DataError, match=r"s\.yaml: line \d+ column \d+: malformed YAML"):
        load_spec(tmp_path / "s.yaml")
    with pytest.raises(DataError, match="dataset spec not found"):
        load_spec(tmp_path / "none.yaml")


def test_values_by_name_ignore_and_names_file(tmp_path):
    (tmp_path / "names.txt").write_text("background\ncell\n")
    spec = spec_from_dict(
        {
            "task": "segment",
            "format": "masks",
            "classes": "names.txt",
            "ignore_index": 9,
            "values": {0: "background", 255: "cell", 128: "ignore"},
            "train": {"images": "i", "masks": "m"},
        },
        tmp_path,
    )
    assert spec.classes == ["background", "cell"] and spec.values == {0: 0, 255: 1, 128: 9}


def test_membrane_examples_keep_their_splits_apart(shared_data):
    """The membrane specs' documented protocol: held-out trains 6-17, chooses on 18-23, scores 0-5; the
    final fit trains on 6-23 with no val and scores the same 0-5; no slice is in two splits of a file."""
    examples = Path(__file__).resolve().parents[2] / "examples"
    slices = lambda a, b: [str(i) for i in range(a, b + 1)]  # noqa: E731
    heldout = load_spec(examples / "membrane-heldout.yaml")
    retrain = load_spec(examples / "membrane-retrain.yaml")
    assert heldout.split("train").stems == slices(6, 17) and heldout.split("val").stems == slices(18, 23)
    assert retrain.split("train").stems == slices(6, 23) and "val" not in retrain.splits
    for spec in (heldout, retrain):
        assert spec.split("test").stems == slices(0, 5)
        assert spec.split("train").images == shared_data / "membrane" / "train" / "image"
        stems = [s for name in spec.splits for s in spec.split(name).stems]
        assert len(stems) == len(set(stems))
        assert spec.train_defaults == heldout.train_defaults
