"""The zoo's figures file: measured figures per model, each with how it was obtained.

    {"models": {"unet": {
        "params":   {"value": 31031810, "how": {...}},
        "gflops":   {"value": 419.3, "input_size": [3, 572, 572], "how": {...}},
        "cpu_ms":   {"value": 812.0, "threads": 1, "repeats": 5, "input_size": [...], "how": {...}},
        "accuracy": {"value": 0.93, "metric": "mIoU", "data": "synthetic shapes ...", "how": {...}},
        "weights":  {"file": "unet_shapes.pt", "sha256": "...", "how": {...}}}}}

``how`` = ``{"command", "date", "machine": {"platform", "processor", "cpu_count", "torch_threads",
"torch"}, "commit", "note"}``. The committed file is ``figures.json`` beside this module;
``$DETSEG_ZOO_FIGURES`` or a ``path`` argument points elsewhere (tests write a temporary one).
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import subprocess
import tempfile
from pathlib import Path
from typing import Any

PACKAGE_FIGURES = Path(__file__).with_name("figures.json")


def figures_path(path: str | Path | None = None) -> Path:
    """``path``, else ``$DETSEG_ZOO_FIGURES``, else the package's ``figures.json``."""
    return Path(path or os.environ.get("DETSEG_ZOO_FIGURES") or PACKAGE_FIGURES)


def load_figures(path: str | Path | None = None) -> dict[str, Any]:
    """The figures file as a dict (``{"models": {}}`` when there is none yet)."""
    path = figures_path(path)
    if not path.is_file():
        return {"models": {}}
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from err
    if not isinstance(data, dict) or not isinstance(data.get("models"), dict):
        raise ValueError(f"{path}: expected an object with a 'models' object")
    return data


def record_figures(name: str, entries: dict[str, dict[str, Any]], path: str | Path | None = None) -> Path:
    """Set figures (``{"cpu_ms": {...}, ...}``) of model ``name`` and write the file atomically."""
    path = figures_path(path)
    data = load_figures(path)
    data["models"].setdefault(name, {}).update(entries)
    data["models"] = dict(sorted(data["models"].items()))
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=1, sort_keys=False)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def git_commit() -> str:
    """The detseg source tree's git commit (with ``+dirty`` for uncommitted changes), or ``""``."""
    root = Path(__file__).resolve().parents[2]
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                             timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""
    return sha + ("+dirty" if dirty else "")


def machine(device: str = "cpu") -> dict[str, Any]:
    """The machine a figure was measured on: platform, CPU, torch, the ``device`` the work ran on (with
    the GPU's name for ``cuda``) and the 1-minute load average (other jobs slow CPU timings down)."""
    import torch

    info = {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "device": str(device),
    }
    if str(device).startswith("cuda") and torch.cuda.is_available():
        info["device_name"] = torch.cuda.get_device_name(torch.device(device))
    if hasattr(os, "getloadavg"):
        info["load_avg_1min"] = round(os.getloadavg()[0], 2)
    return info


def how_obtained(command: str, note: str = "", device: str = "cpu") -> dict[str, Any]:
    """The provenance record of a figure measured now by ``command`` on ``device``."""
    how = {
        "command": command,
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": machine(device),
        "commit": git_commit(),
    }
    if note:
        how["note"] = note
    return how
