"""Splits: Caltech's training images are a seeded draw; a CoOp split file beside the data decides the split."""

import json

import pytest

from synk8s import datasets
from synk8s.datasets import readers
from synk8s.errors import MissingDataError

pytestmark = pytest.mark.timeout(60)


def test_caltech_training_images_are_a_seeded_draw_not_the_first_30():
    classes = [0] * 40 + [1] * 35
    numbers = list(range(1, 41)) + list(range(1, 36))
    train = readers._seeded_n("train", classes, numbers, 30)
    test = readers._seeded_n("test", classes, numbers, 30)
    assert sorted(train + test) == list(range(75))
    assert [sum(1 for i in train if classes[i] == c) for c in (0, 1)] == [30, 30]
    assert {numbers[i] for i in train if classes[i] == 0} != set(range(1, 31))
    shuffled = readers._seeded_n("train", classes[::-1], numbers[::-1], 30)
    assert sorted(74 - i for i in shuffled) == sorted(train)  # listing order does not matter


def test_a_coop_split_file_beside_the_data_decides_the_split(tmp_path):
    datasets.write_standin("eurosat", tmp_path, per_class=2)
    own_test = datasets.load("eurosat", "test", tmp_path)
    chosen = own_test._ident_files[:3]
    entries = [[f"{p.parent.name}/{p.name}", 0, p.parent.name] for p in chosen]
    info = datasets.get("eurosat")
    (tmp_path / info.base_dir / "split_zhou_EuroSAT.json").write_text(
        json.dumps({"train": entries[:1], "val": [], "test": entries})
    )
    test = datasets.load("eurosat", "test", tmp_path)
    assert test._ident_files == chosen
    assert test.labels == own_test.labels[:3]
    assert len(datasets.load("eurosat", "train", tmp_path)) == 1
    (tmp_path / info.base_dir / "split_zhou_EuroSAT.json").write_text(json.dumps({"test": [["Nope/x.jpg", 0, "x"]]}))
    with pytest.raises(MissingDataError, match="Nope/x.jpg"):
        datasets.load("eurosat", "test", tmp_path)
