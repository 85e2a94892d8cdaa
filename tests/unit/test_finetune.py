"""Transfer and training from scratch on a drawn downstream task (stand-in CIFAR-10 with few labels)."""

import json

import pytest

from synk8s import config
from synk8s.datasets.drawn_images import write_drawn_images
from synk8s.errors import UsageError
from synk8s.stages.pretraining import finetune, pretrain, scratch


def _cfg(tmp_path, *overrides):
    return config.load(
        "tiny",
        [
            f"store.root={tmp_path}",
            f"dataset.root={tmp_path}/data/{{name}}",
            "dataset.standin_per_class=5",
            "pretrain.finetune.dataset=cifar10",
            "pretrain.finetune.batch_size=10",
            "pretrain.finetune.epochs=2",
            "pretrain.finetune.lr=0.5",
            "pretrain.lr=0.4",
            *overrides,
        ],
    )


@pytest.mark.timeout(90)
def test_pretrained_init_beats_scratch_on_a_few_label_task(tmp_path):
    # Drawn classes 0-9 look like the stand-in CIFAR-10 classes 0-9 (same colours and shapes, other images).
    images = str(tmp_path / "images")
    write_drawn_images(images, classes=10, per_class=24, seed=1)
    backbone = str(tmp_path / "pretrain")
    pretrain.run(_cfg(tmp_path, "pretrain.monitor_fraction=0.05"), images=images, out=backbone)

    one_epoch = "pretrain.finetune.epochs=1"  # 5 steps on 50 labelled images
    pretrained = finetune.run(_cfg(tmp_path, one_epoch), backbone=backbone, out=str(tmp_path / "ft-pretrained"))
    scratch_init = finetune.run(
        _cfg(tmp_path, one_epoch, "pretrain.finetune.init=scratch"), out=str(tmp_path / "ft-scratch")
    )
    assert pretrained.train == scratch_init.train == 50 and pretrained.test == 50
    assert pretrained.top1 > scratch_init.top1 + 0.1
    metrics = json.loads((tmp_path / "ft-pretrained" / "metrics.json").read_text())
    assert metrics["standin"] is True and metrics["init"] == "pretrained" and metrics["dataset"] == "cifar10"

    with pytest.raises(UsageError, match="needs the pre-training stage's output folder"):
        finetune.run(_cfg(tmp_path), out=str(tmp_path / "none"))


@pytest.mark.timeout(60)
def test_from_scratch_on_m_real_images_per_class_or_on_synthetic_images(tmp_path):
    real = scratch.run(_cfg(tmp_path, "pretrain.finetune.epochs=1"), real_per_class=2, out=str(tmp_path / "real-2"))
    assert real.train == 20 and real.init == "scratch"
    metrics = json.loads((tmp_path / "real-2" / "metrics.json").read_text())
    assert metrics["source"] == "real" and metrics["real_per_class"] == 2

    images = str(tmp_path / "images")
    write_drawn_images(images, classes=10, per_class=3, seed=1)
    synthetic = scratch.run(_cfg(tmp_path, "pretrain.finetune.epochs=1"), images=images, out=str(tmp_path / "syn"))
    assert (
        synthetic.train == 30 and json.loads((tmp_path / "syn" / "metrics.json").read_text())["source"] == "synthetic"
    )

    write_drawn_images(str(tmp_path / "five"), classes=5, per_class=3, seed=1)
    with pytest.raises(UsageError, match="have 5 classes, cifar10 has 10"):
        scratch.run(_cfg(tmp_path), images=str(tmp_path / "five"), out=str(tmp_path / "x"))
    with pytest.raises(UsageError, match="not both"):
        scratch.run(_cfg(tmp_path), out=str(tmp_path / "x"))


def test_draw_per_class_is_seeded_and_balanced():
    labels = [i % 4 for i in range(40)]  # 10 images of each of 4 classes
    drawn = finetune.draw_per_class(labels, 3, seed=0)
    assert sorted(labels[i] for i in drawn) == [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3]
    assert drawn == finetune.draw_per_class(labels, 3, seed=0) != finetune.draw_per_class(labels, 3, seed=1)
    assert set(finetune.draw_per_class(labels, 3, seed=0)) < set(finetune.draw_per_class(labels, 10, seed=0))
    assert len(finetune.draw_per_class(labels, 50, seed=0)) == 40
