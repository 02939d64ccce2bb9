"""The lecture's model-zoo table (TF2 Detection Model Zoo's shape: model, speed, accuracy, outputs),
from the registry and the figures file; every figure is one measured here, or "-" with a footnote that
says how to measure it, and footnotes say how the figures shown were obtained."""

from __future__ import annotations

from typing import Any

OUTPUTS = {"detect": "boxes", "segment": "masks", "classify": "label"}
COLUMNS = ("name", "task", "backbone", "input", "params (M)", "GFLOPs", "CPU ms", "CPU-time ms", "accuracy",
           "measured on", "outputs")
#: How to get an accuracy figure for a classification entry (no zoo recipe yet).
CLASSIFY_ACCURACY = ("python benchmarks/hymenoptera_transfer.py --model NAME (ants vs bees; prints the "
                     "validation accuracy, does not record it here)")


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


def _value(figures: dict[str, Any], key: str, fmt: str, field: str = "value") -> str:
    entry = figures.get(key)
    return "-" if not entry or entry.get(field) is None else format(entry[field], fmt)


def _machine(how: dict[str, Any]) -> str:
    m = how.get("machine", {})
    device = m.get("device_name") or m.get("device") or "cpu"
    return (f"{m.get('processor', '?')}, {m.get('cpu_count', '?')} cores, torch {m.get('torch', '?')}, "
            f"{device}")


def _bench_notes(rows: list[dict[str, Any]]) -> list[str]:
    """One note per machine and note the speed figures were measured under: dates, threads, load."""
    groups: dict[tuple[str, str], dict[str, Any]] = {}
    for row in rows:
        entry = row["figures"].get("cpu_ms")
        if not entry:
            continue
        how = entry.get("how", {})
        g = groups.setdefault((_machine(how), how.get("note", "")),
                              {"dates": [], "threads": set(), "repeats": set(), "loads": [], "n": 0})
        g["n"] += 1
        g["dates"].append(how.get("date", "?")[:10])
        g["threads"].add(entry.get("threads", "?"))
        g["repeats"].add(entry.get("repeats", "?"))
        load = how.get("machine", {}).get("load_avg_1min")
        if load is not None:
            g["loads"].append(load)
    notes = []
    for (machine, note), g in sorted(groups.items()):
        text = (f"params/GFLOPs/CPU ms of {g['n']} models: `detseg zoo bench NAME --write` on {machine}, "
                f"{'/'.join(map(str, sorted(g['threads'], key=str)))} thread(s), median of "
                f"{'/'.join(map(str, sorted(g['repeats'], key=str)))} pass(es), "
                f"{min(g['dates'])}..{max(g['dates'])}")
        if g["loads"]:
            text += f", 1-min load average {min(g['loads']):.1f}-{max(g['loads']):.1f}"
        notes.append(text + (f"; {note}" if note else "") + ".")
    return notes


def _accuracy_note(name: str, acc: dict[str, Any]) -> str:
    how = acc.get("how", {})
    threads = how.get("machine", {}).get("torch_threads")
    return (f"{name} accuracy: `{how.get('command', '?')}` on {_machine(how)}"
            + (f", {threads} thread(s)" if threads else "")
            + f", {how.get('date', '?')[:10]}, commit {how.get('commit', '?')[:12] or '?'}.")


def _measured_on(acc: dict[str, Any]) -> str:
    """The accuracy's data, with the input size it was trained and evaluated at when recorded."""
    if not acc:
        return "-"
    where = acc.get("data", "?") + (f", at {acc['img_size']} px" if acc.get("img_size") else "")
    # the variant measured, when the recipe built other than the builder's defaults (U-Net width 16...)
    variant = ", ".join(f"{k}={v}" for k, v in (acc.get("model_args") or {}).items())
    return where + (f", {variant}" if variant else "")


def format_table(rows: list[dict[str, Any]]) -> str:
    """The rows as an aligned text table with footnotes: how the figures shown were obtained, and how to
    get the missing ones."""
    lines = []
    missing_bench, recipes, classify, others, acc_notes = [], [], [], [], []
    for row in rows:
        f = row["figures"]
        params = f.get("params", {}).get("value")
        acc = f.get("accuracy") or {}
        accuracy = "-" if acc.get("value") is None else f"{acc.get('metric', '')} {acc['value']:.3f}".strip()
        if "cpu_ms" not in f or "gflops" not in f or "params" not in f:
            missing_bench.append(row["name"])
        if acc:
            acc_notes.append(_accuracy_note(row["name"], acc))
        elif row["recipe"]:
            recipes.append(row["name"])
        elif row["task"] == "classify":
            classify.append(row["name"])
        else:
            others.append(row["name"])
        c, h, w = row["input_size"]
        lines.append((
            row["name"], row["task"], row["backbone"], f"{h}x{w}",
            "-" if params is None else f"{params / 1e6:.1f}",
            _value(f, "gflops", ".1f"), _value(f, "cpu_ms", ".0f"), _value(f, "cpu_ms", ".0f", "cpu_time_ms"),
            accuracy, _measured_on(acc), row["outputs"],
        ))
    widths = [max(len(str(x)) for x in col) for col in zip(COLUMNS, *lines, strict=True)]
    text = [" | ".join(str(x).ljust(wd) for x, wd in zip(r, widths, strict=True)).rstrip()
            for r in [COLUMNS, *lines]]
    text.insert(1, "-+-".join("-" * wd for wd in widths))
    notes = ["GFLOPs: torch.utils.flop_counter at the input size, batch 1 (a multiply-add = 2 FLOPs). "
             "CPU ms: median wall-clock forward pass, batch 1, inference mode, random weights, detectors "
             "with NMS; CPU-time ms: the process's CPU time over the same passes (on a shared machine the "
             "wall clock also counts time other jobs held the cores)."]
    notes += _bench_notes(rows)
    notes += acc_notes
    if missing_bench:
        notes.append(f"'-' in params/GFLOPs/CPU ms: not measured yet; run `detseg zoo bench "
                     f"{' '.join(missing_bench[:3])}{' ...' if len(missing_bench) > 3 else ''} --write`.")
    if recipes:
        notes.append("'-' accuracy, zoo recipe exists: run `detseg zoo build NAME` (add `--device cuda` on a "
                     f"GPU); it trains, caches the weights and records the accuracy: {', '.join(recipes)}.")
    if classify:
        notes.append(f"'-' accuracy, classifiers ({', '.join(classify)}): "
                     f"{CLASSIFY_ACCURACY}.")
    if others:
        notes.append("'-' accuracy, no zoo recipe: no detseg-trained weights yet; train with `detseg train "
                     f"--model NAME` and measure with `detseg eval` ({', '.join(others)}).")
    return "\n".join(text + [""] + [f"* {n}" for n in notes])
