"""The lecture's transfer-learning comparison as one call (what ``detseg transfer-study`` does).

    from detseg.transfer.study import run_study
    report = run_study("src/detect.yaml", "tgt/detect.yaml", "ssdlite320_mobilenet_v3_large", "runs/study",
                       epochs=20, img_size=192, add_class="joint/detect.yaml")

The same as one typed config (:class:`~detseg.transfer.study_config.StudyConfig`, which ``detseg
transfer-study`` builds from its options): ``run_study(StudyConfig("src/detect.yaml", ...))``.

1. A source model: trained on SOURCE (or ``source_weights``, a detseg checkpoint or weights by name,
   taken as it is; then SOURCE may be None: no source domain is scored).
2. On TARGET, each evaluated on both domains' validation splits (the source model gives "before"):

   ==================  ===================================================================
   as_is               the source model, no training (only when the classes are the same; a
                       classifier: when each target class maps onto one of its classes)
   feature_extraction  source weights, backbone frozen (BatchNorm too), new head, trained on TARGET
   fine_tuning         source weights, all layers trained on TARGET (head kept when the classes agree)
   scratch             random initialisation, trained on TARGET for the same epochs
   ==================  ===================================================================

3. Adding a class (``add_class``: a spec whose classes are the source's plus new ones, all labelled):
   ``lwf`` extends the head and trains on the new-class data with Learning-without-Forgetting
   distillation; ``naive`` extends the head and fine-tunes on the new-class data alone; ``joint`` extends
   the head and trains on every class's labels; with ``pseudo_labels`` (a score threshold), ``pseudo``
   adds the old model's confident predictions as labels for the old objects to LwF's run
   (:mod:`detseg.transfer.pseudo`). Reported: the old classes' metric kept (% of the source
   model's) and the new class's metric as % of joint training's.

Classification (``task: classify``, e.g. ImageNet weights on ants vs bees):

    run_study(None, "examples/hymenoptera.yaml", "timm:tf_efficientnet_lite0", "runs/hym-study",
              source_weights="timm:tf_efficientnet_lite0.in1k", epochs=8, img_size=224)

As is, each target class is mapped onto the source model's classes (``class_map`` {target: source
name}, then the same name, then the same name ignoring case, ``_``/``-`` and a plural ``s``: "ants" ->
ImageNet's "ant"), and the prediction is the target class whose mapped logit is highest; a target class
without a match skips as_is, with the reason. Fine-tuning then starts from those mapped rows of the
source head (where the model as is stands) rather than from a new head; feature extraction keeps its
new head. No add-a-class study for classifiers.

Metric: AP50 (detection, COCO's 101-point AP at IoU 0.5), mIoU (segmentation) or top-1 accuracy
(classification), on each domain's validation split, of each run's ``last.pt`` (the same training
budget for every run; no model picked on the data it is scored on). Every run has its folder under
``OUT/runs/``; a run whose ``result.json`` exists is skipped, and one stopped half-way resumes from its
``last.pt``, so a crashed study re-runs with the same command. The report is
:mod:`detseg.transfer.report`'s (report.md, report.json, report.png).
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

from detseg.jsonio import dumps, jsonable
from detseg.models.registry import is_timm_name
from detseg.transfer.study_config import (
    COMMON,
    METRIC_NAMES,
    MODES,
    StudyConfig,
    check_source_task,
    eval_split,
)

ADD_CLASS_MODES = ("lwf", "naive", "joint")
METRIC_DESCRIPTIONS = {
    "detect": "COCO's 101-point AP at IoU 0.5",
    "segment": "mean IoU over the classes",
    "classify": "top-1 accuracy",
}
MODE_LABELS = {
    "as_is": "pre-trained as is",
    "feature_extraction": "feature extraction (frozen backbone, new head)",
    "fine_tuning": "fine-tuning (all layers)",
    "scratch": "from scratch",
    "lwf": "extended head + LwF distillation",
    "pseudo": "extended head + LwF + old-class pseudo-labels",
    "naive": "extended head, fine-tuned on the new class alone",
    "joint": "extended head, joint training (all classes labelled)",
}


def run_study(
    source: StudyConfig | str | Path | None,
    target: str | Path | None = None,
    model: str | None = None,
    out: str | Path | None = None,
    **settings: Any,
) -> dict[str, Any]:
    """Run a study into its ``out`` and write its report; returns the report (what report.json holds).

    ``run_study(StudyConfig(...))`` (:class:`~detseg.transfer.study_config.StudyConfig`), or the same
    as ``run_study(source, target, model, out, **settings)`` with ``settings`` naming its other fields.
    """
    from detseg.transfer.report import check_claims, write_report

    if isinstance(source, StudyConfig):
        if target is not None or model is not None or out is not None or settings:
            raise TypeError("run_study(StudyConfig) takes no other arguments: set them on the config")
        c = source
    else:
        c = StudyConfig(source, target, model, out, **settings)  # type: ignore[arg-type]
    task = c.check()
    out = Path(c.out).resolve()  # runs are matched by their settings, paths included: absolute ones
    modes = [m for m in MODES if m in c.modes]
    runner = _Runner(out, c.model, c.device, c.quiet, common=c.common(), total=_count_steps(c, modes))
    src = _source_model(c, runner, task, out)
    report: dict[str, Any] = {
        "task": task,
        "metric": METRIC_NAMES[task],
        "model": c.model,
        "metric_description": METRIC_DESCRIPTIONS[task],
        "source": {
            "spec": str(c.source) if c.source is not None else None,
            "split": src["domains"].get("source", (None, None))[1],
            "classes": src["classes"],
            "weights": str(c.source_weights) if c.source_weights is not None else None,
        },
        "target": {
            "spec": str(c.target),
            "split": src["domains"]["target"][1],
            "classes": src["target_classes"],
        },
        "settings": {
            **runner.common,
            **_resolved_common(c),
            "source_epochs": int(c.source_epochs or c.epochs),
            "pretrained": c.pretrained,
            "source_weights": str(src["weights"]) if src["weights"] else None,
            "device": c.device,
            "lr_backbone": c.lr_backbone,
            "freeze_bn": bool(c.freeze_bn),
        },
        "source_model": {
            "checkpoint": str(src["checkpoint"]),
            **{k: src["before"].get(k) for k in ("source", "target")},
        },
        "rows": [_target_run(mode, c, runner, src, out) for mode in modes],
    }
    if src["as_is_map"] is not None:
        report["as_is_map"] = {t: [src["classes"].index(s), s] for t, s in src["as_is_map"].items()}
    if c.add_class is not None:  # adding a class
        report["add_class"] = _add_class_study(
            runner, src["checkpoint"], src["classes"], c.add_class, src["add_split"], c.new_class_data,
            c.distill, out, c.pseudo_labels,
        )  # fmt: skip
    report["claims"] = check_claims(report)
    write_report(report, out)
    runner.say(f"report: {out / 'report.md'}, {out / 'report.json'}, {out / 'report.png'}")
    return report


def _resolved_common(c: StudyConfig) -> dict[str, Any]:
    """The shared training settings a target run resolves to (what the report says it trained with:
    the given ones, the rest from the target spec's and the model family's defaults)."""
    from detseg.data.spec import load_spec
    from detseg.engine.config import RunConfig, resolve_config
    from detseg.models.zoo import model_info

    rc = resolve_config(RunConfig(c.model, c.target, **c.common()), model_info(c.model), load_spec(c.target))
    return {name: getattr(rc, name) for name in COMMON if name not in ("epochs", "model_args")}


def _source_model(c: StudyConfig, runner: _Runner, task: str, out: Path) -> dict[str, Any]:
    """The source model (trained, or given as ``source_weights``) and its scores before any target
    training; its classes are checked against the add-a-class data before anything trains."""
    from detseg.data.spec import load_spec

    tgt_split = eval_split(load_spec(c.target), c.target_split, "target")
    domains = {"target": (str(c.target), tgt_split)}
    if c.source is not None:
        domains = {
            "source": (str(c.source), eval_split(load_spec(c.source), c.source_split, "source")),
            **domains,
        }
    weights = c.source_weights
    if weights is not None and _is_weights_name(weights):
        weights = _weights_checkpoint(c.model, str(weights), out / "source_weights" / "best.pt")
        check_source_task(weights, c.source_weights, task)
    if weights is not None:
        if not Path(weights).is_file():
            raise FileNotFoundError(f"source_weights: no checkpoint at {weights}")
        src_classes = _checkpoint_classes(weights)
    else:
        src_classes = _data_classes(c.source, "train")
    tgt_classes = _data_classes(c.target, tgt_split)
    add_split = _check_add_class(c.add_class, c.new_class_data, src_classes)
    as_is_map, as_is_why = None, None  # classify: {target class: source class} when the names differ
    if task == "classify" and src_classes != tgt_classes:
        as_is_map, as_is_why = as_is_class_map(src_classes, tgt_classes, c.class_map)
    elif src_classes != tgt_classes:
        as_is_why = f"source classes {src_classes} != target {tgt_classes}"
    if weights is not None:
        ckpt = Path(weights)
        runner.say(f"source model: {ckpt} (given, not trained)")
    else:
        ckpt = runner.train(
            "source", c.source, pretrained=c.pretrained, epochs=int(c.source_epochs or c.epochs)
        )
    before = runner.evaluate("source", ckpt, domains, src_classes)
    if as_is_map is not None:  # the source classifier on the target, through the mapped classes
        mapped = runner.score("source", ckpt, str(c.target), tgt_split, class_map=as_is_map)
        before["target"], before["per_class"]["target"] = mapped["metric"], mapped["per_class"]
    return dict(
        checkpoint=ckpt, weights=weights, classes=src_classes, target_classes=tgt_classes, domains=domains,
        before=before, as_is_map=as_is_map, as_is_why=as_is_why, add_split=add_split,
    )  # fmt: skip


def _target_run(mode: str, c: StudyConfig, runner: _Runner, src: dict[str, Any], out: Path) -> dict[str, Any]:
    """One of the four ways to use the source model on the target: its report row."""
    src_ckpt, same = src["checkpoint"], src["classes"] == src["target_classes"]
    if mode == "as_is":
        if src["as_is_why"]:
            runner.say(f"as_is: skipped, {src['as_is_why']}")
            return _row(mode, None, {}, why=src["as_is_why"])
        return _row(mode, src_ckpt, src["before"], init="source weights", trained_on="source")
    if mode == "feature_extraction":
        ckpt = runner.train(mode, c.target, pretrained=str(src_ckpt), freeze="backbone", new_head=True)
        init, frozen = "source weights, new head", "backbone"
    elif mode == "fine_tuning":
        extra = {} if c.lr_backbone is None else {"lr_backbone": float(c.lr_backbone)}
        start, head = src_ckpt, ("" if same else ", new head")
        if src["as_is_map"] is not None:  # a classifier starts from its own decision for the mapped classes
            start = _mapped_head_checkpoint(
                src_ckpt, src["as_is_map"], src["classes"], src["target_classes"], out
            )
            head = ", head from the mapped classes' rows"
        freeze = "bn" if c.freeze_bn else "none"
        ckpt = runner.train(mode, c.target, pretrained=str(start), freeze=freeze, **extra)
        init, frozen = "source weights" + head, ("BatchNorm statistics" if c.freeze_bn else "none")
    else:
        ckpt = runner.train(mode, c.target)
        init, frozen = "random", "none"
    metrics = runner.evaluate(mode, ckpt, src["domains"], src["target_classes"])
    return _row(mode, ckpt, metrics, init=init, frozen=frozen, trained_on="target")


# ---------------------------------------------------------------------------------------------- checks
def as_is_class_map(
    src_classes: list[str], tgt_classes: list[str], class_map: dict[str, str] | None = None
) -> tuple[dict[str, str] | None, str | None]:
    """A classifier used as is on other classes: ``({target class: source class}, None)``, or ``(None,
    why)`` when a target class matches none of the source model's. Each target class takes
    ``class_map``'s name, else its own name, else the source class equal to it ignoring case, ``_``/``-``
    and a plural ``s`` ("ants" -> "ant"). A ``class_map`` naming a class that is not there raises
    ValueError (one line)."""
    from detseg.engine.class_map import match_classes

    given = dict(class_map or {})
    loose: dict[str, str] = {}
    for name in src_classes:
        loose.setdefault(_loose_name(name), name)
    taken = set(given.values()) | {t for t in tgt_classes if t in src_classes and t not in given}
    auto = {}
    for name in tgt_classes:
        if name in given or name in src_classes:
            continue
        key = _loose_name(name)
        hit = loose.get(key) or (loose.get(key[:-1]) if key.endswith("s") else None)
        if hit is not None and hit not in taken:
            auto[name] = hit
            taken.add(hit)
    try:
        mapping, unknown = match_classes(tgt_classes, src_classes, {**auto, **given}, task="classify")
    except ValueError:
        if given:
            raise
        mapping, unknown = {}, list(tgt_classes)
    if unknown:
        return None, (
            f"target class(es) {unknown} match none of the source model's {len(src_classes)} classes "
            "(map them with --class-map TARGET=SOURCE)"
        )
    return {tgt_classes[d]: src_classes[m] for d, m in sorted(mapping.items())}, None


def _loose_name(name: str) -> str:
    return " ".join(name.lower().replace("_", " ").replace("-", " ").split())


def _count_steps(c: StudyConfig, modes: list[str]) -> int:
    """How many runs the study trains (for its [i/n] progress)."""
    add = len(ADD_CLASS_MODES) + bool(c.pseudo_labels) if c.add_class else 0
    return (0 if c.source_weights else 1) + sum(m != "as_is" for m in modes) + add


def _is_weights_name(source: str | Path) -> bool:
    """``COCO_V1``, ``SSD300_VGG16_Weights.COCO_V1``, ``zoo:NAME``, a URL: weights, not a checkpoint."""
    text = str(source)
    if Path(text).exists():
        return False
    if is_timm_name(text) or text.startswith(("zoo:", "http://", "https://")):
        return True
    return text.replace(".", "").replace("_", "").isalnum() and not text.endswith((".pt", ".pth"))


def _weights_checkpoint(model: str, weights: str, path: Path) -> Path:
    """Pre-trained weights by name (torchvision's COCO model...) saved as a detseg checkpoint of
    ``model`` with their classes: the study's source model, used as it is."""
    from detseg.engine.checkpoint import save_checkpoint
    from detseg.engine.loader import load

    net, meta = load(model, weights)
    return save_checkpoint({"model": net.state_dict(), "meta": meta}, path)


def _mapped_head_checkpoint(
    src_ckpt: Path, mapping: dict[str, str], src_classes: list[str], tgt_classes: list[str], out: Path
) -> Path:
    """``out/source_mapped/best.pt``: the source classifier with its head cut to the rows of the source
    classes the target classes map to, in the target's order (ImageNet's "ant" and "bee" rows for ants
    and bees), so that fine-tuning starts where the model used as is stands instead of from a new head."""
    import torch

    from detseg.engine.checkpoint import load_checkpoint, save_checkpoint

    ckpt = load_checkpoint(src_ckpt)
    rows = torch.tensor([src_classes.index(mapping[name]) for name in tgt_classes])
    state = dict(ckpt["model"])
    for key in ("head.weight", "head.bias"):
        state[key] = state[key][rows].clone()
    meta = {**ckpt.get("meta", {}), "classes": list(tgt_classes)}
    return save_checkpoint({"model": state, "meta": meta}, out / "source_mapped" / "best.pt")


def _checkpoint_classes(ckpt: str | Path) -> list[str]:
    from detseg.engine.checkpoint import load_checkpoint

    return list(load_checkpoint(ckpt).get("meta", {}).get("classes", []))


def _data_classes(spec: str | Path, split: str) -> list[str]:
    from detseg.data.dataset import build_dataset
    from detseg.data.spec import load_spec

    loaded = load_spec(spec)
    if loaded.task == "classify":
        from detseg.data.classification import classification_dataset

        return list(classification_dataset(loaded, split).classes)
    return list(build_dataset(loaded, split).classes)


def _row(mode: str, ckpt, metrics: dict, why: str | None = None, **info: Any) -> dict[str, Any]:
    row = {
        "mode": mode,
        "label": MODE_LABELS[mode],
        "checkpoint": str(ckpt) if ckpt else None,
        "source": metrics.get("source"),
        "target": metrics.get("target"),
        **info,
    }
    if why:
        row["skipped"] = why
    return row


# ---------------------------------------------------------------------------------------------- evaluation
def evaluate_checkpoint(
    ckpt: str | Path,
    data: str | Path,
    split: str = "val",
    device: str = "cpu",
    class_map: dict[str, str] | None = None,
    img_size: int | None = None,
) -> dict[str, Any]:
    """The study's metrics of a saved model on ``split`` of the spec ``data``.

    Returns ``{"metric": AP50 | mIoU | accuracy (0..1), "per_class": {class: AP50 | IoU | recall}}``:
    detection through :func:`detseg.engine.run.run_evaluation` and :func:`detseg.metrics.coco.evaluate`
    (COCO's 101-point AP at IoU 0.5, per category too); segmentation from the summed confusion matrix;
    classification (:func:`evaluate_classifier`) top-1 accuracy, ``class_map`` and ``img_size`` as there.
    """
    from detseg.data.spec import load_spec
    from detseg.engine.run import run_evaluation

    if device == "auto":
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    if load_spec(data).task == "classify":
        return evaluate_classifier(ckpt, data, split, device, class_map, img_size)
    task = run_evaluation(ckpt, data, split, device, batch_size=1)
    if task.name == "segment":
        metrics = task.eval_end()
        names = task.class_names or []
        return {"metric": metrics["miou"], "per_class": {n: metrics[f"iou_{n}"] for n in names}}
    from detseg.metrics.coco import evaluate

    gt, results = task.coco_inputs()
    names = [c["name"] for c in gt["categories"]]
    if not results:
        return {"metric": 0.0, "per_class": dict.fromkeys(names, 0.0)}
    coco = evaluate(gt, results, iou_type="bbox")
    per_class = {}
    for name in names:
        value = coco.per_category.get(name, {}).get("AP50", float("nan"))
        per_class[name] = float(value) if value is not None and value >= 0 else float("nan")
    return {"metric": float(coco.stats["AP50"]), "per_class": per_class}


def evaluate_classifier(
    ckpt: str | Path,
    data: str | Path,
    split: str = "val",
    device: str = "cpu",
    class_map: dict[str, str] | None = None,
    img_size: int | None = None,
    batch_size: int = 16,
) -> dict[str, Any]:
    """A saved classifier's top-1 accuracy on ``split`` of a ``task: classify`` spec, and each class's
    recall as ``per_class``. Images: resize + centre crop at the checkpoint's training size (else
    ``img_size``, else 224). ``class_map`` ``{data class: model class}`` (every data class) scores a model
    with other classes: its logits of the mapped classes, in the data's order, so that the prediction is
    the data class whose mapped class scores highest (the model's other classes play no part)."""
    import torch

    from detseg.engine.checkpoint import check_classes
    from detseg.engine.class_map import MappedClassifier, match_classes
    from detseg.engine.classify import evaluation_set
    from detseg.engine.loader import load_model

    model, meta = load_model(ckpt, device)
    if meta.get("task") != "classify":
        raise ValueError(f"{ckpt} is a {meta.get('task')} model but {data} is a classify data set")
    classes = _data_classes(data, split)
    if class_map is not None:
        mapping, unknown = match_classes(classes, list(meta["classes"]), class_map, task="classify")
        if unknown:
            raise ValueError(f"class_map: the data's classes {unknown} are mapped onto none of {ckpt}'s")
        model = MappedClassifier(model, mapping, len(classes))
    else:
        check_classes(meta["classes"], classes, where=f"{ckpt} vs {data}")
    size = meta.get("img_size") or img_size
    dataset, task, collate = evaluation_set(data, split, classes, size)
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, collate_fn=collate)
    task.eval_begin()
    for batch in loader:
        task.eval_step(model, batch, torch.device(device))
    metrics = task.eval_end()
    return {"metric": metrics["accuracy"], "per_class": {n: metrics[f"recall_{n}"] for n in classes}}


# ---------------------------------------------------------------------------------------------- runs
class _Runner:
    """Trains and scores the study's runs under ``out/runs/NAME``, skipping what is already done."""

    def __init__(self, out: Path, model: str, device: str, quiet: bool, common: dict, total: int) -> None:
        self.out, self.model, self.device, self.quiet = out, model, device, quiet
        self.common, self.total, self.done = common, total, 0

    def say(self, text: str) -> None:
        print(f"detseg transfer-study: {text}", file=sys.stderr, flush=True)

    def train(self, name: str, data: str | Path, **kwargs: Any) -> Path:
        """Train run ``name`` (once): its ``last.pt``. A finished run is skipped, a stopped one resumed."""
        from detseg.engine.run import train

        run_dir = self.out / "runs" / name
        settings = jsonable(
            {"model": self.model, "data": str(Path(data).resolve()), **self.common, **kwargs}
        )
        self.done += 1
        step = f"[{self.done}/{self.total}] {name}"
        saved = run_dir / "settings.json"
        if saved.is_file():
            old = json.loads(saved.read_text())
            if old != settings:
                changed = sorted(k for k in set(old) | set(settings) if old.get(k) != settings.get(k))
                raise ValueError(
                    f"{run_dir} was run with other settings ({', '.join(changed)}: "
                    f"{[old.get(k) for k in changed]} there, {[settings.get(k) for k in changed]} now); "
                    "use another --out, or delete that run folder to redo it"
                )
        if (run_dir / "result.json").is_file() and (run_dir / "last.pt").is_file():
            self.say(f"{step}: finished before, skipped ({run_dir})")
            return run_dir / "last.pt"
        resume = "auto" if (run_dir / "last.pt").is_file() else None
        self.say(
            f"{step}: {'resuming' if resume else 'training'} on {data} "
            f"({settings['epochs']} epoch(s)) -> {run_dir}"
        )
        run_dir.mkdir(parents=True, exist_ok=True)
        saved.write_text(json.dumps(settings, indent=1) + "\n")
        args = {**self.common, **kwargs}
        summary = train(
            self.model,
            data,
            run_dir,
            resume=resume,
            val_split="none",  # scored below, on both domains, from last.pt
            device=self.device,
            quiet=self.quiet,
            plots=False,
            **args,
        )
        (run_dir / "result.json").write_text(
            dumps({"transfer": summary.get("transfer", {}), "eval": {}}) + "\n"
        )
        return run_dir / "last.pt"

    def evaluate(
        self, name: str, ckpt: Path, domains: dict[str, tuple[str, str]], classes: list[str]
    ) -> dict[str, Any]:
        """``{domain: metric or None}`` for each domain whose classes are the model's; ``per_class`` too.

        Scores are cached in the run's ``result.json`` (keyed by spec and split)."""
        out: dict[str, Any] = {"per_class": {}}
        for domain, (spec, split) in domains.items():
            if _data_classes(spec, split) != classes:
                out[domain] = None  # another class list: the model has no head for it
                continue
            scores = self.score(name, ckpt, spec, split)
            out[domain], out["per_class"][domain] = scores["metric"], scores["per_class"]
        return out

    def score(
        self, name: str, ckpt: Path, spec: str | Path, split: str, class_map: dict[str, str] | None = None
    ) -> dict[str, Any]:
        """:func:`evaluate_checkpoint`, cached in ``runs/NAME/result.json`` (a given source model's scores in
        ``out/scores.json``, keyed by its path and size too, so that another file there is scored anew;
        and by ``class_map``, a classifier scored through mapped classes)."""
        ours = ckpt.parent.parent == self.out / "runs"
        cache_file = ckpt.parent / "result.json" if ours else self.out / "scores.json"
        cache = json.loads(cache_file.read_text()) if cache_file.is_file() else {"eval": {}}
        key = f"{spec}::{split}" if ours else f"{ckpt.resolve()}:{ckpt.stat().st_size}::{spec}::{split}"
        if class_map is not None:
            key += "::" + ",".join(f"{k}={v}" for k, v in class_map.items())
        if key not in cache.setdefault("eval", {}):
            self.say(f"scoring {name} on {spec} ({split})")
            img_size = self.common.get("img_size")
            scores = evaluate_checkpoint(ckpt, spec, split, self.device, class_map, img_size)
            cache["eval"][key] = jsonable(scores)
            self.out.mkdir(parents=True, exist_ok=True)
            cache_file.write_text(dumps(cache) + "\n")
        return cache["eval"][key]


# ---------------------------------------------------------------------------------------------- add a class
def _check_add_class(joint: str | Path | None, new_only: str | Path | None, old_classes: list[str]) -> str:
    """The split to score the add-a-class runs on; refuses data whose classes do not extend the old ones."""
    if joint is None:
        if new_only is not None:
            raise ValueError("new_class_data needs add_class (the data with every class labelled)")
        return ""
    from detseg.data.spec import load_spec

    split = eval_split(load_spec(joint), None, "add_class")
    classes = _data_classes(joint, split)
    if classes[: len(old_classes)] != old_classes or len(classes) == len(old_classes):
        raise ValueError(
            f"add_class {joint}: its classes {classes} must be the source model's {old_classes} "
            "followed by one or more new classes"
        )
    if new_only is not None and _data_classes(new_only, "train") != classes:
        raise ValueError(f"new_class_data {new_only}: its classes must be add_class's {classes}")
    return split


def _add_class_study(
    runner: _Runner,
    src_ckpt: Path,
    old_classes: list[str],
    joint: str | Path,
    split: str,
    new_only: str | Path | None,
    distill: float,
    out: Path,
    pseudo_labels: float | None = None,
) -> dict[str, Any]:
    """LwF vs naive fine-tuning on the new class alone vs joint training; old and new classes' metric."""
    classes = _data_classes(joint, split)
    new_classes = classes[len(old_classes) :]
    # Segmentation's background is shared by old and new models: the classes compared are the objects.
    old_scored = [c for c in old_classes if c.lower() not in ("background", "bg", "_background_")]
    data_dir = out / "data"
    old_val = derive_spec(joint, data_dir / "old_classes.yaml", keep=old_classes, splits=[split])
    if new_only is None:
        new_only = derive_spec(
            joint, data_dir / "new_class_only.yaml", keep=new_classes, splits=["train"], all_classes=True
        )

    before = runner.score("source", src_ckpt, str(old_val), split)["per_class"]
    result: dict[str, Any] = {
        "spec": str(joint),
        "new_class_data": str(new_only),
        "split": split,
        "old_classes": old_scored,
        "new_classes": new_classes,
        "distill": distill,
        "pseudo_labels": pseudo_labels,
        "before_old": _mean([before[c] for c in old_scored]),
        "rows": [],
    }
    modes = ("lwf", "pseudo", "naive", "joint") if pseudo_labels else ADD_CLASS_MODES
    for mode in modes:
        data = joint if mode == "joint" else new_only
        extra = {"distill": distill} if mode in ("lwf", "pseudo") else {}
        if mode == "pseudo":
            extra["pseudo_labels"] = pseudo_labels
        ckpt = runner.train(f"add_{mode}", data, extend_from=str(src_ckpt), **extra)
        per_class = runner.score(f"add_{mode}", ckpt, str(joint), split)["per_class"]
        result["rows"].append(
            {
                "mode": mode,
                "label": MODE_LABELS[mode],
                "checkpoint": str(ckpt),
                "old": _mean([per_class[c] for c in old_scored]),
                "new": _mean([per_class[c] for c in new_classes]),
                "per_class": per_class,
            }
        )
    joint_new = result["rows"][-1]["new"]
    for row in result["rows"]:
        row["old_kept_pct"] = _pct(row["old"], result["before_old"])
        row["new_pct_of_joint"] = _pct(row["new"], joint_new)
    return result


def _mean(values: list[float | None]) -> float | None:
    kept = [v for v in values if v is not None and math.isfinite(v)]
    return sum(kept) / len(kept) if kept else None


def _pct(value: float | None, reference: float | None) -> float | None:
    if value is None or reference is None or reference <= 0:
        return None
    return 100.0 * value / reference


def derive_spec(
    spec_path: str | Path,
    out_path: str | Path,
    keep: list[str],
    splits: list[str],
    all_classes: bool = False,
) -> Path:
    """Write a spec of the same images labelled with the classes ``keep`` only; returns its path.

    ``all_classes=False``: the spec's classes become ``keep`` (the old classes' view of the data, to
    score an old model); ``True``: the class list stays whole and only ``keep``'s objects stay labelled
    (new-class-only training data). COCO specs get filtered annotation files; mask specs a ``values``
    table sending the dropped classes' pixels to the background (class 0). Other formats are refused.
    """
    import yaml

    from detseg.data.coco import load_coco
    from detseg.data.dataset import build_dataset
    from detseg.data.spec import load_spec

    spec = load_spec(spec_path)
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    doc: dict[str, Any] = {
        "task": spec.task,
        "format": spec.format,
        "root": "/",
        "ignore_index": spec.ignore_index,
        "channels": spec.channels,
    }
    if spec.task == "detect" and spec.format == "coco":
        classes = list(build_dataset(spec, splits[0]).classes)
        doc["classes"] = classes if all_classes else list(keep)
        for split in splits:
            s = spec.splits[split]
            coco = load_coco(s.annotations)
            names = {int(c["id"]): str(c["name"]) for c in coco["categories"]}
            coco["annotations"] = [a for a in coco["annotations"] if names[int(a["category_id"])] in keep]
            if all_classes:  # training data: only images that show a kept class
                shown = {int(a["image_id"]) for a in coco["annotations"]}
                if not shown:
                    raise ValueError(f"{s.annotations}: no {split} image shows {list(keep)}")
                coco["images"] = [im for im in coco["images"] if int(im["id"]) in shown]
            else:
                coco["categories"] = [c for c in coco["categories"] if str(c["name"]) in keep]
            ann = out_path.with_name(f"{out_path.stem}_{split}.json")
            ann.write_text(json.dumps(coco) + "\n")
            doc[split] = {"images": str(s.images), "annotations": str(ann.resolve())}
            if s.stems is not None:
                doc[split]["list"] = list(s.stems)
    elif spec.task == "segment" and spec.format == "masks":
        classes = list(spec.classes or [])
        values = dict(spec.values or {i: i for i in range(len(classes))})
        # Class 0 is the background: dropped classes' pixels go there.
        labelled = {classes[0], *keep}
        names = classes if all_classes else [c for c in classes if c in labelled]
        table: dict[int, Any] = {}
        for raw, cls in values.items():
            if not 0 <= cls < len(classes):
                table[int(raw)] = "ignore"
            else:
                table[int(raw)] = names.index(classes[cls]) if classes[cls] in labelled else 0
        doc["classes"] = names
        doc["values"] = table
        for split in splits:
            s = spec.splits[split]
            doc[split] = {"images": str(s.images), "masks": str(s.masks)}
            if s.stems is not None:
                doc[split]["list"] = list(s.stems)
            if s.mask_suffix:
                doc[split]["mask_suffix"] = s.mask_suffix
    else:
        raise ValueError(
            f"{spec_path}: deriving old- or new-class data needs a COCO detection or a masks segmentation "
            f"spec, not {spec.format} ({spec.task}); give new_class_data explicitly"
        )
    header = f"# written by detseg transfer-study from {spec_path}: classes kept labelled {list(keep)}\n"
    out_path.write_text(header + yaml.safe_dump(doc, sort_keys=False, width=1000), encoding="utf-8")
    return out_path
