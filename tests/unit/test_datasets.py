"""The dataset registry, the loaders over every on-disk format, stand-ins and `synk8s datasets`."""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from synk8s import datasets
from synk8s.cli.datasets import app
from synk8s.errors import MissingDataError, UsageError

pytestmark = pytest.mark.timeout(120)

CLASS_COUNTS = {
    "cifar10": 10,
    "cifar100": 100,
    "caltech101": 101,
    "caltech256": 257,
    "imagenet": 1000,
    "sun397": 397,
    "fgvc_aircraft": 100,
    "birdsnap": 500,
    "stanford_cars": 196,
    "cub200": 200,
    "flowers102": 102,
    "food101": 101,
    "oxford_pets": 37,
    "dtd": 47,
    "eurosat": 10,
    "imagenet_sketch": 1000,
    "imagenet_r": 200,
    "voc2007": 20,
    "voc2012": 20,
}


@pytest.fixture
def root(tmp_path):
    """A scratch data root; in RAM when /dev/shm exists, since stand-ins create thousands of files."""
    if os.access("/dev/shm", os.W_OK):
        path = Path(tempfile.mkdtemp(dir="/dev/shm", prefix="synk8s-test-"))
        yield path
        shutil.rmtree(path, ignore_errors=True)
    else:
        yield tmp_path


def _digests(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_registry_holds_the_nineteen_datasets_with_exact_class_counts():
    assert datasets.names() == list(CLASS_COUNTS)
    assert {info.name: info.num_classes for info in datasets.all()} == CLASS_COUNTS
    for info in datasets.all():
        assert len(set(info.templates)) == len(info.templates) >= 1
        assert all("{}" in t and t.format("x") != t for t in info.templates), info.name
        assert info.test_split in info.splits
        assert info.task == ("detection" if info.name.startswith("voc") else "classification")
        assert all(c.strip() == c and c for c in info.classes), info.name


def test_registry_facts_match_clip():
    assert datasets.get("cifar10").classes[:3] == ("airplane", "automobile", "bird")
    assert datasets.get("cifar100").classes[1] == "aquarium fish"
    assert len(datasets.get("imagenet").templates) == 80 and len(datasets.get("cifar100").templates) == 18
    assert datasets.get("eurosat").templates[0] == "a centered satellite photo of {}."
    assert datasets.get("food101").templates == ("a photo of {}, a type of food.",)
    assert datasets.get("oxford_pets").templates == ("a photo of a {}, a type of pet.",)
    assert datasets.get("fgvc_aircraft").templates[0] == "a photo of a {}, a type of aircraft."
    assert "BACKGROUND_Google" not in datasets.get("caltech101").classes
    assert datasets.get("caltech256").classes[-1] == "clutter"
    r, imagenet = datasets.get("imagenet_r"), datasets.get("imagenet")
    assert set(r.classes) <= set(imagenet.classes) and r.classes[0] == "goldfish"
    assert {info.kind for info in datasets.all()} == {
        "object-level",
        "scene-level",
        "fine-grained",
        "textures",
        "satellite",
        "robustness",
        "detection",
    }


def test_unknown_dataset_and_split_are_usage_errors(root):
    with pytest.raises(UsageError, match=r"unknown dataset 'cifar1000'; choose one of: cifar10, cifar100, "):
        datasets.get("cifar1000")
    with pytest.raises(UsageError, match=r"cifar100 has no split 'val'; choose one of: train, test"):
        datasets.load("cifar100", "val", root)
    with pytest.raises(UsageError, match="load_detection"):
        datasets.load("voc2007", "test", root)
    with pytest.raises(UsageError, match="is a classification dataset"):
        datasets.load_detection("cifar10", "test", root)
    with pytest.raises(UsageError, match="per_class must be >= 1"):
        datasets.write_standin("cifar10", root, per_class=0)


@pytest.mark.parametrize("name", [n for n in CLASS_COUNTS if not n.startswith("voc")])
def test_standin_reads_back_through_the_real_loader(name, root):
    counts = datasets.write_standin(name, root, per_class=1, size=16)
    info = datasets.get(name)
    assert datasets.is_standin(root)
    assert set(counts) == set(info.splits)
    idents = set()
    for split, expected in counts.items():
        data = datasets.load(name, split, root)
        assert len(data) == len(data.labels) == expected > 0
        assert sorted(set(data.labels)) == list(range(CLASS_COUNTS[name])), split
        image, label = data[len(data) - 1]
        assert isinstance(image, Image.Image) and image.mode == "RGB" and label == data.labels[-1]
        assert image.size == ((32, 32) if name.startswith("cifar") else (16, 16))
        idents.add(data.ident)
        assert data.ident == datasets.load(name, split, root).ident  # stable
    assert len(idents) == len(counts)  # every split has its own identity


@pytest.mark.parametrize("name", ["voc2007", "voc2012"])
def test_detection_standin_reads_back_through_vocdetection(name, root):
    counts = datasets.write_standin(name, root, per_class=2, size=48)
    assert counts["trainval"] == counts["train"] + counts["val"] == 80
    for split, expected in counts.items():
        data = datasets.load_detection(name, split, root)
        assert len(data) == expected
        seen = set()
        for i in range(len(data)):
            image, target = data[i]
            assert image.mode == "RGB" and image.size == (48, 48)
            assert len(target["boxes"]) == len(target["labels"]) == len(target["difficult"]) >= 1
            for x1, y1, x2, y2 in target["boxes"]:
                assert 1 <= x1 < x2 <= 48 and 1 <= y1 < y2 <= 48
            seen.update(target["labels"])
        assert seen == set(range(20))


def test_standin_bytes_are_deterministic_and_follow_the_seed(root):
    formats = ["cifar100", "stanford_cars", "food101", "voc2007", "flowers102", "birdsnap"]
    for name in formats:
        datasets.write_standin(name, root / "a", per_class=1, seed=3)
        datasets.write_standin(name, root / "b", per_class=1, seed=3)
        datasets.write_standin(name, root / "c", per_class=1, seed=4)
    a, b, c = (_digests(root / k) for k in "abc")
    assert a == b
    assert a.keys() == c.keys() and sum(a[k] != c[k] for k in a) > len(a) // 2


def test_standin_writes_only_the_requested_splits(root):
    assert datasets.write_standin("fgvc_aircraft", root, per_class=1, splits=["test"]) == {"test": 100}
    assert len(datasets.load("fgvc_aircraft", "test", root)) == 100
    with pytest.raises(MissingDataError, match="images_variant_train.txt"):
        datasets.load("fgvc_aircraft", "train", root)
    with pytest.raises(UsageError, match="has no split 'val'"):
        datasets.write_standin("cifar10", root, per_class=1, splits=["val"])
    # writing again replaces the earlier stand-in instead of mixing the two
    assert datasets.write_standin("fgvc_aircraft", root, per_class=2, splits=["train"]) == {"train": 200}
    assert len(datasets.load("fgvc_aircraft", "train", root)) == 200
    with pytest.raises(MissingDataError, match="images_variant_test.txt"):
        datasets.load("fgvc_aircraft", "test", root)


def test_standin_never_overwrites_real_data(root):
    real = root / "food-101" / "meta"
    real.mkdir(parents=True)
    with pytest.raises(UsageError, match="is not stand-in data; refusing to overwrite it"):
        datasets.write_standin("food101", root, per_class=1)
    assert real.is_dir() and not datasets.is_standin(root)


def test_cifar100_standin_counts(root):
    counts = datasets.write_standin("cifar100", root, per_class=4)
    assert counts == {"train": 400, "test": 400}


def test_standin_classes_are_told_apart_by_their_pixels(root):
    datasets.write_standin("cifar10", root, per_class=5)
    train, test = datasets.load("cifar10", "train", root), datasets.load("cifar10", "test", root)

    def mean_colour(data, i):
        return np.asarray(data[i][0], dtype=float).mean(axis=(0, 1)).tolist()  # (3,)

    centroids = {}
    for i, label in enumerate(train.labels):
        centroids.setdefault(label, []).append(mean_colour(train, i))
    centroids = {k: [sum(c) / len(c) for c in zip(*v)] for k, v in centroids.items()}

    def nearest(colour):
        return min(centroids, key=lambda k: sum((a - b) ** 2 for a, b in zip(colour, centroids[k])))

    hits = sum(nearest(mean_colour(test, i)) == label for i, label in enumerate(test.labels))
    assert hits >= 0.6 * len(test)  # chance is 0.1


def test_missing_data_names_the_path_and_the_download(root):
    with pytest.raises(MissingDataError) as caught:
        datasets.load("cifar100", "test", root)
    message = str(caught.value)
    assert f"cifar100 test split not found under {root / 'cifar-100-python'}" in message
    assert "https://www.cs.toronto.edu/~kriz/cifar.html" in message and "\n" not in message
    with pytest.raises(MissingDataError, match=str(root / "food-101")):
        datasets.load("food101", "train", root)
    with pytest.raises(MissingDataError, match="VOCdevkit/VOC2007"):
        datasets.load_detection("voc2007", "test", root)


def test_files_that_disagree_with_the_registry_are_reported(root):
    datasets.write_standin("fgvc_aircraft", root, per_class=1, splits=["test"])
    variants = root / "fgvc-aircraft-2013b" / "data" / "variants.txt"
    variants.write_text("\n".join(variants.read_text().splitlines()[:-1]) + "\n")
    with pytest.raises(MissingDataError, match="99 classes listed, 100 expected"):
        datasets.load("fgvc_aircraft", "test", root)
    datasets.write_standin("imagenet_r", root, per_class=1)
    stray = root / "imagenet-r" / "n00000000"
    stray.mkdir()
    Image.new("RGB", (8, 8)).save(stray / "x.jpg")
    with pytest.raises(MissingDataError, match="unknown class 'n00000000'"):
        datasets.load("imagenet_r", "test", root)


def test_cli_list_and_show():
    runner = CliRunner()
    listed = runner.invoke(app, ["list"])
    assert listed.exit_code == 0, listed.output
    for name, count in CLASS_COUNTS.items():
        assert any(
            line.split("│")[1].strip() == name and f" {count} " in line
            for line in listed.output.splitlines()
            if line.count("│") > 2
        ), name
    shown = runner.invoke(app, ["show", "eurosat"])
    assert shown.exit_code == 0, shown.output
    for text in (
        "EuroSAT",
        "classes (10)",
        "0:annual crop land",
        "9:lake or sea",
        "templates (3)",
        "a centered satellite photo of {}.",
        "results on test",
        "eurosat/2750",
        "github.com/phelber",
    ):
        assert text in shown.output, text
    unknown = runner.invoke(app, ["show", "nope"])
    assert unknown.exit_code != 0 and isinstance(unknown.exception, UsageError)
    assert "unknown dataset 'nope'" in str(unknown.exception)
