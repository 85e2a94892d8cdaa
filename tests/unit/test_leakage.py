"""Leakage check: a planted copy of a test image is found; distinct drawn images pair with nothing."""

import io

import numpy as np
import pytest
import torch
from PIL import Image

from synk8s import datasets, neardup, storage
from synk8s.stages.zeroshot import features, leakage

pytestmark = pytest.mark.timeout(90)


@pytest.fixture(scope="module")
def drawn(tmp_path_factory):
    """The drawn stand-in's CIFAR-10 test images: 4 per class, distinct drawings."""
    root = tmp_path_factory.mktemp("standin")
    datasets.write_standin("cifar10", root, per_class=4, splits=["test"])
    return [image for image, _ in datasets.load("cifar10", "test", str(root))]


def _jpeg(image, size):
    buf = io.BytesIO()
    image.resize((size, size), Image.Resampling.BICUBIC).save(buf, format="JPEG", quality=75)
    return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")


def test_a_planted_test_image_is_found_and_distinct_drawings_are_not(drawn):
    test, others = drawn[:20], drawn[20:]
    planted = _jpeg(test[7], 64)  # re-encoded and upsized, as a generator output would be
    synthetic = [*others[:5], planted, *others[5:]]
    pairs = neardup.hash_pairs(neardup.dhash_all(synthetic), neardup.dhash_all(test), max_distance=4)
    assert pairs and pairs[0][:2] == (5, 7)
    assert {(i, j) for i, j, _ in pairs} == {(5, 7)}


def test_hamming_counts_differing_bits():
    a = np.array([0, 2**64 - 1], dtype=np.uint64)
    b = np.array([0, 1, 2**63], dtype=np.uint64)
    assert neardup.hamming(a, b).tolist() == [[0, 1, 1], [64, 63, 63]]


def test_cosine_pairs_and_closest_pairs():
    a = torch.nn.functional.normalize(torch.tensor([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0]]), dim=1)
    b = torch.nn.functional.normalize(torch.tensor([[0.0, 1.0], [1.0, 0.01]]), dim=1)
    assert [(i, j) for i, j, _ in neardup.cosine_pairs(a, b, threshold=0.95)] == [(2, 0), (0, 1)]
    assert [(i, j) for i, j, _ in neardup.closest(a, b, 2)] == [(2, 0), (0, 1)]
    kept = torch.tensor([0, 2, 5, 9])
    assert leakage.without_flagged(kept, [2, 9]).tolist() == [0, 5]


def test_the_stage_writes_flags_pairs_stats_and_a_grid(tmp_path, tiny_images, tiny_config):
    root = tiny_images(1)
    cfg = tiny_config(root, 1, "leakage.grid_pairs=3")
    feats = str(tmp_path / "features")
    features.run(cfg, images=str(root / "images"), out=feats, progress=False)
    out = str(tmp_path / "leakage")
    result = leakage.run(cfg, images=str(root / "images"), features=feats, out=out)
    assert (result.synthetic, result.test) == (10, 80)
    pairs = storage.get_json(f"{out}/pairs.json")
    assert pairs["clip_total"] == result.clip_pairs == len(pairs["clip"])
    assert leakage.load_flagged(out) == sorted({p[0] for p in pairs["clip"] + pairs["hash"]})
    stats = storage.get_json(f"{out}/stats.json")
    assert sum(s["images"] for s in stats.values()) == 10
    assert sum(s["flagged"] for s in stats.values()) == result.flagged
    grid = Image.open(io.BytesIO(storage.get_bytes(f"{out}/grid.png")))
    assert grid.size[1] == 3 * (leakage.THUMB + 8)
    # Every pair is above a cosine of -1: all 10 x 80 pairs, every synthetic image flagged.
    loose = leakage.run(tiny_config(root, 1, "leakage.clip_threshold=-1.0"), images=str(root / "images"),
                        features=feats, out=str(tmp_path / "loose"))
    assert (loose.clip_pairs, loose.flagged) == (800, 10)
