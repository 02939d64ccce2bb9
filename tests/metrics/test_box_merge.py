"""Merging slice detections: NMS, NMM and greedy NMM on hand-worked cases (SAHI's semantics)."""

import pytest
import torch

from detseg.metrics.box_merge import match_values, merge_detections


def _t(rows):
    return torch.tensor(rows, dtype=torch.float32)


def test_iou_and_ios_by_hand():
    box = _t([0, 0, 10, 10])
    boxes = _t([[5, 0, 15, 10], [0, 0, 4, 10], [20, 20, 30, 30]])
    # intersections 50, 40, 0; IoU = 50/150, 40/100; IoS = 50/100, 40/40
    assert match_values(box, boxes, "iou").tolist() == pytest.approx([1 / 3, 0.4, 0.0])
    assert match_values(box, boxes, "ios").tolist() == pytest.approx([0.5, 1.0, 0.0])


def test_a_box_cut_by_a_slice_border_merges_into_the_whole():
    # The object is x 90..130; the left slice (ends at 100) sees 90..100, the right one the whole of it.
    boxes = _t([[90, 10, 130, 40], [90, 10, 100, 40]])
    scores, labels = torch.tensor([0.8, 0.9]), torch.tensor([0, 0])
    assert float(match_values(boxes[0], boxes[1:], "iou")[0]) == pytest.approx(0.25)  # IoU would keep both
    out, out_scores, out_labels, groups = merge_detections(boxes, scores, labels)  # greedy-nmm, ios, 0.5
    assert out.tolist() == [[90, 10, 130, 40]]
    assert out_scores.tolist() == pytest.approx([0.9]) and out_labels.tolist() == [0]
    assert groups == [[1, 0]]
    assert len(merge_detections(boxes, scores, labels, match="iou")[0]) == 2


# Three chained boxes of one class, 10 px high: A x 0..10, B 4..14, C 8..18. IoS A-B = B-C = 60/100 = 0.6,
# A-C = 20/100 = 0.2: A matches B, B matches C, A and C do not match.
A, B, C = [0, 0, 10, 10], [4, 0, 14, 10], [8, 0, 18, 10]
SCORES = torch.tensor([0.9, 0.8, 0.7])
LABELS = torch.tensor([2, 2, 2])


def test_greedy_nmm_merges_only_with_the_kept_box():
    # A keeps B (IoS 0.6) but not C (A and C: intersection 2 x 10 = 20, IoS 0.2); C then stands alone.
    out, scores, _, groups = merge_detections(_t([A, B, C]), SCORES, LABELS, "greedy-nmm", "ios", 0.5)
    assert out.tolist() == [[0, 0, 14, 10], [8, 0, 18, 10]]
    assert scores.tolist() == pytest.approx([0.9, 0.7]) and groups == [[0, 1], [2]]


def test_nmm_chains_through_the_merged_box():
    out, scores, labels, groups = merge_detections(_t([A, B, C]), SCORES, LABELS, "nmm", "ios", 0.5)
    # A's matches: [B]; B (grouped with A) matches C, not yet grouped, so C joins A's group: [A, B, C].
    # Merged one by one: A + B = x 0..14; its IoS with C = 6 x 10 / 100 = 0.6 > 0.5, so C merges too.
    assert out.tolist() == [[0, 0, 18, 10]]
    assert scores.tolist() == pytest.approx([0.9]) and labels.tolist() == [2] and groups == [[0, 1, 2]]


def test_nms_keeps_the_best_box_per_class():
    boxes = _t([A, B, C, A])
    scores, labels = torch.tensor([0.9, 0.8, 0.7, 0.6]), torch.tensor([0, 0, 0, 1])
    # IoU A-B = 60/140 = 0.43, B-C the same, A-C 20/180: at 0.4 A drops B, C stays; the class-1 box stays.
    out, out_scores, out_labels, groups = merge_detections(boxes, scores, labels, "nms", "iou", 0.4)
    assert out.tolist() == [A, C, A] and out_labels.tolist() == [0, 0, 1] and groups == [[0], [2], [3]]
    out, _, _, groups = merge_detections(boxes, scores, labels, "nms", "ios", 0.5)  # IoS 0.6, 0.2
    assert out.tolist() == [A, C, A] and groups == [[0], [2], [3]]


def test_other_classes_never_merge_and_bad_names_are_refused():
    out, _, labels, _ = merge_detections(_t([A, A]), torch.tensor([0.9, 0.8]), torch.tensor([0, 1]))
    assert out.tolist() == [A, A] and labels.tolist() == [0, 1]
    empty = merge_detections(torch.zeros(0, 4), torch.zeros(0), torch.zeros(0, dtype=torch.int64))
    assert empty[0].shape == (0, 4) and empty[3] == []
    with pytest.raises(ValueError, match="merge must be one of"):
        merge_detections(_t([A]), SCORES[:1], LABELS[:1], "wbf")
    with pytest.raises(ValueError, match="match must be one of"):
        merge_detections(_t([A]), SCORES[:1], LABELS[:1], match="giou")


def test_a_member_matching_at_exactly_the_threshold_merges_as_in_sahi_0_12_8():
    # IoS of x 0..10 and 5..15 = 50 / 100 = 0.5: it joins (>= 0.5) and merges (SAHI 0.12.8's has_match: >=).
    out, scores, _, groups = merge_detections(_t([[0, 0, 10, 10], [5, 0, 15, 10]]), torch.tensor([0.9, 0.8]),
                                              torch.tensor([0, 0]), "greedy-nmm", "ios", 0.5)  # fmt: skip
    assert out.tolist() == [[0, 0, 15, 10]] and groups == [[0, 1]]


def test_nmm_merges_a_group_in_input_order_greedy_nmm_in_score_order():
    # K x 10..20 matches A 5..15 and C 15..35 at IoS 0.5 (A and C do not touch). K + A = 5..20 then has IoS
    # 5/15 with C: C is dropped. K + C = 10..35 has IoS 5/10 with A: A merges too, 5..35.
    K, A, C = [10, 0, 20, 10], [5, 0, 15, 10], [15, 0, 35, 10]
    labels = torch.tensor([0, 0, 0])
    out, _, _, groups = merge_detections(
        _t([K, A, C]), torch.tensor([0.9, 0.7, 0.8]), labels, "nmm", "ios", 0.5
    )
    assert out.tolist() == [[5, 0, 20, 10]] and groups == [[0, 1]]  # A came first, though C scores higher
    out, _, _, groups = merge_detections(
        _t([K, C, A]), torch.tensor([0.9, 0.8, 0.7]), labels, "nmm", "ios", 0.5
    )
    assert out.tolist() == [[5, 0, 35, 10]] and groups == [[0, 1, 2]]
    out, _, _, groups = merge_detections(_t([K, A, C]), torch.tensor([0.9, 0.7, 0.8]), labels, "greedy-nmm",
                                         "ios", 0.5)  # fmt: skip
    assert out.tolist() == [[5, 0, 35, 10]] and groups == [[0, 2, 1]]  # by score: C (0.8) first, then A


def test_equal_scores_are_taken_left_to_right_whatever_the_input_order():
    left, right = [0, 0, 10, 10], [2, 0, 12, 10]  # IoS 0.8
    for boxes, kept in (([left, right], 0), ([right, left], 1)):
        out, _, _, groups = merge_detections(
            _t(boxes), torch.tensor([0.9, 0.9]), torch.tensor([0, 0]), "nms", "ios"
        )
        assert out.tolist() == [left] and groups == [[kept]]
