"""Reading and checking images for the classical methods.

Every method in :mod:`detseg.classic` works on ``uint8`` arrays: greyscale ``[H, W]`` or colour
``[H, W, 3]`` in RGB order (detseg's convention; OpenCV's BGR is converted on read). Other inputs get
a clear ``ValueError``, or a documented conversion through :func:`to_uint8` / :func:`read_image`:

- 16-bit images are scaled to 8 bits by ``round(v / 257)`` (65535 -> 255);
- float images must lie in [0, 1] and are scaled by ``round(v * 255)``; NaN or values outside are an error;
- RGBA drops the alpha channel (a classical method has no use for it); two-channel grey+alpha keeps grey;
- empty images (a zero-sized side) are an error; a single pixel is a valid image.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def check_image(image: np.ndarray, name: str = "image", allow_color: bool = True) -> np.ndarray:
    """Check that ``image`` is a non-empty uint8 ``[H, W]`` or ``[H, W, 3]`` array and return it.

    Raises ``ValueError`` naming ``name`` and what is wrong (dtype, shape, emptiness).
    """
    if not isinstance(image, np.ndarray):
        raise ValueError(f"{name}: expected a numpy array, got {type(image).__name__}")
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] != 3):
        raise ValueError(f"{name}: expected shape [H, W] or [H, W, 3], got {list(image.shape)}")
    if image.ndim == 3 and not allow_color:
        raise ValueError(f"{name}: expected a greyscale [H, W] image, got {list(image.shape)}")
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(f"{name}: empty image of shape {list(image.shape)}")
    if image.dtype != np.uint8:
        raise ValueError(
            f"{name}: expected uint8, got {image.dtype}; convert with detseg.classic.to_uint8 "
            "(16-bit is scaled by 1/257, float must be in [0, 1])"
        )
    return image


def to_uint8(image: np.ndarray, name: str = "image") -> np.ndarray:
    """Convert ``image`` to uint8 as documented in this module (16-bit, float, RGBA, grey+alpha)."""
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[2] == 4:
        image = image[:, :, :3]  # RGBA: alpha has no meaning for thresholds or clusters
    elif image.ndim == 3 and image.shape[2] == 2:
        image = image[:, :, 0]  # grey + alpha
    if image.dtype == np.uint8:
        pass
    elif image.dtype == np.uint16:
        image = ((image.astype(np.uint32) + 128) // 257).astype(np.uint8)
    elif image.dtype == np.bool_:
        image = image.astype(np.uint8) * 255
    elif np.issubdtype(image.dtype, np.floating):
        if image.size and (not np.isfinite(image).all() or image.min() < 0 or image.max() > 1):
            raise ValueError(f"{name}: float image must hold finite values in [0, 1]")
        image = np.rint(image * 255).astype(np.uint8)
    else:
        raise ValueError(f"{name}: unsupported dtype {image.dtype} (use uint8, uint16, float or bool)")
    return check_image(image, name)


def read_image(path: str | Path) -> np.ndarray:
    """Read an image file as uint8 grey ``[H, W]`` or RGB ``[H, W, 3]``, converting as documented.

    Raises ``ValueError`` if the file is missing or OpenCV cannot decode it.
    """
    import cv2

    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: no such image file")
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise ValueError(f"{path}: cannot read image (not an image file, or a format OpenCV cannot decode)")
    if image.ndim == 3 and image.shape[2] in (3, 4):
        code = cv2.COLOR_BGRA2RGBA if image.shape[2] == 4 else cv2.COLOR_BGR2RGB
        image = cv2.cvtColor(image, code)
    return to_uint8(image, name=str(path))


def write_image(path: str | Path, image: np.ndarray) -> None:
    """Write a uint8 grey or RGB image (RGB order) to ``path``, creating its folder."""
    import cv2

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if image.dtype == np.bool_:
        image = image.astype(np.uint8) * 255
    if image.ndim == 3:
        image = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    if not cv2.imwrite(str(path), image):
        raise ValueError(f"{path}: cannot write image")


def overlay(image: np.ndarray, result: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """RGB ``uint8 [H, W, 3]``: ``image`` with a bool mask tinted red, or labels in distinct colours
    (label 0 of an ``int`` map is left untinted only for masks)."""
    import cv2

    base = image if image.ndim == 3 else cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    if result.dtype == np.bool_:
        colours = np.zeros(base.shape, np.uint8)
        colours[result] = (255, 0, 0)
        weight = np.where(result[..., None], alpha, 0.0)
    else:
        rng = np.random.default_rng(12345)  # fixed palette: the same label gets the same colour
        palette = rng.integers(0, 256, (int(result.max()) + 1, 3), dtype=np.uint8)
        colours = palette[result]
        weight = np.full(result.shape + (1,), alpha)
    return np.clip(base * (1 - weight) + colours * weight, 0, 255).astype(np.uint8)
