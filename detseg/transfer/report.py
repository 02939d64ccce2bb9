"""The transfer study's report: the lecture's claims checked on its numbers, report.md/.json/.png.

:func:`check_claims` reads a study report (``detseg.transfer.study.run_study``'s dict) and says, claim
by claim, whether the numbers bear it out: ``held``, ``did not hold``, ``too close to call`` (the two
scores compared are within ``MARGIN``, one point of the metric x 100: on a few dozen validation images
that is noise, not a finding), or ``n/a`` (the numbers to judge it are missing, e.g. no as-is row when
the target's classes differ from the source's).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from detseg.jsonio import dumps
from detseg.transfer.study_config import MODES

#: The lecture's claims, in the order the report gives them.
CLAIMS = {
    "as_is_low": "the pre-trained model used as is scores low on the target",
    "fine_tuning_best": "fine-tuning scores best on the target",
    "fine_tuning_source_drop": "fine-tuning drops on the source domain",
    "feature_extraction_between": "feature extraction lies between as-is and fine-tuning on the target",
    "feature_extraction_less_drop": "feature extraction drops less on the source than fine-tuning",
    "scratch_below": "training from scratch (same epochs) stays below fine-tuning on a small target",
    "lwf_keeps_old": "adding a class with LwF keeps >= 95 % of the old classes' score",
    "naive_forgets": "naive fine-tuning on the new class alone keeps less of the old classes than LwF",
    "lwf_learns_new": "the new class reaches >= 80 % of the score joint training gives it",
    "pseudo_keeps_old": "adding a class with LwF and old-class pseudo-labels keeps >= 95 % of the old score",
    "pseudo_learns_new": "with pseudo-labels too, the new class reaches >= 80 % of joint training's score",
}
KEEP_OLD_PCT, NEW_OF_JOINT_PCT = 95.0, 80.0
#: Differences smaller than this (metric in 0..1; 1 point of % for the add-a-class percentages) are
#: too close to call.
MARGIN = 0.01
CLOSE = "close"


def _less(a: float, b: float, margin: float) -> bool | str:
    """``a < b`` by more than ``margin``: True; ``a > b`` by more than it: False; else too close."""
    if a < b - margin:
        return True
    return False if a > b + margin else CLOSE


def _fmt(value: float | None, pct: bool = False) -> str:
    if value is None:
        return "n/a"
    return f"{value:.1f} %" if pct else f"{100 * value:.1f}"


def _claim(key: str, held: bool | str | None, detail: str) -> dict[str, Any]:
    if held == CLOSE:
        status, detail = "too close to call", f"{detail} (within {100 * MARGIN:.0f} point)"
    else:
        status = "n/a" if held is None else ("held" if held else "did not hold")
    return {"id": key, "claim": CLAIMS[key], "status": status, "detail": detail}


def check_claims(report: dict[str, Any]) -> list[dict[str, Any]]:
    """One ``{"id", "claim", "status", "detail"}`` per lecture claim, from ``report``'s rows.

    Uses ``report["rows"]`` (each with ``mode``, ``source``, ``target``: metrics in 0..1 or None),
    ``report["source_model"]`` (the source model's ``source`` and ``target`` scores: "before") and
    ``report["add_class"]["rows"]`` (``mode``, ``old_kept_pct``, ``new_pct_of_joint``) when present.
    """
    rows = {r["mode"]: r for r in report.get("rows", [])}
    metric = report.get("metric", "metric")

    def get(mode: str, domain: str) -> float | None:
        return rows.get(mode, {}).get(domain)

    before_src = report.get("source_model", {}).get("source")
    # No source data given (source weights alone, e.g. ImageNet's): nothing is scored on the source.
    no_source = "source" in report and not report["source"].get("spec")
    why_no_source = "no source data given (source weights only), so no source-domain scores"
    as_is, fe, ft, scratch = (get(m, "target") for m in MODES)
    out = []

    trained = {m: get(m, "target") for m in MODES if m != "as_is"}
    trained = {m: v for m, v in trained.items() if v is not None}
    if as_is is not None and before_src is None and no_source and trained:
        best_mode = max(trained, key=trained.get)
        out.append(
            _claim(
                "as_is_low",
                _less(as_is, trained[best_mode], MARGIN),
                f"no source data given, so judged against the trained runs alone: {metric} {_fmt(as_is)} "
                f"on the target vs {_fmt(trained[best_mode])} after {best_mode}",
            )
        )
    elif as_is is None or before_src is None or not trained:
        out.append(_claim("as_is_low", None, "no as-is score on the target (the classes differ, or not run)"))
    else:
        best_mode = max(trained, key=trained.get)
        below_source, below_best = _less(as_is, before_src, MARGIN), _less(as_is, trained[best_mode], MARGIN)
        both = (below_source, below_best)
        held = False if False in both else (True if both == (True, True) else CLOSE)
        out.append(
            _claim(
                "as_is_low",
                held,
                f"{metric} {_fmt(as_is)} on the target vs {_fmt(before_src)} on the "
                f"source and {_fmt(trained[best_mode])} after {best_mode}",
            )
        )

    others = {
        m: v for m, v in (("as_is", as_is), ("feature_extraction", fe), ("scratch", scratch)) if v is not None
    }
    if ft is None or not others:
        out.append(_claim("fine_tuning_best", None, "fine-tuning or every other row is missing"))
    else:
        rival = max(others, key=others.get)
        out.append(
            _claim(
                "fine_tuning_best",
                _less(others[rival], ft, MARGIN),
                f"target {metric} {_fmt(ft)} vs the best other, {rival}, {_fmt(others[rival])}",
            )
        )

    ft_src, fe_src = get("fine_tuning", "source"), get("feature_extraction", "source")
    if ft_src is None or before_src is None:
        why = "no source-domain score after fine-tuning (the target's classes differ from the source's)"
        out.append(_claim("fine_tuning_source_drop", None, why_no_source if no_source else why))
    else:
        out.append(
            _claim(
                "fine_tuning_source_drop",
                _less(ft_src, before_src, MARGIN),
                f"source {metric} {_fmt(before_src)} before, {_fmt(ft_src)} after fine-tuning",
            )
        )

    if fe is None or ft is None:
        out.append(_claim("feature_extraction_between", None, "feature extraction or fine-tuning is missing"))
    else:
        low = as_is if as_is is not None else (scratch if scratch is not None else None)
        low_name = "as-is" if as_is is not None else "scratch"
        # ties are consistent with "between": only a clear excursion above or below breaks it
        held = fe <= ft + MARGIN and (low is None or low <= fe + MARGIN)
        out.append(
            _claim(
                "feature_extraction_between",
                held,
                f"target {metric}: {low_name} {_fmt(low)}, "
                f"feature extraction {_fmt(fe)}, fine-tuning {_fmt(ft)}",
            )
        )

    if fe_src is None or ft_src is None or before_src is None:
        why = (
            "no source-domain scores after training on the target (the target's classes differ from the "
            "source's)"
        )
        out.append(_claim("feature_extraction_less_drop", None, why_no_source if no_source else why))
    else:
        out.append(
            _claim(
                "feature_extraction_less_drop",
                _less(before_src - fe_src, before_src - ft_src, MARGIN),
                f"source {metric} drop: feature extraction {_fmt(before_src - fe_src)}, "
                f"fine-tuning {_fmt(before_src - ft_src)}",
            )
        )

    if scratch is None or ft is None:
        out.append(_claim("scratch_below", None, "from scratch or fine-tuning is missing"))
    else:
        out.append(
            _claim(
                "scratch_below",
                _less(scratch, ft, MARGIN),
                f"target {metric}: from scratch {_fmt(scratch)}, fine-tuning {_fmt(ft)}",
            )
        )

    add = {r["mode"]: r for r in report.get("add_class", {}).get("rows", [])}
    if not add:
        for key in ("lwf_keeps_old", "naive_forgets", "lwf_learns_new"):
            out.append(_claim(key, None, "no add-a-class run (add_class not given)"))
        return out
    lwf_kept = add.get("lwf", {}).get("old_kept_pct")
    naive_kept = add.get("naive", {}).get("old_kept_pct")
    lwf_new = add.get("lwf", {}).get("new_pct_of_joint")
    out.append(
        _claim(
            "lwf_keeps_old",
            None if lwf_kept is None else lwf_kept >= KEEP_OLD_PCT,
            f"LwF keeps {_fmt(lwf_kept, pct=True)} of the old classes' {metric}",
        )
    )
    out.append(
        _claim(
            "naive_forgets",
            None if None in (lwf_kept, naive_kept) else _less(naive_kept, lwf_kept, 100 * MARGIN),
            f"naive keeps {_fmt(naive_kept, pct=True)}, LwF {_fmt(lwf_kept, pct=True)}",
        )
    )
    out.append(
        _claim(
            "lwf_learns_new",
            None if lwf_new is None else lwf_new >= NEW_OF_JOINT_PCT,
            f"the new class with LwF reaches {_fmt(lwf_new, pct=True)} of joint training's {metric}",
        )
    )
    if "pseudo" in add:  # the run with pseudo-labels, when the study made one
        kept, new = add["pseudo"].get("old_kept_pct"), add["pseudo"].get("new_pct_of_joint")
        detail = f"LwF + pseudo-labels keeps {_fmt(kept, pct=True)} of the old classes' {metric}"
        out.append(_claim("pseudo_keeps_old", None if kept is None else kept >= KEEP_OLD_PCT, detail))
        detail = f"the new class reaches {_fmt(new, pct=True)} of joint training's {metric}"
        out.append(_claim("pseudo_learns_new", None if new is None else new >= NEW_OF_JOINT_PCT, detail))
    return out


def markdown(report: dict[str, Any]) -> str:
    """report.md's text: the setting, the table, the add-a-class table, one sentence per claim."""
    metric = report["metric"]
    src, tgt = report["source"], report["target"]
    s = report.get("settings", {})
    given = src.get("weights") or s.get("source_weights")
    source_model = (
        f"source model `{given}`, given" if given else f"{s.get('source_epochs')} for the source model"
    )
    if src.get("spec"):
        source_line = (
            f"- source: `{src['spec']}` (scored on `{src['split']}`), classes {_names(src['classes'])}"
        )
    else:
        source_line = (
            f"- source: the model `{given}` as given, classes {_names(src['classes'])}; no source data, "
            "so nothing is scored on the source domain"
        )
    splits = " and ".join(
        f"the {d}'s `{x['split']}` split" for d, x in (("source", src), ("target", tgt)) if x.get("spec")
    )
    described = f" ({report['metric_description']})" if report.get("metric_description") else ""
    lines = [
        f"# Transfer study: {report['model']}",
        "",
        source_line,
        f"- target: `{tgt['spec']}` (scored on `{tgt['split']}`), classes {_names(tgt['classes'])}",
        f"- metric: {metric}{described} x 100 on {splits}, of each run's last.pt: nothing is chosen on "
        f"the scored split (no best epoch, no setting); {s.get('epochs')} epoch(s) on the target "
        f"({source_model}), image size {s.get('img_size')}, batch "
        f"{s.get('batch_size')}, {s.get('optimizer')} lr {s.get('lr') or 'default'}, seed {s.get('seed')}",
        "",
        f"| run | initialisation | frozen | trained on | source {metric} | target {metric} | "
        f"source change | target change |",
        "| --- | --- | --- | --- | ---: | ---: | ---: | ---: |",
    ]
    before = report.get("source_model", {})

    def delta(value: float | None, ref: float | None) -> str:
        return "n/a" if value is None or ref is None else f"{100 * (value - ref):+.1f}"

    for row in report["rows"]:
        if row.get("skipped"):
            lines.append(f"| {row['label']} | - | - | - | n/a | n/a | | | ")
            continue
        lines.append(
            f"| {row['label']} | {row.get('init', '')} | {row.get('frozen', 'none')} | "
            f"{row.get('trained_on', '')} | "
            f"{_fmt(row['source'])} | {_fmt(row['target'])} | {delta(row['source'], before.get('source'))} | "
            f"{delta(row['target'], before.get('target'))} |"
        )
    lines += ["", "Changes are against the source model before any training on the target (as is)."]
    if report.get("as_is_map"):
        pairs = ", ".join(f"{t} -> {name} ({index})" for t, (index, name) in report["as_is_map"].items())
        lines.append(
            f"As is, the target classes are the source model's {pairs}: the prediction is the target class "
            "whose mapped logit is highest (the model's other classes left out)."
        )
    skipped = [r for r in report["rows"] if r.get("skipped")]
    for row in skipped:
        lines.append(f"{row['label']}: not run ({row['skipped']}).")
    add = report.get("add_class")
    if add:
        lines += [
            "",
            f"## Adding {', '.join(add['new_classes'])} to {', '.join(add['old_classes'])}",
            "",
            f"New-class training data: `{add['new_class_data']}`; all classes labelled: `{add['spec']}` "
            f"(scored on `{add['split']}`). The source model's old classes' {metric}: "
            f"{_fmt(add['before_old'])}.",
            "",
            f"| run | old classes' {metric} | kept (% of before) | new class {metric} | % of joint |",
            "| --- | ---: | ---: | ---: | ---: |",
        ]
        for row in add["rows"]:
            lines.append(
                f"| {row['label']} | {_fmt(row['old'])} | {_fmt(row['old_kept_pct'], pct=True)} | "
                f"{_fmt(row['new'])} | {_fmt(row['new_pct_of_joint'], pct=True)} |"
            )
    lines += ["", "## The lecture's claims", ""]
    for claim in report.get("claims", []):
        lines.append(
            f"- {claim['claim'][0].upper()}{claim['claim'][1:]}: **{claim['status']}** ({claim['detail']})."
        )
    return "\n".join(lines) + "\n"


def _names(classes: list[str], shown: int = 10) -> str:
    """A class list for report.md: whole when short, else its length and the first ``shown`` names."""
    if len(classes) <= shown:
        return str(list(classes))
    return f"({len(classes)}: {', '.join(classes[:shown])}, ...)"


def plot(report: dict[str, Any], path: str | Path) -> Path:
    """report.png: the metric per run on both domains (bars), and the add-a-class percentages."""
    import numpy as np

    from detseg.viz.plots import pyplot, save_figure

    plt = pyplot()
    add = report.get("add_class")
    fig, axes = plt.subplots(1, 2 if add else 1, figsize=(12 if add else 7, 4.2), squeeze=False)
    ax = axes[0, 0]
    rows = report["rows"]
    x = np.arange(len(rows))
    domains = [d for d in ("source", "target") if report.get(d, {}).get("spec", d)]  # scored domains
    width = 0.76 / len(domains)
    for i, domain in enumerate(domains):
        color = {"source": "tab:blue", "target": "tab:orange"}[domain]
        values = [r[domain] for r in rows]
        heights = [100 * v if v is not None else 0.0 for v in values]
        split = report.get(domain, {}).get("split") or "val"
        offset = (i - (len(domains) - 1) / 2) * width
        bars = ax.bar(x + offset, heights, width, label=f"{domain} {split}", color=color)
        for bar, v in zip(bars, values, strict=True):
            ax.annotate(
                "n/a" if v is None else f"{100 * v:.0f}",
                (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                ha="center",
                va="bottom",
                fontsize=8,
            )
    ax.set_xticks(x, [r["mode"].replace("_", "\n") for r in rows])
    ax.set_ylabel(f"{report['metric']} x 100 (each run's last.pt)")
    scored = " vs ".join(domains) if len(domains) > 1 else "target (no source data)"
    ax.set_title(f"{report['model']}: {scored}")
    highest = max([100 * r[d] for r in rows for d in ("source", "target") if r[d] is not None], default=1.0)
    ax.set_ylim(0, 1.3 * highest + 1)  # room for the legend above the bars
    ax.legend(loc="upper center", ncol=2, fontsize=8)
    if add:
        ax = axes[0, 1]
        x = np.arange(len(add["rows"]))
        kept = [r["old_kept_pct"] or 0.0 for r in add["rows"]]
        new = [r["new_pct_of_joint"] or 0.0 for r in add["rows"]]
        top = 150.0  # the axis stops here; taller bars are cut, their values written on them
        for offset, values, label, color in (
            (-0.19, kept, "old classes kept (% of before)", "tab:green"),
            (0.19, new, "new class (% of joint)", "tab:purple"),
        ):
            bars = ax.bar(x + offset, [min(v, top) for v in values], 0.38, label=label, color=color)
            for bar, v in zip(bars, values, strict=True):
                ax.annotate(
                    f"{v:.0f}",
                    (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                    ha="center",
                    va="bottom",
                    fontsize=8,
                )
        ax.set_ylim(0, top * 1.3)
        ax.axhline(95, color="tab:green", linestyle="--", linewidth=1)
        ax.axhline(80, color="tab:purple", linestyle=":", linewidth=1)
        ax.set_xticks(x, [r["mode"] for r in add["rows"]])
        ax.set_ylabel("%")
        ax.set_title(f"adding {', '.join(add['new_classes'])}")
        ax.legend(loc="upper center", ncol=2, fontsize=8)
    return save_figure(fig, path)


def write_report(report: dict[str, Any], out: str | Path) -> dict[str, Path]:
    """Write ``out/report.md``, ``out/report.json`` and ``out/report.png``; returns their paths."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"md": out / "report.md", "json": out / "report.json", "png": out / "report.png"}
    paths["md"].write_text(markdown(report), encoding="utf-8")
    paths["json"].write_text(dumps(report) + "\n", encoding="utf-8")
    plot(report, paths["png"])
    return paths
