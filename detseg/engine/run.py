"""One call from a model name and a dataset spec to a trained run folder (what ``detseg train`` does).

from detseg.engine.run import train
train("unet", "examples/membrane.yaml", "runs/membrane", epochs=40, img_size=256, lr=0.05)
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from detseg.engine.trainer import TrainConfig


def _default_lr(optimizer: str) -> float:
    return 0.01 if optimizer == "sgd" else 1e-3


def train(
    model: str,
    data: str | Path,
    out: str | Path,
    *,
    img_size: int | None = None,
    loss: str = "ce",
    class_weights: list[float] | None = None,
    scale_range: tuple[float, float] = (0.5, 2.0),
    vflip: float = 0.0,
    rotate: float = 0.0,
    elastic: float = 0.0,
    color_jitter: float = 0.0,
    zoom_out: float = 4.0,
    iou_crop: bool = True,
    pretrained: str | None = None,
    model_args: dict[str, Any] | None = None,
    train_split: str = "train",
    val_split: str | None = "val",
    resume: str | Path | None = None,
    extend_from: str | Path | None = None,
    distill: float | None = None,
    temperature: float | None = None,
    new_head: bool = False,
    pseudo_labels: float | None = None,
    **config: Any,
) -> dict[str, Any]:
    """Train zoo model ``model`` on the spec ``data``; ``config`` holds :class:`TrainConfig` fields.

    ``resume="auto"`` continues ``out/last.pt``. Returns the trainer's summary (best and last metrics,
    and under ``"transfer"`` what was loaded, replaced, extended and frozen).
    Under ``torchrun`` this joins the process group and trains with DDP.

    Transfer learning (:mod:`detseg.transfer`):

    - ``pretrained``: a weights name or file for the builder, or a detseg checkpoint (``RUN/best.pt``)
      of the same model: everything that fits is loaded; trained on other classes, its head is replaced.
      ``new_head=True`` replaces the head even when the classes are the same.
    - ``freeze="backbone" | "stages:N" | "none"`` and ``lr_backbone`` (TrainConfig fields): frozen
      backbone stages (BatchNorm statistics kept) and the backbone's own learning rate.
    - ``extend_from``: a detseg checkpoint trained on classes that the data's class list starts with;
      its head is extended to the new classes keeping the old classes' weights. ``distill`` (> 0) adds
      Learning-without-Forgetting distillation of its outputs on the old classes at ``temperature``.
      ``pseudo_labels`` (a score threshold, e.g. 0.5) labels the old objects that the new data leave
      unlabelled with the old model's confident predictions (:mod:`detseg.transfer.pseudo`).
    """
    import torch

    from detseg.data.dataset import build_dataset, collate_detection, collate_segmentation
    from detseg.data.spec import load_spec
    from detseg.engine import distributed
    from detseg.engine.tasks import DetectionTask, SegmentationTask
    from detseg.engine.trainer import Trainer
    from detseg.models.zoo import create_model, model_info

    config.setdefault("optimizer", "sgd")
    if config.get("lr") is None:
        config["lr"] = _default_lr(config["optimizer"])
    if config.get("weight_decay") is None:
        config["weight_decay"] = 1e-4 if config["optimizer"] == "sgd" else 1e-2
    device = config.get("device", "auto")
    if device == "auto":
        device = config["device"] = "cuda" if torch.cuda.is_available() else "cpu"
    if zoom_out < 1:
        raise ValueError(f"zoom_out must be >= 1 (1: no zoom out), got {zoom_out}")
    info = model_info(model)
    spec = load_spec(data)
    if resume == "auto":
        resume = Path(out) / "last.pt"
        if not resume.is_file():
            raise FileNotFoundError(f"--resume: no {resume} to continue (train without --resume first)")
    settings = _transfer_settings(resume, config, extend_from, distill, temperature, new_head, pseudo_labels)
    extend_from, distill, temperature, new_head, pseudo_labels = (
        settings["extend_from"],
        settings["distill"],
        settings["temperature"],
        settings["new_head"],
        settings["pseudo_labels"],
    )
    source = _source_checkpoint(extend_from, pretrained, model, spec.task)
    if source is not None and not img_size and source["meta"].get("img_size"):
        saved_size = source["meta"]["img_size"]  # the source model's input size, unless given
        if isinstance(saved_size, list) and len(set(saved_size)) == 1:
            saved_size = saved_size[0]
        img_size = saved_size if isinstance(saved_size, int) else None
    if info.task != spec.task:
        raise ValueError(
            f"model {model!r} is a {info.task} model but {data} is a {spec.task} data set; "
            f"choose a {spec.task} model (detseg models list)"
        )
    if spec.task in ("segment", "classify"):
        size: Any = int(img_size or info.input_size[-1])
    else:  # the model's (H, W) unless given
        size = int(img_size) if img_size else tuple(int(v) for v in info.input_size[1:])
    dist_info = distributed.init_distributed(device)
    try:
        if spec.task == "classify":
            from detseg.engine.classify import build_classification

            built = build_classification(spec, train_split, val_split, size)
            train_set, val_set, class_task, collate, _ = built
        elif spec.task == "segment":
            from detseg.data.transforms import segmentation_eval_preset, segmentation_train_preset

            train_tf = segmentation_train_preset(
                size, tuple(scale_range), ignore_index=spec.ignore_index, vflip_prob=vflip, rotate=rotate,
                elastic=elastic, color_jitter=color_jitter,
            )
            val_tf, collate = segmentation_eval_preset(), collate_segmentation
        else:
            from detseg.data.transforms import detection_eval_preset, detection_train_preset

            train_tf, val_tf, collate = (
                detection_train_preset(size, zoom_out_range=(1.0, float(zoom_out)), iou_crop=iou_crop),
                detection_eval_preset(size),
                collate_detection,
            )
        validate = bool(val_split) and val_split != "none" and val_split in spec.splits
        if spec.task != "classify":  # build_classification made both sets above
            train_set = build_dataset(spec, train_split, train_tf)
            val_set = build_dataset(spec, val_split, val_tf) if validate else None
        if val_split and val_split != "none" and not validate and dist_info.is_main:
            print(
                f"detseg train: {data} has no '{val_split}' split (it has {', '.join(spec.splits)}): "
                "training without validation; best.pt = last.pt",
                file=sys.stderr,
            )
        classes = list(train_set.classes)
        if spec.task == "classify":
            task, kwargs = class_task, {"num_classes": len(classes)}
        elif spec.task == "segment":
            task = SegmentationTask(len(classes), spec.ignore_index, loss, class_weights, classes)
            kwargs = {"num_classes": task.out_channels, "in_channels": spec.channels}
        else:
            task = DetectionTask(len(classes), classes)
            kwargs = {"num_classes": len(classes)}
            if img_size and _takes_size(info.builder):
                kwargs["size"] = int(img_size)  # the model's own input size follows --img-size
        builder_pretrained = pretrained
        if source is not None:
            saved_kwargs = dict(source["meta"].get("model_kwargs", {}))
            saved_kwargs.pop("num_classes", None)
            kwargs = {**saved_kwargs, **kwargs}  # the source model's architecture
            builder_pretrained = source["meta"].get("builder_pretrained")
        if builder_pretrained:
            kwargs["pretrained"] = builder_pretrained
        kwargs.update(model_args or {})
        torch.manual_seed(int(config.get("seed", 0)))  # the same initial weights in every process
        net = create_model(model, **kwargs)
        transfer = _apply_source(net, model, kwargs, source, classes, extend_from, new_head)
        transfer.update(
            distill=distill, temperature=temperature, new_head=new_head, pseudo_labels=pseudo_labels
        )
        if transfer.get("summary") and dist_info.is_main and not config.get("quiet"):
            print(f"detseg train: {transfer['summary']}", file=sys.stderr)
        old_model = _build_source_model(model, source) if distill or pseudo_labels else None
        if distill:
            from detseg.transfer.lwf import LwFTask

            task = LwFTask(task, net, old_model, distill, temperature)
        if pseudo_labels:
            from detseg.transfer.pseudo import PseudoLabelTask

            task = PseudoLabelTask(task, old_model, pseudo_labels)
        meta = {
            "task": spec.task,
            "model": model,
            "model_kwargs": {k: v for k, v in kwargs.items() if k != "pretrained"},
            "classes": classes,
            "values": {int(k): int(v) for k, v in (spec.values or {}).items()},
            "ignore_index": int(spec.ignore_index),
            "channels": int(spec.channels),
            "img_size": size if isinstance(size, int) else list(size),
            "loss": loss if spec.task == "segment" else "",
            "data": str(spec.path or data),
            "builder_pretrained": str(builder_pretrained) if builder_pretrained else None,
            "transfer": transfer,
        }
        category_ids = getattr(train_set, "label_to_category_id", None)
        if category_ids is not None:
            meta["category_ids"] = [int(c) for c in category_ids]
        cfg = TrainConfig(out=str(out), **config)
        cfg.extra = {
            "img_size": size if isinstance(size, int) else list(size),
            "loss": loss,
            "scale_range": list(scale_range),
            "vflip": vflip,
            "rotate": rotate,
            "elastic": elastic,
            "color_jitter": color_jitter,
            "zoom_out": zoom_out,
            "iou_crop": iou_crop,
            "model_args": model_args or {},
        }
        trainer = Trainer(net, task, train_set, val_set, cfg, collate_fn=collate, meta=meta)
        if spec.task == "segment" and trainer.val_loader is not None:
            # Validation images may differ in size: one at a time.
            trainer.val_loader = torch.utils.data.DataLoader(
                val_set,
                batch_size=1,
                sampler=trainer.val_loader.sampler,
                num_workers=cfg.workers,
                collate_fn=collate,
                generator=torch.Generator().manual_seed(0),
            )
        if trainer.freeze_report is not None:
            transfer["freeze"] = trainer.freeze_report.summary()
            if dist_info.is_main and not config.get("quiet"):
                print(f"detseg train: --freeze {cfg.freeze}: {transfer['freeze']}", file=sys.stderr)
        if resume is not None:
            _check_resume(resume, meta)
        summary = trainer.fit(resume=resume)
        summary["transfer"] = transfer
        return summary
    finally:
        distributed.cleanup_distributed()


def _transfer_settings(
    resume: str | Path | None,
    config: dict[str, Any],
    extend_from: str | Path | None,
    distill: float | None,
    temperature: float | None,
    new_head: bool,
    pseudo_labels: float | None = None,
) -> dict[str, Any]:
    """The transfer settings of this run; resuming, those of the run it continues (a different explicit
    value is refused: the optimizer's groups, the frozen layers and the teacher must stay the same)."""
    from detseg.engine.checkpoint import load_checkpoint
    from detseg.transfer.freeze import parse_freeze

    given = {
        "freeze": config.get("freeze"),
        "lr_backbone": config.get("lr_backbone"),
        "extend_from": str(extend_from) if extend_from else None,
        "distill": distill,
        "temperature": temperature,
        "new_head": new_head or None,
        "pseudo_labels": pseudo_labels,
    }
    if resume is not None:
        state = load_checkpoint(resume)
        saved_cfg, saved_meta = state.get("config", {}), state.get("meta", {})
        saved_tr = saved_meta.get("transfer") or {}
        # Only what the checkpoint records (older checkpoints lack some): a recorded None is a value too,
        # e.g. no --lr-backbone, whose optimizer has no backbone groups to load.
        saved = {k: saved_cfg[k] for k in ("freeze", "lr_backbone") if k in saved_cfg}
        if "transfer" in saved_meta:
            keys = ("extend_from", "distill", "temperature", "new_head", "pseudo_labels")
            saved.update({k: saved_tr.get(k) for k in keys})
        for key, value in saved.items():
            if given[key] is None:
                given[key] = value
            elif _differs(given[key], value, key):
                raise ValueError(
                    f"--resume {resume}: the run was trained with {key}={value!r}, not {given[key]!r} "
                    "(leave it out to continue as it was)"
                )
    config["freeze"] = given["freeze"] or "none"
    parse_freeze(config["freeze"])  # a bad --freeze fails here, before any data is read
    config["lr_backbone"] = given["lr_backbone"]
    if given["lr_backbone"] is not None and float(given["lr_backbone"]) < 0:
        raise ValueError(f"--lr-backbone must be >= 0, got {given['lr_backbone']}")
    distill_weight = float(given["distill"] or 0.0)
    if distill_weight < 0:
        raise ValueError(f"--distill must be >= 0, got {distill_weight}")
    if distill_weight and not given["extend_from"]:
        raise ValueError("--distill needs --extend-from CHECKPOINT: the old model whose outputs it keeps")
    pseudo = float(given["pseudo_labels"] or 0.0)
    if not 0.0 <= pseudo <= 1.0:
        raise ValueError(f"--pseudo-labels is a score threshold in (0, 1], got {pseudo}")
    if pseudo and not given["extend_from"]:
        raise ValueError("--pseudo-labels needs --extend-from CHECKPOINT: the old model that labels")
    return {
        "pseudo_labels": pseudo or None,
        "extend_from": given["extend_from"],
        "distill": distill_weight,
        "temperature": float(given["temperature"] or 2.0),
        "new_head": bool(given["new_head"]),
    }


def _differs(given: Any, saved: Any, key: str) -> bool:
    """Whether an explicit setting disagrees with the resumed run's (freeze specs compared parsed;
    ``new_head=False`` is the flag left out)."""
    if key == "freeze":
        from detseg.transfer.freeze import parse_freeze

        return parse_freeze(given) != parse_freeze(saved)
    if key == "new_head":
        return bool(given) != bool(saved)
    if key in ("distill", "pseudo_labels"):
        return float(given or 0.0) != float(saved or 0.0)
    return given != saved


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
            return {"action": "pre-trained backbone", "source": loaded.source, "summary": loaded.summary()}
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
):
    """Run a saved model over a split; returns the task holding what it saw (``eval_end()`` gives the
    metrics; a detection task's ``coco_inputs()`` gives ground truth and results for full reports).
    ``tta``: a segmenter's test-time augmentation, "hflip", "flips" or "d4" (:mod:`detseg.engine.tta`)."""
    import torch

    from detseg.data.dataset import build_dataset, collate_detection, collate_segmentation
    from detseg.data.spec import load_spec
    from detseg.engine.checkpoint import check_classes
    from detseg.engine.predict import load_model
    from detseg.engine.tasks import DetectionTask, SegmentationTask
    from detseg.engine.tta import with_tta

    model, meta = load_model(weights, device)
    spec = load_spec(data)
    if spec.task != meta.get("task"):
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
        collate = collate_segmentation
    else:
        from detseg.data.transforms import detection_eval_preset

        size = meta.get("img_size")
        dataset = build_dataset(
            spec, split, detection_eval_preset(tuple(size) if isinstance(size, list) else size)
        )
        task = DetectionTask(len(dataset.classes), list(dataset.classes))
        collate = collate_detection
    check_classes(meta["classes"], list(dataset.classes), where=f"{weights} vs {data}")
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, collate_fn=collate)
    task.eval_begin()
    with torch.no_grad():
        for batch in loader:
            task.eval_step(model, batch, torch.device(device))
    return task
