"""Box- and mask-aware augmentation presets on torchvision.transforms.v2.

Every preset is a callable ``(image, target) -> (image, target)`` on the sample of DEVELOPING.md:
``image`` a ``tv_tensors.Image`` ``uint8 [C, H, W]`` (any C), ``target`` a dict whose ``boxes``
(``BoundingBoxes``), ``masks`` (instance ``Mask [N, H, W]``) and ``semantic`` (``Mask [H, W]``) move
together with the image. Detection presets drop a box together with its label, mask, ``iscrowd`` and
``difficult`` entries, and recompute ``area`` (mask pixels, else box area) after the geometry changed.
Presets end with ``ToDtype(float32, scale=True)``: images come out as floats in [0, 1].

Randomness comes only from torch's global generator: ``torch.manual_seed(s)`` before a call gives the
same output every time. In a ``DataLoader`` pass ``generator=loader_generator(seed)`` and
``worker_init_fn=seed_worker`` so that every worker is seeded from that seed.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

Sample = tuple[Any, dict[str, Any]]
#: Per-instance entries indexed together with the boxes when boxes are dropped.
_INSTANCE_KEYS = ("labels", "iscrowd", "difficult")
#: SSD pads zoomed-out images with the data mean; one grey value works for any channel count.
ZOOM_FILL = 114


class PhotometricDistort(v2.RandomPhotometricDistort):
    """SSD's photometric distortion (``v2.RandomPhotometricDistort``) for any channel count.

    torchvision's colour kernels accept 1 or 3 channels; here the colour channels (the first 3, or
    the first one of a 2-channel image) are distorted and extra channels such as alpha pass through.
    """

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        is_image = isinstance(inpt, tv_tensors.Image) or type(inpt) is torch.Tensor
        if not is_image or inpt.ndim < 3 or inpt.shape[-3] in (1, 3):
            return super().transform(inpt, params)
        k = 3 if inpt.shape[-3] > 3 else 1
        perm = params["channel_permutation"]
        colour_params = dict(params, channel_permutation=None if perm is None else perm[perm < k])
        colour = super().transform(inpt[..., :k, :, :], colour_params)
        out = torch.cat([colour.as_subclass(torch.Tensor), inpt[..., k:, :, :].as_subclass(torch.Tensor)], -3)
        return tv_tensors.wrap(out, like=inpt) if isinstance(inpt, tv_tensors.Image) else out


def _resize(inpt: Any, size: list[int], call_kernel: Callable) -> Any:
    # torchvision resizes masks with legacy NEAREST (source pixel floor(i * in / out)), which shifts them
    # by up to half a source pixel against the image and the boxes; NEAREST_EXACT samples pixel centres.
    if isinstance(inpt, tv_tensors.Mask):
        return call_kernel(F.resize, inpt, size=size, interpolation=v2.InterpolationMode.NEAREST_EXACT)
    return call_kernel(F.resize, inpt, size=size, antialias=True)


class Resize(v2.Transform):
    """Resize to ``size`` (H, W): images bilinear with antialiasing, masks nearest at pixel centres."""

    def __init__(self, size: int | Sequence[int]) -> None:
        super().__init__()
        self.size = _pair(size)

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        return _resize(inpt, self.size, self._call_kernel)


class RandomScale(v2.Transform):
    """Resize by a factor drawn uniformly from ``scale_range`` (like :class:`Resize` for masks)."""

    def __init__(self, scale_range: tuple[float, float] = (0.5, 2.0)) -> None:
        super().__init__()
        if not 0 < scale_range[0] <= scale_range[1]:
            raise ValueError(f"scale_range must be (min, max) with 0 < min <= max, got {scale_range}")
        self.scale_range = scale_range

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        h, w = v2.query_size(flat_inputs)
        lo, hi = self.scale_range
        scale = lo + (hi - lo) * float(torch.rand(()))
        return {"size": [max(1, round(h * scale)), max(1, round(w * scale))]}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        return _resize(inpt, params["size"], self._call_kernel)


class ElasticGrid(v2.Transform):
    """U-Net's elastic deformation (Ronneberger et al. 2015): random displacements on a coarse
    ``grid`` x ``grid`` lattice, ``std`` pixels each way, interpolated smoothly (bicubic) to every
    pixel; images resampled bilinearly, masks by nearest neighbour, mirrored at the border.

    The coarse lattice makes it cheap (one ``grid_sample``), unlike torchvision's ``ElasticTransform``
    which blurs a full-size noise field per call."""

    def __init__(self, std: float = 10.0, grid: int = 3) -> None:
        super().__init__()
        if std <= 0 or grid < 2:
            raise ValueError(f"elastic deformation needs std > 0 and grid >= 2, got {std}, {grid}")
        self.std, self.grid = float(std), int(grid)

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        h, w = v2.query_size(flat_inputs)
        coarse = torch.randn(1, 2, self.grid, self.grid) * self.std  # pixels (x, y)
        flow = torch.nn.functional.interpolate(coarse, size=(h, w), mode="bicubic", align_corners=True)[0]
        ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32),
                                indexing="ij")
        # grid_sample's coordinates: -1 and 1 are the centres of the border pixels (align_corners=True)
        gx = (xs + flow[0]) * (2 / max(w - 1, 1)) - 1
        gy = (ys + flow[1]) * (2 / max(h - 1, 1)) - 1
        return {"grid": torch.stack([gx, gy], -1)[None]}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        if not isinstance(inpt, (tv_tensors.Image, tv_tensors.Mask)):
            return inpt
        data = inpt.as_subclass(torch.Tensor)
        mask = isinstance(inpt, tv_tensors.Mask)
        x = data.reshape(-1, *data.shape[-2:])[None].float()
        out = torch.nn.functional.grid_sample(x, params["grid"], mode="nearest" if mask else "bilinear",
                                              padding_mode="reflection", align_corners=True)[0]
        if not data.is_floating_point():
            out = out.round_().clamp_(torch.iinfo(data.dtype).min, torch.iinfo(data.dtype).max)
        return tv_tensors.wrap(out.reshape(data.shape).to(data.dtype), like=inpt)


class DetectionPipeline:
    """Geometric and photometric v2 transforms, then box sanitising restricted to per-instance entries.

    A semantic mask in the target is transformed with the image but never indexed by box validity.
    """

    def __init__(self, transforms: Sequence[Callable], min_size: float = 1.0, final: Sequence[Callable] = ()):
        self.transforms = v2.Compose(list(transforms) or [v2.Identity()])  # size None: no steps
        self.sanitize = v2.Compose([
            v2.ClampBoundingBoxes(),
            v2.SanitizeBoundingBoxes(min_size=min_size, labels_getter=_instance_entries),
        ])
        self.final = v2.Compose(list(final)) if final else None

    def __call__(self, image: Any, target: dict[str, Any]) -> Sample:
        if "boxes" not in target:
            raise ValueError("detection transforms need target['boxes'] (tv_tensors.BoundingBoxes)")
        image, target = self.transforms(image, target)
        instances = {k: target[k] for k in ("boxes", "masks", *_INSTANCE_KEYS) if k in target}
        instances = self.sanitize(instances)
        if "masks" in instances:
            # A crop can keep a box whose (occluded, irregular) mask lies outside it: drop those too.
            has_pixels = instances["masks"].flatten(1).any(1)
            if not has_pixels.all():
                instances = {k: _index(v, has_pixels) for k, v in instances.items()}
        target = {**target, **instances}
        if "masks" in target:
            target["area"] = target["masks"].flatten(1).sum(1).to(torch.float32)
        else:
            boxes = target["boxes"].as_subclass(torch.Tensor)
            target["area"] = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
        if self.final is not None:
            image, target = self.final(image, target)
        return image, target

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.transforms}, {self.sanitize}, {self.final})"


def _index(values: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    out = values[keep]
    return tv_tensors.wrap(out, like=values) if isinstance(values, tv_tensors.TVTensor) else out


def _instance_entries(instances: dict[str, Any]) -> tuple[torch.Tensor, ...]:
    return tuple(instances[k] for k in _INSTANCE_KEYS if k in instances)


def detection_train_preset(
    size: int | tuple[int, int] = 300,
    zoom_out_range: tuple[float, float] = (1.0, 4.0),
    hflip_prob: float = 0.5,
    photometric: bool = True,
    fill: float = ZOOM_FILL,
    iou_crop: bool = True,
    vflip_prob: float = 0.0,
) -> DetectionPipeline:
    """SSD's training augmentation (Liu et al. 2016): photometric distortion, zoom out (p=0.5),
    IoU-constrained random crop, horizontal flip, resize to ``size`` x ``size``, float in [0, 1].

    ``iou_crop=False`` leaves the crop out: for short runs from scratch on data whose objects already
    come at the sizes the model will see, the crop's zoomed-in views slow learning more than they help.
    ``vflip_prob``: vertical flips as well, for images with no up or down (aerial views, microscopy)."""
    steps: list[Callable] = [PhotometricDistort(p=0.5)] if photometric else []
    if zoom_out_range[1] > zoom_out_range[0]:  # (1, 1): no zoom out
        zoom = v2.RandomZoomOut(fill={tv_tensors.Image: fill, "others": 0}, side_range=zoom_out_range, p=0.5)
        steps.append(zoom)
    steps += [
        *([v2.RandomIoUCrop()] if iou_crop else []),
        v2.RandomHorizontalFlip(p=hflip_prob),
        *([v2.RandomVerticalFlip(p=vflip_prob)] if vflip_prob > 0 else []),
        Resize(size),
    ]
    return DetectionPipeline(steps, final=[v2.ToDtype(torch.float32, scale=True)])


def detection_eval_preset(size: int | tuple[int, int] | None = 300) -> DetectionPipeline:
    """Resize to ``size`` x ``size`` (None keeps the size) and convert to float in [0, 1]."""
    steps: list[Callable] = [Resize(size)] if size is not None else []
    return DetectionPipeline(steps, final=[v2.ToDtype(torch.float32, scale=True)])


def segmentation_train_preset(
    crop_size: int | tuple[int, int],
    scale_range: tuple[float, float] = (0.5, 2.0),
    ignore_index: int = 255,
    hflip_prob: float = 0.5,
    vflip_prob: float = 0.0,
    rotate: float = 0.0,
    elastic: float = 0.0,
    color_jitter: float = 0.0,
) -> v2.Compose:
    """Random scale, horizontal flip, random crop to ``crop_size`` (padding the image with 0 and the
    mask with ``ignore_index`` where it is smaller), float in [0, 1].

    ``color_jitter``: brightness and contrast each multiplied by a factor drawn from [1 - j, 1 + j]
    (``v2.ColorJitter``, the image only), for data whose images differ in exposure, such as the
    sections of an electron-microscopy stack; 0 for none.

    For images with no up or down (microscopy, aerial views): ``vflip_prob`` flips vertically and
    ``rotate`` turns by an angle drawn from [-rotate, rotate] degrees before the crop (the corners it
    brings in are 0 in the image and ``ignore_index`` in the mask, so they do not count). ``elastic``:
    the displacement (pixels, standard deviation) of :class:`ElasticGrid`, U-Net's deformation of the
    crop for microscopy (the paper: 10); 0 for none."""
    fill = {tv_tensors.Image: 0, tv_tensors.Mask: ignore_index}
    steps: list[Callable] = [RandomScale(scale_range), v2.RandomHorizontalFlip(p=hflip_prob)]
    if vflip_prob > 0:
        steps.append(v2.RandomVerticalFlip(p=vflip_prob))
    if rotate > 0:
        steps.append(v2.RandomRotation(rotate, interpolation=v2.InterpolationMode.BILINEAR, fill=fill))
    steps.append(v2.RandomCrop(_pair(crop_size), pad_if_needed=True, fill=fill))
    if elastic > 0:
        steps.append(ElasticGrid(std=float(elastic)))
    if color_jitter > 0:
        steps.append(v2.ColorJitter(brightness=float(color_jitter), contrast=float(color_jitter)))
    steps.append(v2.ToDtype(torch.float32, scale=True))
    return v2.Compose(steps)


def segmentation_eval_preset(size: int | tuple[int, int] | None = None) -> v2.Compose:
    """Float in [0, 1]; with ``size``, also resize (image bilinear, mask nearest)."""
    steps: list[Callable] = [Resize(size)] if size is not None else []
    return v2.Compose([*steps, v2.ToDtype(torch.float32, scale=True)])


def _pair(size: int | Sequence[int]) -> list[int]:
    return [int(size), int(size)] if isinstance(size, int) else [int(s) for s in size]


def seed_worker(worker_id: int) -> None:
    """``DataLoader(worker_init_fn=seed_worker)``: seed numpy and ``random`` from the worker's torch
    seed (which the loader derives from its generator), so every library agrees per worker."""
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


def loader_generator(seed: int) -> torch.Generator:
    """``DataLoader(generator=loader_generator(seed))``: fixes shuffling and the workers' seeds."""
    generator = torch.Generator()
    generator.manual_seed(seed)
    return generator
