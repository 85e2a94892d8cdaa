"""Feature speed switches: decoding on DataLoader workers gives the same features; bfloat16 runs on a CPU."""

import pytest
import torch

from synk8s.stages.zeroshot import feature_cache, feature_sets, features

pytestmark = pytest.mark.timeout(60)

PER_CLASS = 3  # 30 images: batches of 4 leave a short last batch, so worker hand-off order is exercised


def _cfg(tiny_config, root, *overrides):
    return tiny_config(root, PER_CLASS, "features.batch_size=4", f"store.root={root}/store-{len(overrides)}",
                       *overrides)


def test_decoding_on_workers_gives_the_same_features_keys_and_labels(tiny_images, tiny_config, tmp_path):
    images = str(tiny_images(PER_CLASS) / "images")
    inline = features.synthetic_features(_cfg(tiny_config, tmp_path / "a"), images, progress=False)
    on_workers = features.synthetic_features(
        _cfg(tiny_config, tmp_path / "b", "features.workers=2"), images, progress=False
    )
    assert not inline.from_cache and not on_workers.from_cache  # each encoded into its own store
    assert inline.features.shape == (30, 32) and len(inline.sample_keys) == 30
    assert torch.equal(inline.features, on_workers.features)
    assert inline.sample_keys == on_workers.sample_keys and torch.equal(inline.labels, on_workers.labels)
    assert inline.key == on_workers.key  # the worker count is no part of the cache key


def test_real_images_decode_on_workers_too(tiny_images, tiny_config, tmp_path):
    cfg = _cfg(tiny_config, tmp_path / "a")
    inline = feature_sets.real_features(cfg, "test", progress=False)
    on_workers = feature_sets.real_features(_cfg(tiny_config, tmp_path / "b", "features.workers=2"), "test", progress=False)
    assert len(inline.labels) > 4 and torch.equal(inline.features, on_workers.features)


def test_bfloat16_encodes_on_a_cpu_into_its_own_cache_entry(tiny_images, tiny_config, tmp_path):
    images = str(tiny_images(PER_CLASS) / "images")
    cfg32 = _cfg(tiny_config, tmp_path, "features.dtype=float32")
    cfg16 = _cfg(tiny_config, tmp_path, "features.dtype=bfloat16")
    assert feature_cache.compute_dtype(cfg16, "cpu") == torch.bfloat16
    full = features.synthetic_features(cfg32, images, progress=False)
    half = features.synthetic_features(cfg16, images, progress=False)
    assert half.key != full.key and not half.from_cache
    assert half.features.dtype == torch.float32 and half.features.shape == full.features.shape
    # bfloat16 keeps about 3 significant digits: close to, but not the same as, float32.
    assert not torch.equal(half.features, full.features)
    assert torch.allclose(half.features, full.features, atol=0.05)


def test_workers_stream_tars_from_s3_in_batch_order(s3_env):
    from torchvision.transforms import functional as TF

    from synk8s.datasets.drawn_images import write_drawn_images
    from synk8s.shards import iter_samples
    from synk8s.stages.zeroshot.feature_workers import preprocessed_batches

    images = f"{s3_env}/images"
    write_drawn_images(images, classes=3, per_class=5, seed=0, size=32, samples_per_tar=4)  # 15 images, 4 tars

    def samples():
        for key, image, meta in iter_samples(images, lazy=True):
            yield key, image, int(meta["class_index"])

    inline = list(preprocessed_batches(samples, TF.to_tensor, batch_size=2, workers=0))
    on_workers = list(preprocessed_batches(samples, TF.to_tensor, batch_size=2, workers=2))
    assert [len(labels) for _, _, labels in on_workers] == [2] * 7 + [1]
    assert [keys for _, keys, _ in on_workers] == [keys for _, keys, _ in inline]
    assert all(torch.equal(a[0], b[0]) for a, b in zip(inline, on_workers, strict=True))
