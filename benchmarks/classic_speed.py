"""Each classical method beside the raw OpenCV call(s) it wraps, on a 1024 x 1024 image.

    python benchmarks/classic_speed.py [--size 1024] [--repeat 30] [--threads N]

Input: a CamVid frame resized to size x size (RGB; grey methods get the OpenCV luma as their input so
that the conversion is not counted on one side only). For each method: the median of ``--repeat``
timed runs (after 3 warm-up runs) of detseg's function and of the raw OpenCV code that produces the
same result, and the ratio (target <= 1.2). Interleaved runs, so that load from other processes hits
both sides alike; the fastest run is reported (the least disturbed on a shared machine), in wall time
and in CPU time (timer resolution limits CPU figures under about 1 ms). Multi-level Otsu has no OpenCV
counterpart: it is compared with scikit-image's ``threshold_multiotsu`` + ``np.digitize`` instead.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import cv2
import numpy as np

from detseg import classic

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "camvid" / "val" / "0016E5_07959.png"


def cases(rgb: np.ndarray, gray: np.ndarray):
    """(name, detseg call, raw OpenCV call) triples producing the same output."""
    from skimage.filters import threshold_multiotsu
    otsu_t = float(classic.otsu_threshold(gray))
    mask = classic.threshold_otsu(gray)
    mask_u8 = mask.view(np.uint8)
    kernel = classic.structuring_element(2)

    def raw_sobel():
        gx = cv2.Sobel(gray, cv2.CV_32F, 1, 0)
        gy = cv2.Sobel(gray, cv2.CV_32F, 0, 1)
        return cv2.cartToPolar(gx, gy, angleInDegrees=True)

    def raw_canny():
        return cv2.Canny(cv2.GaussianBlur(gray, (0, 0), 1.0), 50, 150)

    def raw_flood():
        m = np.zeros((gray.shape[0] + 2, gray.shape[1] + 2), np.uint8)
        flags = 4 | cv2.FLOODFILL_FIXED_RANGE | cv2.FLOODFILL_MASK_ONLY | (1 << 8)
        cv2.floodFill(gray, m, (512, 512), 0, 20, 20, flags)
        return m

    def raw_open():
        # outside = background: for an opening a constant 0 border gives the same result as padding
        return cv2.morphologyEx(mask_u8, cv2.MORPH_OPEN, kernel, borderType=cv2.BORDER_CONSTANT,
                                borderValue=0)

    def raw_close():
        padded = cv2.copyMakeBorder(mask_u8, 2, 2, 2, 2, cv2.BORDER_CONSTANT, value=0)
        return cv2.morphologyEx(padded, cv2.MORPH_CLOSE, kernel)

    return [
        ("threshold fixed", lambda: classic.threshold_fixed(gray, 128),
         lambda: cv2.threshold(gray, 128, 255, cv2.THRESH_BINARY)),
        ("otsu exact=True (skimage's value)", lambda: classic.threshold_otsu(gray, exact=True),
         lambda: cv2.threshold(gray, 0, 255, cv2.THRESH_BINARY | cv2.THRESH_OTSU)),
        ("otsu (default, OpenCV's)", lambda: classic.threshold_otsu(gray),
         lambda: cv2.threshold(gray, 0, 255, cv2.THRESH_BINARY | cv2.THRESH_OTSU)),
        ("adaptive gaussian 35", lambda: classic.threshold_adaptive(gray, 35, 2),
         lambda: cv2.adaptiveThreshold(gray, 255, cv2.ADAPTIVE_THRESH_GAUSSIAN_C, cv2.THRESH_BINARY, 35, 2)),
        ("multiotsu 3 (vs skimage, no OpenCV)", lambda: classic.threshold_multiotsu(gray, 3),
         lambda: np.digitize(gray, threshold_multiotsu(gray, 3), right=True)),
        ("sobel (gx, gy, magnitude, direction)", lambda: classic.sobel(gray), raw_sobel),
        ("canny blur 1 + 50/150", lambda: classic.canny(gray, 50, 150), raw_canny),
        ("region grow (seed) tol 20", lambda: classic.region_grow(gray, [(512, 512)], 20), raw_flood),
        ("open r=2", lambda: classic.opening(mask, 2), raw_open),
        ("close r=2 (padded)", lambda: classic.closing(mask, 2), raw_close),
        ("remove small < 50", lambda: classic.remove_small_components(mask, 50),
         lambda: cv2.connectedComponentsWithStats(mask_u8, connectivity=8)),
        ("connected components", lambda: classic.connected_components(mask),
         lambda: cv2.connectedComponents(mask_u8, connectivity=8, ltype=cv2.CV_32S)),
        ("fill holes", lambda: classic.fill_holes(mask),
         lambda: cv2.floodFill(cv2.copyMakeBorder(mask_u8, 1, 1, 1, 1, cv2.BORDER_CONSTANT, value=0),
                               np.zeros((gray.shape[0] + 4, gray.shape[1] + 4), np.uint8), (0, 0), 1, 0, 0,
                               4 | cv2.FLOODFILL_MASK_ONLY | (1 << 8))),
    ], otsu_t


def timed(fn) -> tuple[float, float]:
    """Wall and CPU seconds of one call (CPU time is what the call itself used: on a shared machine it
    is barely inflated by other processes, unlike wall time)."""
    start, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - start, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--threads", type=int, default=1, help="cv2.setNumThreads (1)")
    args = parser.parse_args()
    cv2.setNumThreads(args.threads)
    rgb = cv2.cvtColor(cv2.imread(str(DATA)), cv2.COLOR_BGR2RGB)
    rgb = cv2.resize(rgb, (args.size, args.size), interpolation=cv2.INTER_LINEAR)
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    table, _ = cases(rgb, gray)
    print(f"{args.size}x{args.size}, fastest of {args.repeat} runs, OpenCV {cv2.__version__}, "
          f"{cv2.getNumThreads()} OpenCV thread(s); wall ms and CPU ms")
    columns = f"{'detseg':>8} {'OpenCV':>8} {'ratio':>6}"
    print(f"{'method':<40} {columns} | {columns}")
    worst = 0.0
    for name, ours, raw in table:
        for _ in range(3):
            ours(), raw()
        a, b = [], []
        for _ in range(args.repeat):
            a.append(timed(ours))
            b.append(timed(raw))
        wall_a, wall_b = min(t[0] for t in a) * 1000, min(t[0] for t in b) * 1000
        cpu_a, cpu_b = min(t[1] for t in a) * 1000, min(t[1] for t in b) * 1000
        ratio = wall_a / wall_b
        cpu_ratio = cpu_a / cpu_b if cpu_b > 0 else float("nan")
        if not name.startswith("multiotsu"):
            worst = max(worst, ratio)
        flag = "" if ratio <= 1.2 else "  > 1.2"
        print(f"{name:<40} {wall_a:>8.3f} {wall_b:>8.3f} {ratio:>6.2f} | {cpu_a:>8.3f} {cpu_b:>8.3f} "
              f"{cpu_ratio:>6.2f}{flag}")
    print(f"worst wall ratio against OpenCV {worst:.2f}")


if __name__ == "__main__":
    main()
