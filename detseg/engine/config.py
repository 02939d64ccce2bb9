"""The typed configuration of one training run (what ``detseg train`` takes), and where each value came from.

    cfg = RunConfig(model="unet", data="data/shapes/segment.yaml", out="runs/u", epochs=20)
    resolved = resolve_config(cfg, model_info("unet"), load_spec(cfg.data))
    print(resolved.describe())      # every setting with its source: command line, spec, unet default, detseg

Every training setting is declared once, as a :func:`setting` field of :class:`RunConfig`: its type,
detseg's default, its ``detseg train`` option and help, the tasks that use it, whether a model family's
defaults may set it, whether the trainer takes it (:class:`~detseg.engine.trainer.TrainConfig` is made
from them) and whether a resumed run keeps it. ``detseg train`` and ``detseg transfer-study`` make their
options from it; this module imports neither torch nor the models.

A field left at ``None`` means "not given". :func:`resolve_config` fills it from, in this order:

1. the command line / the caller (the fields set on ``RunConfig``);
2. resuming, the run it continues, for the settings it must keep (:data:`KEPT_ON_RESUME`: frozen layers,
   backbone learning rate, the teacher of distillation);
3. the spec's ``train_defaults:`` mapping (settings that belong to the data, such as flips and
   rotations for images with no up or down);
4. the model family's registered ``default_cfg`` (``register_model(..., default_cfg=...)`` in
   :mod:`detseg.models.zoo`, as in timm and MMSegmentation: the optimizer, learning rate, schedule,
   warm-up, batch size and augmentation that were measured to learn for that family);
5. detseg's base defaults (:data:`BASE_DEFAULTS`; the learning rate and weight decay follow the
   optimizer: SGD 0.01 and 1e-4, AdamW 1e-3 and 1e-2).

A family default for the learning rate, weight decay or momentum belongs to that family's optimizer:
choosing another optimizer drops them (the base values for the chosen optimizer apply instead).
``model_args`` merge key by key (the command line's win).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

OPTIMIZER_DEFAULTS: dict[str, dict[str, float]] = {
    "sgd": {"lr": 0.01, "weight_decay": 1e-4},
    "adamw": {"lr": 1e-3, "weight_decay": 1e-2},
}
#: A model family's values of these belong to its optimizer (another optimizer drops them).
OPTIMIZER_BOUND = ("lr", "weight_decay", "momentum")
#: ``--amp``: auto (detseg.engine.amp decides), on or off; True and False (older specs) mean on and off.
AMP_CHOICES = ("auto", "on", "off")
_SEGMENT = ("segment",)
_DETECT = ("detect", "instance")


def setting(
    help: str,
    type: Any = str,
    base: Any = None,
    *,
    flag: str | None = "",
    tunable: bool = False,
    trainer: bool = False,
    kept_on_resume: bool = False,
    tasks: tuple[str, ...] = (),
    required: bool = False,
    **cli: Any,
) -> Any:
    """One training setting, declared once: a :class:`RunConfig` field, ``None`` ("not given") until
    :func:`resolve_config` fills it, and the ``detseg train`` option made from it.

    ``help``: the option's help; ``{base}`` in it becomes the default. ``type``: what the option parses
    (``bool``: a switch). ``base``: detseg's default. ``flag``: the option (default ``--name-with-dashes``;
    None: no option). ``tunable``: a model family's ``default_cfg`` or a spec's ``train_defaults`` may set
    it. ``trainer``: the :class:`~detseg.engine.trainer.TrainConfig` carries it. ``kept_on_resume``: a
    resumed run keeps its value (another one is refused). ``tasks``: the tasks that use it (none: all).
    ``cli``: more of argparse's ``add_argument`` (choices, nargs, metavar, const, group, exclusive;
    ``off_flag``: a second option that sets it to "off", such as ``--no-amp``).
    """
    meta = dict(help=help, type=type, base=base, flag=flag, tunable=tunable, trainer=trainer,
                kept_on_resume=kept_on_resume, tasks=tasks, required=required, cli=cli)  # fmt: skip
    return field(metadata=meta) if required else field(default=None, metadata=meta)


_LENGTH = {"exclusive": "length"}  # --epochs or --iters
_TRANSFER = {"group": "transfer learning (docs/transfer.md)"}
_MIX = {"type": float, "base": 0.0, "tunable": True, "tasks": ("segment", *_DETECT), "metavar": "P"}


@dataclass
class RunConfig:
    """Everything that decides a ``detseg train`` run; ``None``: not given (see :func:`resolve_config`).
    Each field is a :func:`setting`: its type, detseg's default, its option and help live here only."""

    model: str = setting("a registered model name (e.g. unet, ssdlite320_mobilenet_v3)", required=True)
    data: str | Path = setting("dataset spec (YAML, COCO json or VOC folder)", Path, required=True)
    out: str | Path | None = setting("run folder (default runs/MODEL)", Path)
    # How long: epochs, optimizer steps, or minutes (with either: whichever ends first).
    epochs: int | None = setting("passes over the training split", int, tunable=True, trainer=True, **_LENGTH)
    iters: int | None = setting("optimizer steps (instead of --epochs)", int, trainer=True, **_LENGTH)
    time: float | None = setting(
        "train for at most MINUTES (evaluation included): the epochs and the schedule are fitted to the "
        "budget after every epoch; with --epochs/--iters, whichever ends first",
        float, trainer=True, metavar="MINUTES",
    )  # fmt: skip
    # Optimisation.
    batch_size: int | None = setting(
        "global batch size, split over DDP processes (base: {base})", int, 4, tunable=True, trainer=True
    )
    lr: float | None = setting("base learning rate (base: {base})", float, tunable=True, trainer=True)
    optimizer: str | None = setting(
        "base: {base}", str, "sgd", tunable=True, trainer=True, choices=tuple(OPTIMIZER_DEFAULTS)
    )
    momentum: float | None = setting("SGD momentum (base: {base})", float, 0.9, tunable=True, trainer=True)
    weight_decay: float | None = setting("base: {base}", float, tunable=True, trainer=True)
    schedule: str | None = setting(
        "base: {base}", str, "poly", tunable=True, trainer=True, choices=("poly", "cosine", "constant")
    )
    warmup: int | None = setting(
        "linear warm-up iterations (base: {base})", int, 0, tunable=True, trainer=True, metavar="ITERS"
    )
    warmup_factor: float | None = setting(
        "the warm-up's first learning rate factor", float, 0.001, flag=None, tunable=True, trainer=True
    )
    amp: str | bool | None = setting(
        "mixed precision: float16 on CUDA, bfloat16 on CPU; auto: on for CUDA and for CPUs with bfloat16 "
        "matrix units when one training step in it agrees with float32 (detseg.engine.amp; base: {base})",
        str, "auto", tunable=True, trainer=True, choices=AMP_CHOICES, nargs="?", const="on",
        off_flag="--no-amp",
    )  # fmt: skip
    clip_grad: float | None = setting(
        "clip the gradient norm to NORM", float, tunable=True, trainer=True, metavar="NORM"
    )
    # Data and augmentation.
    img_size: int | None = setting(
        "segmentation: random crop size in training (and prediction tile size); detection: input size "
        "(default: the model's default_cfg, else its registered input size)", int, tunable=True,
    )  # fmt: skip
    scale_range: tuple[float, float] | None = setting(
        "segmentation: random rescaling before the crop (base: {base})", float, (0.5, 2.0), tunable=True,
        tasks=_SEGMENT, nargs=2, metavar=("MIN", "MAX"),
    )  # fmt: skip
    vflip: float | None = setting(
        "vertical flip probability (segmentation and detection)", float, 0.0, tunable=True,
        tasks=("segment", *_DETECT), metavar="P",
    )  # fmt: skip
    rotate: float | None = setting(
        "segmentation: random rotation in [-DEG, DEG] degrees (new corners are ignored in the loss)",
        float, 0.0, tunable=True, tasks=_SEGMENT, metavar="DEG",
    )  # fmt: skip
    elastic: float | None = setting(
        "segmentation: U-Net's elastic deformation, displacements of PIXELS std on a 3x3 grid (e.g. 10)",
        float, 0.0, tunable=True, tasks=_SEGMENT, metavar="PIXELS",
    )  # fmt: skip
    zoom_out: float | None = setting(
        "detection: SSD's zoom-out augmentation up to MAX times (base: {base}; 1: none), for small objects",
        float, 4.0, tunable=True, tasks=_DETECT, metavar="MAX",
    )  # fmt: skip
    color_jitter: float | None = setting(
        "segmentation: brightness and contrast jitter, factors in [1-J, 1+J] (e.g. 0.3)",
        float, 0.0, tunable=True, tasks=_SEGMENT, metavar="J",
    )  # fmt: skip
    # Mixing samples (detseg.data.mix): before the preset's crop and resize.
    mosaic: float | None = setting(
        "probability of a mosaic of four samples (Ultralytics' 2x2 mosaic, img-size square)", **_MIX
    )
    mixup: float | None = setting("probability of blending in another sample (weight ~ Beta(32, 32))", **_MIX)
    copy_paste: float | None = setting(
        "probability of pasting objects of another sample (cut by their instance masks, or a semantic "
        "mask's connected components)", **_MIX,
    )  # fmt: skip
    close_mosaic: int | None = setting(
        "no mosaic or mixup in the last EPOCHS epochs (base: {base})", int, 0, tunable=True,
        tasks=("segment", *_DETECT), metavar="EPOCHS",
    )  # fmt: skip
    iou_crop: bool | None = setting(
        "detection: leave out SSD's IoU-constrained random crop (short runs from scratch learn faster)",
        bool, True, flag="--no-iou-crop", tunable=True, tasks=_DETECT,
    )  # fmt: skip
    # Large images with small objects: train on tiles of them (detseg.data.tiles, docs/detection.md).
    tile: int | None = setting(
        "detection: train on SIZE x SIZE tiles of each image (boxes and masks clipped)", int, tasks=_DETECT,
        metavar="SIZE",
    )  # fmt: skip
    tile_overlap: float | None = setting(
        "detection: --tile windows share this fraction (base: {base})", float, 0.25, tasks=_DETECT,
        metavar="R",
    )  # fmt: skip
    tile_min_visibility: float | None = setting(
        "detection: an object cut by a tile border is kept if this fraction of its area is in the tile "
        "(base: {base})", float, 0.5, tasks=_DETECT, metavar="F",
    )  # fmt: skip
    # An instance data set: train a Mask R-CNN's box branch alone (its masks neither read nor needed).
    boxes_only: bool | None = setting(
        "instance data (Mask R-CNN): train the box branch alone; the masks are neither read nor needed",
        bool, False, tasks=("instance",),
    )  # fmt: skip
    loss: str | None = setting(
        "segmentation loss (bce ones: two classes, one output channel; base: {base})", str, "ce",
        tunable=True, tasks=_SEGMENT,
        choices=("ce", "dice", "ce+dice", "lovasz", "ce+lovasz", "bce", "balanced-bce"),
    )  # fmt: skip
    class_weights: list[float] | None = setting(
        "cross-entropy class weights", float, tunable=True, tasks=_SEGMENT, nargs="+", metavar="W"
    )
    # Model and transfer learning (detseg.transfer).
    pretrained: str | None = setting(
        "pre-trained weights: a name, a file, or a detseg checkpoint (RUN_DIR/best.pt) of the same model; "
        "trained on other classes, its head is replaced (the report says which tensors)"
    )
    freeze: str | None = setting(
        "freeze the backbone, or its first N stages; frozen BatchNorm keeps its statistics (eval mode); "
        "bn: only the backbone's BatchNorm statistics (every weight trains)",
        str, "none", trainer=True, kept_on_resume=True, metavar="backbone|stages:N|bn|none", **_TRANSFER,
    )  # fmt: skip
    lr_backbone: float | None = setting(
        "learning rate of the backbone (the rest: --lr)", float, trainer=True, kept_on_resume=True,
        metavar="LR", **_TRANSFER,
    )  # fmt: skip
    new_head: bool | None = setting(
        "replace the head even when the classes are the same", bool, False, kept_on_resume=True, **_TRANSFER
    )
    extend_from: str | Path | None = setting(
        "add classes to a trained model: the data's classes must be its classes, in order, then new ones; "
        "the old classes' head weights are kept", kept_on_resume=True, metavar="CHECKPOINT", **_TRANSFER,
    )  # fmt: skip
    distill: float | None = setting(
        "with --extend-from: Learning without Forgetting, W x distillation of the old model's outputs on "
        "the old classes (e.g. 1.0)", float, 0.0, kept_on_resume=True, metavar="W", **_TRANSFER,
    )  # fmt: skip
    temperature: float | None = setting(
        "distillation temperature (default {base})", float, 2.0, kept_on_resume=True, metavar="T",
        **_TRANSFER,
    )  # fmt: skip
    pseudo_labels: float | None = setting(
        "with --extend-from: old objects left unlabelled in the new data get the old model's predictions "
        "scoring >= SCORE as labels (e.g. 0.5); combines with --distill",
        float, kept_on_resume=True, metavar="SCORE", **_TRANSFER,
    )  # fmt: skip
    model_args: dict[str, Any] | None = setting(
        "extra model builder argument, e.g. --model-arg width=32 (repeatable)",
        flag="--model-arg", tunable=True, action="append", metavar="KEY=VALUE",
    )  # fmt: skip
    # Splits and evaluation.
    train_split: str | None = setting("the split trained on (base: {base})", str, "train")
    val_split: str | None = setting(
        "evaluated every --eval-interval epochs; chooses best.pt (base: {base}; 'none' to skip)", str, "val"
    )
    test_split: str | None = setting(
        "scored once at the end, with last.pt and best.pt (RUN_DIR/test.json); must differ from the "
        "training and validation splits"
    )
    eval_interval: int | None = setting("base: {base}", int, 1, tunable=True, trainer=True, metavar="EPOCHS")
    # Machinery.
    sync_bn: bool | None = setting("DDP: synchronise BatchNorm statistics", bool, False, trainer=True)
    ema: float | None = setting(
        "evaluate and predict with an exponential moving average of the weights (e.g. 0.99)",
        float, 0.0, tunable=True, trainer=True, metavar="DECAY",
    )  # fmt: skip
    channels_last: bool | None = setting(
        "NHWC memory format: about 1.4x faster convolutions on CPU (U-Net: 0.41 s a step, not 0.59)",
        bool, False, tunable=True, trainer=True,
    )  # fmt: skip
    tensorboard: bool | None = setting("also write TensorBoard scalars", bool, False, trainer=True)
    quiet: bool | None = setting("no settings, progress bars or per-epoch lines", bool, False, trainer=True)
    plots: bool | None = setting("loss.png and metrics.png", bool, True, flag=None, trainer=True)
    seed: int | None = setting("base: {base}", int, 0, trainer=True)
    resume: str | Path | None = setting(
        "continue from CHECKPOINT (default RUN_DIR/last.pt) exactly where it stopped",
        nargs="?", const="auto", metavar="CHECKPOINT",
    )  # fmt: skip
    workers: int | None = setting("data loading processes (base: {base})", int, 0, trainer=True)
    device: str | None = setting("cpu, cuda, cuda:1 or auto (base: {base})", str, "auto", trainer=True)
    # Where each resolved value came from (filled by resolve_config).
    sources: dict[str, str] = field(default_factory=dict, repr=False, compare=False)
    # Why mixed precision is on or off (filled when training starts: detseg.engine.amp.choose_amp).
    amp_reason: str | None = field(default=None, repr=False, compare=False)

    def given(self) -> dict[str, Any]:
        """The settings that are not ``None`` (the caller's, before resolving)."""
        return {f.name: getattr(self, f.name) for f in SETTINGS if getattr(self, f.name) is not None}

    def describe(self, task: str | None = None) -> str:
        """One line per source: ``command line: epochs 10, img_size 128`` ... (what a run prints); with
        ``task``, without the settings that task does not use."""
        unused = {f.name for f in SETTINGS if task and task not in (f.metadata["tasks"] or (task,))}
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
        first = ("command line", "resumed run", "spec")
        order = sorted(groups, key=lambda s: first.index(s) if s in first else 3 + (s == "detseg"))
        return "\n".join(f"  {source}: {', '.join(groups[source])}" for source in order)


#: Every setting (the fields of RunConfig but ``sources``), in order.
SETTINGS = tuple(f for f in fields(RunConfig) if "help" in f.metadata)
#: detseg's defaults for every model (the learning rate and weight decay: OPTIMIZER_DEFAULTS).
BASE_DEFAULTS: dict[str, Any] = {
    f.name: f.metadata["base"] for f in SETTINGS if f.metadata["base"] is not None
}
#: What a model family's default_cfg or a spec's train_defaults may set (not the paths, the run's identity
#: or the machinery).
TUNABLE = tuple(f.name for f in SETTINGS if f.metadata["tunable"])
#: What a resumed run keeps (the optimizer's groups, the frozen layers and the teacher must stay the same).
KEPT_ON_RESUME = tuple(f.name for f in SETTINGS if f.metadata["kept_on_resume"])


def base_text(name: str) -> str:
    """detseg's default for setting ``name`` as the help shows it (``0.01 for sgd, 0.001 for adamw``)."""
    base = BASE_DEFAULTS.get(name)
    if base is None:
        return ", ".join(f"{v[name]:g} for {opt}" for opt, v in OPTIMIZER_DEFAULTS.items() if name in v)
    if isinstance(base, tuple):
        return " ".join(str(v) for v in base)
    return f"{base:g}" if isinstance(base, float) else str(base)


def trainer_fields() -> list[tuple[str, Any, Any]]:
    """The settings the trainer takes, as ``make_dataclass`` fields whose defaults are detseg's (SGD's
    learning rate and weight decay): :class:`~detseg.engine.trainer.TrainConfig`."""
    optimizer_base = OPTIMIZER_DEFAULTS[BASE_DEFAULTS["optimizer"]]
    return [
        (f.name, f.type, field(default=BASE_DEFAULTS.get(f.name, optimizer_base.get(f.name))))
        for f in SETTINGS if f.metadata["trainer"]
    ]  # fmt: skip



def default_cfg_problems(settings: dict[str, Any]) -> list[str]:
    """Names in ``settings`` that a default_cfg or a spec's train_defaults may not set."""
    return sorted(k for k in settings if k not in TUNABLE)


def resolve_config(
    config: RunConfig, info: Any, spec: Any = None, resumed: dict[str, Any] | None = None
) -> RunConfig:
    """``config`` with every ``None`` filled (command line > resumed run > spec > model family > detseg),
    and ``sources`` naming where each value came from. ``info``: the model's
    :class:`~detseg.models.zoo.ModelInfo`; ``spec``: its :class:`~detseg.data.spec.DatasetSpec` (or None);
    ``resumed``: the :data:`KEPT_ON_RESUME` settings of the run being resumed, as its checkpoint records
    them (a different value given is refused; a switch given off counts as left out).

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
    resumed = dict(resumed or {})
    given = {k: v for k, v in config.given().items() if not (k in resumed and v is False)}
    for name, saved in resumed.items():
        if name in given and _differs(name, given[name], saved):
            raise ValueError(
                f"--resume: the run was trained with {name}={saved!r}, not {given[name]!r} "
                "(leave it out to continue as it was)"
            )
    # A value recorded as None is a value too (e.g. no lr_backbone: no backbone groups to load).
    resumed_values = {k: v for k, v in resumed.items() if v is not None}
    layers = [("command line", given), ("resumed run", resumed_values), ("spec", spec_defaults),
              (family_name, family)]  # fmt: skip
    chosen_optimizer = next((s["optimizer"] for _, s in layers if s.get("optimizer")), None)
    if chosen_optimizer is not None and family.get("optimizer", chosen_optimizer) != chosen_optimizer:
        family = {k: v for k, v in family.items() if k not in OPTIMIZER_BOUND}  # another optimizer's rates
        layers[-1] = (family_name, family)
    length_given = any(given.get(k) is not None for k in ("epochs", "iters", "time"))
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for name in [f.name for f in SETTINGS]:
        if name in resumed and resumed[name] is None and name not in given:
            continue  # recorded as not set
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
    values["amp"] = amp_choice(values["amp"])
    if values.get("scale_range") is not None:
        values["scale_range"] = tuple(float(v) for v in values["scale_range"])
    if values.get("out") is None:
        values["out"] = Path("runs") / str(config.model)
    resolved = replace(config, **values)
    resolved.sources = {k: v for k, v in sources.items() if k not in ("model", "data", "out")}
    return resolved


def amp_choice(value: Any) -> str:
    """``amp`` as one of :data:`AMP_CHOICES` (True and False, as older specs and default_cfgs give it, are
    on and off)."""
    if isinstance(value, bool) or value is None:
        return "on" if value else "off"
    if str(value).lower() not in AMP_CHOICES:
        raise ValueError(f"amp must be {', '.join(AMP_CHOICES)} (or true/false), got {value!r}")
    return str(value).lower()


def _differs(name: str, given: Any, saved: Any) -> bool:
    """Whether a setting given for a resumed run disagrees with the run's (freeze specs compared parsed)."""
    if name == "freeze":
        from detseg.transfer.freeze import parse_freeze

        return parse_freeze(given) != parse_freeze(saved)
    if name == "new_head":
        return bool(given) != bool(saved)
    if name in ("distill", "pseudo_labels"):
        return float(given or 0.0) != float(saved or 0.0)
    return str(given) != str(saved) if name == "extend_from" else given != saved
