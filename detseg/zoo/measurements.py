"""The recorded measurements behind the docs' figures, and docs/figures.md generated from them.

``measurements.json`` beside this module holds one record per figure the docs state::

    {"groups": [{"id": "shapes-unet", "title": "...", "about": "..."}, ...],
     "figures": [{"id": "unet-shapes-seeds", "group": "shapes-unet", "figure": "U-Net, median of five seeds",
                  "metric": "val mIoU", "value": "0.860", "seeds": [0, 1, 2, 3, 4],
                  "per_seed": ["0.870", ...], "per_class": null, "trained_on": "...", "chosen_on": "...",
                  "scored_on": "...", "command": "...", "date": "...", "machine": "...", "commit": "...",
                  "note": "..."}, ...]}

Values are strings, written exactly as they were reported (``"0.870"`` keeps its last digit).
``detseg zoo figures --write docs/figures.md`` regenerates the page; a test checks that the committed
page equals :func:`render_figures_md` of the committed records. The zoo's per-model figures (params,
GFLOPs, CPU ms) are a different file, ``figures.json`` (``detseg zoo list``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

PACKAGE_MEASUREMENTS = Path(__file__).with_name("measurements.json")

REQUIRED = ("id", "group", "figure", "metric", "value", "trained_on", "chosen_on", "scored_on", "command",
            "date", "machine", "commit")


def load_measurements(path: str | Path | None = None) -> dict[str, Any]:
    """The measurements file as a dict, checked: every record has the required fields, a known group and a
    unique id, and its per-seed values match its seeds."""
    path = Path(path or PACKAGE_MEASUREMENTS)
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from err
    groups = {g["id"] for g in data.get("groups", [])}
    seen: set[str] = set()
    for i, rec in enumerate(data.get("figures", [])):
        where = f"{path}: figure {i} ({rec.get('id', '?')})"
        missing = [k for k in REQUIRED if not rec.get(k)]
        if missing:
            raise ValueError(f"{where}: missing {', '.join(missing)}")
        if rec["group"] not in groups:
            raise ValueError(f"{where}: unknown group {rec['group']!r}")
        if rec["id"] in seen:
            raise ValueError(f"{where}: duplicate id")
        seen.add(rec["id"])
        if rec.get("per_seed") and len(rec["per_seed"]) != len(rec.get("seeds") or []):
            raise ValueError(f"{where}: {len(rec['per_seed'])} per-seed values for seeds {rec.get('seeds')}")
    return data


def recorded_values(data: dict[str, Any]) -> set[str]:
    """Every recorded value, per-seed and per-class value as written (for checks that docs quote them)."""
    values: set[str] = set()
    for rec in data["figures"]:
        values.add(rec["value"])
        values.update(rec.get("per_seed") or [])
        values.update((rec.get("per_class") or {}).values())
    return values


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _value(rec: dict[str, Any]) -> str:
    value = f"**{rec['value']}**"
    if rec.get("per_seed"):
        seeds = ", ".join(f"{s}: {v}" for s, v in zip(rec["seeds"], rec["per_seed"], strict=True))
        value += f" (seeds {seeds})"
    elif rec.get("seeds"):
        value += f" (seed {', '.join(str(s) for s in rec['seeds'])})"
    if rec.get("per_class"):
        value += "; " + ", ".join(f"{k} {v}" for k, v in rec["per_class"].items())
    return value


def render_figures_md(data: dict[str, Any], source: str = "detseg/zoo/measurements.json") -> str:
    """docs/figures.md: one table per group, every figure with its splits, command and provenance."""
    lines = [
        "# Figures: everything measured, and how",
        "",
        f"<!-- Generated from {source} by `detseg zoo figures --write docs/figures.md`; do not edit. -->",
        "",
        f"Every figure detseg's docs state, generated from the recorded measurements in `{source}`. Each row",
        "says which split trained the model, which chose it (a checkpoint, a setting) and which scored it: a",
        "figure scored on the split that chose it is optimistic. *commit* is the first commit whose README",
        "stated the figure; *date* is the measurement date where it was recorded, else that commit's date.",
        "The zoo's per-model parameters, GFLOPs and CPU times are in `detseg zoo list` ([zoo.md](zoo.md)).",
        "",
    ]
    by_group: dict[str, list[dict[str, Any]]] = {}
    for rec in data["figures"]:
        by_group.setdefault(rec["group"], []).append(rec)
    for group in data["groups"]:
        records = by_group.get(group["id"], [])
        if not records:
            continue
        lines += [f"## {group['title']}", ""]
        if group.get("about"):
            lines += [group["about"], ""]
        lines += ["| figure | metric | value | trained on / chosen on / scored on | command "
                  "| date, machine, commit | note |", "|---|---|---|---|---|---|---|"]
        for rec in records:
            splits = f"{rec['trained_on']} / {rec['chosen_on']} / {rec['scored_on']}"
            measured = f"{rec['date']}; {rec['machine']}; `{rec['commit'][:7]}`"
            command = rec["command"]
            if not command.startswith(("see ", "the ")):  # a command line, not a pointer to a doc
                command = f"`{command}`"
            cells = [rec["figure"], rec["metric"], _value(rec), splits, command, measured,
                     rec.get("note", "")]
            lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
        lines.append("")
    return "\n".join(lines)
