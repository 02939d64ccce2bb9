"""The training loop shared by segmentation and detection.

    trainer = Trainer(model, SegmentationTask(2), train_set, val_set, TrainConfig(out="runs/x", epochs=20),
                      collate_fn=collate_segmentation, meta={"classes": [...], ...})
    summary = trainer.fit()              # or fit(resume="runs/x/last.pt")

What it guarantees:

- **Exact resume.** Data order, worker seeds and augmentation randomness depend only on (seed, epoch)
  and the saved RNG states, so ``fit(resume=...)`` from ``last.pt`` ends with the same weights as a run
  that never stopped. ``last.pt`` is written at the end of every epoch and on Ctrl-C (SIGINT, and SIGTERM
  for a single process, become a stop at the next batch boundary, so a checkpoint never holds a
  half-applied step); a resumed mid-epoch run replays the data loader up to where it stopped and
  restores the RNG states after that. Resuming with another number of processes changes the data order.
- **Checkpoints written atomically** (``last.pt``, ``best.pt`` by the task's main metric).
- **Non-finite loss** stops training with :class:`NonFiniteLossError` naming the epoch and step.
- **A time budget** (``time`` minutes, Ultralytics' ``time=``): after every epoch the epochs still to
  run are re-planned from the mean epoch time (evaluation included) so that training ends within the
  budget, and the schedule is stretched or shortened with them, so a cosine or poly decay still ends
  at its end; ``epochs``/``iters``, when given too, stay the upper bound. A budget spent in the middle
  of an epoch stops there (then the final evaluation runs; under DDP the budget is kept at epoch
  boundaries). The time used is saved, so a resumed run gets what is left.
- **DDP** under ``torchrun``: DistributedSampler (the same permutation as one process uses, so a
  2-process run with half the batch sees the same global batches), loss and metrics summed over
  processes, only rank 0 writes.
"""

from __future__ import annotations

import math
import random
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, field, make_dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from detseg.engine import distributed
from detseg.engine.amp import choose_amp, precision_check
from detseg.engine.checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state
from detseg.engine.config import trainer_fields
from detseg.engine.ema import ModelEma
from detseg.engine.logging import RunLogger
from detseg.engine.schedules import build_scheduler


class NonFiniteLossError(FloatingPointError):
    """The loss became NaN or infinite; the message names the epoch and the step."""


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C (SIGINT) stopped training at a batch boundary, after ``last.pt`` was saved."""


# Made from RunConfig's declarations, so that a training setting has one owner (detseg.engine.config).
TrainConfig = make_dataclass(
    "TrainConfig",
    [("out", str, field(default="runs/train")), *trainer_fields(),
     ("extra", dict[str, Any], field(default_factory=dict))],
)  # fmt: skip
TrainConfig.__module__ = __name__
TrainConfig.__doc__ = """Everything that decides a training run (saved in its checkpoints): ``out``, the
trainer's settings of :class:`~detseg.engine.config.RunConfig` with detseg's defaults, and ``extra``."""


def resolve_device(name: str, dist_info: distributed.DistInfo | None = None) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and dist_info is not None and dist_info.enabled:
        name = f"cuda:{dist_info.local_rank}"
    return torch.device(name)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def build_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """SGD or AdamW over the trainable parameters. With ``cfg.lr_backbone`` the backbone's parameters
    (:func:`detseg.transfer.freeze.backbone_parameters`) form their own groups at that learning rate;
    the schedule multiplies every group's rate by the same factor."""
    backbone: set[int] = set()
    if cfg.lr_backbone is not None:
        from detseg.transfer.freeze import backbone_parameters

        backbone = {id(p) for p in backbone_parameters(model)}
    # No weight decay on biases and norm layers' scales (standard practice; they are not weights).
    # Groups: (rest, backbone) x (decay, no decay), in that order; empty ones left out.
    keys = ((False, True), (False, False), (True, True), (True, False))
    buckets: dict[tuple[bool, bool], list[nn.Parameter]] = {k: [] for k in keys}
    for p in model.parameters():
        if p.requires_grad:
            buckets[(id(p) in backbone, p.ndim > 1)].append(p)
    groups = []
    for (in_backbone, decays), params in buckets.items():
        if params:
            group = {"params": params, "weight_decay": cfg.weight_decay if decays else 0.0}
            if in_backbone:
                group["lr"] = cfg.lr_backbone
            groups.append(group)
    if not groups:
        raise ValueError("no trainable parameters (everything is frozen)")
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.lr)
    raise ValueError(f"unknown optimizer {cfg.optimizer!r}; choose sgd or adamw")


Hook = Callable[["Trainer"], None]


class Trainer:
    """Train ``model`` on ``train_set`` with ``task``'s loss, evaluating on ``val_set`` every epoch.

    ``meta`` (model name, classes, the spec's value mapping, ...) is stored in every checkpoint so that
    prediction maps outputs back to the data set's classes. ``on_step`` hooks run after every optimizer
    step (``trainer.step`` is the number of steps done).
    """

    def __init__(
        self,
        model: nn.Module,
        task: Any,
        train_set: Dataset,
        val_set: Dataset | None,
        config: TrainConfig,
        collate_fn: Callable | None = None,
        meta: dict[str, Any] | None = None,
        on_step: list[Hook] | None = None,
    ) -> None:
        if config.epochs is not None and config.iters is not None:
            raise ValueError("give one of epochs or iters, not both")
        if config.epochs is None and config.iters is None and config.time is None:
            raise ValueError("give epochs, iters or a time budget")
        if config.time is not None and not config.time > 0:
            raise ValueError(f"the time budget must be > 0 minutes, got {config.time}")
        self.cfg = config
        self.task = task
        self.meta = dict(meta or {})
        self.on_step = list(on_step or [])
        self.dist = distributed.current()
        self.device = resolve_device(config.device, self.dist)
        self.out = Path(config.out)
        world = self.dist.world_size
        if config.batch_size % world:
            raise ValueError(f"batch size {config.batch_size} does not split over {world} processes")
        self.model = model.to(self.device)
        if config.channels_last:
            # Convolutions then run NHWC whatever the input's layout; the weights keep their values.
            self.model = self.model.to(memory_format=torch.channels_last)
        if config.sync_bn and self.dist.enabled:
            self.model = nn.SyncBatchNorm.convert_sync_batchnorm(self.model)
        # After the SyncBatchNorm swap (frozen layers must be the ones that run), before DDP (which only
        # registers parameters that need gradients).
        self.freeze_report = None
        if config.freeze and config.freeze != "none":
            from detseg.transfer.freeze import freeze

            self.freeze_report = freeze(self.model, config.freeze)
        # Evaluated, and saved beside the trained weights; prediction uses it (checkpoint.inference_weights).
        self.ema = ModelEma(self.model, config.ema) if config.ema else None
        self.ddp_model: nn.Module = self.model
        if self.dist.enabled:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.ddp_model = nn.parallel.DistributedDataParallel(self.model, device_ids=ids)

        # The same permutation as one process would use (DistributedSampler seeds it by seed + epoch).
        self.sampler = DistributedSampler(
            train_set, num_replicas=world, rank=self.dist.rank, shuffle=True, seed=config.seed, drop_last=True
        )
        self.loader_generator = torch.Generator()
        self.train_loader = DataLoader(
            train_set,
            batch_size=config.batch_size // world,
            sampler=self.sampler,
            num_workers=config.workers,
            collate_fn=collate_fn,
            drop_last=True,
            generator=self.loader_generator,
            persistent_workers=False,
            pin_memory=self.device.type == "cuda",
        )
        if len(self.train_loader) == 0:
            raise ValueError(
                f"the training set ({len(train_set)} samples) is smaller than one batch "
                f"of {config.batch_size}"
            )
        self.val_loader = None
        if val_set is not None and len(val_set) > 0:
            self.val_loader = DataLoader(
                val_set,
                batch_size=max(1, config.batch_size // world),
                sampler=distributed.ShardSampler(len(val_set), self.dist.rank, world),
                num_workers=config.workers,
                collate_fn=collate_fn,
                generator=torch.Generator().manual_seed(0),
            )
        self.steps_per_epoch = len(self.train_loader)
        if config.iters or config.epochs:
            self.max_steps = config.iters or config.epochs * self.steps_per_epoch
        else:  # a time budget alone: planned after the first epoch
            self.max_steps = 10**6 * self.steps_per_epoch
        self.total_steps = self.max_steps
        self.total_epochs = math.ceil(self.total_steps / self.steps_per_epoch)
        self.clock = time.perf_counter
        self.elapsed = 0.0  # seconds of training (and evaluation) so far, over resumes
        self.optimizer = build_optimizer(self.model, config)
        self.scheduler = build_scheduler(
            self.optimizer, config.schedule, self.total_steps, config.warmup, config.warmup_factor
        )
        self.amp_dtype = torch.float16 if self.device.type == "cuda" else torch.bfloat16
        # --amp auto|on|off: what it gives on this device for this model, and why (detseg.engine.amp).
        self.amp, self.amp_reason = choose_amp(config.amp, self.device, self._precision_check)
        if self.dist.enabled:  # every process trains alike: on only where every check passed
            flag = torch.tensor([int(self.amp)], device=self.device)
            self.amp = bool(distributed.all_reduce_min(flag)[0])
        self.scaler = torch.amp.GradScaler(
            self.device.type, enabled=self.amp and self.amp_dtype == torch.float16
        )
        self.epoch = 0  # the epoch in progress (0-based)
        self.batch_in_epoch = 0  # batches of it already trained on
        self.step = 0  # optimizer steps done
        self.best: dict[str, Any] = {}
        self.history: list[dict[str, Any]] = []
        self._stop_requested = False
        self._stop_now = False

    # ----------------------------------------------------------------------------------- checkpoints
    def state_dict(self) -> dict[str, Any]:
        state = {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "epoch": self.epoch,
            "batch_in_epoch": self.batch_in_epoch,
            "step": self.step,
            "rng": rng_state(),
            "config": asdict(self.cfg),
            "meta": self.meta,
            "best": self.best,
            "world_size": self.dist.world_size,
            "elapsed": self.elapsed,
            "total_steps": self.total_steps,
        }
        if self.ema is not None:
            state["ema"] = self.ema.state_dict()
        return state

    def save(self, name: str, metrics: dict[str, float] | None = None) -> Path | None:
        if not self.dist.is_main:
            return None
        state = self.state_dict()
        state["metrics"] = dict(metrics or {})
        return save_checkpoint(state, self.out / name)

    def load(self, path: str | Path) -> dict[str, Any]:
        state = load_checkpoint(path, map_location=self.device)
        saved_classes = state.get("meta", {}).get("classes")
        if (
            saved_classes is not None
            and "classes" in self.meta
            and list(saved_classes) != list(self.meta["classes"])
        ):
            raise ValueError(
                f"{path}: the checkpoint's classes {list(saved_classes)} disagree with the data's classes "
                f"{list(self.meta['classes'])}"
            )
        self.model.load_state_dict(state["model"])
        if self.ema is not None:
            if "ema" not in state:
                raise ValueError(f"{path}: the run was trained without --ema; resume it without --ema")
            self.ema.load_state_dict(state["ema"])
        self.optimizer.load_state_dict(state["optimizer"])
        # The schedule's shape comes from this run's config: resuming with more --epochs stretches it from
        # here on (the same config continues exactly as before).
        shapes = [dict(f.__dict__) for f in self.scheduler.lr_lambdas]
        self.scheduler.load_state_dict(state["scheduler"])
        for factor, shape in zip(self.scheduler.lr_lambdas, shapes, strict=True):
            factor.__dict__.update(shape)
        self._apply_schedule()
        self.scaler.load_state_dict(state["scaler"])
        self.epoch, self.batch_in_epoch, self.step = state["epoch"], state["batch_in_epoch"], state["step"]
        self.elapsed = float(state.get("elapsed", 0.0))
        if self.cfg.time is not None and state.get("total_steps"):
            # The plan the run had made for its budget, until this run's first epoch re-plans it.
            self._set_total_steps(min(self.max_steps, max(self.step, int(state["total_steps"]))))
        self.best = dict(state.get("best", {}))
        return state

    def _apply_schedule(self) -> None:
        """Set every group's learning rate to what the schedule's (possibly changed) shape gives now."""
        t = self.scheduler.last_epoch
        for group, base, factor in zip(
            self.optimizer.param_groups, self.scheduler.base_lrs, self.scheduler.lr_lambdas, strict=True
        ):
            group["lr"] = base * factor(t)

    # ----------------------------------------------------------------------------------- time budget
    def _set_total_steps(self, total: int) -> None:
        """Train for ``total`` steps in all; the schedule ends there too."""
        self.total_steps = total
        self.total_epochs = math.ceil(total / self.steps_per_epoch)
        for factor in self.scheduler.lr_lambdas:
            factor.total_iters = total
        self._apply_schedule()

    def _replan(self, epoch_seconds: list[float]) -> None:
        """At the end of an epoch, fit the whole epochs still to run into what is left of the time budget
        (the mean epoch of this session, evaluation included, as the estimate); never beyond epochs/iters."""
        per_epoch = sum(epoch_seconds) / len(epoch_seconds)
        left = self.cfg.time * 60.0 - self.elapsed
        epochs_left = max(0, int(left // per_epoch)) if per_epoch > 0 else 0
        total = min(self.max_steps, self.step + epochs_left * self.steps_per_epoch)
        if total != self.total_steps:
            self._set_total_steps(total)

    def _out_of_time(self, start: float, elapsed_before: float) -> bool:
        return self.cfg.time is not None and elapsed_before + self.clock() - start >= self.cfg.time * 60.0

    # ------------------------------------------------------------------------------------- training
    def _precision_check(self) -> tuple[float, float]:
        """:func:`~detseg.engine.amp.precision_check` on the first training batch (drawn without touching
        the random generators)."""
        dataset, collate = self.train_loader.dataset, self.train_loader.collate_fn
        with torch.random.fork_rng(devices=[]):
            batch = collate([dataset[i] for i in range(min(self.train_loader.batch_size, len(dataset)))])
        return precision_check(self.model, self.task, batch, self.device, self.amp_dtype)

    def _seed_epoch(self, epoch: int) -> None:
        self.sampler.set_epoch(epoch)
        # Mixed samples (detseg.data.mix.MixDataset): mosaic and mixup stop for the last close_mosaic epochs.
        dataset = self.train_loader.dataset
        while dataset is not None and not hasattr(dataset, "set_epoch"):
            dataset = getattr(dataset, "dataset", None)
        if dataset is not None:
            dataset.set_epoch(epoch, self.total_epochs)
        # Worker seeds come from this generator: a function of (seed, epoch, rank) only.
        self.loader_generator.manual_seed(self.cfg.seed * 100_003 + epoch * 1_009 + self.dist.rank)

    def _on_signal(self, signum, frame) -> None:  # noqa: ARG002
        self._stop_requested = True
        # A second Ctrl-C stops at once.
        signal.signal(signal.SIGINT, signal.default_int_handler)

    def _progress(self, iterable, total: int, desc: str):
        disable = self.cfg.quiet or not self.dist.is_main or not sys.stderr.isatty()
        if disable:
            return iterable
        from tqdm import tqdm

        return tqdm(iterable, total=total, desc=desc, leave=False, dynamic_ncols=True)

    def train_one_step(self, batch: Any) -> dict[str, float]:
        self.ddp_model.train()
        with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp):
            loss, parts = self.task.train_step(self.ddp_model, batch, self.device)
        # Mean loss over processes (each holds an equal share of the global batch): what one process with
        # the whole batch would report, and every process sees the same value to stop on.
        # The stop request and the loss terms travel with it: every process stops after the same step.
        names = sorted(parts)
        values = [loss.detach().float().reshape(()).cpu(), torch.tensor(float(self._stop_requested))]
        values += [torch.as_tensor(parts[k]).detach().float().reshape(()).cpu() for k in names]
        reduced = distributed.all_reduce_sum(torch.stack(values).to(self.device)).cpu()
        value = float(reduced[0]) / self.dist.world_size
        self._stop_now = bool(reduced[1] > 0)
        parts = {k: float(v) / self.dist.world_size for k, v in zip(names, reduced[2:], strict=True)}
        if not math.isfinite(value):
            raise NonFiniteLossError(
                f"loss is {value} at epoch {self.epoch + 1}, step {self.step + 1} "
                f"(batch {self.batch_in_epoch + 1} of {self.steps_per_epoch}); lower --lr, add --clip-grad "
                f"or --warmup, or check the data; the last good epoch's weights are in "
                f"{self.out / 'last.pt'}"
            )
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if self.cfg.clip_grad:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.clip_grad)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        if self.ema is not None:
            self.ema.update(self.model)
        return {"loss": value, **parts}

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        if self.val_loader is None:
            return {}
        self.ddp_model.eval()
        # The bare model (DDP's forward would try to synchronise buffers during evaluation), or its average.
        model = self.ema.module if self.ema is not None else self.model
        self.task.eval_begin()
        for batch in self._progress(self.val_loader, len(self.val_loader), "eval"):
            with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp):
                self.task.eval_step(model, batch, self.device)
        return self.task.eval_end()

    def fit(self, resume: str | Path | None = None) -> dict[str, Any]:
        """Train to the end, or resume from a checkpoint; returns ``{"best", "last", "history"}``."""
        cfg = self.cfg
        seed_everything(cfg.seed + self.dist.rank)
        saved_rng = None
        if resume is not None:
            state = self.load(resume)
            saved_rng = state["rng"]
        if self.dist.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
        logger = RunLogger(
            self.out, enabled=self.dist.is_main, tensorboard=cfg.tensorboard, resume=resume is not None
        )
        if resume is not None:
            logger.truncate_steps(self.step)
            logger.truncate_epochs(self.epoch)
        # Ctrl-C (and, for a single process, SIGTERM as `timeout` or a job scheduler sends it) stops at the
        # next batch boundary with last.pt saved. Under torchrun the agent owns SIGTERM.
        old_handlers = {}
        for sig in (signal.SIGINT,) if self.dist.enabled else (signal.SIGINT, signal.SIGTERM):
            try:
                old_handlers[sig] = signal.signal(sig, self._on_signal)
            except ValueError:  # not the main thread: signal handling stays Python's
                pass
        last_metrics: dict[str, float] = {}
        last_plot = time.perf_counter()
        start, elapsed_before = self.clock(), self.elapsed
        epoch_seconds: list[float] = []
        try:
            while self.step < self.total_steps:
                epoch_start = self.clock()
                self._seed_epoch(self.epoch)
                batches = iter(self.train_loader)
                # Mid-epoch resume: replay the loader (same order, same worker seeds) up to where it stopped.
                for _ in range(self.batch_in_epoch):
                    next(batches)
                if saved_rng is not None:
                    set_rng_state(saved_rng)
                    saved_rng = None
                sums: dict[str, float] = {}
                n = 0
                todo = min(self.steps_per_epoch - self.batch_in_epoch, self.total_steps - self.step)
                bar = self._progress(range(todo), todo, f"epoch {self.epoch + 1}/{self.total_epochs}")
                for _ in bar:
                    row = self.train_one_step(next(batches))
                    self.batch_in_epoch += 1
                    self.step += 1
                    lr = self.optimizer.param_groups[0]["lr"]
                    logger.log_step({"epoch": self.epoch + 1, "step": self.step, "lr": lr, **row})
                    for k, v in row.items():
                        sums[k] = sums.get(k, 0.0) + v
                    n += 1
                    if hasattr(bar, "set_postfix"):
                        bar.set_postfix(loss=f"{row['loss']:.4f}", lr=f"{lr:.2e}")
                    for hook in self.on_step:
                        hook(self)
                    if self._stop_now or (self._stop_requested and not self.dist.enabled):
                        raise TrainingInterrupted
                    # (Under DDP the budget is kept at epoch boundaries, where the processes agree.)
                    if not self.dist.enabled and self._out_of_time(start, elapsed_before) and (
                        self.step < self.total_steps
                    ):
                        self._set_total_steps(self.step)  # the budget is spent: stop here
                        break
                del batches  # shuts the workers down
                finished = self.step >= self.total_steps
                epoch_done = self.batch_in_epoch >= self.steps_per_epoch or finished
                row = {"epoch": self.epoch + 1, "step": self.step}
                row.update({f"train_{k}": v / max(n, 1) for k, v in sums.items()})
                if (self.epoch + 1) % cfg.eval_interval == 0 or finished:
                    last_metrics = self.evaluate()
                    row.update({f"val_{k}": v for k, v in last_metrics.items()})
                row["seconds"] = round(self.clock() - epoch_start, 3)
                self.elapsed = elapsed_before + self.clock() - start
                if epoch_done:
                    self.epoch += 1
                    self.batch_in_epoch = 0
                    if self.cfg.time is not None and not finished:
                        epoch_seconds.append(row["seconds"])
                        self._replan(epoch_seconds)
                        if self.dist.enabled:  # every process stops where the soonest plan says
                            steps = torch.tensor([self.total_steps], dtype=torch.int64, device=self.device)
                            self._set_total_steps(int(distributed.all_reduce_min(steps)[0]))
                        if self.step >= self.total_steps and f"val_{self.task.main_metric}" not in row:
                            # The plan ends at this epoch, which was not due for evaluation: the last one is.
                            last_metrics = self.evaluate()
                            row.update({f"val_{k}": v for k, v in last_metrics.items()})
                            row["seconds"] = round(self.clock() - epoch_start, 3)
                            self.elapsed = elapsed_before + self.clock() - start
                self._update_best(last_metrics if f"val_{self.task.main_metric}" in row else {})
                logger.log_epoch(row)
                self.history.append(row)
                self.save("last.pt", last_metrics)
                # Drawing is slow: once a minute, and at the end.
                if cfg.plots and time.perf_counter() - last_plot > 60:
                    logger.plot()
                    last_plot = time.perf_counter()
                if self.dist.is_main and not cfg.quiet:
                    shown = {
                        k: v
                        for k, v in row.items()
                        if k in ("train_loss", "val_loss", f"val_{self.task.main_metric}")
                    }
                    print(
                        f"epoch {row['epoch']}/{self.total_epochs} step {self.step}/{self.total_steps} "
                        + " ".join(f"{k} {v:.4f}" for k, v in shown.items()),
                        flush=True,
                    )
        except TrainingInterrupted:
            # At a batch boundary: resuming continues from exactly here. (A second Ctrl-C, which stops at
            # once, saves nothing: the weights could hold half a step; last.pt keeps the last epoch.)
            path = self.save("last.pt")
            if self.dist.is_main:
                print(
                    f"interrupted at epoch {self.epoch + 1}, step {self.step}; saved {path}", file=sys.stderr
                )
            raise
        finally:
            for sig, handler in old_handlers.items():
                signal.signal(sig, handler)
            if cfg.plots:
                logger.plot()
            logger.close()
        distributed.barrier()
        return {"best": self.best, "last": last_metrics, "history": self.history}

    def _update_best(self, metrics: dict[str, float]) -> None:
        key = self.task.main_metric
        if self.val_loader is None:
            # No validation data: the latest weights are the best we know.
            self.best = {"epoch": self.epoch, "step": self.step}
            self.save("best.pt", metrics)
            return
        if key not in metrics or not math.isfinite(metrics[key]):
            return
        if not self.best or metrics[key] > self.best.get(key, -math.inf):
            self.best = {key: metrics[key], "epoch": self.epoch, "step": self.step}
            self.save("best.pt", metrics)
