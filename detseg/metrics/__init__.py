"""Evaluation: IoU, PR curves and AP by every common definition, COCO and VOC, segmentation metrics.

- ``boxes``: ``box_iou`` (x1, y1, x2, y2; crowd and VOC '+1' options), ``box_iou_xywh`` (pycocotools'
  arithmetic), ``mask_iou`` (RLE).
- ``detection``: ``pr_curve``, ``PRCurve`` (F1, F1-optimal threshold), ``average_precision`` with
  ``method`` = lecture | voc07 | voc12 | coco101, ``mean_ap``.
- ``coco``: ``evaluate(gt, results, iou_type)`` -> ``COCOResult`` (pycocotools' numbers exactly, faster).
- ``voc``: ``evaluate_voc(gt, results, iou, method)`` -> ``VOCResult`` (the VOC devkit's rules).
- ``errors``: ``detection_confusion`` and ``error_breakdown`` (why mAP is low).
- ``segmentation``: ``SegmentationMetrics`` (streaming confusion matrix), ``segmentation_scores``.

Submodules are imported on use, so ``import detseg.metrics`` stays light (numba loads with ``coco``).
"""
