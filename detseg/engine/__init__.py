"""The training engine shared by segmentation and detection: trainer, checkpoints, schedules, DDP, logs."""

from detseg.engine.checkpoint import load_checkpoint, save_checkpoint
from detseg.engine.config import RunConfig, resolve_config
from detseg.engine.predict import load_model
from detseg.engine.run import train
from detseg.engine.schedules import build_scheduler
from detseg.engine.tasks import DetectionTask, SegmentationTask
from detseg.engine.trainer import NonFiniteLossError, TrainConfig, Trainer, TrainingInterrupted

__all__ = [
    "DetectionTask",
    "NonFiniteLossError",
    "RunConfig",
    "SegmentationTask",
    "TrainConfig",
    "Trainer",
    "TrainingInterrupted",
    "build_scheduler",
    "load_checkpoint",
    "load_model",
    "resolve_config",
    "save_checkpoint",
    "train",
]
