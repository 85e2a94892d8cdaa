"""Real filter (RF): drops exactly the images whose nearest real shot is of another class."""

import math

import pytest
import torch

from synk8s import config, storage
from synk8s.errors import UsageError
from synk8s.stages.fewshot import realfilter, split
from synk8s.stages.fewshot import tune as fewshot_tune
from synk8s.stages.zeroshot import features, filter
from synk8s.stages.zeroshot.tune import load_feature_set, load_selection

pytestmark = pytest.mark.timeout(120)


def _unit_angle(degrees):
    """A unit vector in the plane at ``degrees`` from the x axis, padded to 3 dimensions."""
    rad = math.radians(degrees)
    return [math.cos(rad), math.sin(rad), 0.0]


def test_rule_on_hand_made_features():
    # Real shots: class 0 at 0 and 20 degrees, class 1 at 90, class 2 at 180.
    real = torch.tensor([_unit_angle(a) for a in (0, 20, 90, 180)])
    real_labels = torch.tensor([0, 0, 1, 2])
    cases = [  # (angle of the synthetic image, its intended class, kept?)
        (10, 0, True),  # between its own shots
        (60, 0, False),  # 40 degrees from class 0's nearest shot, 30 from class 1's
        (60, 1, True),  # the same image generated for class 1: its nearest shot is of class 1
        (170, 1, False),  # nearest is class 2
        (100, 2, False),  # nearest is class 1 (10 degrees), class 2 is 80 away
    ]
    syn = torch.tensor([_unit_angle(a) for a, _, _ in cases])
    labels = torch.tensor([c for _, c, _ in cases])
    same, other, nearest = realfilter.nearest_similarities(syn, labels, real, real_labels)
    assert realfilter.keep_mask(same, other).tolist() == [k for _, _, k in cases]
    assert same[1] == pytest.approx(math.cos(math.radians(40)), abs=1e-6)
    assert other[1] == pytest.approx(math.cos(math.radians(30)), abs=1e-6)
    assert nearest.tolist() == [1, 1, 0, 2, 1]

    stats = realfilter.class_stats(labels, realfilter.keep_mask(same, other), same, other, nearest, ["a", "b", "c"])
    assert [(s["cf_kept"], s["kept"], s["dropped"]) for s in stats] == [(2, 1, 1), (2, 1, 1), (1, 0, 1)]
    assert stats[0]["mean_nearest_same"] == pytest.approx(float(same[:2].mean()))
    assert stats[0]["dropped_nearest_to"] == [{"class_index": 1, "class_name": "b", "count": 1}]


def test_a_tie_keeps_the_image():
    real, real_labels = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]), torch.tensor([0, 1])
    halfway = torch.tensor([[0.5, 0.5, 0.0]] * 2)  # equally similar to both shots, exactly
    same, other, _ = realfilter.nearest_similarities(halfway, torch.tensor([0, 1]), real, real_labels)
    assert torch.equal(same, other) and realfilter.keep_mask(same, other).tolist() == [True, True]


def test_one_class_drops_nothing():
    syn, real = torch.eye(3)[:2], torch.eye(3)[2:]
    same, other, nearest = realfilter.nearest_similarities(syn, torch.zeros(2).long(), real, torch.zeros(1).long())
    assert realfilter.keep_mask(same, other).all() and nearest.tolist() == [-1, -1]


PER_CLASS = 3


def test_stage_applies_the_rule_after_cf_in_the_filter_format(tiny_images, tiny_config, tmp_path):
    run_root = tiny_images(PER_CLASS)
    cfg = tiny_config(run_root, PER_CLASS, f"dataset.root={tmp_path}/data/{{name}}", "dataset.standin_per_class=2",
                      "filter.enabled=false")  # fmt: skip
    images = str(run_root / "images")
    outs = {n: str(tmp_path / n) for n in ("split", "filter", "features", "rf")}
    split.run(cfg, out=outs["split"], progress=False)
    filter.run(cfg, images=images, out=outs["filter"], progress=False)
    features.run(cfg, images=images, out=outs["features"], progress=False)
    result = realfilter.run(cfg, split=outs["split"], features=outs["features"], selection=outs["filter"],
                            out=outs["rf"], progress=False)  # fmt: skip

    # The rule, recomputed image by image from the stored features.
    feats, labels = load_feature_set(outs["features"], "synthetic")
    shots = split.shot_features(cfg, split.load_split(outs["split"]), progress=False)
    expected = []
    for row in range(len(labels)):
        sims = [(float(feats[row] @ r), int(c)) for r, c in zip(shots.features, shots.labels, strict=True)]
        same = max(s for s, c in sims if c == int(labels[row]))
        other = max(s for s, c in sims if c != int(labels[row]))
        if not other > same:
            expected.append(row)
    rf = load_selection(outs["rf"])
    cf = load_selection(outs["filter"])
    assert rf["kept"].tolist() == expected
    assert 0 < result.kept < result.cf_kept == 30  # something kept, something dropped
    assert torch.equal(rf["scores"], cf["scores"])
    assert torch.equal(rf["teacher_logits"], cf["teacher_logits"][rf["kept"]])
    stats = storage.get_json(result.stats)
    assert sum(c["dropped"] for c in stats["classes"]) == result.dropped == 30 - len(expected)
    assert all(c["mean_nearest_same"] is not None for c in stats["classes"])
    # Tuning reads the RF selection like a filter's, and refuses one made with another split.
    tuned = fewshot_tune.run(cfg, split=outs["split"], features=outs["features"], selection=outs["rf"],
                             images=images, out=str(tmp_path / "tune"), progress=False)  # fmt: skip
    assert tuned.train + tuned.val == result.kept
    other = split.run(config.with_overrides(cfg, ["fewshot.split_seed=7"]), out=str(tmp_path / "other"), progress=False)
    assert other.digest != split.load_split(outs["split"]).digest
    with pytest.raises(UsageError, match="used another split"):
        fewshot_tune.run(cfg, split=str(tmp_path / "other"), features=outs["features"], selection=outs["rf"],
                         images=images, out=str(tmp_path / "tune2"), progress=False)  # fmt: skip
