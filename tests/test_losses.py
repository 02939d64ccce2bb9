"""Losses against LECTURE.md section 6 (the corrected values), hand computations, torch, and gradcheck."""

import math

import pytest
import torch
import torch.nn.functional as F

from detseg.losses import (
    CrossEntropyLoss,
    DiceLoss,
    LovaszSoftmaxLoss,
    WeightedSumLoss,
    balanced_binary_cross_entropy,
    binary_cross_entropy,
    cross_entropy,
    dice_loss,
    lovasz_softmax_loss,
    multiclass_dice_loss,
    segmentation_loss,
)

TRUTH = torch.tensor([[0, 1, 0], [0, 1, 0], [0, 1, 0]], dtype=torch.float32)


def test_bce_slide_example_1():
    pred = torch.tensor([[0, 0.9, 0], [0, 1, 0.8], [0, 0.3, 0.6]])
    # The usual natural-log mean; the slide's "1.69" is a log10 sum whose exact value is 1.6655.
    assert binary_cross_entropy(pred, TRUTH, from_logits=False).item() == pytest.approx(0.42612, abs=1e-5)
    log10_sum = binary_cross_entropy(pred, TRUTH, from_logits=False, reduction="sum", log_base=10)
    assert log10_sum.item() == pytest.approx(1.6655, abs=1e-4)
    per_pixel = binary_cross_entropy(pred, TRUTH, from_logits=False, reduction="none", log_base=10)
    # The slide's per-pixel errors (0.04, 0.69, 0.53, 0.39 after rounding).
    assert per_pixel[per_pixel > 0.01].tolist() == pytest.approx([0.0458, 0.6990, 0.5229, 0.3979], abs=1e-4)


def test_bce_from_logits_matches_torch():
    logits, target = torch.randn(2, 1, 5, 6), torch.randint(0, 2, (2, 1, 5, 6)).float()
    assert torch.allclose(
        binary_cross_entropy(logits, target), F.binary_cross_entropy_with_logits(logits, target)
    )


def test_dice_slide_example_2():
    pred = torch.tensor([[0, 1, 0], [0, 1, 1], [0, 0, 1]], dtype=torch.float32)
    # Corrected: 1 - 2*2/(3+4) = 1 - 4/7; the slide prints 0.38.
    assert dice_loss(pred, TRUTH, from_logits=False).item() == pytest.approx(1 - 4 / 7, abs=1e-6)


def test_slide_example_3_bce_prefers_conservative_dice_does_not():
    truth = torch.zeros(3, 3)
    truth[2, 1] = 1  # row 3, column 2
    bold = torch.zeros(3, 3)
    bold[2, 1], bold[0, 0] = 0.7, 0.6  # 0.6 is a false positive
    conservative = torch.zeros(3, 3)
    conservative[2, 1] = 0.3
    # Dice 0.3913 (slide 0.40) and 0.5385 (slide 0.53); BCE (log10, sum) 0.5528 and 0.5229.
    assert dice_loss(bold, truth, from_logits=False).item() == pytest.approx(0.3913, abs=1e-4)
    assert dice_loss(conservative, truth, from_logits=False).item() == pytest.approx(0.5385, abs=1e-4)
    bce = {
        name: binary_cross_entropy(p, truth, from_logits=False, reduction="sum", log_base=10).item()
        for name, p in (("bold", bold), ("conservative", conservative))
    }
    assert bce["bold"] == pytest.approx(0.5528, abs=1e-4)
    assert bce["conservative"] == pytest.approx(0.5229, abs=1e-4)


def test_class_balanced_bce_hand_computed():
    target = torch.tensor([1.0, 0, 0, 0, 0, 0, 0, 0])  # 7 negatives per positive: beta = 7/8
    pred = torch.tensor([0.5, 0.5, 0.2, 0.2, 0.2, 0.2, 0.2, 0.2])
    expected = (7 / 8 * math.log(2) + 1 / 8 * (math.log(2) + 6 * math.log(1.25))) / 8
    given = balanced_binary_cross_entropy(pred, target, beta=7 / 8, from_logits=False)
    from_batch = balanced_binary_cross_entropy(pred, target, beta=None, from_logits=False)
    assert given.item() == pytest.approx(expected, abs=1e-6)
    assert from_batch.item() == pytest.approx(expected, abs=1e-6)
    # beta = 1/2 is half the plain BCE.
    half = balanced_binary_cross_entropy(pred, target, beta=0.5, from_logits=False)
    assert half.item() == pytest.approx(
        binary_cross_entropy(pred, target, from_logits=False).item() / 2, abs=1e-6
    )
    with pytest.raises(ValueError, match="beta"):
        balanced_binary_cross_entropy(pred, target, beta=1.5)


def test_dice_on_empty_masks():
    empty = torch.zeros(1, 4, 4)
    assert dice_loss(empty, empty, from_logits=False).item() == 0.0  # 0/0 defined as perfect agreement
    assert dice_loss(empty, empty, from_logits=False, smooth=1.0).item() == 0.0
    some = empty.clone()
    some[0, 1, 1] = 1
    assert dice_loss(some, empty, from_logits=False).item() == pytest.approx(1.0)  # false positives only
    per_image = dice_loss(
        torch.stack([some[0], empty[0]]), torch.zeros(2, 4, 4), False, per_image=True, reduction="none"
    )
    assert per_image.tolist() == pytest.approx([1.0, 0.0])


def test_multiclass_dice_ignores_ignored_pixels():
    torch.manual_seed(0)
    logits, target = torch.randn(2, 3, 4, 5), torch.randint(0, 3, (2, 4, 5))
    target[0, 0, :3] = 255
    valid = target != 255
    # Reference: the same loss on only the valid pixels, laid out as one 1xN image.
    ref_logits = logits.movedim(1, -1)[valid].T[None, :, None, :]
    ref_target = target[valid][None, None, :]
    assert multiclass_dice_loss(logits, target).item() == pytest.approx(
        multiclass_dice_loss(ref_logits, ref_target, ignore_index=None).item(), abs=1e-6
    )
    # By hand, per class: 1 - 2 sum(p y) / (sum p + sum y), averaged over present classes.
    probs = logits.softmax(1).movedim(1, -1)[valid]
    onehot = F.one_hot(target[valid], 3).float()
    per_class = 1 - 2 * (probs * onehot).sum(0) / (probs.sum(0) + onehot.sum(0))
    assert multiclass_dice_loss(logits, target).item() == pytest.approx(per_class.mean().item(), abs=1e-6)


def test_multiclass_dice_classes_present_and_all_ignored():
    logits = torch.randn(1, 3, 2, 2)
    target = torch.zeros(1, 2, 2, dtype=torch.int64)  # only class 0 present
    present = multiclass_dice_loss(logits, target)
    every = multiclass_dice_loss(logits, target, classes_present_only=False)
    # The absent classes' Dice is 0 (loss 1) for any soft prediction.
    assert every.item() == pytest.approx((present.item() + 2) / 3, abs=1e-6)
    logits.requires_grad_(True)
    ignored = multiclass_dice_loss(logits, torch.full((1, 2, 2), 255))
    assert ignored.item() == 0.0
    ignored.backward()  # still part of the graph, with zero gradient
    assert logits.grad.abs().sum() == 0


def test_cross_entropy_with_weights_and_ignore_equals_torch_and_hand():
    torch.manual_seed(1)
    logits, target = torch.randn(2, 3, 4, 5), torch.randint(0, 3, (2, 4, 5))
    target[1, 2] = 255
    weight = [0.2, 1.0, 3.0]
    ours = cross_entropy(logits, target, weight=weight, ignore_index=255)
    theirs = F.cross_entropy(logits, target, weight=torch.tensor(weight), ignore_index=255)
    assert ours.item() == pytest.approx(theirs.item(), abs=1e-6)
    valid = target != 255
    nll = -logits.log_softmax(1).movedim(1, -1)[valid].gather(1, target[valid][:, None])[:, 0]
    w = torch.tensor(weight)[target[valid]]
    assert ours.item() == pytest.approx(((w * nll).sum() / w.sum()).item(), abs=1e-6)
    assert CrossEntropyLoss(weight)(logits, target).item() == pytest.approx(ours.item(), abs=1e-6)


def test_cross_entropy_all_ignored_is_zero_not_nan_and_bad_labels_are_named():
    logits = torch.randn(1, 2, 3, 3, requires_grad=True)
    loss = cross_entropy(logits, torch.full((1, 3, 3), 255))
    assert loss.item() == 0.0
    loss.backward()
    assert torch.isfinite(logits.grad).all()
    bad = torch.zeros(1, 3, 3, dtype=torch.int64)
    bad[0, 0, 0] = 7
    with pytest.raises(ValueError, match=r"\[7\] outside 0..1"):
        cross_entropy(logits, bad)


def test_weighted_sum_and_named_losses():
    logits, target = torch.randn(2, 3, 4, 5), torch.randint(0, 3, (2, 4, 5))
    combo = WeightedSumLoss([(1.0, CrossEntropyLoss()), (0.5, DiceLoss())])
    expected = F.cross_entropy(logits, target) + 0.5 * multiclass_dice_loss(logits, target)
    assert combo(logits, target).item() == pytest.approx(expected.item(), abs=1e-6)
    assert segmentation_loss("ce+dice", dice_weight=0.5)(logits, target).item() == pytest.approx(
        expected.item()
    )
    with pytest.raises(ValueError, match="unknown"):
        segmentation_loss("focal")


def test_gradients_match_finite_differences():
    torch.manual_seed(2)
    x = torch.randn(2, 1, 3, 4, dtype=torch.double, requires_grad=True)
    y = torch.randint(0, 2, (2, 1, 3, 4)).double()
    assert torch.autograd.gradcheck(lambda t: binary_cross_entropy(t, y), (x,))
    assert torch.autograd.gradcheck(lambda t: balanced_binary_cross_entropy(t, y, beta=0.8), (x,))
    assert torch.autograd.gradcheck(lambda t: dice_loss(t, y, smooth=1.0), (x,))
    logits = torch.randn(2, 3, 3, 4, dtype=torch.double, requires_grad=True)
    labels = torch.randint(0, 3, (2, 3, 4))
    labels[0, 0, 0] = 255
    assert torch.autograd.gradcheck(lambda t: multiclass_dice_loss(t, labels), (logits,))
    w = torch.tensor([0.5, 1.0, 2.0], dtype=torch.double)
    assert torch.autograd.gradcheck(lambda t: cross_entropy(t, labels, weight=w), (logits,))


def _jaccard_loss_of_errors(fg, wrong):
    """1 - IoU of a class whose pixels ``fg`` are predicted wrongly exactly at the set ``wrong``."""
    intersection = (fg & ~wrong).sum()
    union = (fg | wrong).sum()
    return 1.0 - float(intersection) / float(union)


def _lovasz_by_thresholds(logits, target, ignore_index=255):
    """The Lovasz extension from its definition: the integral over t of the Jaccard loss of the set of
    pixels whose error exceeds t (a sum over the sorted errors), averaged over the classes present."""
    probs = logits.softmax(1).movedim(1, -1).reshape(-1, logits.shape[1]).double()
    labels = target.reshape(-1)
    keep = labels != ignore_index
    probs, labels = probs[keep], labels[keep]
    losses = []
    for c in range(probs.shape[1]):
        fg = labels == c
        if not fg.any():
            continue
        errors = (fg.double() - probs[:, c]).abs()
        levels = sorted(set(errors.tolist()), reverse=True) + [0.0]
        total = 0.0
        for hi, lo in zip(levels[:-1], levels[1:], strict=True):
            total += (hi - lo) * _jaccard_loss_of_errors(fg, errors >= hi)
        losses.append(total)
    return sum(losses) / len(losses)


def test_lovasz_hand_worked():
    # Three pixels, labels [1, 0, 1], p(class 1) = [0.9, 0.4, 0.2]: both classes' errors are 0.1, 0.4, 0.8.
    # Class 1 (2 pixels), mistakes added in decreasing error: Jaccard losses 1/2, 2/3, 1 -> weights 1/2,
    # 1/6, 1/3 -> 0.8/2 + 0.4/6 + 0.1/3 = 0.5. Class 0 (1 pixel): 1/2, 1, 1 -> 0.8/2 + 0.4/2 = 0.6.
    p1 = torch.tensor([0.9, 0.4, 0.2], dtype=torch.float64)
    logits = torch.stack([torch.log(1 - p1), torch.log(p1)])[None, :, None, :]  # [1, 2, 1, 3]
    target = torch.tensor([[[1, 0, 1]]])
    assert lovasz_softmax_loss(logits, target).item() == pytest.approx((0.5 + 0.6) / 2)
    assert _lovasz_by_thresholds(logits, target) == pytest.approx(0.55)


def test_lovasz_equals_one_minus_miou_on_hard_predictions():
    torch.manual_seed(0)
    target = torch.randint(0, 3, (2, 9, 11))
    target[0, :2] = 255  # ignored rows
    pred = torch.randint(0, 3, (2, 9, 11))
    logits = F.one_hot(pred, 3).movedim(-1, 1).double() * 60  # softmax = one-hot to 1e-26
    valid = target != 255
    ious = [
        ((target == c) & (pred == c) & valid).sum().double() / (((target == c) | (pred == c)) & valid).sum()
        for c in range(3)
    ]
    expected = 1 - torch.stack(ious).double().mean()
    assert lovasz_softmax_loss(logits, target).item() == pytest.approx(expected.item(), abs=1e-9)


def test_lovasz_agrees_with_its_definition_and_options():
    torch.manual_seed(1)
    logits = torch.randn(3, 4, 6, 5, dtype=torch.float64)
    target = torch.randint(0, 4, (3, 6, 5))
    target[target == 3] = 1  # class 3 absent: left out of the mean
    target[1, 0] = 255
    assert lovasz_softmax_loss(logits, target).item() == pytest.approx(_lovasz_by_thresholds(logits, target))
    per_image = [_lovasz_by_thresholds(logits[i : i + 1], target[i : i + 1]) for i in range(3)]
    assert LovaszSoftmaxLoss(per_image=True)(logits, target).item() == pytest.approx(sum(per_image) / 3)
    everything = LovaszSoftmaxLoss(classes_present_only=False)(logits, target)
    # An absent class counts its largest probability (a false positive costs all of its IoU: 1 - 0/1).
    valid = (target != 255).flatten()
    absent = logits.softmax(1)[:, 3].flatten()[valid].max()
    present = lovasz_softmax_loss(logits, target)
    assert everything.item() == pytest.approx((3 * present.item() + absent.item()) / 4)
    assert torch.autograd.gradcheck(lambda x: lovasz_softmax_loss(x, target), (logits.requires_grad_(),))
    ignored = torch.full_like(target, 255)
    zero = lovasz_softmax_loss(logits, ignored)
    assert zero.item() == 0.0 and zero.requires_grad
    with pytest.raises(ValueError, match=r"class values \[7\]"):
        lovasz_softmax_loss(logits, torch.full_like(target, 7))
    assert isinstance(segmentation_loss("ce+lovasz"), WeightedSumLoss)
    assert isinstance(segmentation_loss("lovasz"), LovaszSoftmaxLoss)
