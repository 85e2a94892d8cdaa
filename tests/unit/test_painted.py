"""The tiny profile's signal models: the standin-drawn painter and the mean-pooled tiny CLIP."""

import zlib

import numpy as np
import pytest
import torch
from PIL import Image

from synk8s import config, shards
from synk8s.datasets.drawing import DomainShift, Painter, draw
from synk8s.errors import UsageError
from synk8s.models import load_clip, load_generator
from synk8s.models.painted import MODEL_ID, REVISION
from synk8s.models.pull import pull
from synk8s.stages.synth import generate, prompts
from synk8s.stages.synth.generate_speed import apply_switches

pytestmark = pytest.mark.timeout(120)

CLASSES = 20


def _generators(*seeds: int) -> list[torch.Generator]:
    return [torch.Generator().manual_seed(s) for s in seeds]


def _paint(labels, seeds, size=32):
    pipe = load_generator("standin-drawn")
    images = pipe(["a photo"] * len(labels), class_labels=labels, generator=_generators(*seeds), height=size, width=size)
    return [np.asarray(im) for im in images.images]


def test_painted_images_depend_only_on_class_and_seed():
    first, again, other_seed, other_class = _paint([3, 3, 3, 4], [7, 7, 8, 7])
    assert first.shape == (32, 32, 3) and first.dtype == np.uint8
    assert np.array_equal(first, again)
    assert not np.array_equal(first, other_seed) and not np.array_equal(first, other_class)


def test_the_domain_shift_moves_palette_scale_and_noise_away_from_the_real_stand_in():
    def rng():
        return np.random.default_rng((0, 5, zlib.crc32(b"train"), 0))

    real, shifted = draw(5, rng(), 32), draw(5, rng(), 32, DomainShift())
    assert np.array_equal(real, Painter(0, 32)(5, "train", 0))  # no shift: the stand-in's own image
    assert np.abs(real.astype(float) - shifted.astype(float)).mean() > 10  # levels


def test_img2img_blends_the_real_image_toward_the_painted_one_by_the_strength():
    pipe = load_generator("standin-drawn", img2img=True)
    start = Image.fromarray(Painter(0, 32)(2, "train", 0))
    painted = _paint([2], [11])[0].astype(float)
    for strength in (0.15, 0.5, 1.0):
        out = pipe(["x"], image=[start], strength=strength, class_labels=[2], generator=_generators(11)).images[0]
        expected = (1 - strength) * np.asarray(start, dtype=float) + strength * painted
        assert np.abs(np.asarray(out, dtype=float) - expected).max() <= 0.5 + 1e-9  # rounded to a level
    with pytest.raises(UsageError, match="strength in"):
        pipe(["x"], image=[start], strength=0.0, class_labels=[2], generator=_generators(1))


def test_bad_calls_switches_and_pulls_are_refused_in_one_line(tmp_path):
    pipe = load_generator("standin-drawn")
    with pytest.raises(UsageError, match="one class label and generator per prompt"):
        pipe(["a", "b"], class_labels=[1], generator=_generators(1, 2), height=32, width=32)
    with pytest.raises(UsageError, match="square"):
        pipe(["a"], class_labels=[1], generator=_generators(1), height=32, width=16)
    with pytest.raises(UsageError, match="generate.channels_last applies to diffusion pipelines"):
        apply_switches(pipe, config.load("tiny", ["generate.channels_last=true"]).generate)
    assert apply_switches(pipe, config.load("tiny").generate)["scheduler"] == "PaintOnce"
    with pytest.raises(UsageError, match="nothing to pull"):
        pull("standin-drawn", str(tmp_path / "cache"))


def test_generate_paints_each_images_class_and_records_the_painter(tmp_path):
    cfg = config.load(
        "tiny",
        ["dataset.name=cifar10", "prompts.mode=B", "generate.images_per_class=2", "generate.num_shards=1"],
    )
    prompts.run(cfg, out=str(tmp_path / "prompts"))
    generate.run(cfg, prompts=str(tmp_path / "prompts"), out=str(tmp_path / "images"))
    generate.collect(cfg, out=str(tmp_path / "images"))
    samples = list(shards.iter_samples(str(tmp_path / "images")))
    assert len(samples) == 20
    for _key, image, meta in samples:
        assert (meta["generator"], meta["revision"], meta["scheduler"]) == (MODEL_ID, REVISION, "PaintOnce")
        assert np.array_equal(np.asarray(image), _paint([meta["class_index"]], [meta["seed"]])[0])


@pytest.fixture(scope="module")
def features():
    """Tiny CLIP features of painted images (train) and of the real stand-in's test images."""
    clip = load_clip("tiny-clip", seed=0)
    painted = _paint([c for c in range(CLASSES) for _ in range(8)], list(range(CLASSES * 8)))
    real = [Painter(0, 32)(c, "test", i) for c in range(CLASSES) for i in range(4)]

    def encode(arrays):
        return clip.encode_image(torch.stack([clip.preprocess(Image.fromarray(a)) for a in arrays]))

    train_labels = torch.arange(CLASSES).repeat_interleave(8)
    test_labels = torch.arange(CLASSES).repeat_interleave(4)
    return encode(painted), train_labels, encode(real), test_labels


def test_tiny_clip_features_of_different_images_differ(features):
    _, _, test, _ = features
    cosine = test @ test.T  # (N, N), features are L2-normalised
    n = len(test)
    mean = float((cosine.sum() - n) / (n * n - n))
    print(f"mean pairwise cosine of tiny CLIP test features: {mean:.3f}")
    assert mean < 0.5  # measured 0.2; a random ModifiedResNet tower gives 0.9999
    assert mean < float(_mean_cosine(load_clip("tiny-clip-rn", seed=0), features)) - 0.3


def _mean_cosine(clip, features) -> float:
    real = [Painter(0, 32)(c, "test", i) for c in range(CLASSES) for i in range(4)]
    feats = clip.encode_image(torch.stack([clip.preprocess(Image.fromarray(a)) for a in real]))
    n = len(feats)
    return float(((feats @ feats.T).sum() - n) / (n * n - n))


def test_a_linear_probe_on_painted_features_separates_the_real_stand_in_classes(features):
    train, train_labels, test, test_labels = features
    head = torch.nn.Linear(train.shape[1], CLASSES)
    opt = torch.optim.Adam(head.parameters(), lr=0.05)
    for _ in range(300):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(head(train * 10), train_labels).backward()
        opt.step()
    accuracy = float((head(test * 10).argmax(1) == test_labels).float().mean())
    print(f"linear probe, painted -> real stand-in, {CLASSES} classes: {accuracy:.3f}")
    assert accuracy > 0.5  # chance is 0.05
