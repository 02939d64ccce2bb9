"""Image classification data: a folder tree ``SPLIT/CLASS/*.jpg`` (torchvision's ImageFolder layout).

    ds = ImageFolderDataset("../shared/data/hymenoptera/train")          # classes: folder names, sorted
    image, target = ds[0]   # tv_tensors.Image uint8 [3, H, W]; {"label", "image_id", "file_name"}
    ds = classification_dataset(load_spec("examples/hymenoptera.yaml"), "val", classification_eval_preset())

Label ``i`` is ``classes[i]``; ``file_name`` is relative to the split folder (``ants/0013035.jpg``).
Images are decoded by :func:`detseg.data.masks.read_image` (greyscale, palette and RGBA become RGB), so
every extension in ``IMAGE_EXTENSIONS`` counts, GIF included (hymenoptera's ``imageNotFound.gif``).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from torch.utils.data import Dataset
from torchvision import tv_tensors
from torchvision.transforms import v2

from detseg.data.errors import DataError, warn_skipped
from detseg.data.masks import image_size, list_images, read_image
from detseg.data.spec import DatasetSpec, load_spec

Transform = Callable[[tv_tensors.Image, dict], tuple]


def class_folders(root: str | Path) -> list[str]:
    """Names of the sub-folders of ``root`` (hidden ones left out), sorted: the default class list."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(root, "split folder not found (expected one sub-folder of images per class)")
    return sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


class ImageFolderDataset(Dataset):
    """The images under ``root/CLASS/``, labelled by the class folder's index in ``classes``.

    ``classes`` (default: the class folders, sorted) fixes the labels, so a validation split can share
    the training split's list; a listed class without a folder, or whose folder holds no image, raises
    :class:`DataError` naming the folder. Folders not listed are left out with a warning. Images are
    decoded when read; an unreadable one raises :class:`DataError` naming the file, or, with
    ``skip_bad=True``, every file's header is checked up front and bad ones are dropped with a warning.
    ``transforms(image, target) -> (image, target)`` (a ``transforms.v2`` pipeline) applies to each item.
    """

    def __init__(
        self,
        root: str | Path,
        classes: Sequence[str] | None = None,
        transforms: Transform | None = None,
        skip_bad: bool = False,
    ) -> None:
        self.root = Path(root)
        found = class_folders(self.root)
        self.classes = list(classes) if classes is not None else found
        if not self.classes:
            raise DataError(self.root, "no class folders (expected SPLIT/CLASS/image files)")
        extra = sorted(set(found) - set(self.classes))
        if extra:
            warnings.warn(f"{self.root}: folders not in the class list left out: {extra}", stacklevel=2)
        self.samples: list[tuple[Path, int]] = []
        for label, name in enumerate(self.classes):
            folder = self.root / name
            if not folder.is_dir():
                raise DataError(folder, f"no folder for class '{name}' (class {label})")
            files = list_images(folder)
            if not files:
                raise DataError(folder, f"class folder '{name}' holds no image files")
            self.samples += [(path, label) for path in files]
        if skip_bad:
            self._drop_unreadable()
        self.transforms = transforms

    def _drop_unreadable(self) -> None:
        problems: list[DataError] = []
        kept = []
        for path, label in self.samples:
            try:
                image_size(path)
                kept.append((path, label))
            except DataError as err:
                problems.append(err)
        self.samples = kept
        warn_skipped(problems, "images")

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def labels(self) -> list[int]:
        """The label of every sample, in order (no image is decoded)."""
        return [label for _, label in self.samples]

    def class_counts(self) -> dict[str, int]:
        """Images per class, in class order."""
        counts = dict.fromkeys(self.classes, 0)
        for _, label in self.samples:
            counts[self.classes[label]] += 1
        return counts

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int):
        path, label = self.samples[index]
        image = tv_tensors.Image(torch.from_numpy(read_image(path, 3)).permute(2, 0, 1).contiguous())
        target = {"label": label, "image_id": index, "file_name": path.relative_to(self.root).as_posix()}
        if self.transforms is not None:
            image, target = self.transforms(image, target)
        return image, target


def classification_dataset(
    spec: DatasetSpec | str | Path,
    split: str,
    transforms: Transform | None = None,
    classes: Sequence[str] | None = None,
    skip_bad: bool = False,
) -> ImageFolderDataset:
    """The ``split`` of a ``task: classify`` spec; ``classes`` (else the spec's, else the split's class
    folders) fixes the labels."""
    spec = spec if isinstance(spec, DatasetSpec) else load_spec(spec)
    if spec.task != "classify":
        raise DataError(spec.path or spec.root, f"a {spec.task} data set, not task: classify", "key 'task'")
    names = classes if classes is not None else spec.classes
    return ImageFolderDataset(spec.split(split).images, names, transforms, skip_bad)


def classification_train_preset(
    size: int = 224, scale: tuple[float, float] = (0.08, 1.0), hflip_prob: float = 0.5
) -> v2.Compose:
    """Inception-style training crop (torchvision's reference recipe): a random area ``scale`` and aspect
    ratio 3/4..4/3 resized to ``size`` x ``size``, a horizontal flip, float in [0, 1]."""
    return v2.Compose(
        [
            v2.RandomResizedCrop(size, scale=scale, antialias=True),
            v2.RandomHorizontalFlip(p=hflip_prob),
            v2.ToDtype(torch.float32, scale=True),
        ]
    )


def classification_eval_preset(size: int = 224, crop_fraction: float = 224 / 256) -> v2.Compose:
    """Resize the short side to ``size / crop_fraction`` (256 for 224), centre crop ``size`` x ``size``,
    float in [0, 1]: the evaluation of torchvision's ImageNet weights."""
    return v2.Compose(
        [
            v2.Resize(round(size / crop_fraction), antialias=True),
            v2.CenterCrop(size),
            v2.ToDtype(torch.float32, scale=True),
        ]
    )


def collate_classification(batch) -> tuple[torch.Tensor, torch.Tensor]:
    """``[(image, target)]`` -> ``(Tensor[B, 3, H, W], Tensor[B] int64)``; image sizes must agree."""
    images = torch.stack([torch.as_tensor(image) for image, _ in batch])
    labels = torch.tensor([int(target["label"]) for _, target in batch], dtype=torch.int64)
    return images, labels
