"""The typed configuration of one training run (what ``detseg train`` takes), and where each value came from.

    cfg = RunConfig(model="unet", data="data/shapes/segment.yaml", out="runs/u", epochs=20)
    resolved = resolve_config(cfg, model_info("unet"), load_spec(cfg.data))
    print(resolved.describe())      # every setting with its source: command line, spec, unet default, detseg

A field left at ``None`` means "not given". :func:`resolve_config` fills it from, in this order:

1. the command line / the caller (the fields set on ``RunConfig``);
2. the spec's ``train_defaults:`` mapping (settings that belong to the data, such as flips and
   rotations for images with no up or down);
3. the model family's registered ``default_cfg`` (``register_model(..., default_cfg=...)`` in
   :mod:`detseg.models.zoo`, as in timm and MMSegmentation: the optimizer, learning rate, schedule,
   warm-up, batch size and augmentation that were measured to learn for that family);
4. detseg's base defaults (:data:`BASE_DEFAULTS`; the learning rate and weight decay follow the
   optimizer: SGD 0.01 and 1e-4, AdamW 1e-3 and 1e-2).

A family default for the learning rate, weight decay or momentum belongs to that family's optimizer:
choosing another optimizer drops them (the base values for the chosen optimizer apply instead).
``model_args`` merge key by key (the command line's win).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

# detseg's defaults for every model (the command line's defaults before model families had their own).
BASE_DEFAULTS: dict[str, Any] = {
    "batch_size": 4,
    "optimizer": "sgd",
    "momentum": 0.9,
    "schedule": "poly",
    "warmup": 0,
    "warmup_factor": 0.001,
    "amp": False,
    "ema": 0.0,
    "channels_last": False,
    "loss": "ce",
    "scale_range": (0.5, 2.0),
    "vflip": 0.0,
    "rotate": 0.0,
    "elastic": 0.0,
    "color_jitter": 0.0,
    "zoom_out": 4.0,
    "iou_crop": True,
    "train_split": "train",
    "val_split": "val",
    "seed": 0,
    "workers": 0,
    "device": "auto",
    "eval_interval": 1,
    "quiet": False,
    "tensorboard": False,
    "plots": True,
    "sync_bn": False,
    "new_head": False,
    "boxes_only": False,
}
OPTIMIZER_DEFAULTS: dict[str, dict[str, float]] = {
    "sgd": {"lr": 0.01, "weight_decay": 1e-4},
    "adamw": {"lr": 1e-3, "weight_decay": 1e-2},
}
# What a model family's default_cfg or a spec's train_defaults may set (not the paths, the run's identity
# or the machinery).
TUNABLE = (
    "epochs", "batch_size", "lr", "optimizer", "momentum", "weight_decay", "schedule", "warmup",
    "warmup_factor", "amp", "clip_grad", "ema", "channels_last", "eval_interval", "img_size", "loss",
    "class_weights", "scale_range", "vflip", "rotate", "elastic", "color_jitter", "zoom_out", "iou_crop",
    "model_args",
)  # fmt: skip
_OPTIMIZER_BOUND = ("lr", "weight_decay", "momentum")
_SEGMENT_ONLY = ("loss", "class_weights", "scale_range", "rotate", "elastic", "color_jitter")
_UNUSED = {"segment": ("zoom_out", "iou_crop", "boxes_only"),
           "classify": ("zoom_out", "iou_crop", "boxes_only", "vflip", *_SEGMENT_ONLY),
           "detect": (*_SEGMENT_ONLY, "boxes_only")}  # fmt: skip


@dataclass
class RunConfig:
    """Everything that decides a ``detseg train`` run; ``None``: not given (see :func:`resolve_config`)."""

    model: str
    data: str | Path
    out: str | Path | None = None  # run folder (default runs/MODEL)
    # How long: epochs, optimizer steps, or minutes (with either: whichever ends first).
    epochs: int | None = None
    iters: int | None = None
    time: float | None = None
    # Optimisation.
    batch_size: int | None = None  # global batch (split over DDP processes)
    lr: float | None = None
    optimizer: str | None = None  # sgd | adamw
    momentum: float | None = None
    weight_decay: float | None = None
    schedule: str | None = None  # poly | cosine | constant
    warmup: int | None = None  # linear warm-up iterations
    warmup_factor: float | None = None
    amp: bool | None = None
    clip_grad: float | None = None
    ema: float | None = None  # decay of the weights' moving average (0: none)
    channels_last: bool | None = None
    # Data and augmentation.
    img_size: int | None = None  # segmentation: crop size; detection: input size
    loss: str | None = None  # segmentation loss
    class_weights: list[float] | None = None
    scale_range: tuple[float, float] | None = None  # segmentation: random rescaling before the crop
    vflip: float | None = None
    rotate: float | None = None
    elastic: float | None = None
    color_jitter: float | None = None
    zoom_out: float | None = None  # detection: SSD's zoom-out up to this factor (1: none)
    iou_crop: bool | None = None  # detection: SSD's IoU-constrained random crop
    # Model and splits.
    pretrained: str | None = None
    model_args: dict[str, Any] | None = None
    train_split: str | None = None
    val_split: str | None = None  # chooses best.pt (evaluated every eval_interval epochs); "none": skip
    test_split: str | None = None  # scored once at the end, with last.pt and best.pt
    # Transfer learning (detseg.transfer).
    resume: str | Path | None = None
    extend_from: str | Path | None = None
    distill: float | None = None
    temperature: float | None = None
    new_head: bool | None = None
    pseudo_labels: float | None = None
    freeze: str | None = None
    # An instance data set: train a Mask R-CNN's box branch alone (its masks neither read nor needed).
    boxes_only: bool | None = None
    lr_backbone: float | None = None
    # Machinery.
    seed: int | None = None
    workers: int | None = None
    device: str | None = None
    eval_interval: int | None = None
    quiet: bool | None = None
    tensorboard: bool | None = None
    plots: bool | None = None
    sync_bn: bool | None = None
    # Where each resolved value came from (filled by resolve_config).
    sources: dict[str, str] = field(default_factory=dict, repr=False, compare=False)

    def given(self) -> dict[str, Any]:
        """The settings that are not ``None`` (the caller's, before resolving)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "sources"
                and getattr(self, f.name) is not None}  # fmt: skip

    def describe(self, task: str | None = None) -> str:
        """One line per source: ``command line: epochs 10, img_size 128`` ... (what a run prints); with
        ``task``, without the settings that task does not use."""
        unused = set(_UNUSED.get(task or "", ()))
        if self.optimizer != "sgd":
            unused.add("momentum")
        groups: dict[str, list[str]] = {}
        for name, source in self.sources.items():
            if name in unused:
                continue
            value = getattr(self, name)
            if isinstance(value, tuple):
                value = list(value)
            groups.setdefault(source, []).append(f"{name} {value}")
        first = ("command line", "spec")
        order = sorted(groups, key=lambda s: first.index(s) if s in first else 2 + (s == "detseg"))
        return "\n".join(f"  {source}: {', '.join(groups[source])}" for source in order)


def default_cfg_problems(settings: dict[str, Any]) -> list[str]:
    """Names in ``settings`` that a default_cfg or a spec's train_defaults may not set."""
    return sorted(k for k in settings if k not in TUNABLE)


def resolve_config(config: RunConfig, info: Any, spec: Any = None) -> RunConfig:
    """``config`` with every ``None`` filled (command line > spec > model family > detseg), and
    ``sources`` naming where each value came from. ``info``: the model's
    :class:`~detseg.models.zoo.ModelInfo`; ``spec``: its :class:`~detseg.data.spec.DatasetSpec` (or None).

    The length (epochs) comes from a default only when none of epochs, iters and time was given.
    """
    family = dict(getattr(info, "default_cfg", None) or {})
    family_name = f"{getattr(info, 'name', 'model')} default"
    spec_defaults = dict(getattr(spec, "train_defaults", None) or {})
    for where, settings in (
        ("default_cfg of " + family_name, family),
        ("train_defaults of the spec", spec_defaults),
    ):
        bad = default_cfg_problems(settings)
        if bad:
            raise ValueError(f"{where}: cannot set {', '.join(bad)} (settable: {', '.join(TUNABLE)})")
    given = config.given()
    layers = [("command line", given), ("spec", spec_defaults), (family_name, family)]
    chosen_optimizer = next((s["optimizer"] for _, s in layers if s.get("optimizer")), None)
    if chosen_optimizer is not None and family.get("optimizer", chosen_optimizer) != chosen_optimizer:
        family = {k: v for k, v in family.items() if k not in _OPTIMIZER_BOUND}  # another optimizer's rates
        layers[2] = (family_name, family)
    length_given = any(given.get(k) is not None for k in ("epochs", "iters", "time"))
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for name in [f.name for f in fields(RunConfig) if f.name != "sources"]:
        for source, settings in layers:
            if name == "epochs" and source != "command line" and length_given:
                break
            if settings.get(name) is not None:
                values[name], sources[name] = settings[name], source
                break
        else:
            if name in BASE_DEFAULTS:
                values[name], sources[name] = BASE_DEFAULTS[name], "detseg"
    optimizer = values["optimizer"]
    if optimizer not in OPTIMIZER_DEFAULTS:
        raise ValueError(f"unknown optimizer {optimizer!r}; choose {' or '.join(OPTIMIZER_DEFAULTS)}")
    for name, value in OPTIMIZER_DEFAULTS[optimizer].items():
        if name not in values:
            values[name], sources[name] = value, "detseg"
    # Model arguments merge key by key: the family's, then the spec's, then the command line's.
    merged: dict[str, Any] = {}
    for _, settings in reversed(layers):
        merged.update(settings.get("model_args") or {})
    values["model_args"] = merged
    if merged:
        sources["model_args"] = next(s for s, settings in layers if settings.get("model_args"))
    if values.get("scale_range") is not None:
        values["scale_range"] = tuple(float(v) for v in values["scale_range"])
    if values.get("out") is None:
        values["out"] = Path("runs") / str(config.model)
    resolved = replace(config, **values)
    resolved.sources = {k: v for k, v in sources.items() if k not in ("model", "data", "out")}
    return resolved
