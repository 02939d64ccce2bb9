"""One call from a model name and a dataset spec to a trained run folder (what ``detseg train`` does).

from detseg.engine.config import RunConfig
from detseg.engine.run import train
train(RunConfig(model="unet", data="examples/membrane.yaml", out="runs/membrane", epochs=40, img_size=256))
train("unet", "examples/membrane.yaml", "runs/membrane", epochs=40, img_size=256)   # the same
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from detseg.engine.config import KEPT_ON_RESUME, RunConfig, resolve_config
from detseg.engine.trainer import TrainConfig


def train(
    config: RunConfig | str, data: str | Path | None = None, out: str | Path | None = None, **settings: Any
) -> dict[str, Any]:
    """Train the run ``config`` describes (:class:`~detseg.engine.config.RunConfig`); or, the same,
    ``train(model, data, out, **settings)`` with ``settings`` naming RunConfig fields.

    Settings not given come from the spec's ``train_defaults``, then the model family's registered
    ``default_cfg``, then detseg's base defaults (:func:`~detseg.engine.config.resolve_config`); the
    resolved configuration is printed at the start (unless ``quiet``) and saved in ``out/config.json``.

    ``resume="auto"`` continues ``out/last.pt``. Returns the trainer's summary (best and last metrics,
    under ``"transfer"`` what was loaded, replaced, extended and frozen, and with ``test_split`` under
    ``"test"`` the scores of last.pt and best.pt on it). Under ``torchrun`` this joins the process group
    and trains with DDP.

    Splits: ``val_split`` chooses best.pt (evaluated during training); ``test_split`` is scored once at the
    end, with last.pt and best.pt, and must differ from both the training and the validation split.

    Transfer learning (:mod:`detseg.transfer`):

    - ``pretrained``: a weights name or file for the builder, or a detseg checkpoint (``RUN/best.pt``)
      of the same model: everything that fits is loaded; trained on other classes, its head is replaced.
      ``new_head=True`` replaces the head even when the classes are the same.
    - ``freeze="backbone" | "stages:N" | "bn" | "none"`` and ``lr_backbone``: frozen backbone stages
      (BatchNorm statistics kept; ``bn``: those statistics alone) and the backbone's own learning rate.
    - ``extend_from``: a detseg checkpoint trained on classes that the data's class list starts with;
      its head is extended to the new classes keeping the old classes' weights. ``distill`` (> 0) adds
      Learning-without-Forgetting distillation of its outputs on the old classes at ``temperature``.
      ``pseudo_labels`` (a score threshold, e.g. 0.5) labels the old objects that the new data leave
      unlabelled with the old model's confident predictions (:mod:`detseg.transfer.pseudo`).
    """
    import torch

    from detseg.data.spec import load_spec
    from detseg.engine import distributed
    from detseg.engine.trainer import Trainer
    from detseg.models.zoo import create_model, model_info

    if not isinstance(config, RunConfig):
        config = RunConfig(model=config, data=data, out=out, **settings)
    elif data is not None or out is not None or settings:
        raise TypeError("train(RunConfig) takes no other arguments: set them on the RunConfig")
    info = model_info(config.model)
    spec = load_spec(config.data)
    rc = resolve_config(config, info, spec)
    resume = _resume_path(rc.resume, Path(rc.out))
    if resume is not None:  # the transfer settings of the run it continues
        rc = resolve_config(config, info, spec, resumed_settings(resume))
    _check_run(rc, spec)
    model, data, out = rc.model, rc.data, Path(rc.out)
    if rc.device == "auto":
        rc.device = "cuda" if torch.cuda.is_available() else "cpu"
    val_split = rc.val_split
    family = task_family(spec.task)  # an instance data set trains detectors (boxes), Mask R-CNN's masks too
    instance = spec.task == "instance" and predicts_masks(info) and not rc.boxes_only
    source = _source_checkpoint(rc.extend_from, rc.pretrained, model, family)
    if info.task != family:
        raise ValueError(
            f"model {model!r} is a {info.task} model but {data} is a {spec.task} data set; "
            f"choose a {spec.task} model (detseg models list)"
        )
    img_size, size = _input_size(rc, config, info, spec, source)
    dist_info = distributed.init_distributed(rc.device)
    try:
        if dist_info.is_main and not rc.quiet:
            print(
                f"detseg train: {model} on {data} -> {out}; settings by source:\n{rc.describe(spec.task)}",
                file=sys.stderr,
            )
        train_set, val_set, class_task, collate = _datasets(rc, spec, size, instance)
        validate = bool(val_split) and val_split != "none" and val_split in spec.splits
        if val_split and val_split != "none" and not validate and dist_info.is_main:
            print(
                f"detseg train: {data} has no '{val_split}' split (it has {', '.join(spec.splits)}): "
                "training without validation; best.pt = last.pt",
                file=sys.stderr,
            )
        classes = list(train_set.classes)
        if source is not None and source.get("from_weights") and family == "detect":
            train_set, val_set, classes = _relabel_after_weights(source, train_set, val_set, classes)
        task, kwargs = _task_and_kwargs(rc, spec, info, classes, class_task, instance, img_size)
        kwargs, builder_pretrained = _builder_kwargs(rc, kwargs, source)
        torch.manual_seed(int(rc.seed))  # the same initial weights in every process
        net = create_model(model, **kwargs)
        if predicts_masks(info) and not instance:
            net.train_boxes_only()  # a detect data set trains Mask R-CNN's box branch alone
            if dist_info.is_main and not rc.quiet:
                why = "--boxes-only" if rc.boxes_only else f"{data} is a {spec.task} data set"
                print(f"detseg train: {why}: training the box branch only (an instance data set without "
                      "--boxes-only trains the masks too)", file=sys.stderr)
        transfer = _apply_source(net, model, kwargs, source, classes, rc.extend_from, rc.new_head)
        transfer.update({k: getattr(rc, k) for k in ("distill", "temperature", "new_head", "pseudo_labels")})
        if transfer.get("summary") and dist_info.is_main and not rc.quiet:
            print(f"detseg train: {transfer['summary']}", file=sys.stderr)
        if rc.distill or rc.pseudo_labels:
            task = _old_model_tasks(task, net, _build_source_model(model, source), rc)
        meta = _checkpoint_meta(rc, info, spec, net, kwargs, classes, size, instance)
        meta["builder_pretrained"] = str(builder_pretrained) if builder_pretrained else None
        meta["transfer"] = transfer
        category_ids = getattr(train_set, "label_to_category_id", None)
        if category_ids is not None:
            meta["category_ids"] = [int(c) for c in category_ids]
        cfg = trainer_config(rc)
        cfg.extra = _run_extra(rc, size)
        trainer = Trainer(net, task, train_set, val_set, cfg, collate_fn=collate, meta=meta)
        rc.amp, rc.amp_reason = trainer.amp, trainer.amp_reason  # what --amp auto chose (config.json)
        if dist_info.is_main and not rc.quiet:
            print(f"detseg train: amp {'on' if rc.amp else 'off'} ({rc.amp_reason})", file=sys.stderr)
        if spec.task == "segment" and trainer.val_loader is not None:  # sizes may differ: one at a time
            trainer.val_loader = _one_at_a_time(trainer.val_loader, val_set, cfg.workers, collate)
        if trainer.freeze_report is not None:
            transfer["freeze"] = trainer.freeze_report.summary()
            if dist_info.is_main and not rc.quiet:
                print(f"detseg train: --freeze {cfg.freeze}: {transfer['freeze']}", file=sys.stderr)
        if resume is not None:
            _check_resume(resume, meta)
        if dist_info.is_main:
            _save_config(rc, out)
        summary = trainer.fit(resume=resume)
        summary["transfer"] = transfer
        if rc.test_split and dist_info.is_main:
            summary["test"] = score_test_split(out, data, rc.test_split, rc.device, validate, rc.quiet)
        return summary
    finally:
        distributed.cleanup_distributed()


def _datasets(rc: RunConfig, spec: Any, size: Any, instance: bool) -> tuple[Any, Any, Any, Any]:
    """``(train set, val set or None, classification task or None, collate)`` with the task's training
    and evaluation presets; no val set when ``rc.val_split`` is "none" or not one of the spec's splits."""
    from detseg.data.dataset import build_dataset, collate_detection, collate_segmentation

    val_split = rc.val_split
    validate = bool(val_split) and val_split != "none" and val_split in spec.splits
    if spec.task == "classify":
        from detseg.engine.classify import build_classification

        train_set, val_set, task, collate, _ = build_classification(spec, rc.train_split, val_split, size)
        return train_set, val_set, task, collate
    train_tf = train_preset(rc, spec, size)
    if spec.task == "segment":
        from detseg.data.transforms import segmentation_eval_preset

        val_tf, collate = segmentation_eval_preset(), collate_segmentation
    else:
        from detseg.data.transforms import detection_eval_preset

        val_tf, collate = detection_eval_preset(size), collate_detection
    train_set = training_set(rc, spec, rc.train_split, train_tf, size, instance)
    if getattr(rc, "tile", None) and spec.task in ("detect", "instance"):  # large images: train on tiles
        train_set = _tiled(rc, train_set)
    val_set = build_dataset(spec, val_split, val_tf, boxes_only=not instance) if validate else None
    if spec.task == "segment":  # a bad label file stops the run before it trains, not in its 10th epoch
        for dataset in (train_set, val_set):
            if dataset is not None:
                getattr(dataset, "dataset", dataset).verify()  # under MixDataset: the split it reads
    return train_set, val_set, None, collate


def training_set(
    rc: RunConfig, spec: Any, split: str, transforms: Any, size: Any, instance: bool, skip_bad: bool = False
) -> Any:
    """The split read with ``transforms`` (the train preset); with ``mosaic``, ``mixup`` or ``copy_paste``,
    read as it is and wrapped in :class:`~detseg.data.mix.MixDataset`, which mixes samples and then
    applies ``transforms`` (``instance``: the masks are kept for the model)."""
    from detseg.data.dataset import build_dataset

    if not (rc.mosaic or rc.mixup or rc.copy_paste):
        return build_dataset(spec, split, transforms, skip_bad=skip_bad, boxes_only=not instance)
    from detseg.data.mix import MixDataset

    # Copy-paste cuts objects out by their masks: they are read even for a box model (and dropped after).
    raw = build_dataset(spec, split, None, skip_bad=skip_bad, boxes_only=not (instance or rc.copy_paste))
    return MixDataset(
        raw, transforms, size=size, mosaic=rc.mosaic, mixup=rc.mixup, copy_paste=rc.copy_paste,
        close_mosaic=rc.close_mosaic, keep_masks=instance, ignore_index=spec.ignore_index,
    )  # fmt: skip


def _tiled(rc: RunConfig, train_set: Any) -> Any:
    """``--tile``: the training set cut into tiles (:class:`~detseg.data.tiles.TiledDataset`)."""
    from detseg.data.tiles import TiledDataset

    if getattr(rc, "mosaic", None) or getattr(rc, "mixup", None) or getattr(rc, "copy_paste", None):
        raise ValueError("--tile does not combine with --mosaic, --mixup or --copy-paste")
    return TiledDataset(train_set, rc.tile, rc.tile_overlap, rc.tile_min_visibility)


def train_preset(rc: RunConfig, spec: Any, size: Any) -> Any:
    """The training augmentation of a resolved run config for a segmentation or detection spec (what
    ``detseg train`` applies, and what ``detseg data show --augment`` draws)."""
    if spec.task == "segment":
        from detseg.data.transforms import segmentation_train_preset

        return segmentation_train_preset(
            size, tuple(rc.scale_range), ignore_index=spec.ignore_index, vflip_prob=rc.vflip,
            rotate=rc.rotate, elastic=rc.elastic, color_jitter=rc.color_jitter,
        )  # fmt: skip
    from detseg.data.transforms import detection_train_preset

    return detection_train_preset(
        size, zoom_out_range=(1.0, float(rc.zoom_out)), iou_crop=rc.iou_crop, vflip_prob=rc.vflip
    )


def _builder_kwargs(rc: RunConfig, kwargs: dict[str, Any], source: dict | None) -> tuple[dict, Any]:
    """The model builder's arguments (the task's, then a source checkpoint's architecture, the pre-trained
    weights, ``--model-arg``) and the weights the builder loads."""
    builder_pretrained = rc.pretrained
    if source is not None:
        saved_kwargs = dict(source["meta"].get("model_kwargs", {}))
        saved_kwargs.pop("num_classes", None)
        kwargs = {**saved_kwargs, **kwargs}  # the source model's architecture
        builder_pretrained = source["meta"].get("builder_pretrained")
    if builder_pretrained:
        kwargs["pretrained"] = builder_pretrained
    kwargs.update(rc.model_args or {})
    return kwargs, builder_pretrained


def _checkpoint_meta(
    rc: RunConfig, info: Any, spec: Any, net: Any, kwargs: dict, classes: list, size: Any, instance: bool
) -> dict[str, Any]:
    """What a checkpoint says of its model and data (``meta``), enough to rebuild and use the model."""
    meta = {
        "task": info.task,
        "instance": instance,
        "model": rc.model,
        # build_kwargs: what create_model built with pre-trained weights' own architecture (SSDLite's
        # reduced tail for torchvision's COCO weights...), so the checkpoint rebuilds the same model
        "model_kwargs": {k: v for k, v in {**kwargs, **getattr(net, "build_kwargs", {})}.items()
                         if k != "pretrained"},
        "classes": classes,
        "values": {int(k): int(v) for k, v in (spec.values or {}).items()},
        "ignore_index": int(spec.ignore_index),
        "channels": int(spec.channels),
        "img_size": size if isinstance(size, int) else list(size),
        "loss": rc.loss if spec.task == "segment" else "",
        "data": str(spec.path or rc.data),
    }  # fmt: skip
    if getattr(net, "weights_meta", None):  # torchvision's weights: their classes travel along
        meta["pretrained_weights"] = dict(net.weights_meta)
    return meta


def _run_extra(rc: RunConfig, size: Any) -> dict[str, Any]:
    """What a checkpoint records of the run's data settings (``TrainConfig.extra``)."""
    return {
        "img_size": size if isinstance(size, int) else list(size),
        "loss": rc.loss,
        "scale_range": list(rc.scale_range),
        "vflip": rc.vflip,
        "rotate": rc.rotate,
        "elastic": rc.elastic,
        "color_jitter": rc.color_jitter,
        "zoom_out": rc.zoom_out,
        "iou_crop": rc.iou_crop,
        **{k: getattr(rc, k) for k in ("mosaic", "mixup", "copy_paste", "close_mosaic")},
        "model_args": rc.model_args or {},
        "test_split": rc.test_split,
        "sources": dict(rc.sources),
    }


def _check_run(rc: RunConfig, spec: Any) -> None:
    """A length given and positive, zoom-out >= 1, a test split that is neither trained nor chosen on."""
    if rc.epochs is None and rc.iters is None and rc.time is None:
        raise ValueError(f"give --epochs, --iters or --time ({rc.model} has no default length)")
    for name in ("epochs", "iters", "time"):
        value = getattr(rc, name)
        if value is not None and value <= 0:
            raise ValueError(f"--{name} must be positive, got {value}")
    if rc.zoom_out < 1:
        raise ValueError(f"zoom_out must be >= 1 (1: no zoom out), got {rc.zoom_out}")
    check_mixing(rc)
    _check_test_split(rc, spec)
    _check_transfer(rc)


def check_mixing(rc: RunConfig) -> None:
    """``--mosaic``, ``--mixup``, ``--copy-paste`` are probabilities; ``--close-mosaic`` is >= 0 epochs."""
    for name in ("mosaic", "mixup", "copy_paste"):
        value = getattr(rc, name)
        if not 0.0 <= float(value) <= 1.0:
            raise ValueError(f"--{name.replace('_', '-')} must be a probability in [0, 1], got {value}")
    if int(rc.close_mosaic) < 0:
        raise ValueError(f"--close-mosaic must be >= 0 epochs, got {rc.close_mosaic}")


def _resume_path(resume: Any, out: Path) -> Any:
    """``"auto"``: ``out/last.pt``, which must exist; anything else as given."""
    if resume != "auto":
        return resume
    path = out / "last.pt"
    if not path.is_file():
        raise FileNotFoundError(f"--resume: no {path} to continue (train without --resume first)")
    return path


def _input_size(
    rc: RunConfig, given: RunConfig, info: Any, spec: Any, source: dict | None
) -> tuple[Any, Any]:
    """``(img_size, size)``: the size asked for (or the source checkpoint's, when none was given) and the
    size the data are brought to: a side for segmentation and classification, ``(H, W)`` for detection."""
    img_size = rc.img_size
    if source is not None and not given.img_size and source["meta"].get("img_size"):
        saved_size = source["meta"]["img_size"]  # the source model's input size, unless given
        if isinstance(saved_size, list) and len(set(saved_size)) == 1:
            saved_size = saved_size[0]
        if isinstance(saved_size, int):
            img_size, rc.img_size, rc.sources["img_size"] = saved_size, saved_size, "source checkpoint"
    if spec.task in ("segment", "classify"):
        return img_size, int(img_size or info.input_size[-1])
    # the model's (H, W) unless given
    return img_size, (int(img_size) if img_size else tuple(int(v) for v in info.input_size[1:]))


def _relabel_after_weights(
    source: dict, train_set: Any, val_set: Any, classes: list
) -> tuple[Any, Any, list]:
    """Detection from pre-trained weights: the data's classes after the weights' (COCO's 90 ids, then the
    new ones), the labels renumbered to match."""
    from detseg.engine.class_map import Relabelled, extended_classes

    classes, data_to_model = extended_classes(list(source["meta"]["classes"]), classes)
    train_set = Relabelled(train_set, data_to_model, classes)
    val_set = Relabelled(val_set, data_to_model, classes) if val_set is not None else None
    old_ids = list(source["meta"].get("category_ids") or [])
    first_new = max(old_ids) + 1
    train_set.label_to_category_id = old_ids + list(range(first_new, first_new + len(classes) - len(old_ids)))
    return train_set, val_set, classes


def _task_and_kwargs(
    rc: RunConfig, spec: Any, info: Any, classes: list, class_task: Any, instance: bool, img_size: Any
) -> tuple[Any, dict[str, Any]]:
    """The training task (losses and metrics) and the builder's task-given arguments."""
    from detseg.engine.tasks import DetectionTask, InstanceTask, SegmentationTask

    if spec.task == "classify":
        return class_task, {"num_classes": len(classes)}
    if spec.task == "segment":
        task = SegmentationTask(len(classes), spec.ignore_index, rc.loss, rc.class_weights, classes)
        return task, {"num_classes": task.out_channels, "in_channels": spec.channels}
    task = (InstanceTask if instance else DetectionTask)(len(classes), classes)
    kwargs: dict[str, Any] = {"num_classes": len(classes)}
    if img_size and _takes_size(info.builder):
        kwargs["size"] = int(img_size)  # the model's own input size follows --img-size
    return task, kwargs


def _old_model_tasks(task: Any, net: Any, old_model: Any, rc: RunConfig) -> Any:
    """``task`` wrapped for Learning without Forgetting (``distill``) and the old model's pseudo-labels."""
    if rc.distill:
        from detseg.transfer.lwf import LwFTask

        task = LwFTask(task, net, old_model, rc.distill, rc.temperature)
    if rc.pseudo_labels:
        from detseg.transfer.pseudo import PseudoLabelTask

        task = PseudoLabelTask(task, old_model, rc.pseudo_labels)
    return task


def _one_at_a_time(loader: Any, dataset: Any, workers: int, collate: Any) -> Any:
    """``loader``'s sampler with batch size 1 (segmentation validation images may differ in size)."""
    import torch

    return torch.utils.data.DataLoader(
        dataset, batch_size=1, sampler=loader.sampler, num_workers=workers, collate_fn=collate,
        generator=torch.Generator().manual_seed(0),
    )  # fmt: skip


def trainer_config(rc: RunConfig) -> TrainConfig:
    """The trainer's part of a resolved run configuration."""
    from dataclasses import fields

    names = {f.name for f in fields(TrainConfig)} - {"extra", "out"}
    values = {k: getattr(rc, k) for k in names if getattr(rc, k, None) is not None}
    return TrainConfig(out=str(rc.out), **values)


def _check_test_split(rc: RunConfig, spec: Any) -> None:
    """A test split must exist and be neither the split trained on nor the one that chooses best.pt."""
    test = rc.test_split
    if not test:
        return
    if test not in spec.splits:
        raise ValueError(
            f"--test-split {test}: {rc.data} has no such split (it has {', '.join(spec.splits)})"
        )
    for role, split in (("trains", rc.train_split), ("chooses best.pt", rc.val_split)):
        if split == test:
            raise ValueError(
                f"--test-split {test} is also the split that {role}: a score on it would not be out of "
                "sample (give the spec a separate test split)"
            )
    if spec.splits[test] in (spec.splits.get(rc.train_split), spec.splits.get(rc.val_split)):
        raise ValueError(f"--test-split {test}: the spec's '{test}' split is the same files as another split")


def score_test_split(
    out: Path, data: str | Path, split: str, device: str, validated: bool, quiet: bool
) -> dict[str, dict[str, float]]:
    """Score last.pt (and best.pt, when a validation split chose it) once on ``split``; writes
    ``out/test.json`` and prints one line per checkpoint."""
    from detseg.engine.checkpoint import load_checkpoint

    scores: dict[str, dict[str, float]] = {}
    for name in ("last", "best") if validated else ("last",):
        metrics = evaluate(out / f"{name}.pt", data, split, device=device)
        scores[name] = {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float))}
    best_epoch = load_checkpoint(out / "best.pt").get("epoch") if validated else None
    result = {"split": split, "scores": scores, "best_epoch": best_epoch}
    _write_json(out / "test.json", result)
    if not quiet:
        for name, metrics in scores.items():
            main = {k: v for k, v in metrics.items() if k in ("miou", "AP", "AP50", "accuracy")}
            shown = ", ".join(f"{k} {v:.4f}" for k, v in main.items()) or ", ".join(
                f"{k} {v:.4f}" for k, v in list(metrics.items())[:4]
            )
            print(f"detseg train: {name}.pt on the test split '{split}': {shown}", file=sys.stderr)
    return scores


def _save_config(rc: RunConfig, out: Path) -> None:
    """``out/config.json``: every resolved setting and where it came from."""
    from dataclasses import asdict

    values = {k: v for k, v in asdict(rc).items() if k != "sources"}
    _write_json(out / "config.json", {"config": values, "sources": rc.sources})


def _write_json(path: Path, obj: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(obj, indent=1, default=str) + "\n")
    tmp.replace(path)  # atomic


def resumed_settings(path: str | Path) -> dict[str, Any]:
    """The :data:`~detseg.engine.config.KEPT_ON_RESUME` settings of the run a checkpoint continues, as it
    records them (its config, then its meta's ``transfer``; older checkpoints lack some)."""
    from detseg.engine.checkpoint import load_checkpoint

    state = load_checkpoint(path)
    saved_cfg, saved_meta = state.get("config", {}), state.get("meta", {})
    saved = {}
    for name in KEPT_ON_RESUME:
        if name in saved_cfg:
            saved[name] = saved_cfg[name]
        elif "transfer" in saved_meta:
            saved[name] = (saved_meta["transfer"] or {}).get(name)
    return saved


def _check_transfer(rc: RunConfig) -> None:
    """Refuse bad transfer settings before any data is read; bring them to their types."""
    from detseg.transfer.freeze import parse_freeze

    rc.freeze = rc.freeze or "none"
    parse_freeze(rc.freeze)
    if rc.lr_backbone is not None and float(rc.lr_backbone) < 0:
        raise ValueError(f"--lr-backbone must be >= 0, got {rc.lr_backbone}")
    rc.extend_from = str(rc.extend_from) if rc.extend_from else None
    rc.distill, rc.temperature = float(rc.distill or 0.0), float(rc.temperature or 2.0)
    rc.new_head, rc.pseudo_labels = bool(rc.new_head), float(rc.pseudo_labels or 0.0) or None
    if rc.distill < 0:
        raise ValueError(f"--distill must be >= 0, got {rc.distill}")
    if rc.distill and not rc.extend_from:
        raise ValueError("--distill needs --extend-from CHECKPOINT: the old model whose outputs it keeps")
    if rc.pseudo_labels is not None and not 0.0 <= rc.pseudo_labels <= 1.0:
        raise ValueError(f"--pseudo-labels is a score threshold in (0, 1], got {rc.pseudo_labels}")
    if rc.pseudo_labels and not rc.extend_from:
        raise ValueError("--pseudo-labels needs --extend-from CHECKPOINT: the old model that labels")


def _source_checkpoint(
    extend_from: str | None, pretrained: Any, model: str, task: str
) -> dict[str, Any] | None:
    """The detseg checkpoint to start from: ``extend_from``, or ``pretrained`` when it is one."""
    from detseg.engine.checkpoint import load_checkpoint

    if extend_from and pretrained:
        raise ValueError(
            f"--extend-from {extend_from} and --pretrained {pretrained}: give one (the extended model starts "
            "from the checkpoint's weights, pre-trained ones included)"
        )
    path = extend_from
    if extend_from:
        from detseg.engine.pretrained import is_weights_name, weights_source

        if is_weights_name(extend_from):  # torchvision's COCO model by name: its classes, then the data's
            source = weights_source(model, extend_from)
            if source["meta"].get("task") != task:
                raise ValueError(f"--extend-from {extend_from}: a {source['meta'].get('task')} model's "
                                 f"weights, the data is for {task}")
            return source
    if path is None and isinstance(pretrained, (str, Path)) and Path(pretrained).exists():
        try:
            state = load_checkpoint(pretrained)
        except ValueError:
            return None  # a plain weights file: the builder loads it
        path, loaded = str(pretrained), state
    elif path is None:
        return None
    else:
        loaded = load_checkpoint(path)
    meta = loaded.get("meta", {})
    if not extend_from and meta.get("model") not in (None, model):
        # Another model's checkpoint (a detseg classifier for a segmenter's encoder...): the builder loads
        # what fits with torchvision's key names and reports it.
        return None
    if meta.get("model") not in (None, model):
        raise ValueError(f"{path}: the checkpoint is a {meta['model']!r} model, not {model!r}")
    if meta.get("task") not in (None, task):
        raise ValueError(f"{path}: the checkpoint is a {meta['task']} model, the data is for {task}")
    from detseg.engine.checkpoint import inference_weights

    return {"path": str(path), "state": inference_weights(loaded), "meta": meta}


def _apply_source(
    net: Any,
    model: str,
    kwargs: dict[str, Any],
    source: dict[str, Any] | None,
    classes: list[str],
    extend_from: str | None,
    new_head: bool,
) -> dict[str, Any]:
    """Load the source checkpoint into ``net``: extend its head, replace it, or load it all."""
    from detseg.transfer.heads import class_keys, extend_head, load_replacing_head

    if source is None:
        loaded = getattr(net, "pretrained_report", None)  # what the builder's pre-trained weights gave
        if loaded is not None and getattr(loaded, "loaded", None):
            # torchvision's whole model by name (COCO_V1): all but the class layers; else a backbone
            action = "pre-trained model" if getattr(net, "weights_meta", None) else "pre-trained backbone"
            return {"action": action, "source": loaded.source, "summary": loaded.summary()}
        if new_head:
            return {"summary": "new head: the builder's freshly initialised one"}
        return {}
    keys = class_keys(model, kwargs)
    old_classes = list(source["meta"].get("classes", []))
    if extend_from:
        report = extend_head(net, source["state"], keys, old_classes, classes, source["path"])
    else:
        same = old_classes == list(classes)
        report = load_replacing_head(net, source["state"], keys, source["path"], replace=new_head or not same)
        report.old_classes, report.new_classes = old_classes, list(classes)
    out = report.to_dict()
    out["summary"] = report.summary()
    out["extend_from"] = extend_from
    return out


def _build_source_model(model: str, source: dict[str, Any]) -> Any:
    """The source checkpoint's model (the old model for distillation), weights loaded, in eval mode."""
    from detseg.models.backbones import WeightsDeferred
    from detseg.models.zoo import create_model

    kwargs = dict(source["meta"].get("model_kwargs", {}))
    if source["meta"].get("builder_pretrained"):
        # The architecture built for pre-trained weights (frozen BatchNorm, full tails), nothing loaded:
        # the checkpoint holds every weight (and its pre-trained file need not be there any more).
        kwargs["pretrained"] = WeightsDeferred()
    old = create_model(model, **kwargs)
    old.load_state_dict(source["state"])
    return old.eval()


def task_family(task: str) -> str:
    """The models a data set's task trains: an ``instance`` data set (boxes + masks) trains detectors."""
    return "detect" if task == "instance" else task


def predicts_masks(info: Any) -> bool:
    """Whether a zoo model (its :class:`~detseg.models.zoo.ModelInfo`) predicts instance masks."""
    return "masks" in str(info.extra.get("outputs", ""))


def _takes_size(builder: Any) -> bool:
    """Whether a detection builder takes ``size=`` (SSDLite's input side; R-FCN and torchvision's
    detectors make it min_size = max_size). SSD300/512 have fixed sizes and do not."""
    import inspect

    return "size" in inspect.signature(builder).parameters


def _check_resume(path: str | Path, meta: dict[str, Any]) -> None:
    from detseg.engine.checkpoint import check_classes, load_checkpoint

    saved = load_checkpoint(path).get("meta", {})
    if saved.get("model") not in (None, meta["model"]):
        raise ValueError(f"{path}: the checkpoint is a {saved['model']!r} model, not {meta['model']!r}")
    if "classes" in saved:
        check_classes(saved["classes"], meta["classes"], where=f"{path} vs {meta['data']}")


def evaluate(
    weights: str | Path, data: str | Path, split: str = "val", device: str = "cpu", batch_size: int = 1
) -> dict[str, float]:
    """Metrics of a saved model on a split of a spec, computed as during training's validation.

    Segmentation: mIoU, Dice, pixel accuracy (and per class) at full image size; detection: COCO AP.
    A spec whose classes differ from the checkpoint's is refused, naming both lists.
    """
    return run_evaluation(weights, data, split, device, batch_size).eval_end()


def run_evaluation(
    weights: str | Path,
    data: str | Path,
    split: str = "val",
    device: str = "cpu",
    batch_size: int = 1,
    tta: str | None = None,
    keep_predictions: bool = False,
    model_name: str | None = None,
    pretrained: Any = None,
    class_map: dict[str, str] | None = None,
    slicing: dict[str, Any] | None = None,
):
    """Run a saved model over a split; returns the task holding what it saw (``eval_end()`` gives the
    metrics; a detection task's ``coco_inputs()`` gives ground truth and results for full reports).
    ``tta``: a segmenter's test-time augmentation, "hflip", "flips" or "d4" (:mod:`detseg.engine.tta`).
    ``keep_predictions``: a segmentation task also keeps ``kept``, (prediction, truth) per image.
    ``model_name`` + ``pretrained`` instead of ``weights``: a model used as is with its weights' classes,
    matched to the data's by name and ``class_map`` (:mod:`detseg.engine.class_map`); the task's
    ``class_match`` says which were matched and which data classes the model does not know.
    ``slicing`` (detectors): sliced inference on the images at their own size, ``{"tile": 512,
    "overlap": 0.25, ...}`` as :func:`detseg.engine.slicing.with_slicing` takes them."""
    import torch

    from detseg.data.dataset import build_dataset, collate_detection, collate_segmentation
    from detseg.data.spec import load_spec
    from detseg.engine.checkpoint import check_classes
    from detseg.engine.loader import load
    from detseg.engine.slicing import with_slicing
    from detseg.engine.tasks import DetectionTask, InstanceTask, SegmentationTask
    from detseg.engine.tta import with_tta

    model, meta = load(model_name if model_name is not None else weights, pretrained, device)
    if model_name is not None:
        weights = f"{model_name} ({meta['weights']})"
    spec = load_spec(data)
    if task_family(spec.task) != meta.get("task"):
        raise ValueError(f"{weights} is a {meta.get('task')} model but {data} is a {spec.task} data set")
    model = with_tta(model, tta, spec.task)
    if spec.task == "segment":
        from detseg.data.transforms import segmentation_eval_preset

        dataset = build_dataset(spec, split, segmentation_eval_preset())
        task: Any = SegmentationTask(
            len(dataset.classes),
            spec.ignore_index,
            meta.get("loss") or "ce",
            class_names=list(dataset.classes),
        )
        if spec.format == "cityscapes":
            from detseg.metrics.evaluate import cityscapes_iiou

            task.instance_iou = cityscapes_iiou(dataset, split, len(dataset.classes), spec.ignore_index)
        collate = collate_segmentation
    else:
        from detseg.data.transforms import detection_eval_preset

        size = None if (slicing or {}).get("tile") else meta.get("img_size")  # slices: images at their size
        masks = bool(getattr(model, "uses_masks", False))  # Mask R-CNN: masks scored where the data have them
        dataset = build_dataset(
            spec, split, detection_eval_preset(tuple(size) if isinstance(size, list) else size),
            boxes_only=not masks,
        )
        masks = masks and dataset.has_masks
        task = (InstanceTask if masks else DetectionTask)(len(dataset.classes), list(dataset.classes))
        collate = collate_detection
    match = None
    if model_name is not None and (class_map or list(meta["classes"]) != list(dataset.classes)):
        from detseg.engine.class_map import map_to_data

        model, dataset, match = map_to_data(model, meta, dataset, task_family(spec.task), class_map,
                                            spec.ignore_index)
    else:
        check_classes(meta["classes"], list(dataset.classes), where=f"{weights} vs {data}")
    task.class_match = match
    model = with_slicing(model, spec.task, **(slicing or {}))
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, collate_fn=collate)
    task.eval_begin()
    task.kept = [] if keep_predictions else None
    with torch.no_grad():
        for batch in loader:
            task.eval_step(model, batch, torch.device(device))
    return task
