"""A stand-in drawn with other settings is drawn again, one with the same settings is reused, real data is kept."""

import json
import logging
from collections import Counter

import pytest

from synk8s import config, datasets, realdata, storage
from synk8s.detection import voc_data
from synk8s.errors import UsageError

pytestmark = pytest.mark.timeout(60)

NAME = "cifar10"


def _cfg(tmp_path, root, per_class, *overrides):
    return config.load(
        "tiny",
        [
            f"dataset.name={NAME}",
            f"dataset.root={root}",
            f"dataset.standin_per_class={per_class}",
            f"store.root={tmp_path}/store",
            *overrides,
        ],
    )


def _mtimes(folder):
    return {p: p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()}


def _per_class(root, split="train"):
    return set(Counter(datasets.load(NAME, split, root).labels).values())


def test_the_marker_records_the_settings(tmp_path):
    datasets.write_standin(NAME, tmp_path, per_class=2, splits=["test"], seed=1, size=16)
    marker = json.loads((tmp_path / datasets.MARKER).read_text())
    assert marker["written"][NAME] == {"per_class": 2, "splits": ["test"], "seed": 1, "size": 16}
    assert "not a real dataset" in marker["note"]
    assert datasets.settings_changes(tmp_path, NAME, datasets.standin_settings(NAME, 2, ["test"], 1, 16)) == []
    assert datasets.settings_changes(tmp_path, NAME, datasets.standin_settings(NAME, 3, ["test"], 1, 16)) == [
        "per_class 2 -> 3"
    ]
    datasets.write_voc_standin(tmp_path, images=2, size=32)  # a second stand-in in the root keeps the first's entry
    written = json.loads((tmp_path / datasets.MARKER).read_text())["written"]
    assert written == {NAME: marker["written"][NAME], "voc": {"images": 2, "size": 32, "seed": 0}}


def test_other_settings_draw_the_standin_again_and_the_same_ones_reuse_it(tmp_path, caplog):
    root = f"{tmp_path}/data/{NAME}"
    assert realdata.ensure_dataset(_cfg(tmp_path, root, 2)) == root
    assert _per_class(root) == {2}

    with caplog.at_level(logging.WARNING, logger="synk8s.realdata"):
        assert realdata.ensure_dataset(_cfg(tmp_path, root, 3)) == root
    assert _per_class(root) == {3} and _per_class(root, "test") == {3}
    lines = [r.getMessage() for r in caplog.records if "drawing it again" in r.getMessage()]
    assert len(lines) == 1 and "per_class 2 -> 3" in lines[0]

    files = _mtimes(tmp_path / "data")
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="synk8s.realdata"):
        assert realdata.ensure_dataset(_cfg(tmp_path, root, 3)) == root
    assert _mtimes(tmp_path / "data") == files and not caplog.records


def test_a_standin_from_an_earlier_version_is_drawn_again(tmp_path, caplog):
    root = tmp_path / NAME
    datasets.write_standin(NAME, root, per_class=2)
    (root / datasets.MARKER).write_text("synk8s stand-in data: drawn images under real class names\n")
    with caplog.at_level(logging.WARNING, logger="synk8s.realdata"):
        realdata.ensure_dataset(_cfg(tmp_path, str(root), 2))
    assert any("records no settings" in r.getMessage() for r in caplog.records)
    assert datasets.recorded_settings(root, NAME) == datasets.standin_settings(NAME, 2)


def test_real_data_is_never_touched(tmp_path):
    root = tmp_path / NAME
    datasets.write_standin(NAME, root, per_class=2)
    (root / datasets.MARKER).unlink()  # now it is indistinguishable from real data
    files = _mtimes(root)
    assert realdata.ensure_dataset(_cfg(tmp_path, str(root), 3)) == str(root)
    assert _mtimes(root) == files and not datasets.is_standin(root) and _per_class(root) == {2}


def test_a_store_standin_with_other_settings_is_refused(tmp_path, s3_env, monkeypatch):
    monkeypatch.setenv(realdata.DATA_CACHE_DIR_ENV, str(tmp_path / "cache"))
    local = tmp_path / "upload"
    datasets.write_standin(NAME, local, per_class=1)
    prefix = storage.join(s3_env, "datasets", NAME)
    for path in sorted(p for p in local.rglob("*") if p.is_file()):
        storage.put_file(storage.join(prefix, path.relative_to(local).as_posix()), path)
    with pytest.raises(UsageError, match=r"per_class 1 -> 2.*set dataset.standin_per_class=1 to use it"):
        realdata.ensure_dataset(_cfg(tmp_path, prefix, 2))
    assert realdata.ensure_dataset(_cfg(tmp_path, prefix, 1))  # the same settings load
    assert realdata.ensure_dataset(_cfg(tmp_path, prefix, 2, "dataset.standin=false"))  # not asked for: as it is


def _dc(root, images):
    cfg = config.load(
        "tiny", [f"detect.root={root}", f"detect.standin_images={images}", "detect.standin_size=32"]
    )
    return cfg.detect


def test_voc_standin_is_drawn_again_only_for_other_settings(tmp_path, caplog):
    root = tmp_path / "voc"
    datasets.write_voc_standin(root, images=4, size=32, seed=0)
    files = _mtimes(root)
    assert voc_data.ensure_voc(_dc(root, 4)) == root and _mtimes(root) == files

    with caplog.at_level(logging.WARNING, logger="synk8s.detection.voc_data"):
        voc_data.ensure_voc(_dc(root, 6))
    assert len(datasets.load_detection("voc2012", "trainval", root)) == 6
    assert any("images 4 -> 6" in r.getMessage() for r in caplog.records)

    real = tmp_path / "real"
    datasets.write_voc_standin(real, images=4, size=32)
    (real / datasets.MARKER).unlink()
    files = _mtimes(real)
    voc_data.ensure_voc(_dc(real, 6))
    assert _mtimes(real) == files and not datasets.is_standin(real)
