"""Damaged shards in a local folder and on S3: caught while they stream, before any output is written.

One tiny generation (20 images in tars of 8, 8 and 4) is made once; each test works on a copy.
"""

import io
import os
import random
import shutil
import tarfile
from pathlib import Path

import pytest

from synk8s import config, shards, storage
from synk8s.errors import IntegrityError, MissingDataError, UsageError
from synk8s.models import load_clip
from synk8s.stages.synth import generate, prompts
from synk8s.stages.zeroshot import feature_cache, features
from synk8s.stages.zeroshot import filter as filter_stage

pytestmark = pytest.mark.timeout(120)

IMAGES = 20  # 10 classes x 2
PER_TAR = 8
TARS = ("shard-0000-of-0001/00000.tar", "shard-0000-of-0001/00001.tar", "shard-0000-of-0001/00002.tar")


def _cfg(root) -> config.ExperimentConfig:
    return config.load(
        "tiny",
        [
            "dataset.name=cifar10",
            "prompts.mode=B",
            "generate.images_per_class=2",
            f"generate.samples_per_tar={PER_TAR}",
            "generate.num_shards=1",
            f"store.root={root}/store",
        ],
    )


@pytest.fixture(scope="module")
def made(tmp_path_factory) -> Path:
    """A collected tiny generation under ``<root>/images``, never modified by the tests."""
    root = tmp_path_factory.mktemp("made")
    cfg = _cfg(root)
    prompts.run(cfg, out=str(root / "prompts"))
    generate.run(cfg, prompts=str(root / "prompts"), out=str(root / "images"))
    generate.collect(cfg, out=str(root / "images"))
    return root


@pytest.fixture(scope="module")
def clip():
    return load_clip("tiny-clip", seed=0)


@pytest.fixture(params=["local", "s3"])
def images(request, made, tmp_path) -> str:
    """A fresh copy of the collected generation: a local folder, or a prefix on the test S3 server."""
    src = str(made / "images")
    dst = str(tmp_path / "images") if request.param == "local" else request.getfixturevalue("s3_env") + "/images"
    for obj in storage.list(src):
        storage.copy(obj.uri, storage.join(dst, os.path.relpath(obj.uri, src)))
    return dst


def original(made: Path, name: str) -> bytes:
    return (made / "images" / name).read_bytes()


def member_offset(data: bytes, member: int, into: int = 0) -> int:
    """Byte offset of the ``member``-th tar member's header (or ``into`` bytes into its content)."""
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        info = tar.getmembers()[member]
    return info.offset_data + into if into else info.offset


def damage(data: bytes, how: str) -> bytes:
    if how == "cut-at-member-boundary":  # keeps 3 whole samples (png + json each)
        return data[: member_offset(data, 6)]
    if how == "cut-mid-member":
        return data[: member_offset(data, 6, into=40)]
    if how == "random-bytes":
        return random.Random(0).randbytes(len(data))
    if how == "padding-flipped":  # after the end-of-archive marker: tarfile never notices
        return data[:-1] + b"\x01"
    raise ValueError(how)


def overwrite_outside(uri: str, data: bytes) -> None:
    """Replace an object as another program would: a plain file write, or an S3 PUT without synk8s metadata."""
    if storage.is_remote(uri):
        bucket, key = uri[len("s3://") :].split("/", 1)
        client = storage.s3.store().client
        client.put_object(bucket_name=bucket, object_name=key, data=io.BytesIO(data), length=len(data))
    else:
        Path(uri).write_bytes(data)


@pytest.mark.parametrize("how", ["cut-at-member-boundary", "cut-mid-member", "random-bytes", "padding-flipped"])
def test_every_kind_of_damage_is_one_integrity_error(images, made, how):
    uri = storage.join(images, TARS[1])
    overwrite_outside(uri, damage(original(made, TARS[1]), how))
    seen = []
    with pytest.raises(IntegrityError) as err:
        for key, _image, _meta in shards.iter_samples(images):
            seen.append(key)
    message = str(err.value)
    assert message.startswith(uri + " ") and "\n" not in message and "synk8s stage generate" in message
    assert len(seen) < IMAGES and len(seen) < PER_TAR * 2  # never the last sample of the damaged tar
    with pytest.raises(IntegrityError, match="listed by shard 0") as err:
        generate.collect(_cfg(made), out=images)
    assert "--shard 0 --num-shards 1" in str(err.value)


def test_a_damaged_tar_never_reaches_features_filter_or_the_cache(images, made, clip, tmp_path):
    cfg = _cfg(tmp_path)
    cache = storage.join(cfg.store.root, *feature_cache.CACHE_DIR)
    uri = storage.join(images, TARS[1])
    overwrite_outside(uri, damage(original(made, TARS[1]), "cut-at-member-boundary"))
    with pytest.raises(IntegrityError, match="holds 3 samples, but 8 were recorded|has SHA-256"):
        features.synthetic_features(cfg, images, bundle=clip, progress=False)
    with pytest.raises(IntegrityError):
        filter_stage.run(cfg, images=images, out=str(tmp_path / "filter"), progress=False)
    assert storage.list(cache) == [] and storage.list(str(tmp_path / "filter")) == []

    overwrite_outside(uri, original(made, TARS[1]))  # restored: the full set is encoded and cached
    fs = features.synthetic_features(cfg, images, bundle=clip, progress=False)
    assert len(fs.labels) == len(fs.sample_keys) == IMAGES and not fs.from_cache
    result = filter_stage.run(cfg, images=images, out=str(tmp_path / "filter"), progress=False)
    assert result.generated == IMAGES


def test_a_short_or_cut_cache_entry_is_encoded_again(made, clip, tmp_path):
    from safetensors.torch import load, save

    cfg = _cfg(tmp_path)
    images = str(made / "images")
    first = features.synthetic_features(cfg, images, bundle=clip, progress=False)
    short = {name: t[:5].contiguous() for name, t in load(storage.get_bytes(first.uri)).items()}
    storage.put_bytes(first.uri, save(short, metadata={"key": first.key}))
    again = features.synthetic_features(cfg, images, bundle=clip, progress=False)
    assert not again.from_cache and len(again.labels) == IMAGES
    assert len(load(storage.get_bytes(first.uri))["labels"]) == IMAGES
    storage.put_bytes(first.uri, storage.get_bytes(first.uri)[:100])  # a cut entry is a miss, not a traceback
    third = features.synthetic_features(cfg, images, bundle=clip, progress=False)
    assert not third.from_cache and len(load(storage.get_bytes(first.uri))["labels"]) == IMAGES


def test_limited_reads_still_check_the_whole_tar(images, made):
    assert len(list(shards.iter_samples(images, limit=3))) == 3
    overwrite_outside(storage.join(images, TARS[0]), damage(original(made, TARS[0]), "padding-flipped"))
    with pytest.raises(IntegrityError, match="has SHA-256"):
        list(shards.iter_samples(images, limit=3))


def test_a_replaced_object_is_caught_even_with_identical_bytes_missing_only_their_hash(s3_env, made):
    images = s3_env + "/images"
    src = str(made / "images")
    for obj in storage.list(src):
        storage.copy(obj.uri, storage.join(images, os.path.relpath(obj.uri, src)))
    uri = storage.join(images, TARS[2])
    overwrite_outside(uri, original(made, TARS[2]))  # same bytes, no sha256 metadata: read and hashed
    assert storage.stat(uri).sha256 is None
    assert generate.collect(_cfg(made), out=images).images == IMAGES
    overwrite_outside(uri, damage(original(made, TARS[2]), "cut-at-member-boundary"))
    with pytest.raises(IntegrityError, match="listed by shard 0, has SHA-256"):
        generate.collect(_cfg(made), out=images)


def test_a_manifest_without_hashes_is_refused(tmp_path, made):
    images = tmp_path / "images"
    shutil.copytree(made / "images", images)
    manifest = storage.get_json(str(images / "manifest.json"))
    del manifest["tars"][0]["sha256"]
    storage.put_json(str(images / "manifest.json"), manifest)
    with pytest.raises(IntegrityError, match="without its SHA-256"):
        next(shards.iter_samples(str(images)))
    shard_manifest = storage.get_json(str(images / "shard-0000-of-0001.json"))
    del shard_manifest["tars"][1]["sha256"]
    storage.put_json(str(images / "shard-0000-of-0001.json"), shard_manifest)
    with pytest.raises(IntegrityError, match="00001.tar, listed by shard 0, has no recorded SHA-256"):
        generate.collect(_cfg(made), out=str(images))


def test_collect_refuses_zero_shards(made):
    with pytest.raises(UsageError, match=r"--num-shards \(generate.num_shards\) must be at least 1, got 0"):
        generate.collect(_cfg(made), out=str(made / "images"), num_shards=0)


def test_a_rerun_of_generate_repairs_damaged_and_missing_tars(images, made, caplog):
    cfg = _cfg(made)
    overwrite_outside(storage.join(images, TARS[0]), damage(original(made, TARS[0]), "cut-mid-member"))
    storage.delete(storage.join(images, TARS[2]))
    with pytest.raises(IntegrityError, match="00000.tar, listed by shard 0, "):
        generate.collect(cfg, out=images)
    storage.put_bytes(storage.join(images, TARS[0]), original(made, TARS[0]))
    with pytest.raises(MissingDataError, match="00002.tar, listed by shard 0, is missing"):
        generate.collect(cfg, out=images)
    overwrite_outside(storage.join(images, TARS[0]), damage(original(made, TARS[0]), "cut-mid-member"))

    result = generate.run(cfg, prompts=str(made / "prompts"), out=images)
    assert (result.generated, result.skipped_tars) == (PER_TAR + 4, 1)
    assert f"{storage.join(images, TARS[0])} " in caplog.text and "generating it again" in caplog.text
    for name in TARS:  # byte-identical to the first run
        assert storage.get_bytes(storage.join(images, name)) == original(made, name)
    assert generate.collect(cfg, out=images).images == IMAGES
    assert len([key for key, _, _ in shards.iter_samples(images)]) == IMAGES
    again = generate.run(cfg, prompts=str(made / "prompts"), out=images)
    assert (again.generated, again.skipped_tars) == (0, len(TARS))
