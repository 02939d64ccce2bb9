"""Evaluation plots as PNG files (matplotlib's Agg backend: no display needed)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np


def pyplot():
    """matplotlib.pyplot on the Agg backend (files only, no display)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name) or "class"


#: Pixels per inch of every plot: a 6 x 5 inch figure is 900 x 750 px, its 8-point text 17 px tall.
DPI = 150


def save_figure(fig, path: str | Path) -> Path:
    """Lay out, write as PNG (``DPI``) and close ``fig``."""
    path = Path(path)
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    pyplot().close(fig)
    return path


def _plot_curves(curves: dict, path: str | Path, xy, best, labels: dict, legend_loc: str = "best") -> Path:
    """One line per class (``xy(curve) -> (x, y)``), its F1-optimal point (``best(curve) -> (x, y)``)
    marked; the legend only for up to 12 classes."""
    fig, ax = pyplot().subplots(figsize=(6, 5))
    for name, c in curves.items():
        x, y = xy(c)
        if len(x) == 0:
            continue
        ax.plot(x, y, lw=1.2, label=name if len(curves) <= 12 else None)
        ax.plot(*([v] for v in best(c)), "o", ms=4, color=ax.lines[-1].get_color())
    ax.set(**labels)
    ax.grid(alpha=0.3)
    if 0 < len(curves) <= 12:
        ax.legend(fontsize=9, loc=legend_loc)
    return save_figure(fig, path)


def plot_pr_curve(curves: dict, path: str | Path, title: str = "Precision-recall") -> Path:
    """PR curves of several classes (``{name: PRCurve}``) on one axes; the F1-optimal point marked."""
    return _plot_curves(
        curves,
        path,
        lambda c: (c.recall, c.precision),
        lambda c: c.best_f1()[3:1:-1],  # (recall, precision) at the best F1
        dict(xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.02), title=title),
        legend_loc="lower left",
    )


def plot_f1_curve(curves: dict, path: str | Path, title: str = "F1 versus score threshold") -> Path:
    """F1 as a function of the score threshold per class; the best threshold marked."""
    return _plot_curves(
        curves,
        path,
        lambda c: (c.thresholds, c.f1),
        lambda c: c.best_f1()[:2],  # (threshold, F1)
        dict(xlabel="score threshold (keep scores >= it)", ylabel="F1", ylim=(0, 1.02), title=title),
    )


def plot_confusion_matrix(
    matrix: np.ndarray,
    labels: list[str],
    path: str | Path,
    title: str = "Confusion matrix (rows: truth, columns: prediction)",
) -> Path:
    """A count matrix as an image with the counts written in (up to 30 labels)."""
    plt = pyplot()
    m = np.asarray(matrix)
    k = len(labels)
    size = min(4 + 0.4 * k, 20)
    fig, ax = plt.subplots(figsize=(size, size * 0.85))
    im = ax.imshow(np.log1p(m), cmap="Blues")
    fig.colorbar(im, ax=ax, label="log(1 + count)", shrink=0.8)
    if k <= 30:
        ax.set_xticks(range(k), labels, rotation=90, fontsize=9)
        ax.set_yticks(range(k), labels, fontsize=9)
        top = m.max() if m.size else 0
        for i in range(k):
            for j in range(k):
                if m[i, j]:
                    ax.text(
                        j,
                        i,
                        str(m[i, j]),
                        ha="center",
                        va="center",
                        fontsize=8,
                        color="white" if m[i, j] > top / 2 else "black",
                    )
    ax.set(xlabel="prediction", ylabel="truth", title=title)
    return save_figure(fig, path)


def write_detection_plots(
    curves: dict, pooled, confusion, out_dir: str | Path, max_classes: int = 100
) -> list[Path]:
    """All detection plots into ``out_dir``: pr_all.png (every class and the pooled curve), f1_all.png,
    pr_<class>.png per class (the first ``max_classes``) and confusion_matrix.png."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = [
        plot_pr_curve(
            {**curves, "all classes": pooled} if len(curves) <= 11 else {"all classes": pooled},
            out / "pr_all.png",
            "Precision-recall, all classes",
        ),
        plot_f1_curve(
            {**curves, "all classes": pooled} if len(curves) <= 11 else {"all classes": pooled},
            out / "f1_all.png",
            "F1 versus score threshold, all classes",
        ),
    ]
    for name, c in list(curves.items())[:max_classes]:
        written.append(plot_pr_curve({name: c}, out / f"pr_{_safe(name)}.png", f"Precision-recall: {name}"))
    if confusion is not None:
        written.append(
            plot_confusion_matrix(
                confusion.matrix,
                confusion.labels,
                out / "confusion_matrix.png",
                f"Confusion at score >= {confusion.score_threshold:.3f}, IoU >= {confusion.iou:g}",
            )
        )
    return written
