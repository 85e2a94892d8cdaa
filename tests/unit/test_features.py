"""Features stage: cached CLIP features of tiny generated images and of the drawn stand-in test set."""

import dataclasses
import os

import pytest
import torch
from open_clip.transform import image_transform
from safetensors.torch import load
from torchvision.transforms import Compose

from synk8s import datasets, storage
from synk8s.errors import MissingDataError, UsageError
from synk8s.models import load_clip
from synk8s.realdata import ensure_dataset
from synk8s.shards import iter_samples
from synk8s.stages.zeroshot import feature_cache, feature_keys, feature_sets, features
from synk8s.zeroshot import text_head

pytestmark = pytest.mark.timeout(180)

NUM_CLASSES = 10
PER_CLASS = 2  # generated images per class
STANDIN_PER_CLASS = 2


@pytest.fixture(scope="module")
def tiny_cfg(tiny_config):
    """``tiny_cfg(root, *overrides)``: the tiny run's config with the drawn stand-in data under ``<root>/data``."""

    def make(root, *overrides):
        standin = (f"dataset.root={root}/data/{{name}}", f"dataset.standin_per_class={STANDIN_PER_CLASS}")
        return tiny_config(root, PER_CLASS, *standin, *overrides)

    return make


@pytest.fixture(scope="module")
def run_root(tiny_images):
    """A tiny run with generated images under ``<root>/images`` (prompts B, tiny-sd, cifar10)."""
    return tiny_images(PER_CLASS)


@pytest.fixture(scope="module")
def clip():
    return load_clip("tiny-clip", seed=0)


# ----------------------------------------------------------------------------- cache keys and dtype


def test_cache_key_changes_with_each_part(clip):
    base = feature_keys.key_parts(clip, "float32", {"kind": "synthetic", "tars": ["aa", "bb"]})
    key = feature_keys.cache_key(base)
    assert key == feature_keys.cache_key(dict(base))
    other_clip = load_clip("tiny-clip", seed=1)
    other_preprocess = dataclasses.replace(clip, preprocess=image_transform(48, is_train=False))
    variants = [
        feature_keys.key_parts(other_clip, "float32", base["data"]),
        feature_keys.key_parts(other_preprocess, "float32", base["data"]),
        feature_keys.key_parts(clip, "float16", base["data"]),
        feature_keys.key_parts(clip, "float32", {"kind": "synthetic", "tars": ["aa", "cc"]}),
    ]
    keys = {feature_keys.cache_key(v) for v in variants}
    assert len(keys) == 4 and key not in keys


def test_describe_preprocess_has_no_memory_addresses():
    def to_rgb(image):
        return image.convert("RGB")

    assert " at 0x" in repr(Compose([to_rgb]))
    text = feature_keys.describe_preprocess(Compose([to_rgb]))
    assert "0x" not in text and "to_rgb" in text


def test_half_precision_needs_cuda(tmp_path, tiny_cfg):
    assert feature_cache.compute_dtype(tiny_cfg(tmp_path), "cpu") == torch.float32
    with pytest.raises(UsageError, match="needs a CUDA device"):
        feature_cache.compute_dtype(tiny_cfg(tmp_path, "features.dtype=float16"), "cpu")


# ----------------------------------------------------------------------------- synthetic features


def test_synthetic_features_match_direct_encoding_in_manifest_order(run_root, clip, tiny_cfg):
    cfg = tiny_cfg(run_root)
    fs = features.synthetic_features(cfg, str(run_root / "images"), bundle=clip, progress=False)
    samples = list(iter_samples(str(run_root / "images")))
    assert fs.features.shape == (NUM_CLASSES * PER_CLASS, 32)
    assert fs.features.dtype == torch.float32 and fs.labels.dtype == torch.int64
    assert list(fs.sample_keys) == [key for key, _, _ in samples]
    assert fs.labels.tolist() == [meta["class_index"] for _, _, meta in samples]
    torch.testing.assert_close(fs.features.norm(dim=1), torch.ones(len(samples)))
    direct = clip.encode_image(torch.stack([clip.preprocess(img) for _, img, _ in samples[:3]]))
    torch.testing.assert_close(fs.features[:3], direct, rtol=1e-4, atol=1e-5)


def test_synthetic_features_are_cached(run_root, clip, tiny_cfg):
    cfg = tiny_cfg(run_root, "store.root=" + str(run_root / "cache-test"))
    images = str(run_root / "images")
    first = features.synthetic_features(cfg, images, bundle=clip, progress=False)
    assert not first.from_cache
    assert first.uri == f"{run_root}/cache-test/cache/features/{first.key}.safetensors"
    mtime = os.stat(first.uri).st_mtime_ns
    second = features.synthetic_features(cfg, images, bundle=clip, progress=False)
    assert second.from_cache and second.key == first.key
    assert os.stat(first.uri).st_mtime_ns == mtime
    torch.testing.assert_close(second.features, first.features)
    assert torch.equal(second.labels, first.labels) and second.sample_keys == first.sample_keys
    info = storage.get_json(first.uri.removesuffix(".safetensors") + ".json")
    assert info["parts"]["clip"] == clip.identity and info["count"] == NUM_CLASSES * PER_CLASS
    # Another CLIP model gets its own entry instead of the cached one.
    other = features.synthetic_features(cfg, images, bundle=load_clip("tiny-clip", seed=1), progress=False)
    assert not other.from_cache and other.key != first.key
    assert not torch.allclose(other.features, first.features)


def test_synthetic_features_need_a_collected_output(tmp_path, clip, tiny_cfg):
    with pytest.raises(MissingDataError, match="run `synk8s stage generate` first"):
        features.synthetic_features(tiny_cfg(tmp_path), str(tmp_path / "nothing"), bundle=clip)


def test_synthetic_features_through_s3(run_root, clip, s3_env, tiny_cfg):
    images = f"{s3_env}/run/images"
    local = str(run_root / "images")
    for obj in storage.list(local):
        storage.copy(obj.uri, storage.join(images, os.path.relpath(obj.uri, local)))
    cfg = tiny_cfg(run_root, f"store.root={s3_env}/store")
    fs = features.synthetic_features(cfg, images, bundle=clip, progress=False)
    assert fs.uri == f"{s3_env}/store/cache/features/{fs.key}.safetensors"
    assert storage.exists(fs.uri)
    local_fs = features.synthetic_features(tiny_cfg(run_root), local, bundle=clip, progress=False)
    assert fs.key == local_fs.key  # same images, same model: the key does not depend on where they are
    torch.testing.assert_close(fs.features, local_fs.features)
    again = features.synthetic_features(cfg, images, bundle=clip, progress=False)
    assert again.from_cache


# ----------------------------------------------------------------------------- real data


def test_real_features_write_the_standin_when_absent(tmp_path, clip, tiny_cfg):
    cfg = tiny_cfg(tmp_path)
    root = cfg.dataset.resolved_root()
    assert not os.path.exists(root)
    fs = feature_sets.real_features(cfg, "test", bundle=clip, progress=False)
    assert datasets.is_standin(root)
    assert fs.features.shape == (NUM_CLASSES * STANDIN_PER_CLASS, 32)
    assert fs.labels.tolist() == list(datasets.load("cifar10", "test", root).labels)
    assert torch.bincount(fs.labels).tolist() == [STANDIN_PER_CLASS] * NUM_CLASSES
    assert fs.sample_keys == ()
    # Other data (a bigger stand-in) gets another cache key.
    bigger = tiny_cfg(tmp_path, f"dataset.root={tmp_path}/data3/{{name}}", "dataset.standin_per_class=3")
    other = feature_sets.real_features(bigger, "test", bundle=clip, progress=False)
    assert other.key != fs.key and len(other.labels) == 3 * NUM_CLASSES


def test_ensure_dataset_does_not_overwrite_an_incomplete_dataset(tmp_path, tiny_cfg):
    cfg = tiny_cfg(tmp_path)
    base = os.path.join(cfg.dataset.resolved_root(), datasets.get("cifar10").base_dir)
    os.makedirs(base)
    with pytest.raises(MissingDataError):
        ensure_dataset(cfg)
    assert os.listdir(base) == []


# ----------------------------------------------------------------------------- stage


def test_run_writes_listing_text_head_and_reuses_the_cache(run_root, clip, tiny_cfg):
    cfg = tiny_cfg(run_root)
    out = str(run_root / "features-out")
    result = features.run(cfg, images=str(run_root / "images"), out=out, progress=False)
    assert result.synthetic == NUM_CLASSES * PER_CLASS
    assert result.test == NUM_CLASSES * STANDIN_PER_CLASS
    assert result.dim == 32
    listing = storage.get_json(result.features)
    assert set(listing) == {"synthetic", "test"}
    assert all(storage.exists(uri) for uri in listing.values())
    head = load(storage.get_bytes(result.text_head))
    info = datasets.get("cifar10")
    expected = clip.logit_scale * text_head(clip, info.classes, info.templates)
    torch.testing.assert_close(head["weight"], expected, rtol=1e-5, atol=1e-5)
    assert torch.equal(head["bias"], torch.zeros(NUM_CLASSES))
    manifest = storage.get_json(result.manifest)
    assert manifest["stage"] == "features"
    assert manifest["counts"]["synthetic"] == result.synthetic
    again = features.run(cfg, images=str(run_root / "images"), out=out, progress=False)
    assert again.cache_hits == 2
    assert storage.get_json(again.features) == listing
