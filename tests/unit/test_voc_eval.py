"""The VOC2007 evaluator: hand-computed cases, a loop-by-loop reference and pycocotools.

pycocotools (COCOeval) is an independent implementation whose conventions differ from VOC's in
four places; the comparison removes each difference instead of papering over it:

1. IoU: VOC counts +1 pixel in widths; COCO does not. Boxes go to COCO as ``[x1, y1, w + 1, h + 1]``,
   which gives COCO exactly VOC's intersections and areas.
2. AP: COCO samples 101 recall points; ``params.recThrs`` is set to VOC's 11 (COCO's precision
   envelope at a recall point equals VOC's "best precision at recall >= point").
3. Matching: COCO lets a detection fall back to the next-best unmatched box and matches at
   IoU >= t; VOC takes the best box (matched or not) and needs IoU > t. The random cases keep
   the boxes of a class in an image disjoint (then no detection exceeds IoU 0.5 with two boxes,
   so both rules pick the same box) and use continuous coordinates (no IoU equals a threshold).
4. Difficult boxes have no COCO counterpart (COCO's ``iscrowd`` changes the IoU), so they are
   left out there and checked by the hand cases and the loop reference instead.
"""

import numpy as np
import pytest

from synk8s.detection.voc_eval import (
    IOU_THRESHOLDS,
    Detections,
    GroundTruth,
    eleven_point_ap,
    evaluate,
    to_voc_boxes,
    voc_iou,
)

pytestmark = pytest.mark.timeout(60)


def _gt(boxes, labels, difficult=None):
    return GroundTruth(
        np.array(boxes, float).reshape(-1, 4),
        np.array(labels, int),
        None if difficult is None else np.array(difficult, bool),
    )


def _det(boxes, labels, scores):
    return Detections(np.array(boxes, float).reshape(-1, 4), np.array(labels, int), np.array(scores, float))


# ----------------------------------------------------------------------------- hand-computed cases


def test_iou_counts_the_inclusive_pixel():
    # 10x10 box inside a 10x19 box: VOC IoU 100/190 (> 0.5); without the +1 it would be 81/162 = 0.5 exactly
    assert voc_iou(np.array([1.0, 1, 10, 10]), np.array([[1.0, 1, 10, 19]]))[0] == pytest.approx(100 / 190)
    truth = [_gt([[1, 1, 10, 10]], [0])]
    assert evaluate(truth, [_det([[1, 1, 10, 19]], [0], [0.9])], ["a"]).ap50 == pytest.approx(100.0)


def test_detector_boxes_shift_to_one_based_pixels():
    assert to_voc_boxes(np.array([[0.0, 4.0, 9.0, 20.0]])).tolist() == [[1.0, 5.0, 9.0, 20.0]]


def test_a_second_match_of_the_same_box_is_a_false_positive():
    truth = [_gt([[10, 10, 50, 50]], [0]), _gt([[20, 20, 60, 60]], [0])]
    found = [
        _det([[10, 10, 50, 50], [11, 11, 50, 50]], [0, 0], [0.9, 0.8]),  # TP, then the duplicate: FP
        _det([[20, 20, 60, 60]], [0], [0.7]),  # TP
    ]
    # recall 0.5, 0.5, 1.0; precision 1, 1/2, 2/3: points 0..0.5 see precision 1, points 0.6..1 see 2/3
    expected = 100 * (6 * 1.0 + 5 * (2 / 3)) / 11
    assert evaluate(truth, found, ["a"]).ap50 == pytest.approx(expected)


def test_no_fallback_to_the_next_best_box_once_the_best_is_taken():
    # two overlapping boxes; the second detection overlaps both above 0.5 but the first one most
    truth = [_gt([[0, 0, 99, 99], [0, 0, 99, 79]], [0, 0])]
    found = [_det([[0, 0, 99, 99], [0, 0, 99, 95]], [0, 0], [0.9, 0.8])]
    assert voc_iou(np.array([0.0, 0, 99, 95]), truth[0].boxes).tolist()[1] > 0.5
    # TP then FP: recall 0.5, 0.5 -> points 0..0.5 give precision 1, the rest 0
    assert evaluate(truth, found, ["a"]).ap50 == pytest.approx(100 * 6 / 11)


def test_difficult_boxes_are_neither_true_nor_false_positives():
    truth = [_gt([[10, 10, 40, 40], [60, 60, 90, 90]], [0, 0], difficult=[False, True])]
    on_difficult, on_easy, elsewhere = [60, 60, 90, 90], [10, 10, 40, 40], [100, 100, 140, 140]
    found = [_det([on_difficult, on_easy, elsewhere], [0, 0, 0], [0.95, 0.9, 0.5])]
    result = evaluate(truth, found, ["a"])
    # ignored, TP, FP: recall over the one easy box reaches 1 at precision 1
    assert result.ap50 == pytest.approx(100.0)
    assert result.per_class["a"]["positives"] == 1
    # without the difficult box the first detection is a false positive: precision 1/2 at best
    assert evaluate([_gt([on_easy], [0])], found, ["a"]).ap50 == pytest.approx(50.0)
    # as an ordinary box it is a second positive, found first
    assert evaluate([_gt(truth[0].boxes, [0, 0])], found, ["a"]).per_class["a"]["positives"] == 2


def test_a_detection_whose_best_box_is_difficult_is_ignored_even_if_it_overlaps_an_easy_one():
    truth = [_gt([[0, 0, 99, 99], [0, 0, 99, 79]], [0, 0], difficult=[True, False])]
    found = [_det([[0, 0, 99, 97]], [0], [0.9])]  # IoU 0.98 with the difficult box, 0.82 with the easy one
    per_class = evaluate(truth, found, ["a"]).per_class["a"]
    assert per_class["ap50"] == pytest.approx(0.0)  # nothing recalled, and no false positive either
    assert per_class["positives"] == 1


def test_a_miss_below_the_threshold_is_a_false_positive_and_classes_never_mix():
    truth = [_gt([[10, 10, 40, 40]], [0])]
    found = [_det([[10, 10, 40, 40], [30, 30, 60, 60]], [1, 0], [0.9, 0.8])]  # right box wrong class; poor box
    result = evaluate(truth, found, ["a", "b"])
    assert result.per_class["a"]["ap50"] == 0.0 and result.per_class["a"]["detections"] == 1
    assert result.per_class["b"] == {"positives": 0, "detections": 1, "ap50": None, "ap75": None, "ap": None}
    assert result.ap50 == 0.0  # the mean runs over classes with positives only


def test_ap_averages_the_ten_thresholds_and_ap75_is_stricter():
    truth = [_gt([[0, 0, 99, 99]], [0])]
    found = [_det([[0, 0, 99, 84]], [0], [0.9])]  # IoU 0.85
    result = evaluate(truth, found, ["a"])
    assert (result.ap50, result.ap75) == (100.0, 100.0)
    assert [result.by_iou[k] for k in ("80", "85", "90")] == [100.0, 0.0, 0.0]  # 0.85 is not > 0.85
    assert result.ap == pytest.approx(100 * 7 / 10)


def test_eleven_point_ap_takes_the_best_precision_to_the_right():
    recall = np.array([0.2, 0.4, 0.4, 0.8])
    precision = np.array([1.0, 0.5, 0.4, 0.6])
    # points 0..0.2 -> 1.0 (3 points); 0.3, 0.4 -> 0.6 (2); 0.5..0.8 -> 0.6 (4); 0.9, 1.0 -> 0
    assert eleven_point_ap(recall, precision) == pytest.approx((3 * 1.0 + 6 * 0.6) / 11)
    assert eleven_point_ap(np.array([]), np.array([])) == 0.0


def test_mismatched_inputs_are_refused():
    with pytest.raises(ValueError, match="2 ground-truth images but 1"):
        evaluate([_gt([], []), _gt([], [])], [_det([], [], [])], ["a"])


# ----------------------------------------------------------------------------- random cases


def _random_case(seed, *, classes=3, images=25, difficult_rate=0.0, disjoint=True):
    """Random ground truth and detections: jittered hits, duplicates, misses and random boxes."""
    rng = np.random.default_rng(seed)
    truth, found = [], []
    for _ in range(images):
        boxes, labels = [], []
        for quadrant in rng.permutation(4)[: rng.integers(0, 5)]:
            ox, oy = 100.0 * (quadrant % 2), 100.0 * (quadrant // 2)
            x1, y1 = ox + rng.uniform(0, 40, 2) if disjoint else rng.uniform(0, 100, 2)
            y1 = oy + rng.uniform(0, 40) if disjoint else y1
            w, h = rng.uniform(15, 55, 2)
            boxes.append([x1, y1, x1 + w, y1 + h])
            labels.append(rng.integers(classes))
        hard = rng.random(len(boxes)) < difficult_rate
        truth.append(_gt(boxes, labels, hard))
        det_boxes, det_labels = [], []
        for box, label in zip(boxes, labels):
            for _ in range(rng.integers(0, 3)):  # 0 (a miss), 1 or 2 (a duplicate) detections per box
                size = np.array([box[2] - box[0], box[3] - box[1]] * 2)
                det_boxes.append(np.array(box) + rng.normal(0, 0.08, 4) * size)
                det_labels.append(label if rng.random() > 0.1 else rng.integers(classes))
        for _ in range(rng.integers(0, 3)):  # background detections
            x1, y1 = rng.uniform(0, 180, 2)
            det_boxes.append([x1, y1, x1 + rng.uniform(10, 50), y1 + rng.uniform(10, 50)])
            det_labels.append(rng.integers(classes))
        found.append(_det(det_boxes, det_labels, rng.random(len(det_boxes))))
    return truth, found


def _reference_ap(truth, found, label, threshold):
    """The devkit's loop: detections one by one in score order, a 'detected' flag per box."""
    dets = [
        (score, i, box)
        for i, image in enumerate(found)
        for box, lab, score in zip(image.boxes, image.labels, image.scores)
        if lab == label
    ]
    dets.sort(key=lambda d: -d[0])
    taken = {}
    npos = sum(int(lab == label and not hard) for g in truth for lab, hard in zip(g.labels, g.difficult))
    if npos == 0:
        return None
    tp = fp = 0
    points = []
    for _, i, box in dets:
        best, best_j = -1.0, None
        for j, (gbox, lab) in enumerate(zip(truth[i].boxes, truth[i].labels)):
            if lab != label:
                continue
            iw = min(box[2], gbox[2]) - max(box[0], gbox[0]) + 1
            ih = min(box[3], gbox[3]) - max(box[1], gbox[1]) + 1
            inter = max(iw, 0) * max(ih, 0)
            union = (box[2] - box[0] + 1) * (box[3] - box[1] + 1) + (gbox[2] - gbox[0] + 1) * (gbox[3] - gbox[1] + 1)
            if inter / (union - inter) > best:
                best, best_j = inter / (union - inter), j
        if best > threshold and truth[i].difficult[best_j]:
            pass
        elif best > threshold and not taken.get((i, best_j)):
            taken[(i, best_j)] = True
            tp += 1
        else:
            fp += 1
        points.append((tp / npos, tp / max(tp + fp, 1e-300)))
    total = 0.0
    for k in range(11):
        t = k * 0.1  # the same floating-point values as np.arange(0, 1.1, 0.1)
        total += max([p for r, p in points if r >= t], default=0.0)
    return 100 * total / 11


@pytest.mark.parametrize("seed", range(6))
def test_matches_a_loop_by_loop_reference_with_difficult_and_overlapping_boxes(seed):
    truth, found = _random_case(seed, difficult_rate=0.25, disjoint=False)
    result = evaluate(truth, found, ["a", "b", "c"])
    checked = 0
    for label, name in enumerate("abc"):
        expected = [_reference_ap(truth, found, label, t) for t in IOU_THRESHOLDS]
        if expected[0] is None:
            assert result.per_class[name]["ap"] is None
            continue
        assert result.per_class[name]["ap50"] == pytest.approx(expected[0], abs=1e-9)
        assert result.per_class[name]["ap75"] == pytest.approx(expected[5], abs=1e-9)
        assert result.per_class[name]["ap"] == pytest.approx(np.mean(expected), abs=1e-9)
        checked += 1
    assert checked >= 2


def _coco_ap(truth, found, classes):
    """Per-class 11-point AP (percent) from COCOeval at each threshold of IOU_THRESHOLDS."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    images, annotations, results = [], [], []
    for i, (g, d) in enumerate(zip(truth, found)):
        images.append({"id": i, "width": 400, "height": 400})
        for box, label in zip(g.boxes, g.labels):
            w, h = box[2] - box[0] + 1, box[3] - box[1] + 1  # difference 1: VOC's inclusive pixels
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": i,
                    "category_id": int(label),
                    "bbox": [*box[:2], w, h],
                    "area": w * h,
                    "iscrowd": 0,
                }
            )
        for box, label, score in zip(d.boxes, d.labels, d.scores):
            results.append(
                {
                    "image_id": i,
                    "category_id": int(label),
                    "score": float(score),
                    "bbox": [box[0], box[1], box[2] - box[0] + 1, box[3] - box[1] + 1],
                }
            )
    coco = COCO()
    coco.dataset = {"images": images, "annotations": annotations, "categories": [{"id": k} for k in range(classes)]}
    coco.createIndex()
    evaluator = COCOeval(coco, coco.loadRes(results), "bbox")
    evaluator.params.iouThrs = np.array(IOU_THRESHOLDS)
    evaluator.params.recThrs = np.arange(0.0, 1.1, 0.1)  # difference 2: VOC's 11 recall points
    evaluator.params.areaRng, evaluator.params.areaRngLbl = [[0, 1e10]], ["all"]
    evaluator.params.maxDets = [1000]
    evaluator.evaluate()
    evaluator.accumulate()
    precision = evaluator.eval["precision"][:, :, :, 0, 0]  # (T, R, K); -1 where a class has no boxes
    return {
        k: 100 * precision[:, :, k].mean(axis=1) if (precision[:, :, k] >= 0).all() else None for k in range(classes)
    }


@pytest.mark.parametrize("seed", range(4))
def test_matches_pycocotools_where_the_conventions_coincide(seed):
    truth, found = _random_case(100 + seed, classes=3, images=30)
    result = evaluate(truth, found, ["a", "b", "c"], iou_thresholds=IOU_THRESHOLDS)
    coco = _coco_ap(truth, found, 3)
    compared = 0
    for label, name in enumerate("abc"):
        if coco[label] is None:
            assert result.per_class[name]["ap"] is None
            continue
        assert result.per_class[name]["ap50"] == pytest.approx(coco[label][0], abs=1e-6)
        assert result.per_class[name]["ap75"] == pytest.approx(coco[label][5], abs=1e-6)
        assert result.per_class[name]["ap"] == pytest.approx(coco[label].mean(), abs=1e-6)
        compared += 1
    assert compared >= 2
    assert 0.0 < result.ap50 < 100.0  # the random cases are neither trivial nor hopeless
