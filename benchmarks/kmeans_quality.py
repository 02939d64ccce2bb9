"""K-means colour quantization on a 1-megapixel image with K = 8: time, and MSE beside a full fit.

    python benchmarks/kmeans_quality.py [--images 5] [--seeds 5] [--repeat 10] [--threads N]

Images: CamVid frames resized to 1024 x 1024 (RGB). detseg fits weighted k-means on a 6-bit colour
histogram of every pixel and assigns every pixel; the reference is ``cv2.kmeans`` on all 1 048 576
pixels (k-means++, 3 attempts, the best kept; scikit-learn's KMeans too when it is installed).
MSE = mean over pixels of the squared RGB distance to the pixel's centroid. Targets: under 100 ms,
MSE within 2 % of the full fit. Times: wall (min and median) and CPU time (median; on a shared
machine wall time also counts other processes).
Run with OPENBLAS_NUM_THREADS=1 for one-core figures.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import cv2
import numpy as np

from detseg.classic import kmeans_quantize

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "camvid" / "val"
CRITERIA = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 100, 1e-3)


def full_fit_mse(pixels: np.ndarray, k: int, seed: int, attempts: int = 3) -> tuple[float, float]:
    """MSE and seconds of cv2.kmeans on every pixel."""
    cv2.setRNGSeed(seed)
    start = time.perf_counter()
    compactness, _, _ = cv2.kmeans(pixels, k, None, CRITERIA, attempts, cv2.KMEANS_PP_CENTERS)
    return compactness / pixels.shape[0], time.perf_counter() - start


def sklearn_mse(pixels: np.ndarray, k: int, seed: int) -> float | None:
    try:
        from sklearn.cluster import KMeans
    except ImportError:
        return None
    return float(KMeans(k, n_init=3, random_state=seed).fit(pixels).inertia_ / pixels.shape[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=5)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument("-k", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1, help="cv2.setNumThreads (1)")
    args = parser.parse_args()
    cv2.setNumThreads(args.threads)
    paths = sorted(DATA.glob("*.png"))
    paths = paths[:: max(1, len(paths) // args.images)][: args.images]
    print(f"K = {args.k}, 1024x1024 RGB, OpenCV {cv2.__version__} with {cv2.getNumThreads()} threads")
    print(f"{'image':<18} {'min ms':>7} {'median ms':>9} {'CPU ms':>7} {'MSE':>8} {'full MSE':>9} "
          f"{'ratio':>13} {'full fit s':>10} {'sklearn MSE':>11}")
    all_ratios, all_times, all_cpu = [], [], []
    for path in paths:
        image = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
        image = cv2.resize(image, (1024, 1024), interpolation=cv2.INTER_LINEAR)
        pixels = image.reshape(-1, 3).astype(np.float32)
        reference, seconds = full_fit_mse(pixels, args.k, 0)
        times, cpu_times, ratios, mses = [], [], [], []
        for seed in range(args.seeds):
            for _ in range(args.repeat if seed == 0 else 1):
                start, cpu = time.perf_counter(), time.process_time()
                result = kmeans_quantize(image, args.k, seed=seed)
                times.append(time.perf_counter() - start)
                cpu_times.append(time.process_time() - cpu)
            mses.append(result.mse)
            ratios.append(result.mse / reference)
        all_ratios += ratios
        all_times += times
        all_cpu += cpu_times
        sk = sklearn_mse(pixels, args.k, 0)
        print(f"{path.stem:<18} {min(times) * 1000:>7.1f} {statistics.median(times) * 1000:>9.1f} "
              f"{statistics.median(cpu_times) * 1000:>7.1f} "
              f"{statistics.mean(mses):>8.2f} {reference:>9.2f} "
              f"{statistics.mean(ratios):>6.3f}/{max(ratios):.3f} {seconds:>10.2f} "
              f"{'-' if sk is None else f'{sk:.2f}':>11}")
    fastest, typical = min(all_times) * 1000, statistics.median(all_times) * 1000
    print(f"all: wall min {fastest:.1f} ms, median {typical:.1f} ms, CPU median "
          f"{statistics.median(all_cpu) * 1000:.1f} ms; "
          f"MSE / full-fit MSE mean {statistics.mean(all_ratios):.4f}, worst {max(all_ratios):.4f} "
          f"(ratio column: mean/worst over {args.seeds} seeds)")


if __name__ == "__main__":
    main()
