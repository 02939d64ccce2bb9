"""detseg.data.classification and the classify spec: hymenoptera as published, torchvision's
ImageFolder as the reference, clear errors for bad layouts."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import tv_tensors
from torchvision.datasets import ImageFolder

from detseg.data.classification import (
    ImageFolderDataset,
    classification_dataset,
    classification_eval_preset,
    classification_train_preset,
    collate_classification,
)
from detseg.data.errors import DataError
from detseg.data.spec import load_spec, spec_from_dict

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "hymenoptera.yaml"


def published_counts(provenance: Path) -> dict[str, int]:
    """The ``| train/ants | 124 |`` rows of the PROVENANCE.md table."""
    rows = re.findall(r"^\|\s*(\w+/\w+)\s*\|\s*(\d+)\s*\|", provenance.read_text(), flags=re.M)
    return {folder: int(n) for folder, n in rows}


def test_hymenoptera_counts_equal_provenance(shared_data):
    root = shared_data / "hymenoptera"
    published = published_counts(root / "PROVENANCE.md")
    assert len(published) == 4
    spec = load_spec(EXAMPLE)
    assert spec.task == "classify" and spec.format == "folder" and spec.classes == ["ants", "bees"]
    for split in ("train", "val"):
        ds = classification_dataset(spec, split)
        assert ds.class_counts() == {c: published[f"{split}/{c}"] for c in ("ants", "bees")}
    assert len(classification_dataset(spec, "train")) + len(classification_dataset(spec, "val")) == 398


def test_hymenoptera_items_and_agreement_with_imagefolder(shared_data):
    root = shared_data / "hymenoptera" / "train"
    ds = ImageFolderDataset(root)  # classes from the folders
    ref = ImageFolder(str(root))
    assert ds.classes == ref.classes == ["ants", "bees"]
    # torchvision's ImageFolder skips GIFs; detseg reads them (the placeholder becomes RGB).
    ours = [(p.relative_to(root).as_posix(), y) for p, y in ds.samples]
    theirs = [(Path(p).relative_to(root).as_posix(), y) for p, y in ref.samples]
    assert [s for s in ours if not s[0].endswith(".gif")] == theirs
    assert [s for s in ours if s[0].endswith(".gif")] == [("ants/imageNotFound.gif", 0)]
    index = ours.index(("ants/ant photos.jpg", 0))  # the space in the name is fine
    image, target = ds[index]
    assert isinstance(image, tv_tensors.Image) and image.dtype == torch.uint8 and image.shape[0] == 3
    assert target == {"label": 0, "image_id": index, "file_name": "ants/ant photos.jpg"}
    pil = np.asarray(Image.open(root / "ants" / "ant photos.jpg").convert("RGB"))
    assert np.array_equal(image.permute(1, 2, 0).numpy(), pil)
    gif, _ = ds[ours.index(("ants/imageNotFound.gif", 0))]
    assert gif.shape[0] == 3 and gif.dtype == torch.uint8


def test_presets_and_collate(shared_data):
    spec = load_spec(EXAMPLE)
    train = classification_dataset(spec, "train", classification_train_preset(64))
    val = classification_dataset(spec, "val", classification_eval_preset(64))
    torch.manual_seed(0)
    images, labels = collate_classification([train[0], train[130], val[5]])
    assert images.shape == (3, 3, 64, 64) and images.dtype == torch.float32
    assert 0.0 <= float(images.min()) and float(images.max()) <= 1.0
    assert labels.tolist() == [0, 1, 0] and labels.dtype == torch.int64
    # Eval: short side to 73 (= 64 / 0.875), centre crop; deterministic.
    assert torch.equal(val[5][0], val[5][0])


def _write_tree(root: Path, layout: dict[str, int], size: int = 12) -> None:
    for cls, n in layout.items():
        (root / cls).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            Image.fromarray(np.full((size, size, 3), 40 * i, np.uint8)).save(root / cls / f"{i}.png")


def test_bad_layouts_name_the_folder_or_file(tmp_path):
    _write_tree(tmp_path / "ok", {"cat": 2, "dog": 1})
    (tmp_path / "ok" / "empty").mkdir()
    with pytest.raises(DataError, match=r"ok/empty: class folder 'empty' holds no image files"):
        ImageFolderDataset(tmp_path / "ok")
    (tmp_path / "ok" / "empty").rmdir()
    assert len(ImageFolderDataset(tmp_path / "ok", classes=["cat", "dog"])) == 3
    with pytest.raises(DataError, match=r"ok/cow: no folder for class 'cow' \(class 2\)"):
        ImageFolderDataset(tmp_path / "ok", classes=["cat", "dog", "cow"])
    with pytest.raises(DataError, match="split folder not found"):
        ImageFolderDataset(tmp_path / "missing")
    (tmp_path / "flat").mkdir()
    with pytest.raises(DataError, match="no class folders"):
        ImageFolderDataset(tmp_path / "flat")
    with pytest.warns(UserWarning, match=r"folders not in the class list left out: \['dog'\]"):
        assert ImageFolderDataset(tmp_path / "ok", classes=["cat"]).labels == [0, 0]
    # An unreadable image: named when read, or dropped up front with skip_bad.
    (tmp_path / "ok" / "dog" / "broken.jpg").write_bytes(b"not a jpeg")
    ds = ImageFolderDataset(tmp_path / "ok", classes=["cat", "dog"])
    with pytest.raises(DataError, match=r"dog/broken\.jpg: unreadable image"):
        ds[3]  # cat/0, cat/1, dog/0, dog/broken
    with pytest.warns(UserWarning, match=r"skipped 1 bad images: .*broken\.jpg"):
        ds = ImageFolderDataset(tmp_path / "ok", classes=["cat", "dog"], skip_bad=True)
    assert ds.class_counts() == {"cat": 2, "dog": 1}


@pytest.mark.parametrize(
    "data, message",
    [
        (
            {"task": "classify", "format": "coco", "train": "t"},
            "key 'task': task must be one of detect, segment",
        ),
        (
            {"task": "detect", "format": "folder", "train": "t"},
            "key 'format': format folder .* task: classify",
        ),
        (
            {"task": "classify", "train": {"images": "t", "masks": "m"}},
            "key 'train': format folder takes only",
        ),
        ({"task": "classify"}, "no splits"),
    ],
)
def test_bad_classify_specs_name_the_key(tmp_path, data, message):
    with pytest.raises(DataError, match=message):
        spec_from_dict(data, tmp_path, tmp_path / "spec.yaml")


def test_classify_spec_defaults(tmp_path):
    _write_tree(tmp_path / "tr", {"b": 1, "a": 2})
    spec = spec_from_dict({"task": "classify", "train": "tr"}, tmp_path)  # format folder, a bare folder
    assert spec.format == "folder" and spec.classes is None
    assert spec.split("train").images == (tmp_path / "tr").resolve()
    ds = classification_dataset(spec, "train")
    assert ds.classes == ["a", "b"] and ds.labels == [0, 0, 1]
    with pytest.raises(DataError, match="a segment data set, not task: classify"):
        classification_dataset(
            spec_from_dict(
                {"task": "segment", "format": "masks", "classes": ["x"], "v": {"images": "i", "masks": "m"}},
                tmp_path,
            ),
            "v",
        )
