"""PASCAL VOC 2007 detection metric: 11-point AP per class at IoU 0.50, 0.55, ..., 0.95.

This is the metric detectron2's ``PascalVOCDetectionEvaluator`` reports for VOC2007 test, which
the paper's Tables 9-10 quote as AP50 (from MoCo's detection protocol). Conventions, all of them
VOC's own (the devkit's ``VOCevaldet`` as ported to Python by py-faster-rcnn and detectron2):

- Boxes are in VOC pixel coordinates: 1-based, corners inclusive, so a box ``(x1, y1, x2, y2)``
  is ``x2 - x1 + 1`` pixels wide, and IoU counts that +1 in widths, heights and intersections.
  A detector working in 0-based continuous coordinates (torchvision, detectron2) adds 1 to
  ``x1`` and ``y1`` before evaluation (:func:`to_voc_boxes`).
- Per class, the detections of all images are taken in descending score order (ties: image
  order, then the order within an image). Each is compared with the ground-truth box of its image
  and class it overlaps most. IoU strictly above the threshold with a difficult box: neither true
  nor false positive. Above the threshold with a box already matched: false positive (no fallback
  to the next-best box). Not above the threshold, or no box of the class in the image: false positive.
- Recall is over the non-difficult boxes; precision = TP / (TP + FP).
- 11-point AP: the mean over recall points 0, 0.1, ..., 1 of the highest precision at recall
  >= that point (0 when the recall is never reached). The points are ``np.arange(0, 1.1, 0.1)``,
  as in detectron2, floating-point rounding included.
- ``AP50`` and ``AP75``: the mean over classes at IoU 0.50 and 0.75; ``AP``: the mean of the ten
  class means at IoU 0.50 ... 0.95. All in percent, as detectron2 and the paper report them.
- A class with no non-difficult ground truth has no AP (None) and stays out of the means
  (detectron2 would produce NaN there; VOC2007 test has positives for all 20 classes).

Example::

    truth = [GroundTruth(boxes=np.array([[10, 10, 50, 50]]), labels=np.array([0]))]
    found = [Detections(boxes=np.array([[11, 9, 50, 52]]), labels=np.array([0]), scores=np.array([0.9]))]
    evaluate(truth, found, ["car"]).ap50   # 100.0
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

#: IoU thresholds of the AP average (AP50 is the first, AP75 the sixth).
IOU_THRESHOLDS = tuple(round(0.5 + 0.05 * k, 2) for k in range(10))
#: Recall points of the VOC2007 11-point AP, computed exactly as detectron2 computes them.
RECALL_POINTS = np.arange(0.0, 1.1, 0.1)


@dataclass(frozen=True)
class GroundTruth:
    """Ground-truth boxes of one image.

    Attributes:
        boxes: (G, 4) ``x1, y1, x2, y2`` in VOC pixel coordinates (1-based, inclusive).
        labels: (G,) class index in ``[0, K)``.
        difficult: (G,) bool VOC ``difficult`` flags; None means none is difficult.
    """

    boxes: np.ndarray
    labels: np.ndarray
    difficult: np.ndarray | None = None


@dataclass(frozen=True)
class Detections:
    """Detections of one image.

    Attributes:
        boxes: (D, 4) ``x1, y1, x2, y2`` in VOC pixel coordinates (see :func:`to_voc_boxes`).
        labels: (D,) class index in ``[0, K)``.
        scores: (D,) confidence; higher is more confident.
    """

    boxes: np.ndarray
    labels: np.ndarray
    scores: np.ndarray


@dataclass(frozen=True)
class VOCResult:
    """The metric over a test set; every AP is in percent.

    Attributes:
        ap50: mean class AP at IoU 0.50 (VOC2007 11-point).
        ap75: mean class AP at IoU 0.75.
        ap: mean of the class means at IoU 0.50, 0.55, ..., 0.95.
        by_iou: class mean per IoU threshold in percent, keyed ``"50"``, ``"55"``, ... ``"95"``.
        per_class: per class name: ``ap50``, ``ap75``, ``ap`` (None without positives),
            ``positives`` (non-difficult boxes), ``detections``.
        images: images evaluated.
    """

    ap50: float
    ap75: float
    ap: float
    by_iou: dict[str, float]
    per_class: dict[str, dict[str, float | int | None]] = field(default_factory=dict)
    images: int = 0

    def to_json(self) -> dict:
        """The result as plain JSON types."""
        return {
            "ap50": self.ap50,
            "ap75": self.ap75,
            "ap": self.ap,
            "by_iou": self.by_iou,
            "per_class": self.per_class,
            "images": self.images,
        }


def to_voc_boxes(boxes: np.ndarray) -> np.ndarray:
    """0-based continuous ``x1, y1, x2, y2`` (a detector's output) to VOC pixel coordinates.

    The inverse of the data loading, which subtracts 1 from ``x1`` and ``y1`` of the annotations.
    """
    out = np.asarray(boxes, dtype=np.float64).reshape(-1, 4).copy()  # (N, 4)
    out[:, :2] += 1.0
    return out


def voc_iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """IoU of one box (4,) with each of ``boxes`` (G, 4), widths counted VOC-style (+1 pixel)."""
    iw = np.maximum(np.minimum(boxes[:, 2], box[2]) - np.maximum(boxes[:, 0], box[0]) + 1.0, 0.0)
    ih = np.maximum(np.minimum(boxes[:, 3], box[3]) - np.maximum(boxes[:, 1], box[1]) + 1.0, 0.0)
    inter = iw * ih  # (G,)
    area = (box[2] - box[0] + 1.0) * (box[3] - box[1] + 1.0)
    areas = (boxes[:, 2] - boxes[:, 0] + 1.0) * (boxes[:, 3] - boxes[:, 1] + 1.0)  # (G,)
    return inter / (area + areas - inter)


def eleven_point_ap(recall: np.ndarray, precision: np.ndarray) -> float:
    """VOC2007 AP in [0, 1]: mean over :data:`RECALL_POINTS` of the best precision at recall >= the point.

    Args:
        recall: (D,) recall after each detection in score order (non-decreasing).
        precision: (D,) precision after each detection.
    """
    total = 0.0
    for point in RECALL_POINTS:
        reached = recall >= point
        total += float(precision[reached].max()) if reached.any() else 0.0
    return total / len(RECALL_POINTS)


@dataclass(frozen=True)
class _ClassMatches:
    """One class's detections in score order, each with its best ground truth (threshold-free)."""

    best_iou: np.ndarray  # (D,) IoU with the best-overlapping box of the class in its image, -1 if none
    key: np.ndarray  # (D,) global index of that box, -1 if none
    difficult: np.ndarray  # (D,) whether that box is difficult
    positives: int  # non-difficult boxes of the class


def _class_matches(truth: Sequence[GroundTruth], found: Sequence[Detections], label: int) -> _ClassMatches:
    gt_boxes, gt_difficult, offsets = [], [], [0]
    for image in truth:
        mine = image.labels == label
        gt_boxes.append(np.asarray(image.boxes, dtype=np.float64).reshape(-1, 4)[mine])
        hard = np.zeros(len(image.labels), bool) if image.difficult is None else np.asarray(image.difficult, bool)
        gt_difficult.append(hard[mine])
        offsets.append(offsets[-1] + int(mine.sum()))
    image_of, scores, boxes = [], [], []
    for i, image in enumerate(found):
        mine = image.labels == label
        image_of.append(np.full(int(mine.sum()), i))
        scores.append(np.asarray(image.scores, dtype=np.float64)[mine])
        boxes.append(np.asarray(image.boxes, dtype=np.float64).reshape(-1, 4)[mine])
    image_of, scores, boxes = np.concatenate(image_of), np.concatenate(scores), np.concatenate(boxes)
    order = np.argsort(-scores, kind="stable")  # ties keep image order, then order within the image
    best_iou = np.full(len(order), -1.0)
    key = np.full(len(order), -1)
    difficult = np.zeros(len(order), bool)
    for rank, d in enumerate(order):
        i = image_of[d]
        if len(gt_boxes[i]) == 0:
            continue
        overlaps = voc_iou(boxes[d], gt_boxes[i])  # (G_i,)
        j = int(np.argmax(overlaps))
        best_iou[rank], key[rank], difficult[rank] = overlaps[j], offsets[i] + j, gt_difficult[i][j]
    positives = int(sum(int((~hard).sum()) for hard in gt_difficult))
    return _ClassMatches(best_iou, key, difficult, positives)


def _class_ap(matches: _ClassMatches, threshold: float) -> float:
    """11-point AP in [0, 1] of one class at one IoU threshold (VOC's matching rules)."""
    above = matches.best_iou > threshold
    counted = ~(above & matches.difficult)  # a match to a difficult box is neither TP nor FP
    candidate = above & ~matches.difficult
    tp = np.zeros(len(above), bool)
    hits = np.flatnonzero(candidate)
    _, first = np.unique(matches.key[hits], return_index=True)  # the first match of each box counts
    tp[hits[first]] = True
    fp = counted & ~tp
    tp_cum, fp_cum = np.cumsum(tp), np.cumsum(fp)  # (D,) each; a difficult match adds to neither
    recall = tp_cum / matches.positives
    precision = tp_cum / np.maximum(tp_cum + fp_cum, np.finfo(np.float64).eps)
    return eleven_point_ap(recall, precision)


def evaluate(
    truth: Sequence[GroundTruth],
    found: Sequence[Detections],
    class_names: Sequence[str],
    iou_thresholds: Sequence[float] = IOU_THRESHOLDS,
) -> VOCResult:
    """VOC2007 AP of ``found`` against ``truth`` (same images, same order).

    Args:
        truth: ground truth per image.
        found: detections per image, in the same image order as ``truth``.
        class_names: name of each class index; the per-class report uses them.
        iou_thresholds: thresholds of the AP average; must include 0.5 and 0.75.

    Raises:
        ValueError: ``truth`` and ``found`` differ in length, or a threshold is missing.
    """
    if len(truth) != len(found):
        raise ValueError(f"{len(truth)} ground-truth images but {len(found)} detection lists")
    keys = [f"{round(100 * t):d}" for t in iou_thresholds]
    if "50" not in keys or "75" not in keys:
        raise ValueError(f"iou_thresholds must include 0.5 and 0.75, got {list(iou_thresholds)}")
    per_class: dict[str, dict[str, float | int | None]] = {}
    class_aps: dict[str, list[float]] = {k: [] for k in keys}
    for label, name in enumerate(class_names):
        matches = _class_matches(truth, found, label)
        entry: dict[str, float | int | None] = {
            "positives": matches.positives,
            "detections": len(matches.key),
            "ap50": None,
            "ap75": None,
            "ap": None,
        }
        if matches.positives > 0:
            aps = {k: 100.0 * _class_ap(matches, t) for k, t in zip(keys, iou_thresholds)}
            for k, value in aps.items():
                class_aps[k].append(value)
            entry.update(ap50=aps["50"], ap75=aps["75"], ap=float(np.mean(list(aps.values()))))
        per_class[name] = entry
    by_iou = {k: float(np.mean(v)) if v else 0.0 for k, v in class_aps.items()}
    return VOCResult(
        ap50=by_iou["50"],
        ap75=by_iou["75"],
        ap=float(np.mean(list(by_iou.values()))),
        by_iou=by_iou,
        per_class=per_class,
        images=len(truth),
    )
