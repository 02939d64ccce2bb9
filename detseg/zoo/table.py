"""The lecture's model-zoo table (TF2 Detection Model Zoo's shape: model, speed, accuracy, outputs),
from the registry and the figures file; every figure is one measured here, or "-" with a footnote."""

from __future__ import annotations

from typing import Any

OUTPUTS = {"detect": "boxes", "segment": "masks", "classify": "label"}
COLUMNS = ("name", "task", "backbone", "input", "params (M)", "GFLOPs", "CPU ms", "accuracy", "measured on",
           "outputs")


def zoo_rows(task: str | None = None, figures: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """One dict per registered model (of ``task``): registry facts, its measured figures (entries of the
    figures file, with how they were obtained) and whether a build recipe exists."""
    from detseg.models.zoo import list_models, model_info
    from detseg.zoo.build import RECIPES
    from detseg.zoo.figures import load_figures

    figures = load_figures() if figures is None else figures
    rows = []
    for name in list_models(task=task):
        info = model_info(name)
        rows.append({
            "name": name,
            "task": info.task,
            "backbone": info.backbone,
            "input_size": list(info.input_size),
            "outputs": OUTPUTS.get(info.task, str(info.extra.get("outputs", ""))),
            "recipe": name in RECIPES,
            "figures": figures.get("models", {}).get(name, {}),
        })
    return rows


def _value(figures: dict[str, Any], key: str, fmt: str) -> str:
    entry = figures.get(key)
    return "-" if not entry or entry.get("value") is None else format(entry["value"], fmt)


def format_table(rows: list[dict[str, Any]]) -> str:
    """The rows as an aligned text table with footnotes on missing figures and on how ms were measured."""
    lines = []
    missing_bench, missing_acc, recipes = [], [], []
    machines = set()
    for row in rows:
        f = row["figures"]
        params = f.get("params", {}).get("value")
        acc = f.get("accuracy") or {}
        accuracy = "-" if acc.get("value") is None else f"{acc.get('metric', '')} {acc['value']:.3f}".strip()
        if "cpu_ms" not in f or "gflops" not in f or "params" not in f:
            missing_bench.append(row["name"])
        if not acc:
            (recipes if row["recipe"] else missing_acc).append(row["name"])
        if "cpu_ms" in f:
            how = f["cpu_ms"].get("how", {})
            m = how.get("machine", {})
            machines.add(f"{m.get('processor', '?')}, {m.get('cpu_count', '?')} cores, "
                         f"{f['cpu_ms'].get('threads', '?')} thread(s), torch {m.get('torch', '?')}"
                         + (f"; {how['note']}" if how.get("note") else ""))
        c, h, w = row["input_size"]
        lines.append((
            row["name"], row["task"], row["backbone"], f"{h}x{w}",
            "-" if params is None else f"{params / 1e6:.1f}",
            _value(f, "gflops", ".1f"), _value(f, "cpu_ms", ".0f"), accuracy,
            acc.get("data", "-") if acc else "-", row["outputs"],
        ))
    widths = [max(len(str(x)) for x in col) for col in zip(COLUMNS, *lines, strict=True)]
    text = [" | ".join(str(x).ljust(wd) for x, wd in zip(r, widths, strict=True)).rstrip()
            for r in [COLUMNS, *lines]]
    text.insert(1, "-+-".join("-" * wd for wd in widths))
    notes = ["GFLOPs: torch.utils.flop_counter at the input size, batch 1 (a multiply-add = 2 FLOPs). "
             "CPU ms: median forward pass, batch 1, inference mode, random weights, detectors with NMS."]
    for machine in sorted(machines):
        notes.append(f"CPU ms measured on: {machine}.")
    if missing_bench:
        notes.append(f"'-' in params/GFLOPs/CPU ms: not measured yet; run `detseg zoo bench "
                     f"{' '.join(missing_bench[:3])}{' ...' if len(missing_bench) > 3 else ''} --write`.")
    if recipes:
        notes.append(f"'-' accuracy with a recipe: run `detseg zoo build NAME` ({', '.join(recipes)}).")
    if missing_acc:
        notes.append("'-' accuracy without a recipe: no detseg-trained weights yet; train with `detseg train`"
                     " and measure with `detseg eval`.")
    return "\n".join(text + [""] + [f"* {n}" for n in notes])
