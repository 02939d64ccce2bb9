"""What decides a transfer study (:func:`detseg.transfer.study.run_study`): one typed config.

    from detseg.transfer.study import run_study
    from detseg.transfer.study_config import StudyConfig
    run_study(StudyConfig(source="src/detect.yaml", target="tgt/detect.yaml",
                          model="ssdlite320_mobilenet_v3_large", out="runs/study", epochs=20, img_size=192))

The training settings every run shares (``epochs``, the study's own, and the overrides ``img_size``,
``batch_size``, ``lr``, ``optimizer``, ``seed``, ``workers``, ``model_args`` and ``train_args``: any other
:class:`~detseg.engine.config.RunConfig` field) go to :func:`detseg.engine.run.train` as they are. An
override left at None is not given: the spec's ``train_defaults``, the model family's registered defaults
and detseg's fill it, as for ``detseg train`` (a U-Net study trains with AdamW, not SGD).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from detseg.engine.config import SETTINGS

MODES = ("as_is", "feature_extraction", "fine_tuning", "scratch")
METRIC_NAMES = {"detect": "AP50", "segment": "mIoU", "classify": "accuracy"}
#: RunConfig fields that the study sets itself for each run (not settable through ``train_args``).
STUDY_OWNED = (
    "model", "data", "out", "resume", "val_split", "device", "quiet", "plots", "pretrained", "freeze",
    "new_head", "extend_from", "distill", "pseudo_labels", "lr_backbone",
)  # fmt: skip
#: The training settings of every run, in the order of the runs' saved settings.json.
COMMON = ("epochs", "img_size", "batch_size", "lr", "optimizer", "seed", "workers", "model_args")


@dataclass
class StudyConfig:
    """Everything that decides a transfer study (the arguments of ``detseg transfer-study``).

    ``source``, ``target``, ``add_class``, ``new_class_data``: dataset specs (``source`` None: only with
    ``source_weights``; the source domain is then not scored). ``source_split`` / ``target_split``: the
    splits scored (default ``val``, else ``test``). ``pretrained``: builder weights (a torchvision weights
    name or file) the *source* model starts from; ``source_weights``: a trained detseg checkpoint, or
    weights by name (``COCO_V1``, ``timm:tf_efficientnet_lite0.in1k``), used as the source model instead
    of training one. ``new_class_data``: the new class's training data for ``lwf`` and ``naive`` (classes =
    ``add_class``'s, only new objects labelled); by default made from ``add_class``'s train split by
    dropping the old classes' labels. ``class_map``: classification only, ``{target class: source model's
    class}`` for as_is where the names differ. ``lr_backbone``: fine_tuning's learning rate for the
    pre-trained backbone (the new head keeps ``lr``). ``freeze_bn``: fine_tuning keeps the backbone's
    pre-trained BatchNorm statistics. ``quiet=False`` shows each run's epochs.
    """

    source: str | Path | None
    target: str | Path
    model: str
    out: str | Path
    # Every run's length (source_epochs: the source model's; default epochs).
    epochs: int = 10
    source_epochs: int | None = None
    # Every run's training settings; None: not given (the spec's, the model family's or detseg's default).
    img_size: int | None = None
    batch_size: int | None = None
    lr: float | None = None
    optimizer: str | None = None
    seed: int | None = None
    workers: int | None = None
    model_args: dict[str, Any] = field(default_factory=dict)
    train_args: dict[str, Any] = field(default_factory=dict)  # more RunConfig settings for every run
    device: str = "auto"
    # The source model.
    pretrained: str | None = None
    source_weights: str | Path | None = None
    # What is compared and where it is scored.
    modes: tuple[str, ...] | list[str] = MODES
    add_class: str | Path | None = None
    new_class_data: str | Path | None = None
    distill: float = 1.0
    pseudo_labels: float | None = None
    source_split: str | None = None
    target_split: str | None = None
    class_map: dict[str, str] | None = None
    lr_backbone: float | None = None
    freeze_bn: bool = False
    quiet: bool = True

    def common(self) -> dict[str, Any]:
        """The training settings every run shares, those given only (what each run's settings.json
        records; the run resolves the rest from the defaults)."""
        values = {name: getattr(self, name) for name in COMMON if getattr(self, name) is not None}
        for name in ("epochs", "batch_size", "seed", "workers"):
            if name in values:
                values[name] = int(values[name])
        values["model_args"] = dict(self.model_args or {})
        return {**values, **(self.train_args or {})}

    def check(self) -> str:
        """Refuse bad settings before any training, in one line naming what is wrong; the data's task."""
        from detseg.data.spec import load_spec
        from detseg.models.zoo import model_info

        for name in ("epochs", "source_epochs"):
            value = getattr(self, name)
            if (value is not None or name == "epochs") and (not isinstance(value, int) or value < 1):
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        unknown = [m for m in self.modes if m not in MODES]
        if unknown or not self.modes:
            raise ValueError(f"modes {list(self.modes)}: choose among {', '.join(MODES)}")
        if self.distill <= 0:
            raise ValueError(f"distill must be > 0 (the LwF weight), got {self.distill}")
        settable = {f.name for f in SETTINGS} - set(STUDY_OWNED) - set(COMMON)
        bad = sorted(set(self.train_args or {}) - settable)
        if bad:
            raise ValueError(
                f"train_args: cannot set {', '.join(bad)} for the study's runs (settable: the other "
                f"RunConfig fields, e.g. schedule, warmup, amp; the study sets {', '.join(STUDY_OWNED)})"
            )
        if self.lr_backbone is not None and (self.lr_backbone < 0 or "fine_tuning" not in self.modes):
            raise ValueError(
                f"lr_backbone {self.lr_backbone}: fine_tuning's backbone learning rate, >= 0, "
                "and fine_tuning must be among the modes"
            )
        if self.freeze_bn and "fine_tuning" not in self.modes:
            raise ValueError("freeze_bn is a fine_tuning setting, and fine_tuning is not among the modes")
        if self.source is None and self.source_weights is None:
            raise ValueError("give source (a data set spec to train the source model on) or source_weights")
        task = load_spec(self.target).task
        source_task = load_spec(self.source).task if self.source is not None else task
        if source_task != task:
            raise ValueError(
                f"source {self.source} is a {source_task} data set but target {self.target} "
                f"is a {task} data set; the study compares one task on two domains"
            )
        if task not in METRIC_NAMES:
            raise ValueError(
                f"{self.target}: task {task!r} is not supported by the study (detect, segment or classify)"
            )
        info = model_info(self.model)
        if info.task != task:
            raise ValueError(f"model {self.model!r} is a {info.task} model but the data sets are for {task}")
        if self.source_weights is not None and Path(self.source_weights).is_file():
            check_source_task(self.source_weights, self.source_weights, task, self.model)
        if self.add_class is not None and task == "classify":
            raise ValueError(
                f"add_class {self.add_class}: the add-a-class study takes detect or segment data, "
                "not classify"
            )
        add_task = load_spec(self.add_class).task if self.add_class is not None else task
        if add_task != task:
            raise ValueError(f"add_class {self.add_class} is a {add_task} data set, not {task}")
        if self.class_map and task != "classify":
            raise ValueError(
                f"class_map maps a classifier's classes for as_is; the target is a {task} data set"
            )
        if Path(self.out).exists() and not Path(self.out).is_dir():
            raise ValueError(f"out {self.out} exists and is not a folder")
        return task


def check_source_task(ckpt: str | Path, given: Any, task: str, model: str | None = None) -> None:
    """Refuse source weights of another task (or, given ``model``, of another model) in one line."""
    from detseg.engine.checkpoint import load_checkpoint

    meta = load_checkpoint(ckpt).get("meta", {})
    if meta.get("task") not in (None, task):
        raise ValueError(
            f"source_weights {given} is a {meta['task']} model but the target is a {task} data set"
        )
    if model is not None and meta.get("model") not in (None, model):
        raise ValueError(
            f"source_weights {given} is a checkpoint of {meta['model']!r}, not of model {model!r}"
        )


def eval_split(spec: Any, split: str | None, which: str) -> str:
    """The split a domain is scored on: ``split`` if given (it must exist), else ``val``, else ``test``."""
    if split is not None:
        if split not in spec.splits:
            raise ValueError(f"{which} {spec.path}: no split {split!r} (it has {', '.join(spec.splits)})")
        return split
    for name in ("val", "test"):
        if name in spec.splits:
            return name
    raise ValueError(
        f"{which} {spec.path}: no 'val' or 'test' split to score on (it has {', '.join(spec.splits)})"
    )
