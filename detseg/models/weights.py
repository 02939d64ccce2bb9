"""The one place that turns a ``pretrained=`` value into weights: a state dict, a description and what
travels with it (class names, the file, the URL).

Sources (:func:`resolve_weights`):

- a torchvision weights name: ``"SSD300_VGG16_Weights.COCO_V1"``, or a member resolved against a
  torchvision architecture (``"COCO_V1"``, ``"IMAGENET1K_V1"``, ``"COCO_WITH_VOC_LABELS_V1"``,
  ``"DEFAULT"``), or a ``WeightsEnum`` member; its file is read from torch.hub's cache
  (``$TORCH_HOME/hub/checkpoints``) or downloaded there once;
- an ``http(s)://`` URL, downloaded into the same cache under its file name;
- a local file (``.pth``/``.pt``), a detseg checkpoint (``RUN/best.pt``: its ``meta`` comes along);
- ``"zoo:NAME"``: the checkpoint ``detseg zoo build NAME`` wrote into :func:`zoo_home` (read here, so
  the models never import the zoo builder or the engine);
- ``"timm:NAME"`` / ``"timm:NAME.TAG"``: handed to :mod:`detseg.models.timm_weights` (imported when
  used).

Downloads follow torch.hub: a progress bar, a temporary file renamed into place only once the file is
complete, an HTML page or a truncated body refused, and the SHA-256 prefix of a ``name-<prefix>.pth``
file name checked (a ``#sha256=HEX`` suffix on any source is checked on every read). A file already
in the cache is used as it is (never downloaded twice). ``DETSEG_OFFLINE=1`` (or ``offline=True``)
refuses to download, and so does a machine without network: one line names the URL and the path to
put the file at. ``DETSEG_WEIGHTS_URL=BASE`` fetches from ``BASE + <path of the URL>`` instead of
torchvision's host (an internal mirror).

Files are read with ``torch.load(weights_only=True)``. :func:`load_state_dict_into` then loads what
fits by name and shape into a module and says what it did in a :class:`LoadReport`.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import logging
import os
import re
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torchvision
from torch import nn

from detseg.models.registry import is_timm_name, split_timm_name
from detseg.models.weights_file import (  # noqa: F401  (file_sha256: importable from here, as before)
    PRETRAINED_NAMES,
    WeightsDeferred,
    file_sha256,
    read_weights_file,
)

log = logging.getLogger(__name__)

#: torch.hub's file name convention: ``<name>-<first hex digits of the SHA-256>.<ext>``.
_HASH_IN_NAME = re.compile(r"-([a-f0-9]{8,})\.")
_ENUM_NAME = re.compile(r"[A-Za-z0-9_]+_Weights\.[A-Za-z0-9_]+")
_MEMBER_NAME = re.compile(r"[A-Z][A-Z0-9_]*")


class WeightsNotFoundError(FileNotFoundError, ValueError):
    """Pre-trained weights that are not on this machine and cannot be downloaded now. Both a
    ``FileNotFoundError`` and a ``ValueError``, so the CLI prints it as one line (exit 2)."""


class WeightsDownloadError(ValueError):
    """A download refused: HTTP error, an HTML page, a truncated body, a hash that disagrees."""


@dataclass
class ResolvedWeights:
    """What :func:`resolve_weights` returns: the tensors, where they came from, and their ``meta``
    (``categories`` for torchvision weights, a detseg checkpoint's ``meta``, a timm pretrained cfg)."""

    state_dict: dict[str, torch.Tensor]
    description: str
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class LoadReport:
    """What :func:`load_state_dict_into` did: keys loaded as they were, loaded after a reshape
    (first-conv channel adaptation, fc -> conv), skipped for a shape mismatch, missing in the source,
    unexpected (in the source but not in the model)."""

    source: str
    loaded: list[str] = field(default_factory=list)
    reshaped: list[str] = field(default_factory=list)
    mismatched: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)

    def summary(self) -> str:
        def few(keys: list[str]) -> str:
            return ", ".join(keys[:5]) + (f" ... (+{len(keys) - 5})" if len(keys) > 5 else "")

        parts = [f"loaded {len(self.loaded)} tensors from {self.source}"]
        for name in ("reshaped", "mismatched", "missing", "unexpected"):
            keys = getattr(self, name)
            if keys:
                parts.append(f"{len(keys)} {name}: {few(keys)}")
        return "; ".join(parts)


# ---------------------------------------------------------------------------------------------------
# torchvision names, the cache, downloads


def resolve_torchvision_weights(name: str, arch: str | None = None, default: Any = None):
    """A torchvision ``WeightsEnum`` member from ``"Enum.MEMBER"`` or ``"MEMBER"``/``"DEFAULT"``,
    resolved against ``arch`` (a torchvision model name) or the enum of ``default`` (a member)."""
    try:
        if "." in name:
            return torchvision.models.get_weight(name)
        if default is not None:
            enum = type(default)
        elif arch is not None:
            enum = torchvision.models.get_model_weights(arch)
        else:
            raise ValueError("no architecture to resolve it against")
        return enum.DEFAULT if name == "DEFAULT" else enum[name]
    except (KeyError, ValueError, AttributeError) as err:
        raise ValueError(f"unknown torchvision weights {name!r} for {arch or 'any model'}: {err}") from err


def is_torchvision_name(text: str) -> bool:
    """Whether ``text`` reads as a torchvision weights name (``Enum.MEMBER`` or ``MEMBER``)."""
    return bool(_ENUM_NAME.fullmatch(text) or _MEMBER_NAME.fullmatch(text))


def hub_checkpoints() -> Path:
    """torch.hub's file cache: ``$TORCH_HOME/hub/checkpoints`` (``torch.hub.get_dir()/checkpoints``)."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def cached_weights_path(weights: Any) -> Path:
    """Where torch.hub keeps the file of a torchvision ``WeightsEnum`` member (or of a URL)."""
    url = weights if isinstance(weights, str) else weights.url
    return hub_checkpoints() / os.path.basename(urllib.parse.urlsplit(url).path)


def mirrored_url(url: str) -> str:
    """``url`` with its scheme and host replaced by ``$DETSEG_WEIGHTS_URL`` when that is set."""
    base = os.environ.get("DETSEG_WEIGHTS_URL", "").strip()
    if not base:
        return url
    return base.rstrip("/") + urllib.parse.urlsplit(url).path


_OFFLINE: list[bool] = []  # offline_mode() blocks, innermost last


@contextmanager
def offline_mode(offline: bool = True) -> Iterator[None]:
    """Downloads off (or on) inside the block, whatever ``DETSEG_OFFLINE`` says (``--offline``)."""
    _OFFLINE.append(bool(offline))
    try:
        yield
    finally:
        _OFFLINE.pop()


def offline_requested(offline: bool | None = None) -> bool:
    """``offline`` when given, else the innermost :func:`offline_mode`, else ``DETSEG_OFFLINE``
    (``1``/``true``/``yes``)."""
    if offline is not None:
        return bool(offline)
    if _OFFLINE:
        return _OFFLINE[-1]
    return os.environ.get("DETSEG_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def _put_it_there(what: str, url: str, path: Path, why: str) -> WeightsNotFoundError:
    return WeightsNotFoundError(
        f"{what} not on this machine and {why}: download {url} and put it at {path} "
        "(torch.hub's cache, $TORCH_HOME), or pass the path of a local copy as the weights"
    )


def download(url: str, path: str | Path, progress: bool = True) -> Path:
    """Download ``url`` to ``path`` as torch.hub does, but refusing more: into a temporary file beside
    ``path``, renamed into place only when complete, the SHA-256 prefix of a ``name-<prefix>.pth`` name
    checked, an HTML page or a body shorter than its Content-Length refused, and the file readable by
    ``torch.load(weights_only=True)``. Any refusal or interruption leaves nothing behind.

    Raises :class:`WeightsDownloadError` (the URL and the reason) or, when the host cannot be reached,
    :class:`WeightsNotFoundError` (the URL and where to put the file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    match = _HASH_IN_NAME.search(path.name)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
    try:
        digest, size, head, total = _fetch(url, fd, path, progress)
        if head.lstrip()[:15].lower().startswith((b"<!doctype html", b"<html")):
            raise WeightsDownloadError(f"{url}: refused: the server sent an HTML page, not weights")
        if total is not None and size != total:
            raise WeightsDownloadError(f"{url}: refused: truncated download ({size} of {total} bytes)")
        if match and not digest.startswith(match.group(1)):
            raise WeightsDownloadError(
                f"{url}: refused: SHA-256 is {digest}, the file name says it starts with {match.group(1)}"
            )
        try:
            torch.load(tmp, map_location="cpu", weights_only=True)
        except Exception as err:
            reason = f"not a weights file torch.load can read ({err})"
            raise WeightsDownloadError(f"{url}: refused: {reason}") from err
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return path


def _fetch(url: str, fd: int, path: Path, progress: bool) -> tuple[str, int, bytes, int | None]:
    """Stream ``url`` into the open file ``fd``: ``(sha256 hex, bytes, first bytes, Content-Length)``."""
    from tqdm import tqdm

    digest, size, head = hashlib.sha256(), 0, b""
    request = urllib.request.Request(url, headers={"User-Agent": "detseg"})
    try:
        with os.fdopen(fd, "wb") as f, urllib.request.urlopen(request, timeout=60) as response:
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            if "text/html" in response.headers.get("Content-Type", ""):
                raise WeightsDownloadError(f"{url}: refused: the server sent an HTML page, not weights")
            with tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, disable=not progress,
                      desc=f"downloading {path.name}") as bar:
                while chunk := response.read(1 << 20):
                    if size < 64:
                        head = (head + chunk)[:64]
                    f.write(chunk)
                    digest.update(chunk)
                    size += len(chunk)
                    bar.update(len(chunk))
    except urllib.error.HTTPError as err:
        raise WeightsDownloadError(f"{url}: refused: HTTP {err.code} {err.reason}") from err
    except http.client.HTTPException as err:  # the connection closed before Content-Length bytes
        raise WeightsDownloadError(f"{url}: refused: truncated download ({type(err).__name__})") from err
    except (urllib.error.URLError, OSError) as err:
        reason = getattr(err, "reason", err)
        raise _put_it_there(f"{path.name} is", url, path, f"the download failed ({reason})") from err
    return digest.hexdigest(), size, head, total


def fetch_to_cache(url: str, what: str, offline: bool | None = None, progress: bool = True) -> Path:
    """The cached file of ``url`` (torch.hub's cache), downloaded once when missing and allowed."""
    path = cached_weights_path(url)
    if path.is_file():
        return path
    source = mirrored_url(url)
    if offline_requested(offline):
        raise _put_it_there(what, source, path, "downloads are off (DETSEG_OFFLINE=1 / --offline)")
    log.info("downloading %s to %s", source, path)
    return download(source, path, progress=progress)


# ---------------------------------------------------------------------------------------------------
# Files


def split_sha256(source: str | Path, sha256: str | None = None) -> tuple[str, str | None]:
    """``"path#sha256=HEX"`` -> ``("path", "HEX")``; an explicit ``sha256`` must agree with it."""
    text = str(source)
    match = re.fullmatch(r"(.*)#sha256=([0-9a-fA-F]+)", text)
    if not match:
        return text, sha256
    if sha256 and not (match.group(2).lower().startswith(sha256.lower()) or
                       sha256.lower().startswith(match.group(2).lower())):
        raise ValueError(f"{text}: the SHA-256 in the name disagrees with sha256={sha256}")
    return match.group(1), sha256 or match.group(2)


def extract_state_dict(obj: object, where: str) -> dict[str, torch.Tensor]:
    """The state dict inside a loaded file: a bare one, a checkpoint's ``model`` / ``state_dict``, or
    the moving average of a run trained with ``--ema`` (the weights it was scored on)."""
    if isinstance(obj, Mapping):
        ema = obj.get("ema")
        if isinstance(ema, Mapping) and isinstance(ema.get("model"), Mapping):
            obj = {"model": ema["model"]}
        for key in ("model", "state_dict", "model_state"):
            inner = obj.get(key)
            tensors = isinstance(inner, Mapping) and all(isinstance(v, torch.Tensor) for v in inner.values())
            if inner and tensors:
                return dict(inner)
        if obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
            return dict(obj)
    raise ValueError(f"{where}: no state dict found (expected tensors, or a checkpoint with a 'model' entry)")


_extract_state_dict = extract_state_dict  # the name older modules import


def _file_meta(obj: object) -> dict[str, Any]:
    meta = obj.get("meta") if isinstance(obj, Mapping) else None
    return dict(meta) if isinstance(meta, Mapping) else {}


# ---------------------------------------------------------------------------------------------------
# The zoo cache (written by detseg.zoo.build, read here)


def zoo_home() -> Path:
    """Where zoo weights are cached: ``$DETSEG_HOME/zoo`` (default ``~/.cache/detseg/zoo``)."""
    return Path(os.environ.get("DETSEG_HOME") or Path.home() / ".cache" / "detseg").expanduser() / "zoo"


def zoo_cached(name: str) -> tuple[Path, str, dict[str, Any]]:
    """``(path, sha256, meta)`` of the zoo weights ``name`` in :func:`zoo_home` (``NAME.pt`` and the
    ``NAME.json`` record beside it); says which command builds them when absent."""
    path = zoo_home() / f"{name}.pt"
    record = path.with_suffix(".json")
    if not path.is_file() or not record.is_file():
        raise WeightsNotFoundError(
            f"zoo weights {name!r} are not built on this machine ({path}): run `detseg zoo build {name}` "
            "(`detseg zoo list` shows the models with a recipe)"
        )
    info = json.loads(record.read_text())
    return path, info["sha256"], info.get("meta", {})


# ---------------------------------------------------------------------------------------------------
# The resolver


@dataclass(frozen=True)
class WeightsSource:
    """A ``pretrained`` value parsed once: ``scheme`` (``"torchvision"``, ``"url"``, ``"file"``, ``"zoo"``,
    ``"timm"``), ``location`` (the name, URL or path), ``tag`` (timm's ``NAME.TAG``) and ``sha256``
    (``#sha256=HEX``). A URL and a file of the same weights mean the same: :meth:`local_file` gives
    the file either way (a URL fetched once into torch.hub's cache)."""

    scheme: str
    location: str
    tag: str | None = None
    sha256: str | None = None

    def local_file(self, offline: bool | None = None, progress: bool = True) -> Path | None:
        """The weights' file on this machine (a URL downloaded when missing), or None (a weights name)."""
        if self.scheme == "url":
            return fetch_to_cache(self.location, f"{os.path.basename(self.location)} is", offline, progress)
        if self.scheme == "file":
            return Path(self.location)
        return None

    def describe(self, path: Path) -> str:
        """How reports name the weights read from ``path``: the URL with its cached file, or the file."""
        return f"{self.location} ({path})" if self.scheme == "url" else str(path)


def parse_weights_source(source: Any, sha256: str | None = None) -> WeightsSource:
    """Parse a ``pretrained`` string or path (not ``True``/``None``/a ``WeightsEnum`` member) into a
    :class:`WeightsSource`; a path that exists is a file even when it reads as a weights name."""
    text, sha256 = split_sha256(source, sha256)
    if is_timm_name(text):
        return WeightsSource("timm", *split_timm_name(text), sha256)
    if text.startswith("zoo:"):
        return WeightsSource("zoo", text.removeprefix("zoo:"), None, sha256)
    if text.startswith(("http://", "https://")):
        return WeightsSource("url", text, None, sha256)
    if Path(text).exists() or not is_torchvision_name(text):
        return WeightsSource("file", text, None, sha256)
    return WeightsSource("torchvision", text, None, sha256)


def resolve_weights(
    source: Any,
    arch: str | None = None,
    weights: Any = None,
    sha256: str | None = None,
    offline: bool | None = None,
    progress: bool = True,
) -> ResolvedWeights:
    """Turn a ``pretrained`` value into :class:`ResolvedWeights` (see the module docstring).

    ``arch``: the torchvision model name bare member names (``"IMAGENET1K_V1"``) resolve against;
    ``weights``: the ``WeightsEnum`` member that ``True`` (and :data:`PRETRAINED_NAMES`) mean.
    """
    if isinstance(source, torchvision.models.WeightsEnum):
        return _torchvision(source, offline, progress)
    if source is True or (isinstance(source, str) and source.lower() in PRETRAINED_NAMES):
        if weights is None and arch is None:
            raise ValueError(f"pretrained={source!r}: this model names no torchvision weights; pass a file")
        source = "DEFAULT" if weights is None else f"{type(weights).__name__}.{weights.name}"
    parsed = parse_weights_source(source, sha256)
    if parsed.scheme == "timm":
        from detseg.models.timm_weights import resolve_timm_weights  # written with the timm encoders

        offline = offline_requested(offline)
        state, description, cfg = resolve_timm_weights(parsed.location, parsed.tag, offline)
        return ResolvedWeights(state, description, {"timm": dict(cfg)})
    if parsed.scheme == "zoo":
        path, recorded, meta = zoo_cached(parsed.location)
        obj = read_weights_file(path, parsed.sha256 or recorded)
        return ResolvedWeights(extract_state_dict(obj, str(path)), str(path), {**meta, **_file_meta(obj)})
    if parsed.scheme == "torchvision":
        member = resolve_torchvision_weights(parsed.location, arch, weights)
        return _torchvision(member, offline, progress, parsed.sha256)
    path = parsed.local_file(offline, progress)
    if not path.is_file():
        raise WeightsNotFoundError(f"pretrained weights file not found: {parsed.location}")
    obj = read_weights_file(path, parsed.sha256)
    meta = {**_file_meta(obj), "url": parsed.location} if parsed.scheme == "url" else _file_meta(obj)
    return ResolvedWeights(extract_state_dict(obj, parsed.location), parsed.describe(path), meta)


def _torchvision(
    member: Any, offline: bool | None, progress: bool, sha256: str | None = None
) -> ResolvedWeights:
    name = f"{type(member).__name__}.{member.name}"
    path = fetch_to_cache(member.url, f"torchvision weights {name} ({os.path.basename(member.url)}) are",
                          offline, progress)
    obj = read_weights_file(path, sha256)
    meta = {"weights": name, "url": member.url, "file": str(path),
            "categories": list(member.meta.get("categories") or [])}
    return ResolvedWeights(extract_state_dict(obj, str(path)), f"{name} ({path})", meta)


def read_state_dict(
    source: str | Path | bool,
    arch: str | None = None,
    sha256: str | None = None,
    weights: Any = None,
) -> tuple[dict[str, torch.Tensor], str]:
    """``(state_dict, description)`` of ``source`` (:func:`resolve_weights` without the meta)."""
    resolved = resolve_weights(source, arch=arch, weights=weights, sha256=sha256)
    return resolved.state_dict, resolved.description


# ---------------------------------------------------------------------------------------------------
# Loading into a module


def adapt_first_conv(weight: torch.Tensor, in_channels: int) -> torch.Tensor:
    """Adapt conv weights ``[O, 3, k, k]`` to ``in_channels`` inputs: greyscale sums the three (a grey
    image repeated three times gives the same response); otherwise the RGB filters repeat cyclically,
    scaled by ``3 / in_channels`` to keep the response's scale (as timm does)."""
    if in_channels == weight.shape[1]:
        return weight
    if in_channels == 1:
        return weight.sum(dim=1, keepdim=True)
    reps = -(-in_channels // weight.shape[1])
    return weight.repeat(1, reps, 1, 1)[:, :in_channels] * (weight.shape[1] / in_channels)


_PREFIXES = (("", ""), ("", "encoder."), ("backbone.", "encoder."), ("encoder.", ""), ("backbone.", ""))


def _rename(state: Mapping[str, torch.Tensor], key_map: Mapping[str, str]) -> dict[str, torch.Tensor]:
    out = {}
    for key, value in state.items():
        key = key.removeprefix("module.")  # DistributedDataParallel's wrapper
        for old, new in key_map.items():
            if key.startswith(old):
                key = new + key[len(old) :]
                break
        out[key] = value
    return out


def match_keys(
    target: Mapping[str, Any], state: Mapping[str, torch.Tensor], key_map: Mapping[str, str] | None = None
) -> dict[str, torch.Tensor]:
    """``state`` under the key names of ``target`` (a module's state dict): ``key_map``'s prefixes
    renamed, ``module.`` dropped, then the prefix pairing (none, ``encoder.``, ``backbone.``) that
    matches most keys."""
    renamed = _rename(state, key_map or {})
    best: dict[str, torch.Tensor] = renamed
    for src, dst in _PREFIXES:
        mapped = {dst + k[len(src) :] if k.startswith(src) else k: v for k, v in renamed.items()}
        if sum(k in target for k in mapped) > sum(k in target for k in best):
            best = mapped
    return best


def load_state_dict_into(
    module: nn.Module,
    state: Mapping[str, torch.Tensor],
    source: str = "state dict",
    key_map: Mapping[str, str] | None = None,
) -> LoadReport:
    """Load what fits of ``state`` into ``module`` and report the rest.

    ``key_map``: source key prefixes renamed first (e.g. VGG's ``classifier.0.`` -> ``fc6.``); then the
    prefix pairing (none, ``encoder.``, ``backbone.``) that matches most keys is used. A 3-channel
    first convolution is adapted to other channel counts; a fully connected layer of the right size
    loads into a convolution (VGG's fc6/fc7 in FCN).
    """
    target = module.state_dict()
    best = match_keys(target, state, key_map)
    report = LoadReport(source)
    to_load = {}
    for key, value in best.items():
        if key not in target:
            # BatchNorm's step counter is no weight: FrozenBatchNorm2d has none, BatchNorm2d one each.
            if not key.endswith("num_batches_tracked"):
                report.unexpected.append(key)
            continue
        want = target[key]
        if value.shape == want.shape:
            to_load[key] = value
            report.loaded.append(key)
        elif (
            value.ndim == 4
            and want.ndim == 4
            and value.shape[0] == want.shape[0]
            and value.shape[2:] == want.shape[2:]
            and value.shape[1] == 3
        ):
            to_load[key] = adapt_first_conv(value, want.shape[1])
            report.reshaped.append(key)
        elif value.numel() == want.numel() and value.ndim == 2 and want.ndim == 4:
            to_load[key] = value.reshape(want.shape)  # a fully connected layer seen as a convolution (FCN)
            report.reshaped.append(key)
        else:
            report.mismatched.append(f"{key} {tuple(value.shape)}->{tuple(want.shape)}")
    module.load_state_dict(to_load, strict=False)
    report.missing = [k for k in target if k not in to_load and not k.endswith("num_batches_tracked")]
    log.info(report.summary())
    for reports in _COLLECTORS:
        reports.append(report)
    return report


_COLLECTORS: list[list[LoadReport]] = []


@contextmanager
def collect_reports() -> Iterator[list[LoadReport]]:
    """Gather the :class:`LoadReport` of every load in the block (``create_model`` attaches them to the
    model it returns: detector builders load into a backbone network and keep no report themselves)."""
    reports: list[LoadReport] = []
    _COLLECTORS.append(reports)
    try:
        yield reports
    finally:
        _COLLECTORS.remove(reports)


def load_pretrained(
    module: nn.Module,
    pretrained: Any,
    arch: str | None = None,
    sha256: str | None = None,
    key_map: Mapping[str, str] | None = None,
    weights: Any = None,
) -> LoadReport | None:
    """Load ``pretrained`` into ``module``; returns the :class:`LoadReport` (None when nothing loads:
    ``None``, ``False`` or :class:`WeightsDeferred`).

    ``arch``: the torchvision model name that torchvision weights names resolve against; ``weights``:
    the torchvision ``WeightsEnum`` member that ``True`` means (detector builders pass theirs).
    A source that matches no key at all raises ``ValueError`` (wrong file for this model).
    """
    if pretrained is None or pretrained is False or isinstance(pretrained, WeightsDeferred):
        return None
    resolved = resolve_weights(pretrained, arch=arch, sha256=sha256, weights=weights)
    state, description = resolved.state_dict, resolved.description
    report = load_state_dict_into(module, state, description, key_map)
    if not report.loaded and not report.reshaped:
        raise ValueError(
            f"{description}: none of its {len(state)} tensors fit {type(module).__name__}; {report.summary()}"
        )
    return report
