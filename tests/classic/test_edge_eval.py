"""Edge evaluation: hand-worked cases and a brute-force reference for the tolerance matching."""

from __future__ import annotations

import numpy as np
import pytest

from detseg.classic import boundaries_from_labels, edge_counts, evaluate_edges


def _brute_counts(pred: np.ndarray, truths: list[np.ndarray], d: float) -> list[int]:
    """Pairwise distances between all pixels: the definition of the counts, no distance transform."""
    p = np.argwhere(pred)
    correct = 0
    truth_points = [np.argwhere(t) for t in truths]
    for q in p:
        if any(len(t) and np.hypot(*(t - q).T).min() <= d for t in truth_points):
            correct += 1
    matched = sum(sum(len(p) and np.hypot(*(p - q).T).min() <= d for q in t) for t in truth_points)
    return [correct, len(p), int(matched), sum(len(t) for t in truth_points)]


def test_counts_equal_brute_force():
    rng = np.random.default_rng(0)
    for _ in range(5):
        pred = rng.random((25, 30)) < 0.05
        truths = [rng.random((25, 30)) < 0.04, rng.random((25, 30)) < 0.03]
        for d in (0.0, 1.0, 1.5, 2.9):
            assert edge_counts(pred, truths, [True], d)[0].tolist() == _brute_counts(pred, truths, d)


def test_shifted_boundary_and_tolerance():
    truth = np.zeros((20, 20), bool)
    truth[10, :] = True
    pred = np.zeros((20, 20), bool)
    pred[11, :] = True
    assert edge_counts(pred, truth, [True], 1.0).tolist() == [[20, 20, 20, 20]]
    assert edge_counts(pred, truth, [True], 0.5).tolist() == [[0, 20, 0, 20]]
    # BSDS's default tolerance, 0.0075 x diagonal = 0.21 px here: a one-pixel shift does not match
    assert edge_counts(pred, truth, [True]).tolist() == [[0, 20, 0, 20]]


def test_ods_ois_hand_worked():
    truth = np.zeros((10, 10), bool)
    truth[5, :] = True
    # image 1: strong edges on the boundary (0.9), weak clutter elsewhere (0.4)
    a = np.zeros((10, 10))
    a[5, :] = 0.9
    a[0, :5] = 0.4
    # image 2: half the boundary weak (0.3), no clutter
    b = np.zeros((10, 10))
    b[5, :5] = 0.8
    b[5, 5:] = 0.3
    result = evaluate_edges([a, b], [truth, truth], thresholds=[0.2, 0.5], tolerance_px=0)
    # t = 0.2: P = 20/25, R = 20/20 -> F = 8/9; t = 0.5: P = 15/15, R = 15/20 -> F = 6/7
    assert result["f"] == pytest.approx([8 / 9, 6 / 7])
    assert result["ods_f"] == pytest.approx(8 / 9) and result["ods_threshold"] == 0.2
    # OIS: image 1 best at 0.5 (F 1), image 2 best at 0.2 (F 1): summed counts are perfect
    assert result["ois_f"] == pytest.approx(1.0)
    assert result["ois_precision"] == 1.0 and result["ois_recall"] == 1.0


def test_boundaries_from_labels():
    labels = np.array([[0, 0, 1], [0, 0, 1], [255, 255, 1]])
    assert boundaries_from_labels(labels, ignore_index=255).astype(int).tolist() == [
        [0, 1, 0], [0, 1, 0], [0, 0, 0]]
    assert boundaries_from_labels(labels).astype(int).tolist() == [[0, 1, 0], [1, 1, 0], [0, 1, 0]]


def test_bad_input():
    with pytest.raises(ValueError, match="shape"):
        edge_counts(np.zeros((4, 4)), np.zeros((4, 5)), [0.5])
    with pytest.raises(ValueError, match="2 edge maps but 1"):
        evaluate_edges([np.zeros((4, 4))] * 2, [np.zeros((4, 4))])
    with pytest.raises(ValueError, match="non-empty"):
        edge_counts(np.zeros((0, 4)), np.zeros((0, 4)), [0.5])
