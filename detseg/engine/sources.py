"""What ``predict`` reads: an image, a folder of any size, a video, or images in memory (arrays, tensors,
PIL images), as batches of :class:`Frame` (:func:`open_source` takes any of them).

Folders go through a ``DataLoader`` (``workers`` processes decode ahead; pinned memory on a GPU) that
holds only the batches in flight; videos are read frame by frame with OpenCV. Each frame carries the
seconds its reading and conversion took, so the preprocess time is per image even when workers
overlap it with inference.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv")


@dataclass
class Frame:
    """One input image: ``name`` (a file name, or ``<video stem>_<frame:06d>.png``), the ``uint8
    [H, W, C]`` pixels, the ``float [C, H, W]`` tensor in [0, 1], and its preprocessing seconds."""

    name: str
    array: np.ndarray
    tensor: torch.Tensor
    seconds: float
    path: str | None = None


def to_frame(name: str, array: np.ndarray, start: float, path: str | None = None) -> Frame:
    tensor = torch.from_numpy(np.ascontiguousarray(array)).permute(2, 0, 1).float().div(255.0)
    return Frame(name, array, tensor, time.perf_counter() - start, path)


def is_video(source: str | Path) -> bool:
    return Path(source).suffix.lower() in VIDEO_EXTENSIONS


def list_sources(source: str | Path) -> list[Path]:
    """The images of a folder (sorted), or ``[source]`` for one image."""
    from detseg.data.masks import IMAGE_EXTENSIONS, list_images

    source = Path(source)
    if source.is_dir():
        images = list_images(source)
        if not images:
            raise ValueError(f"{source}: no images ({', '.join(IMAGE_EXTENSIONS)}) in this folder")
        return images
    if not source.is_file():
        raise FileNotFoundError(f"image or folder not found: {source}")
    return [source]


class ImageFiles(torch.utils.data.Dataset):
    """Image files read as :class:`Frame` (``channels``: 3, 1 or 4)."""

    def __init__(self, paths: list[Path], channels: int = 3) -> None:
        self.paths, self.channels = paths, channels

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> Frame:
        from detseg.data.masks import read_image

        start = time.perf_counter()
        array = read_image(self.paths[i], channels=self.channels)
        return to_frame(self.paths[i].name, array, start, str(self.paths[i]))


def _keep_list(batch: list[Frame]) -> list[Frame]:
    return batch


def image_batches(
    paths: list[Path], channels: int = 3, batch_size: int = 1, workers: int = 0, pin_memory: bool = False
) -> Iterator[list[Frame]]:
    """Batches (lists) of frames from image files, decoded by ``workers`` processes ahead of use."""
    loader = torch.utils.data.DataLoader(
        ImageFiles(paths, channels),
        batch_size=batch_size,
        num_workers=workers,
        collate_fn=_keep_list,
        pin_memory=False,  # Frames are not tensors-only; pinned below
        persistent_workers=False,
    )
    for batch in loader:
        if pin_memory:
            for frame in batch:
                frame.tensor = frame.tensor.pin_memory()
        yield batch


class Video:
    """A video file read with OpenCV: ``len()`` frames (as the container says), ``fps``, ``size`` (W, H).

    A file OpenCV cannot open raises ``ValueError`` naming it.
    """

    def __init__(self, path: str | Path, channels: int = 3) -> None:
        import cv2

        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"video not found: {self.path}")
        self.capture = cv2.VideoCapture(str(self.path))
        ok = self.capture.isOpened()
        first = self.capture.read() if ok else (False, None)
        if not first[0]:
            self.capture.release()
            raise ValueError(f"{self.path}: cannot open this video (OpenCV reads no frame from it)")
        self.capture.set(cv2.CAP_PROP_POS_FRAMES, 0)
        self.fps = float(self.capture.get(cv2.CAP_PROP_FPS)) or 25.0
        self.frames = int(self.capture.get(cv2.CAP_PROP_FRAME_COUNT))
        self.size = (first[1].shape[1], first[1].shape[0])
        self.channels = channels

    def __len__(self) -> int:
        return self.frames

    def batches(self, batch_size: int = 1) -> Iterator[list[Frame]]:
        import cv2

        batch: list[Frame] = []
        index = 0
        try:
            while True:
                start = time.perf_counter()
                ok, bgr = self.capture.read()
                if not ok:
                    break
                index += 1
                if self.channels == 1:
                    array = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)[..., None]
                else:
                    array = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
                batch.append(to_frame(f"{self.path.stem}_{index:06d}.png", array, start))
                if len(batch) == batch_size:
                    yield batch
                    batch = []
            if batch:
                yield batch
        finally:
            self.capture.release()


class VideoWriter:
    """Annotated RGB frames to an .mp4 (``mp4v``) at the source's frame rate; opened on the first frame."""

    def __init__(self, path: str | Path, fps: float) -> None:
        self.path, self.fps, self.writer = Path(path), fps, None

    def write(self, rgb: np.ndarray) -> None:
        import cv2

        if self.writer is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            h, w = rgb.shape[:2]
            self.writer = cv2.VideoWriter(str(self.path), cv2.VideoWriter_fourcc(*"mp4v"), self.fps, (w, h))
            if not self.writer.isOpened():
                raise ValueError(f"{self.path}: OpenCV cannot write an mp4v video here")
        if rgb.ndim == 2 or rgb.shape[2] == 1:
            rgb = np.repeat(rgb.reshape(*rgb.shape[:2], 1), 3, axis=2)
        self.writer.write(cv2.cvtColor(np.ascontiguousarray(rgb[..., :3]), cv2.COLOR_RGB2BGR))

    def close(self) -> None:
        if self.writer is not None:
            self.writer.release()


def open_source(
    source: Any, channels: int = 3, batch_size: int = 1, workers: int = 0, pin_memory: bool = False
) -> tuple[Iterable[list[Frame]], int, Video | None]:
    """``(batches, image count, the Video or None)`` of any source: an image, a folder or a video file,
    a list of image files, or images in memory (``uint8 [H, W, 3]`` arrays, float ``Tensor[3, H, W]`` in
    [0, 1], PIL images; named ``image_1.png``...)."""
    if isinstance(source, (str, Path)) and is_video(source):
        video = Video(source, channels)
        return video.batches(batch_size), len(video), video
    if isinstance(source, (str, Path)):
        paths = list_sources(source)
    elif isinstance(source, (list, tuple)) and source and all(isinstance(s, (str, Path)) for s in source):
        paths = [Path(p) for p in source]
        for path in paths:
            if not path.is_file():
                raise FileNotFoundError(f"image not found: {path}")
    else:
        items = list(source) if isinstance(source, (list, tuple)) else [source]
        frames = [_memory_frame(f"image_{i}.png", item, channels) for i, item in enumerate(items, 1)]
        return (frames[i : i + batch_size] for i in range(0, len(frames), batch_size)), len(frames), None
    return image_batches(paths, channels, batch_size, workers, pin_memory), len(paths), None


def _memory_frame(name: str, item: Any, channels: int) -> Frame:
    """An image in memory (or a file, in a list with images in memory) as a frame of ``channels``."""
    from PIL import Image

    start = time.perf_counter()
    if isinstance(item, (str, Path)):
        from detseg.data.masks import read_image

        if not Path(item).is_file():
            raise FileNotFoundError(f"image not found: {item}")
        return to_frame(Path(item).name, read_image(item, channels=channels), start, str(item))
    if isinstance(item, torch.Tensor):
        array = (item.detach().clamp(0, 1) * 255).round().byte().permute(1, 2, 0).cpu().numpy()
    else:
        array = np.array(item.convert("RGB")) if hasattr(item, "convert") else np.asarray(item)
    if array.ndim != 3 or array.shape[2] not in (1, 3, 4) or array.dtype != np.uint8:
        raise ValueError(f"an image must be uint8 [H, W, 3], got {array.dtype} {array.shape}")
    if array.shape[2] != channels:
        mode = {1: "L", 3: "RGB", 4: "RGBA"}[channels]
        array = np.array(Image.fromarray(array.squeeze(2) if array.shape[2] == 1 else array).convert(mode))
        array = array[..., None] if array.ndim == 2 else array
    return to_frame(name, array, start)
