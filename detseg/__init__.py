"""detseg: object detection and semantic segmentation, from the lecture to working software."""

__version__ = "0.1.0"

# The model registry at top level (timm's shape: detseg.create_model, detseg.list_models), imported on
# first use so that `import detseg` (and the command line's start) stays free of torch.
_REGISTRY_API = ("create_model", "list_models", "model_info", "register_model")
_MODEL_API = ("load", "Model", "Results")  # detseg.load("ssd300_vgg16", pretrained="COCO_V1").predict(...)
__all__ = ["__version__", *_REGISTRY_API, *_MODEL_API]


def __getattr__(name: str):
    if name in _REGISTRY_API:
        from detseg.models import zoo

        return getattr(zoo, name)
    if name in _MODEL_API:
        from detseg import api

        return getattr(api, name)
    raise AttributeError(f"module 'detseg' has no attribute {name!r}")
