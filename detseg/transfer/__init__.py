"""Transfer learning: freezing backbones, replacing and extending heads, LwF distillation, the study.

- :mod:`detseg.transfer.freeze`: ``freeze(model, "backbone" | "stages:N" | "none")``, ``backbone_parameters``
- :mod:`detseg.transfer.heads`: ``class_keys``, ``load_replacing_head``, ``extend_head``
- :mod:`detseg.transfer.lwf`: ``distillation_loss``, ``LwFTask``
- :mod:`detseg.transfer.study`: ``run_study`` (``detseg transfer-study``)

The names are imported on first use, so that ``import detseg.transfer.study_config`` (the command line's
options) stays free of torch.
"""

from detseg.lazy import lazy_names

# name -> the module of detseg.transfer that defines it
_NAMES = {
    "FreezeReport": "freeze",
    "HeadReport": "heads",
    "LwFTask": "lwf",
    "backbone_parameters": "freeze",
    "backbone_stages": "freeze",
    "class_keys": "heads",
    "distillation_loss": "lwf",
    "extend_head": "heads",
    "freeze": "freeze",
    "load_replacing_head": "heads",
}
__all__ = list(_NAMES)

lazy_names(__name__, _NAMES)
