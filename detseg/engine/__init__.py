"""The training engine shared by segmentation and detection: trainer, checkpoints, schedules, DDP, logs.

Its names are imported on first use (as :mod:`detseg` does), so that ``import detseg.engine.config``
stays free of torch and of the models.
"""

from detseg.lazy import lazy_names

# name -> the module of detseg.engine that defines it
_NAMES = {
    "DetectionTask": "tasks",
    "NonFiniteLossError": "trainer",
    "RunConfig": "config",
    "SegmentationTask": "tasks",
    "TrainConfig": "trainer",
    "Trainer": "trainer",
    "TrainingInterrupted": "trainer",
    "build_scheduler": "schedules",
    "load_checkpoint": "checkpoint",
    "load_model": "loader",
    "resolve_config": "config",
    "save_checkpoint": "checkpoint",
    "train": "run",
}
__all__ = list(_NAMES)

lazy_names(__name__, _NAMES)
