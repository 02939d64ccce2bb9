"""Transfer learning: freezing backbones, replacing and extending heads, LwF distillation, the study.

- :mod:`detseg.transfer.freeze`: ``freeze(model, "backbone" | "stages:N" | "none")``, ``backbone_parameters``
- :mod:`detseg.transfer.heads`: ``class_keys``, ``load_replacing_head``, ``extend_head``
- :mod:`detseg.transfer.lwf`: ``distillation_loss``, ``LwFTask``
- :mod:`detseg.transfer.study`: ``run_study`` (``detseg transfer-study``)
"""

from detseg.transfer.freeze import FreezeReport, backbone_parameters, backbone_stages, freeze
from detseg.transfer.heads import HeadReport, class_keys, extend_head, load_replacing_head
from detseg.transfer.lwf import LwFTask, distillation_loss

__all__ = [
    "FreezeReport",
    "HeadReport",
    "LwFTask",
    "backbone_parameters",
    "backbone_stages",
    "class_keys",
    "distillation_loss",
    "extend_head",
    "freeze",
    "load_replacing_head",
]
