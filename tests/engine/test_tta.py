"""Test-time augmentation: the views' probabilities, turned back and averaged, against a direct count."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from detseg.engine.tta import MODES, TestTimeAugmentation


def _lopsided(out_channels: int) -> nn.Module:
    torch.manual_seed(0)
    conv = nn.Conv2d(2, out_channels, (3, 5), padding=(1, 2))  # not symmetric: views differ
    return conv.eval()


def _numpy_views(x: np.ndarray, model: nn.Module, mode: str) -> np.ndarray:
    """Mean softmax over the views, computed with numpy's flips and turns."""
    total = 0
    for turns, mirror in MODES[mode]:
        view = x[..., ::-1] if mirror else x
        view = np.rot90(view, turns, axes=(-2, -1))
        logits = model(torch.from_numpy(view.copy())).detach().numpy()
        probs = np.exp(logits - logits.max(1, keepdims=True))
        probs /= probs.sum(1, keepdims=True)
        back = np.rot90(probs, -turns, axes=(-2, -1))
        total = total + (back[..., ::-1] if mirror else back)
    return total / len(MODES[mode])


@pytest.mark.parametrize("mode", ["hflip", "flips", "d4"])
def test_mean_of_views_matches_a_direct_computation(mode):
    model = _lopsided(3)
    x = np.random.default_rng(0).normal(size=(2, 2, 7, 9)).astype(np.float32)  # not square
    with torch.no_grad():
        out = TestTimeAugmentation(model, mode)(torch.from_numpy(x))
    assert out.shape == (2, 3, 7, 9)
    np.testing.assert_allclose(out.exp().numpy(), _numpy_views(x, model, mode), atol=1e-5)
    # the views change the answer for a lopsided model: the test would notice a missing turn back
    plain = model(torch.from_numpy(x)).softmax(1).detach().numpy()
    assert np.abs(out.exp().numpy() - plain).max() > 1e-3


def test_flip_symmetric_model_is_unchanged():
    model = nn.Conv2d(2, 3, 1).eval()  # a 1x1 convolution commutes with every flip and turn
    x = torch.randn(1, 2, 6, 6)
    with torch.no_grad():
        out = TestTimeAugmentation(model, "d4")(x)
        np.testing.assert_allclose(out.numpy(), model(x).log_softmax(1).numpy(), atol=1e-5)


def test_binary_model_keeps_one_channel_the_logit_of_the_mean_probability():
    model = _lopsided(1)
    x = torch.randn(1, 2, 8, 8)
    with torch.no_grad():
        out = TestTimeAugmentation(model, "flips")(x)
        flips = [(), (-1,), (-2,), (-1, -2)]
        views = [model(x.flip(f)).flip(f) if f else model(x) for f in flips]
    assert out.shape == (1, 1, 8, 8)
    expected = torch.stack([v.sigmoid() for v in views]).mean(0)
    torch.testing.assert_close(out.sigmoid(), expected, atol=1e-5, rtol=1e-4)


def test_unknown_mode_is_refused():
    with pytest.raises(ValueError, match="hflip, flips, d4"):
        TestTimeAugmentation(nn.Identity(), "rot45")


def test_with_tta_wraps_segmenters_only():
    from detseg.engine.tta import with_tta

    model = nn.Conv2d(2, 3, 1)
    assert with_tta(model, None, "detect") is model  # no --tta: as it is, for any task
    assert isinstance(with_tta(model, "d4", "segment"), TestTimeAugmentation)
    with pytest.raises(ValueError, match="for segmentation models, not a detect model"):
        with_tta(model, "flips", "detect")
