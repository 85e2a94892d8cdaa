"""CLIP filter: the pure scoring and selection maths on hand-made features, then the stage itself."""

import math

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load

from synk8s import datasets, storage
from synk8s.errors import UsageError
from synk8s.models import load_clip
from synk8s.stages.zeroshot import filter as filter_stage
from synk8s.stages.zeroshot.features import synthetic_features
from synk8s.stages.zeroshot.filter import (
    class_probabilities,
    class_stats,
    confidences,
    resolve_threshold,
    select,
    teacher_logits,
)
from synk8s.zeroshot import text_head

pytestmark = pytest.mark.timeout(120)

# Three classes whose text embeddings are the axes of R^3.
W = torch.eye(3)


def unit(*rows):
    return F.normalize(torch.tensor(rows, dtype=torch.float32), dim=-1)


# ----------------------------------------------------------------------------- pure maths


def test_confidence_is_softmax_probability_of_intended_class():
    feats = unit([1.0, 0.0, 0.0], [1.0, 1.0, 0.0], [0.0, 0.0, 1.0])
    labels = torch.tensor([0, 1, 0])
    scale = 10.0
    scores = confidences(class_probabilities(feats, W, scale), labels)
    # row 0: cosines (1, 0, 0); row 1: (s, s, 0) with s = 1/sqrt(2); row 2: (0, 0, 1), intended class 0.
    s = 2**-0.5
    expected = [
        math.exp(10) / (math.exp(10) + 2),
        math.exp(10 * s) / (2 * math.exp(10 * s) + 1),
        1 / (math.exp(10) + 2),
    ]
    torch.testing.assert_close(scores, torch.tensor(expected))


def test_threshold_defaults_to_one_over_k():
    assert resolve_threshold(None, 4) == 0.25
    assert resolve_threshold(0.7, 4) == 0.7


def test_select_keeps_exactly_scores_at_or_above_threshold():
    scores = torch.tensor([0.2, 0.25, 0.9, 0.5, 0.249, 0.25])
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    kept = select(scores, labels, threshold=0.25, keep_per_class=None, keep_mode="random", seed=0)
    assert kept.dtype == torch.int64
    assert kept.tolist() == [1, 2, 3, 5]


def test_select_top_keeps_most_confident_per_class_ties_to_earlier_row():
    scores = torch.tensor([0.5, 0.9, 0.7, 0.7, 0.1, 0.8, 0.6, 0.95])
    labels = torch.tensor([0, 0, 0, 0, 0, 1, 1, 1])
    kept = select(scores, labels, threshold=0.3, keep_per_class=2, keep_mode="top", seed=0)
    # class 0 passing: rows 0..3; top two are 1 (0.9) and 2 (0.7, earlier than row 3); class 1: 7, 5.
    assert kept.tolist() == [1, 2, 5, 7]


def test_select_random_is_seeded_capped_and_among_passing():
    gen = torch.Generator().manual_seed(3)
    scores = torch.rand(200, generator=gen)
    labels = torch.arange(200) % 4
    args = {"threshold": 0.25, "keep_per_class": 10, "keep_mode": "random"}
    kept = select(scores, labels, seed=7, **args)
    assert torch.equal(kept, select(scores, labels, seed=7, **args))
    assert not torch.equal(kept, select(scores, labels, seed=8, **args))
    assert torch.all(scores[kept] >= 0.25)
    assert torch.bincount(labels[kept], minlength=4).tolist() == [10, 10, 10, 10]
    assert torch.equal(kept, kept.sort().values)
    # random is not top: the draw includes passing images that are not among the ten best.
    top = select(scores, labels, seed=7, **{**args, "keep_mode": "top"})
    assert not torch.equal(kept, top)


def test_select_keeps_all_passing_when_fewer_than_cap():
    scores = torch.tensor([0.9, 0.1, 0.8])
    labels = torch.tensor([0, 0, 1])
    kept = select(scores, labels, threshold=0.5, keep_per_class=5, keep_mode="random", seed=0)
    assert kept.tolist() == [0, 2]


def test_select_rejects_unknown_mode():
    with pytest.raises(ValueError, match="keep_mode"):
        labels = torch.zeros(2, dtype=torch.long)
        select(torch.ones(2), labels, threshold=0.5, keep_per_class=1, keep_mode="best", seed=0)


def test_teacher_logits_are_scaled_cosines_of_kept_rows():
    feats = F.normalize(torch.randn(6, 3, generator=torch.Generator().manual_seed(0)), dim=-1)
    weight = F.normalize(torch.randn(4, 3, generator=torch.Generator().manual_seed(1)), dim=-1)
    kept = torch.tensor([1, 4, 5])
    teacher = teacher_logits(feats, weight, 50.0, kept)
    assert teacher.shape == (3, 4)
    torch.testing.assert_close(teacher, 50.0 * feats[kept] @ weight.T)


def test_class_stats_counts_add_up_and_name_confusions():
    # Six images of class 0: CLIP predicts 0, 2, 2, 1, 2, 1; two of class 1, predicted 1; class 2 has none.
    predicted = torch.tensor([0, 2, 2, 1, 2, 1, 1, 1])
    labels = torch.tensor([0, 0, 0, 0, 0, 0, 1, 1])
    onehot = F.one_hot(predicted, 3).float()
    probs = onehot * 0.8 + (1 - onehot) * 0.1  # rows sum to 1
    kept = torch.tensor([0, 6, 7])
    stats = class_stats(probs, labels, kept, ["a", "b", "c"])
    assert [s["generated"] for s in stats] == [6, 2, 0]
    assert [s["kept"] for s in stats] == [1, 2, 0]
    assert sum(s["generated"] for s in stats) == len(labels)
    assert sum(s["kept"] for s in stats) == len(kept)
    assert stats[0]["most_confused"] == [
        {"class_index": 2, "class_name": "c", "count": 3},
        {"class_index": 1, "class_name": "b", "count": 2},
    ]
    assert stats[1]["most_confused"] == []
    assert stats[2]["mean_confidence"] is None
    torch.testing.assert_close(torch.tensor(stats[1]["mean_confidence"]), torch.tensor(0.8))


# ----------------------------------------------------------------------------- stage on tiny generated images

NUM_CLASSES = 10
PER_CLASS = 3


@pytest.fixture(scope="module")
def run_root(tiny_images):
    """A tiny run with generated images under ``<root>/images`` (prompts B, tiny-sd, cifar10)."""
    return tiny_images(PER_CLASS)


@pytest.fixture
def run_filter(run_root, tiny_config):
    """``run_filter(out, *overrides)`` -> (config, result, selection tensors) of the stage on ``run_root``."""

    def run(out, *overrides):
        cfg = tiny_config(run_root, PER_CLASS, *overrides)
        result = filter_stage.run(cfg, images=str(run_root / "images"), out=str(run_root / out), progress=False)
        return cfg, result, load(storage.get_bytes(result.selection))

    return run


def test_run_keeps_exactly_the_confident_images(run_root, run_filter):
    cfg, result, sel = run_filter("filter-default")
    # Recompute the scores from the cached features and a fresh text head.
    clip = load_clip(cfg.models.clip, seed=cfg.seed)
    fs = synthetic_features(cfg, str(run_root / "images"), bundle=clip, progress=False)
    assert fs.from_cache  # the stage encoded the images into the cache
    info = datasets.get("cifar10")
    weight = text_head(clip, info.classes, info.templates)
    expected = confidences(class_probabilities(fs.features, weight, clip.logit_scale), fs.labels)
    torch.testing.assert_close(sel["scores"], expected)
    assert result.threshold == pytest.approx(1 / NUM_CLASSES)
    assert sel["kept"].tolist() == (sel["scores"] >= 1 / NUM_CLASSES).nonzero().flatten().tolist()
    assert 0 < result.kept < result.generated == NUM_CLASSES * PER_CLASS
    torch.testing.assert_close(
        sel["teacher_logits"], clip.logit_scale * fs.features[sel["kept"]] @ weight.T, rtol=1e-5, atol=1e-4
    )
    stats = storage.get_json(result.stats)["classes"]
    assert sum(s["generated"] for s in stats) == result.generated
    assert sum(s["kept"] for s in stats) == result.kept == len(sel["kept"])
    manifest = storage.get_json(result.manifest)
    assert manifest["counts"] == {"generated": result.generated, "kept": result.kept}


def test_run_with_filter_disabled_keeps_all(run_filter):
    _, result, sel = run_filter("filter-off", "filter.enabled=false")
    n = NUM_CLASSES * PER_CLASS
    assert result.kept == n and result.threshold is None
    assert sel["kept"].tolist() == list(range(n))
    assert sel["teacher_logits"].shape == (n, NUM_CLASSES)


def test_run_keep_per_class_top_and_random(run_filter):
    args = ("filter.threshold=0", "filter.keep_per_class=1")
    _, _, top = run_filter("filter-top", *args, "filter.keep_mode=top")
    labels = torch.arange(NUM_CLASSES).repeat_interleave(PER_CLASS)  # images come in class order
    assert labels[top["kept"]].tolist() == list(range(NUM_CLASSES))
    best = top["scores"].view(NUM_CLASSES, PER_CLASS).argmax(dim=1) + torch.arange(NUM_CLASSES) * PER_CLASS
    assert top["kept"].tolist() == best.tolist()
    _, first, rand = run_filter("filter-rand-1", *args, "filter.keep_mode=random")
    _, second, _ = run_filter("filter-rand-2", *args, "filter.keep_mode=random")
    assert labels[rand["kept"]].tolist() == list(range(NUM_CLASSES))
    assert storage.get_bytes(first.selection) == storage.get_bytes(second.selection)


def test_run_refuses_images_of_another_dataset(run_filter):
    with pytest.raises(UsageError, match="generated for cifar10, not eurosat"):
        run_filter("filter-wrong", "dataset.name=eurosat")
