"""Downloads of pre-trained weights (detseg.models.weights), against a local HTTP server on 127.0.0.1 that
each test starts: torch.hub's cache in a temporary $TORCH_HOME, the hash prefix of the file name checked,
nothing left behind by a refused download, never twice, offline and unreachable hosts in one line."""

from __future__ import annotations

import http.server
from pathlib import Path

import pytest
import torch
import torchvision

from detseg.cli import main
from detseg.models.weights import (
    WeightsDownloadError,
    WeightsNotFoundError,
    file_sha256,
    resolve_weights,
)
from detseg.models.zoo import create_model


class _Handler(http.server.BaseHTTPRequestHandler):
    """``/files/NAME``: the file; ``/html/NAME``: an HTML error page with status 200; ``/truncated/NAME``:
    half the file under the whole file's Content-Length; anything else: 404."""

    def do_GET(self):  # noqa: N802 (http.server's name)
        self.server.requests.append(self.path)
        kind, _, name = self.path.lstrip("/").partition("/")
        path = self.server.root / Path(name).name
        if kind == "html":
            body = b"<!DOCTYPE html><html><body>Sign in to continue</body></html>"
            self._send(200, body, "text/plain")  # a proxy that lies about the type
        elif kind in ("files", "models") and path.is_file():
            self._send(200, path.read_bytes(), "application/octet-stream")
        elif kind == "truncated" and path.is_file():
            body = path.read_bytes()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body[: len(body) // 2])
        else:
            self._send(404, b"not found", "text/plain")

    def _send(self, status: int, body: bytes, kind: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):  # quiet
        pass


@pytest.fixture
def server(tmp_path, local_server):
    """A local HTTP server over ``tmp_path/served`` (in a thread); gives it (``.base``, ``.requests``)."""
    root = tmp_path / "served"
    root.mkdir()
    httpd = local_server(_Handler)
    httpd.root, httpd.requests = root, []
    return httpd


@pytest.fixture
def hub(tmp_path, monkeypatch) -> Path:
    """torch.hub's cache in ``tmp_path`` ($TORCH_HOME), downloads on (the tests' conftest turns them off)."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.delenv("DETSEG_OFFLINE", raising=False)
    return Path(torch.hub.get_dir()) / "checkpoints"


def _resnet18_file(folder: Path, name: str | None = None) -> tuple[Path, dict]:
    """A seeded ResNet-18 state dict saved under ``name`` (default: torch.hub's ``name-<sha256[:8]>.pth``)."""
    torch.manual_seed(0)
    state = torchvision.models.resnet18(weights=None, num_classes=3).state_dict()
    path = folder / "tmp.pth"
    torch.save(state, path)
    final = folder / (name or f"resnet18-{file_sha256(path)[:8]}.pth")
    path.rename(final)
    return final, state


def _leftovers(hub: Path) -> list[str]:
    return sorted(p.name for p in hub.iterdir()) if hub.is_dir() else []


def test_a_url_is_downloaded_once_into_the_hub_cache_and_hash_checked(server, hub):
    served, state = _resnet18_file(server.root)
    url = f"{server.base}/files/{served.name}"
    model = create_model("resnet18_classifier", num_classes=3, pretrained=url)
    assert model.pretrained_report.missing == [] and model.pretrained_report.mismatched == []
    assert torch.equal(model.head.weight, state["fc.weight"])
    assert _leftovers(hub) == [served.name] and (hub / served.name).read_bytes() == served.read_bytes()
    # Never twice: the cached file is used, even with the server gone quiet.
    served.unlink()
    again = resolve_weights(url)
    assert torch.equal(again.state_dict["conv1.weight"], state["conv1.weight"])
    assert server.requests == [f"/files/{served.name}"]


@pytest.mark.parametrize("kind, reason", [
    ("files", r"SHA-256 is [0-9a-f]{64}, the file name says it starts with deadbeef"),
    ("html", "an HTML page, not weights"),
    ("truncated", "truncated download"),
    ("missing", "HTTP 404"),
])
def test_a_refused_download_leaves_nothing_and_says_why(server, hub, kind, reason):
    served, _ = _resnet18_file(server.root, "resnet18-deadbeef.pth" if kind == "files" else None)
    url = f"{server.base}/{kind}/{served.name}"
    with pytest.raises(WeightsDownloadError, match=reason) as err:
        resolve_weights(url)
    assert url in str(err.value) and "\n" not in str(err.value)
    assert _leftovers(hub) == []  # no file, no partial file


def test_offline_unreachable_and_mirror_give_one_line_naming_the_url_and_the_cache_path(
    server, hub, monkeypatch, capsys, tmp_path
):
    weights = torchvision.models.ResNet18_Weights.IMAGENET1K_V1
    cached = hub / "resnet18-f37072fd.pth"
    monkeypatch.setenv("DETSEG_OFFLINE", "1")
    with pytest.raises(WeightsNotFoundError, match="downloads are off") as err:
        create_model("resnet18_classifier", pretrained="IMAGENET1K_V1")
    assert weights.url in str(err.value) and str(cached) in str(err.value)
    # The command line: that line, exit 2, no traceback.
    image = tmp_path / "x.png"
    from PIL import Image

    Image.new("RGB", (8, 8)).save(image)
    code = main(["predict", "--model", "ssdlite320_mobilenet_v3_large", "--pretrained", "COCO_V1",
                 "--source", str(image), "--out", str(tmp_path / "out")])
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "ssdlite320_mobilenet_v3_large_coco-a79551df.pth" in lines[0]
    assert "put it at" in lines[0] and "Traceback" not in lines[0]
    monkeypatch.delenv("DETSEG_OFFLINE")
    assert main(["predict", "--model", "resnet18_classifier", "--pretrained", "IMAGENET1K_V1", "--offline",
                 "--source", str(image), "--out", str(tmp_path / "out")]) == 2
    assert "downloads are off" in capsys.readouterr().err
    # No network (a port nobody listens on): the same line, with the reason.
    monkeypatch.setenv("DETSEG_WEIGHTS_URL", "http://127.0.0.1:9")
    with pytest.raises(WeightsNotFoundError, match=r"the download failed .*put it at") as err:
        create_model("resnet18_classifier", pretrained="IMAGENET1K_V1")
    assert "http://127.0.0.1:9/models/resnet18-f37072fd.pth" in str(err.value)
    # A mirror: torchvision's path under DETSEG_WEIGHTS_URL, and its file still checked against the name.
    monkeypatch.setenv("DETSEG_WEIGHTS_URL", server.base + "/")
    _resnet18_file(server.root, "resnet18-f37072fd.pth")
    with pytest.raises(WeightsDownloadError, match="the file name says it starts with f37072fd"):
        create_model("resnet18_classifier", pretrained="IMAGENET1K_V1")
    assert server.requests == ["/models/resnet18-f37072fd.pth"] and _leftovers(hub) == []


def test_a_weights_name_the_model_does_not_have_is_one_line_listing_its_names(capsys, tmp_path):
    with pytest.raises(ValueError, match=r"model 'unet' has no weights 'COCO_V1'; .*none by name"):
        create_model("unet", pretrained="COCO_V1")
    with pytest.raises(ValueError, match=r"'ssd300_vgg16' has no weights 'COCO_WITH_VOC_LABELS_V1'; .*"
                                         r"SSD300_VGG16_Weights.COCO_V1, VGG16_Weights.IMAGENET1K_V1"):
        create_model("ssd300_vgg16", pretrained="COCO_WITH_VOC_LABELS_V1")
    code = main(["predict", "--model", "deeplabv3_resnet50", "--pretrained", "COCO_V1", "--source",
                 str(tmp_path), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert "DeepLabV3_ResNet50_Weights.COCO_WITH_VOC_LABELS_V1" in err[0]
    assert "ResNet50_Weights.IMAGENET1K_V2" in err[0]


def test_no_import_circle_between_models_zoo_and_engine():
    """The resolver and every model module import neither the engine, the zoo builder, the command
    line nor the API (statically, lazy imports included): the zoo build writes the cache they read."""
    import ast

    import detseg

    higher = ("detseg.engine", "detseg.zoo", "detseg.cli", "detseg.transfer", "detseg.api")
    package = Path(detseg.__file__).parent
    offenders = []
    for path in sorted((package / "models").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [node.module or ""] if isinstance(node, ast.ImportFrom) else (
                [a.name for a in node.names] if isinstance(node, ast.Import) else [])
            offenders += [f"{path.name}: {n}" for n in names if n.startswith(higher)]
    assert offenders == []


def test_timm_sources_go_to_the_timm_resolver():
    """``timm:NAME.TAG`` is handed to detseg.models.timm_weights (the packaged EfficientNet-Lite0 ImageNet
    checkpoint here, offline): the same tensors, and timm's pretrained config as the meta."""
    from detseg.models.timm_weights import resolve_timm_weights

    resolved = resolve_weights("timm:tf_efficientnet_lite0.in1k", offline=True)
    state, description, cfg = resolve_timm_weights("tf_efficientnet_lite0", "in1k", True)
    assert resolved.description == description and resolved.state_dict.keys() == state.keys()
    assert all(torch.equal(resolved.state_dict[k], v) for k, v in state.items())
    assert resolved.meta["timm"]["mean"] == cfg["mean"]
