"""Few-shot split: seeded, saved, reused, checked against the data it was drawn from."""

import dataclasses
import json
import os
from collections import Counter

import pytest

from synk8s import config, datasets, storage
from synk8s.errors import MissingDataError, StoreError, UsageError
from synk8s.stages.fewshot import split

pytestmark = pytest.mark.timeout(60)

PER_CLASS = 4  # stand-in training images per class


def _cfg(root, *overrides):
    return config.load(
        "tiny",
        [
            "dataset.name=cifar10",
            f"dataset.root={root}/data/{{name}}",
            f"dataset.standin_per_class={PER_CLASS}",
            f"store.root={root}/store",
            *overrides,
        ],
    )


def test_same_seed_gives_the_same_split_bytes_and_other_seeds_another_split(tmp_path):
    cfg = _cfg(tmp_path, "fewshot.shots_per_class=2")
    first = split.run(cfg, out=str(tmp_path / "a"), progress=False)
    second = split.run(cfg, out=str(tmp_path / "b"), progress=False)
    assert (tmp_path / "a" / "split.json").read_bytes() == (tmp_path / "b" / "split.json").read_bytes()
    assert first.digest == second.digest and first.images == 20 and not first.reused

    saved = split.load_split(str(tmp_path / "a"))
    assert Counter(saved.labels) == {c: 2 for c in range(10)}
    assert len(set(saved.indices)) == 20
    train = datasets.load("cifar10", "train", tmp_path / "data" / "cifar10")
    assert all(train.labels[s.index] == s.label and train.sample_id(s.index) == s.sample_id for s in saved.entries)

    others = [split.run(_cfg(tmp_path, "fewshot.shots_per_class=2", f"fewshot.split_seed={s}"),
                        out=str(tmp_path / f"seed{s}"), progress=False) for s in (2, 3)]  # fmt: skip
    assert len({first.digest, *(o.digest for o in others)}) == 3


def test_splits_of_one_seed_nest(tmp_path):
    picked = {}
    for shots in (1, 2, 4):
        split.run(_cfg(tmp_path, f"fewshot.shots_per_class={shots}"), out=str(tmp_path / f"m{shots}"), progress=False)
        by_class = {}
        for shot in split.load_split(str(tmp_path / f"m{shots}")).entries:
            by_class.setdefault(shot.label, []).append(shot.index)
        picked[shots] = by_class
    for c in range(10):
        assert picked[2][c][:1] == picked[1][c] and picked[4][c][:2] == picked[2][c]
        assert sorted(picked[4][c]) == [i for i, label in enumerate(_train_labels(tmp_path)) if label == c]


def _train_labels(root):
    return datasets.load("cifar10", "train", root / "data" / "cifar10").labels


def test_a_saved_split_is_reused_and_other_settings_are_refused(tmp_path):
    cfg, out = _cfg(tmp_path), str(tmp_path / "split")
    split.run(cfg, out=out, progress=False)
    before = (tmp_path / "split" / "split.json").read_bytes()
    again = split.run(cfg, out=out, progress=False)
    assert again.reused and (tmp_path / "split" / "split.json").read_bytes() == before
    with pytest.raises(UsageError, match="1-shot split with seed 1 and 0 validation images per class, not cifar10 2-shot"):
        split.run(_cfg(tmp_path, "fewshot.shots_per_class=2"), out=out, progress=False)
    with pytest.raises(UsageError, match="and 0 validation images per class, not cifar10 1-shot with seed 1 and 1;"):
        split.run(_cfg(tmp_path, "fewshot.select=real-val"), out=out, progress=False)


def test_real_val_draws_min_m_4_per_class_disjoint_from_the_same_shots(tmp_path):
    plain = split.run(_cfg(tmp_path, "fewshot.shots_per_class=2"), out=str(tmp_path / "plain"), progress=False)
    cfg = _cfg(tmp_path, "fewshot.shots_per_class=2", "fewshot.select=real-val")
    first = split.run(cfg, out=str(tmp_path / "a"), progress=False)
    split.run(cfg, out=str(tmp_path / "b"), progress=False)
    assert (tmp_path / "a" / "split.json").read_bytes() == (tmp_path / "b" / "split.json").read_bytes()
    saved, shots_only = split.load_split(str(tmp_path / "a")), split.load_split(str(tmp_path / "plain"))
    assert saved.entries == shots_only.entries and not shots_only.val  # the same shots; only real-val saves val
    assert first.val == 20 and plain.val == 0 and first.digest != plain.digest
    assert Counter(s.label for s in saved.val) == {c: 2 for c in range(10)}  # min(M, 4) = 2 per class
    assert not {s.index for s in saved.val} & set(saved.indices)
    body = json.loads((tmp_path / "a" / "split.json").read_text())
    assert [e["index"] for e in body["val"]] == [s.index for s in saved.val]
    images = split.shot_images(cfg, saved, part="val")
    assert [split.pixel_digest(im) for im, _ in images] == [s.pixel_sha256 for s in saved.val]
    assert split.val_per_class(16) == 4 and split.val_per_class(1) == 1


def test_real_val_changes_the_split_folder_and_other_rules_keep_it(tmp_path):
    from synk8s.stages.table import TABLE

    folders = {
        rule: TABLE.stage_dir("runs/r", "split", _cfg(tmp_path, f"fewshot.select={rule}"))
        for rule in ("last", "syn-val", "real-val")
    }
    assert folders["last"] == folders["syn-val"] != folders["real-val"]


def test_real_val_needs_m_plus_min_m_4_images_per_class(tmp_path):
    cfg = _cfg(tmp_path, "fewshot.shots_per_class=4", "fewshot.select=real-val")
    with pytest.raises(MissingDataError, match="fewer than 8 training images for 4 shots and 4 validation images"):
        split.run(cfg, out=str(tmp_path / "s"), progress=False)


def test_shot_images_are_the_drawn_ones_and_changed_data_fails(tmp_path):
    cfg, out = _cfg(tmp_path, "fewshot.shots_per_class=2"), str(tmp_path / "split")
    split.run(cfg, out=out, progress=False)
    saved = split.load_split(out)
    images = split.shot_images(cfg, saved)
    assert [label for _image, label in images] == saved.labels
    assert [split.pixel_digest(image) for image, _label in images] == [s.pixel_sha256 for s in saved.entries]

    wrong_pixels = dataclasses.replace(saved.entries[3], pixel_sha256="0" * 64)
    tampered = dataclasses.replace(saved, entries=(*saved.entries[:3], wrong_pixels, *saved.entries[4:]))
    with pytest.raises(MissingDataError, match="not the image the split drew"):
        split.shot_images(cfg, tampered)
    # Other files under the same recorded settings (a stand-in redrawn with another seed, its marker
    # put back): the run does not redraw them, and the split finds they are not what it drew from.
    root = tmp_path / "data" / "cifar10"
    marker = (root / datasets.standin.MARKER).read_bytes()
    datasets.write_standin("cifar10", root, per_class=PER_CLASS, seed=5)
    (root / datasets.standin.MARKER).write_bytes(marker)
    with pytest.raises(MissingDataError, match="files changed since the split was drawn"):
        split.shot_images(cfg, saved)


def test_edited_split_and_too_few_images_are_refused(tmp_path):
    out = tmp_path / "split"
    split.run(_cfg(tmp_path), out=str(out), progress=False)
    body = json.loads((out / "split.json").read_text())
    body["entries"][0]["index"] += 1
    storage.put_json(str(out / "split.json"), body)
    with pytest.raises(StoreError, match="does not match its digest"):
        split.load_split(str(out))
    with pytest.raises(MissingDataError, match="fewer than 5 training images"):
        split.run(_cfg(tmp_path, "fewshot.shots_per_class=5"), out=str(tmp_path / "five"), progress=False)


def test_a_damaged_saved_split_is_drawn_again_to_the_same_bytes(tmp_path, caplog):
    cfg, out = _cfg(tmp_path), tmp_path / "split"
    split.run(cfg, out=str(out), progress=False)
    path = out / "split.json"
    good, stat = path.read_bytes(), path.stat()
    damaged = bytearray(good)
    damaged[len(damaged) // 2] ^= 1  # one bit, same size
    path.write_bytes(bytes(damaged))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # same modification time
    with caplog.at_level("WARNING", logger="synk8s.stages.fewshot.split"):
        split.run(cfg, out=str(out), progress=False)
    assert path.read_bytes() == good
    assert any("drawing the split again" in r.getMessage() for r in caplog.records)
