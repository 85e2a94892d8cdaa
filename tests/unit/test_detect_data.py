"""VOC data for the detection transfer: the shapes stand-in, the loader, the store copy, the training stream."""

import xml.etree.ElementTree as ET

import numpy as np
import pytest
import torch
from PIL import Image

from synk8s import config, datasets, storage
from synk8s.datasets.voc_standin import SHAPES
from synk8s.detection import voc_data
from synk8s.errors import MissingDataError, UsageError

pytestmark = pytest.mark.timeout(60)

IMAGES, SIZE = 12, 64


@pytest.fixture(scope="module")
def standin(tmp_path_factory):
    root = tmp_path_factory.mktemp("voc")
    counts = datasets.write_voc_standin(root, images=IMAGES, size=SIZE, seed=3)
    return root, counts


def _dc(root, *overrides):
    return config.load("tiny", [f"detect.root={root}", *overrides]).detect


def test_standin_has_the_voc_layout_and_every_split(standin):
    root, counts = standin
    assert counts == {
        "voc2007/trainval": IMAGES,
        "voc2007/train": IMAGES // 2,
        "voc2007/val": IMAGES // 2,
        "voc2007/test": IMAGES,
        "voc2012/trainval": IMAGES,
        "voc2012/train": IMAGES // 2,
        "voc2012/val": IMAGES // 2,
    }
    for key, n in counts.items():
        name, split = key.split("/")
        assert len(datasets.load_detection(name, split, root)) == n
    ids_2012 = (root / "VOCdevkit/VOC2012/ImageSets/Main/trainval.txt").read_text().split()
    assert all(i.startswith("2012_") for i in ids_2012) and datasets.is_standin(root)


def test_loader_reads_the_drawn_boxes_classes_and_difficult_flags(standin):
    root, _ = standin
    names = datasets.get("voc2007").classes
    colour_of = {name: np.array(colour) for name, _, colour in SHAPES}
    flags, checked = [], 0
    for split in ("trainval", "test"):
        data = datasets.load_detection("voc2007", split, root)
        for i in range(len(data)):
            image, target = data[i]
            assert target == data.target(i)  # the annotation-only read agrees with the full one
            pixels = np.asarray(image, dtype=float)  # (H, W, 3)
            for box, label, hard in zip(target["boxes"], target["labels"], target["difficult"]):
                name = names[label].replace(" ", "")
                assert name in colour_of  # mapped onto a VOC class name, e.g. label 6 is car
                flags.append(hard)
                if hard:  # drawn faint: not checked against its colour
                    continue
                # the class colour spans the box (VOC boxes: 1-based, inclusive) to within a pixel of
                # JPEG blur, seen through a window 2 px wider
                x1, y1, x2, y2 = (int(v) for v in box)
                top, left = max(y1 - 3, 0), max(x1 - 3, 0)
                window = pixels[top : y2 + 2, left : x2 + 2]
                ys, xs = np.nonzero(np.abs(window - colour_of[name]).max(axis=2) < 60)
                extent = np.array([left + xs.min() + 1, top + ys.min() + 1, left + xs.max() + 1, top + ys.max() + 1])
                assert np.abs(extent - np.array(box)).max() <= 1, (split, i, name, extent, box)
                checked += 1
    assert any(flags) and not all(flags) and checked > 20


def test_standin_is_deterministic_and_never_overwrites_real_data(tmp_path):
    a = datasets.write_voc_standin(tmp_path / "a", images=4, size=32, seed=5)
    datasets.write_voc_standin(tmp_path / "b", images=4, size=32, seed=5)
    for rel in ("VOCdevkit/VOC2007/JPEGImages/000001.jpg", "VOCdevkit/VOC2012/Annotations/2012_000004.xml"):
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes()
    assert a["voc2007/test"] == 4
    real = tmp_path / "real"
    (real / "VOCdevkit/VOC2007").mkdir(parents=True)
    with pytest.raises(UsageError, match="not stand-in data"):
        datasets.write_voc_standin(real, images=4, size=32)
    assert list((real / "VOCdevkit/VOC2007").iterdir()) == []


def test_training_records_drop_difficult_objects_only_when_asked(standin):
    root, _ = standin
    every = voc_data.train_records(root, train_difficult=True)
    easy = voc_data.train_records(root, train_difficult=False)
    assert len(every) == 2 * IMAGES  # VOC2007 trainval + VOC2012 trainval
    assert {r.image_id.split("/")[0] for r in every} == {"voc2007", "voc2012"}
    assert sum(r.difficult.sum() for r in every) > 0 and sum(r.difficult.sum() for r in easy) == 0
    assert sum(len(r.labels) for r in every) == sum(len(r.labels) for r in easy) + sum(r.difficult.sum() for r in every)
    test = voc_data.evaluation_records(root)
    assert len(test) == IMAGES and sum(r.difficult.sum() for r in test) >= 0


def test_targets_are_zero_based_and_flip_with_the_image(standin):
    root, _ = standin
    record = voc_data.train_records(root, train_difficult=True)[0]
    images = voc_data.TrainImages([record])
    plain, target = images[(0, False)]
    flipped, flipped_target = images[(0, True)]
    assert plain.shape == (3, SIZE, SIZE) and plain.dtype == torch.float32 and 0 <= plain.min() <= plain.max() <= 1
    assert torch.equal(flipped, plain.flip(-1))
    x1, y1, x2, y2 = record.boxes[0]
    assert target["boxes"][0].tolist() == [x1 - 1, y1 - 1, x2, y2]
    assert flipped_target["boxes"][0].tolist() == [SIZE - x2, y1 - 1, SIZE - (x1 - 1), y2]
    assert target["labels"].tolist() == (record.labels + 1).tolist()  # 0 is background


def _global_batches(world, *, start, stop, size=23, batch=4, seed=7):
    per_rank = [
        list(voc_data.TrainBatches(size, batch, rank=r, world=world, seed=seed, start=start, stop=stop, hflip_prob=0.5))
        for r in range(world)
    ]
    return [sorted(pair for rank in per_rank for pair in rank[i]) for i in range(stop - start)]


def test_training_stream_is_the_same_for_any_process_count_and_after_a_resume():
    one = _global_batches(1, start=0, stop=12)
    assert _global_batches(2, start=0, stop=12) == one
    assert _global_batches(4, start=0, stop=12) == one
    assert _global_batches(2, start=7, stop=12) == one[7:]
    per_epoch = 23 // 4
    for epoch in range(2):  # an epoch visits distinct images; epochs differ
        seen = [i for b in one[epoch * per_epoch : (epoch + 1) * per_epoch] for i, _ in b]
        assert len(seen) == len(set(seen)) == per_epoch * 4
    assert one[:per_epoch] != one[per_epoch : 2 * per_epoch]
    flips = [f for b in one for _, f in b]
    assert 0.25 < sum(flips) / len(flips) < 0.75
    assert _global_batches(1, start=0, stop=12, seed=8) != one
    with pytest.raises(ValueError, match="multiple"):
        voc_data.TrainBatches(23, 6, rank=0, world=4, seed=0, start=0, stop=1, hflip_prob=0.5)


def test_ensure_voc_draws_the_standin_only_where_no_real_data_is(tmp_path):
    root = voc_data.ensure_voc(_dc(tmp_path / "voc", "detect.standin_images=4", "detect.standin_size=32"))
    assert datasets.is_standin(root) and len(datasets.load_detection("voc2012", "trainval", root)) == 4
    broken = tmp_path / "broken"
    (broken / "VOCdevkit/VOC2007").mkdir(parents=True)  # real data folder that does not load
    with pytest.raises(MissingDataError, match="VOC2007"):
        voc_data.ensure_voc(_dc(broken))
    assert not datasets.is_standin(broken)


def test_ensure_voc_copies_a_store_prefix_once(tmp_path, s3_env, monkeypatch):
    monkeypatch.setenv("SYNK8S_DATA_CACHE_DIR", str(tmp_path / "cache"))
    local = tmp_path / "upload"
    datasets.write_voc_standin(local, images=4, size=32)
    prefix = f"{s3_env}/datasets/voc"
    for path in sorted(p for p in local.rglob("*") if p.is_file()):
        storage.put_file(storage.join(prefix, path.relative_to(local).as_posix()), path)
    root = voc_data.ensure_voc(_dc(prefix, "detect.standin=false"))
    assert root.is_relative_to(tmp_path / "cache") and datasets.is_standin(root)
    first = voc_data.evaluation_records(root)
    assert [r.image_id for r in first] == [f"voc2007/{n:06d}" for n in range(5, 9)]
    assert voc_data.ensure_voc(_dc(prefix, "detect.standin=false")) == root  # the copy is reused
    with pytest.raises(MissingDataError, match="no voc2007 data under"):
        voc_data.ensure_voc(_dc(f"{s3_env}/nothing-here"))


def test_annotations_are_voc_xml(standin):
    root, _ = standin
    tree = ET.parse(root / "VOCdevkit/VOC2007/Annotations/000001.xml").getroot()
    assert tree.find("size/width").text == str(SIZE) and tree.find("object/difficult").text in ("0", "1")
    with Image.open(root / "VOCdevkit/VOC2007/JPEGImages/000001.jpg") as image:
        assert image.format == "JPEG" and image.size == (SIZE, SIZE)
