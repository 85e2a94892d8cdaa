"""ensure_dataset: copies from an S3 prefix once, downloads or draws a stand-in locally, one-line errors."""

import os

import pytest

from synk8s import config, datasets, mirror, realdata, storage
from synk8s.errors import MissingDataError

pytestmark = pytest.mark.timeout(40)

NAME = "cifar10"
BASE = datasets.get(NAME).base_dir


def cfg_for(tmp_path, root, *overrides):
    return config.load(
        "tiny",
        [
            f"dataset.name={NAME}",
            f"dataset.root={root}",
            "dataset.standin_per_class=1",
            f"store.root={tmp_path}/store",
            *overrides,
        ],
    )


def mtimes(folder):
    return {p: p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()}


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    folder = tmp_path / "cache"
    monkeypatch.setenv(realdata.DATA_CACHE_DIR_ENV, str(folder))
    return folder


@pytest.fixture
def s3_standin(s3_env, tmp_path):
    """A cifar10 stand-in uploaded to ``<bucket>/datasets/cifar10``, its local copy deleted; yields (prefix, labels)."""
    local = tmp_path / "upload" / NAME
    datasets.write_standin(NAME, local, per_class=1, seed=3)
    labels = list(datasets.load(NAME, "test", local).labels)
    prefix = storage.join(s3_env, "datasets", NAME)
    for obj in storage.list(str(local)):
        storage.copy(obj.uri, storage.join(prefix, obj.uri[len(str(local)) + 1 :]))
    for obj in storage.list(str(local)):
        os.remove(obj.uri)
    assert not storage.list(str(local))
    return prefix, labels


# ----------------------------------------------------------------------------- S3 root


def test_s3_root_is_copied_once_and_loads(tmp_path, cache_dir, s3_standin):
    prefix, labels = s3_standin
    cfg = cfg_for(tmp_path, f"{prefix.rsplit('/', 1)[0]}/{{name}}", "dataset.standin=false")
    root = realdata.ensure_dataset(cfg)
    assert root == str(realdata.local_root(prefix)) and root.startswith(str(cache_dir))
    assert list(datasets.load(NAME, "test", root).labels) == labels
    assert datasets.is_standin(root)  # the marker beside the dataset folder came along
    assert mirror.is_complete(realdata.local_root(prefix) / BASE)
    before = mtimes(cache_dir)

    # A complete copy is reused without reading the store: a deleted remote object does not matter.
    storage.delete(storage.join(prefix, BASE, "test_batch"))
    assert realdata.ensure_dataset(cfg) == root
    assert mtimes(cache_dir) == before


def test_s3_copy_missing_a_file_is_copied_again(tmp_path, cache_dir, s3_standin):
    prefix, labels = s3_standin
    cfg = cfg_for(tmp_path, prefix, "dataset.standin=false")
    root = realdata.ensure_dataset(cfg)
    (realdata.local_root(prefix) / BASE / "test_batch").unlink()
    assert realdata.ensure_dataset(cfg) == root
    assert list(datasets.load(NAME, "test", root).labels) == labels
    assert not list(cache_dir.glob(".*partial*")) and not list(cache_dir.rglob(".*stale*"))


def test_empty_s3_prefix_says_how_to_upload(tmp_path, cache_dir, s3_env):
    cfg = cfg_for(tmp_path, f"{s3_env}/datasets/{{name}}")
    with pytest.raises(MissingDataError, match=r"no cifar10 data under s3://.*synk8s store cp") as info:
        realdata.ensure_dataset(cfg)
    assert "\n" not in str(info.value) and "stand-in is written only under a local" in str(info.value)
    assert not cache_dir.exists() or not any(cache_dir.rglob("*"))


def test_unwritable_cache_dir_is_one_line(tmp_path, monkeypatch, s3_standin):
    prefix, _ = s3_standin
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    monkeypatch.setenv(realdata.DATA_CACHE_DIR_ENV, str(blocker))
    with pytest.raises(MissingDataError, match=realdata.DATA_CACHE_DIR_ENV) as info:
        realdata.ensure_dataset(cfg_for(tmp_path, prefix, "dataset.standin=false"))
    assert "\n" not in str(info.value) and str(blocker) in str(info.value)


def test_local_roots_get_their_own_cache_folders(cache_dir):
    a, b = realdata.local_root("s3://b/data/x"), realdata.local_root("s3://b/data_x")
    assert a != b and a.parent == b.parent == cache_dir
    assert a.name.startswith("s3_b_data_x-") and realdata.local_root("s3://b/data/x/") == a


# ----------------------------------------------------------------------------- local root


@pytest.mark.parametrize("standin", ["true", "false"])
def test_root_that_is_a_file_is_one_line(tmp_path, standin):
    path = tmp_path / "data.tar"
    path.write_bytes(b"not a folder")
    with pytest.raises(MissingDataError, match="is a file, not a folder") as info:
        realdata.ensure_dataset(cfg_for(tmp_path, str(path), f"dataset.standin={standin}"))
    assert "\n" not in str(info.value) and str(path) in str(info.value)
    assert path.read_bytes() == b"not a folder"


def test_unwritable_root_is_one_line(tmp_path):
    (tmp_path / "file").write_text("x")
    root = tmp_path / "file" / "below"  # a folder below a file can never be created
    with pytest.raises(MissingDataError, match="cannot prepare cifar10 data under") as info:
        realdata.ensure_dataset(cfg_for(tmp_path, str(root)))
    assert "\n" not in str(info.value) and "writable" in str(info.value)


def test_manual_dataset_without_standin_gives_the_download_error(tmp_path):
    cfg = cfg_for(tmp_path, f"{tmp_path}/data/{{name}}", "dataset.name=imagenet", "dataset.standin=false")
    with pytest.raises(MissingDataError, match="imagenet cannot be downloaded automatically") as info:
        realdata.ensure_dataset(cfg)
    assert "\n" not in str(info.value) and "image-net.org" in str(info.value)
    assert not (tmp_path / "data").exists()


def test_absent_data_with_standin_draws_it(tmp_path):
    root = realdata.ensure_dataset(cfg_for(tmp_path, f"{tmp_path}/data/{{name}}"))
    assert root == f"{tmp_path}/data/{NAME}" and datasets.is_standin(root)
    assert len(datasets.load(NAME, "test", root)) == 10
    files = mtimes(tmp_path / "data")
    assert realdata.ensure_dataset(cfg_for(tmp_path, f"{tmp_path}/data/{{name}}")) == root
    assert mtimes(tmp_path / "data") == files
