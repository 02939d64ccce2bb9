"""What a run writes beside its checkpoints: CSV logs, optional TensorBoard, PNG curves.

- ``steps.csv``: one row per optimizer step (epoch, step, lr, loss and each loss term);
- ``log.csv``: one row per epoch (training means, validation loss and metrics, seconds);
- ``loss.png`` and ``metrics.png``: those curves, drawn with matplotlib's Agg backend (no display);
- ``tensorboard/``: the same scalars, when ``tensorboard=True`` and the package is installed.

Only the main process writes (the trainer passes ``enabled=False`` elsewhere).
"""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any

SUMMARY_METRICS = ("miou", "mdice", "pixel_accuracy", "mean_accuracy", "AP", "AP50", "AP75")


class RunLogger:
    def __init__(
        self, out: str | Path, enabled: bool = True, tensorboard: bool = False, resume: bool = False
    ):
        self.out = Path(out)
        self.enabled = enabled
        self.writer = None
        if not enabled:
            return
        self.out.mkdir(parents=True, exist_ok=True)
        if not resume:
            for name in ("steps.csv", "log.csv"):
                (self.out / name).unlink(missing_ok=True)
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError as exc:  # tensorboard is optional
                raise ValueError(
                    "--tensorboard needs the 'tensorboard' package: pip install tensorboard"
                ) from exc
            self.writer = SummaryWriter(str(self.out / "tensorboard"))

    def _append(self, name: str, row: dict[str, Any]) -> None:
        path = self.out / name
        rows = read_csv(path) if path.is_file() else []
        fields = list(rows[0].keys()) if rows else []
        new = [k for k in row if k not in fields]
        if new and rows:
            # A column appeared (e.g. a metric computed from the second epoch on): rewrite with it.
            fields += new
            with path.open("w", newline="") as f:
                w = csv.DictWriter(f, fieldnames=fields)
                w.writeheader()
                w.writerows(rows)
        with path.open("a", newline="") as f:
            w = csv.DictWriter(f, fieldnames=fields or list(row), extrasaction="ignore")
            if not rows:
                w.writeheader()
            w.writerow(row)

    def log_step(self, row: dict[str, Any]) -> None:
        if not self.enabled:
            return
        with (self.out / "steps.csv").open("a", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(row))
            if f.tell() == 0:
                w.writeheader()
            w.writerow(row)
        if self.writer is not None:
            for k, v in row.items():
                if k not in ("epoch", "step"):
                    self.writer.add_scalar(f"step/{k}", v, row["step"])

    def log_epoch(self, row: dict[str, Any]) -> None:
        if not self.enabled:
            return
        self._append("log.csv", row)
        if self.writer is not None:
            for k, v in row.items():
                if k not in ("epoch", "step") and isinstance(v, int | float):
                    self.writer.add_scalar(f"epoch/{k}", v, row["epoch"])
            self.writer.flush()

    def truncate_steps(self, step: int) -> None:
        """On resume, drop step rows past ``step`` (written after the checkpoint) so the log reads on."""
        for name, key, limit in (("steps.csv", "step", step),):
            path = self.out / name
            if self.enabled and path.is_file():
                rows = [r for r in read_csv(path) if int(float(r[key])) <= limit]
                with path.open("w", newline="") as f:
                    if rows:
                        w = csv.DictWriter(f, fieldnames=list(rows[0]))
                        w.writeheader()
                        w.writerows(rows)

    def truncate_epochs(self, epochs_done: int) -> None:
        path = self.out / "log.csv"
        if self.enabled and path.is_file():
            rows = [r for r in read_csv(path) if int(float(r["epoch"])) <= epochs_done]
            with path.open("w", newline="") as f:
                if rows:
                    w = csv.DictWriter(f, fieldnames=list(rows[0]))
                    w.writeheader()
                    w.writerows(rows)

    def plot(self) -> None:
        """Draw ``loss.png`` (per step and per epoch) and ``metrics.png`` (validation metrics per epoch)."""
        if not self.enabled:
            return
        plot_run(self.out)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def read_csv(path: str | Path) -> list[dict[str, str]]:
    with Path(path).open(newline="") as f:
        return list(csv.DictReader(f))


def _floats(rows: list[dict[str, str]], key: str) -> list[float]:
    out = []
    for r in rows:
        try:
            out.append(float(r.get(key) or "nan"))
        except ValueError:
            out.append(math.nan)
    return out


def plot_run(out: str | Path) -> list[Path]:
    """Draw a run folder's curves from its CSV logs; returns the PNG files written."""
    from detseg.viz.plots import pyplot, save_figure

    plt = pyplot()

    out = Path(out)
    written = []
    steps = read_csv(out / "steps.csv") if (out / "steps.csv").is_file() else []
    epochs = read_csv(out / "log.csv") if (out / "log.csv").is_file() else []
    if steps or epochs:
        fig, ax = plt.subplots(figsize=(7, 4))
        if steps:
            ax.plot(_floats(steps, "step"), _floats(steps, "loss"), lw=0.8, alpha=0.6, label="train (step)")
        if epochs:
            x = _floats(epochs, "step")
            ax.plot(x, _floats(epochs, "train_loss"), "o-", label="train (epoch mean)")
            if "val_loss" in epochs[0]:
                ax.plot(x, _floats(epochs, "val_loss"), "s-", label="validation")
        ax.set_xlabel("step")
        ax.set_ylabel("loss")
        ax.set_yscale("log")
        ax.grid(True, alpha=0.3)
        ax.legend()
        written.append(save_figure(fig, out / "loss.png"))
    # The summary metrics only (per-class columns stay in the CSV).
    header = epochs[0] if epochs else {}
    metric_keys = [k for k in header if k.startswith("val_") and k[4:] in SUMMARY_METRICS]
    if metric_keys:
        fig, ax = plt.subplots(figsize=(7, 4))
        x = _floats(epochs, "epoch")
        for k in metric_keys:
            ax.plot(x, _floats(epochs, k), "o-", label=k[4:])
        ax.set_xlabel("epoch")
        ax.set_ylabel("validation metric")
        ax.grid(True, alpha=0.3)
        ax.legend()
        written.append(save_figure(fig, out / "metrics.png"))
    return written
