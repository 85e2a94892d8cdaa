"""Pre-training learns: MoCo v2 beats a random backbone, supervised training beats chance, and
fine-tuning from a pre-trained trunk beats training from scratch.

The data: 50 classes of painted images, 16 each (800), as a generate output; the downstream task is
the stand-in CIFAR-100 of the tiny profile (8 images per class), whose classes 0-49 share the look of
the painted ones. Three seeds each; the mutant trains at a zero learning rate (``lr=1e-9``): the same
forward passes, the same batch-norm statistics, no learning. Its runs must miss every margin.

Margins, from seeds 0, 1, 2 (measured; the constants keep room on both sides):
- MoCo kNN top-1 on held-out images, last epoch minus epoch 0 (the untrained trunk with batch-norm
  statistics of the data): 0.10, 0.11, 0.12; mutant -0.01, -0.04, -0.06. KNN_MARGIN = 0.05.
- Supervised held-out top-1 of the trained head: 0.923, 0.928, 0.918; mutant 0.000, 0.000, 0.009;
  chance is 0.02. SUPERVISED_TOP1 = 0.5.
- Fine-tune top-1 on the stand-in CIFAR-100 (2 epochs), pre-trained minus scratch: 0.46, 0.43, 0.40
  (0.77-0.79 against 0.33-0.37); from the mutant's trunk -0.05 to 0.02. FINETUNE_MARGIN = 0.2.
"""

import json
from pathlib import Path

import pytest

from synk8s import config
from synk8s.datasets.drawn_images import write_drawn_images
from synk8s.stages.pretraining import finetune, pretrain

pytestmark = pytest.mark.timeout(600)

SEEDS = (0, 1, 2)
CLASSES = 50
LEARNS, ZERO = "0.4", "1e-9"  # learning rates per 256 images: the tiny schedule's, and the mutant's
KNN_MARGIN = 0.05
SUPERVISED_TOP1 = 0.5
FINETUNE_MARGIN = 0.2


def _cfg(root: Path, seed: int, lr: str, *overrides: str):
    return config.load(
        "tiny",
        [
            f"store.root={root}/store",
            f"dataset.root={root}/data/{{name}}",
            f"seed={seed}",
            "pretrain.epochs=4",
            "pretrain.moco.epochs=4",
            f"pretrain.lr={lr}",
            f"pretrain.moco.lr={lr}",
            "pretrain.monitor_fraction=0.5",
            *overrides,
        ],
    )


def _curve(out: Path) -> list[dict]:
    return json.loads((out / "curve.json").read_text())["epochs"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """(method, seed, lr) -> (pre-training output folder, its curve)."""
    root = tmp_path_factory.mktemp("pretrain-learning")
    images = str(root / "images")
    write_drawn_images(images, classes=CLASSES, per_class=16, seed=0)
    out = {}
    for seed in SEEDS:
        for method in ("moco", "supervised"):
            for lr in (LEARNS, ZERO):
                folder = root / f"{method}-{seed}-{lr}"
                pretrain.run(_cfg(root, seed, lr, f"pretrain.method={method}"), images=images, out=str(folder))
                out[method, seed, lr] = (folder, _curve(folder))
    return root, out


def _knn_gain(curve: list[dict]) -> float:
    assert curve[0]["epoch"] == 0 and curve[-1]["epoch"] == 4
    return curve[-1]["knn_top1"] - curve[0]["knn_top1"]


@pytest.mark.parametrize("seed", SEEDS)
def test_moco_knn_beats_the_random_backbone(trained, seed):
    _, runs = trained
    gain, broken = _knn_gain(runs["moco", seed, LEARNS][1]), _knn_gain(runs["moco", seed, ZERO][1])
    print(f"moco seed {seed}: kNN gain {gain:.3f}, zero-lr mutant {broken:.3f}")
    assert gain >= KNN_MARGIN
    assert broken < KNN_MARGIN, "a trunk that cannot learn must fail the learning check"


@pytest.mark.parametrize("seed", SEEDS)
def test_supervised_held_out_top1_is_far_above_chance(trained, seed):
    _, runs = trained
    top1, broken = runs["supervised", seed, LEARNS][1][-1]["top1"], runs["supervised", seed, ZERO][1][-1]["top1"]
    print(f"supervised seed {seed}: held-out top-1 {top1:.3f}, zero-lr mutant {broken:.3f}")
    assert top1 >= SUPERVISED_TOP1
    assert broken < SUPERVISED_TOP1


@pytest.fixture(scope="module")
def finetuned(trained):
    """seed -> top-1 of fine-tunes from the trained trunk, from the mutant's trunk, and from scratch."""
    root, runs = trained
    out = {}
    for seed in SEEDS:
        scores = {}
        for name, lr in (("pretrained", LEARNS), ("mutant", ZERO)):
            cfg = _cfg(root, seed, LEARNS)
            backbone = str(runs["supervised", seed, lr][0])
            scores[name] = finetune.run(cfg, backbone=backbone, out=str(root / f"ft-{name}-{seed}")).top1
        scratch = _cfg(root, seed, LEARNS, "pretrain.finetune.init=scratch")
        scores["scratch"] = finetune.run(scratch, out=str(root / f"ft-scratch-{seed}")).top1
        out[seed] = scores
    return out


@pytest.mark.parametrize("seed", SEEDS)
def test_fine_tuning_from_the_pretrained_trunk_beats_scratch(finetuned, seed):
    scores = finetuned[seed]
    print(f"fine-tune seed {seed}: {scores}")
    assert scores["pretrained"] - scores["scratch"] >= FINETUNE_MARGIN
    assert scores["mutant"] - scores["scratch"] < FINETUNE_MARGIN
