"""Detection learns: the tiny profile's schedule lifts AP50 on the VOC stand-in far above iteration 0.

The detect stage trains the tiny Faster R-CNN from scratch for the tiny profile's 150 iterations on
the drawn VOC stand-in (coloured shapes of the 20 VOC classes) and scores the VOC07 test stand-in.
AP50 at iteration 0 comes from the same starting weights, untrained.

Margin, over seeds 0 and 1 (measured): AP50 after training minus AP50 at iteration 0 was 73.2 and
89.3 (0.0 at iteration 0); AP50_GAIN = 30 keeps room under it. The mutant, a zero learning rate
(``detect.lr=1e-9``), ends where it started (0.0, 0.0) and misses the margin.
"""

import pytest
import torch

from synk8s import config, distributed
from synk8s.detection import voc_data
from synk8s.detection.model import build_detector
from synk8s.detection.train import predict
from synk8s.detection.trunk import Trunk, build_trunk
from synk8s.detection.voc_eval import GroundTruth, evaluate
from synk8s.seeds import derive_seed
from synk8s.stages.pretraining import detect

pytestmark = pytest.mark.timeout(600)

SEEDS = (0, 1)
AP50_GAIN = 30.0  # AP50 points, trained minus iteration 0


def _cfg(root, seed: int, *overrides: str):
    return config.load("tiny", [f"detect.root={root}/voc", f"store.root={root}/store", f"seed={seed}", *overrides])


def _ap50_at_iteration_0(cfg, root) -> float:
    records = voc_data.evaluation_records(root / "voc")
    torch.manual_seed(derive_seed(cfg.seed, "detect", "init"))  # the trained run's starting weights
    untrained = build_detector(cfg.detect, build_trunk(Trunk("tiny-resnet", {}, "scratch")), num_classes=20)
    found = predict(untrained, records, cfg.detect, distributed.current("cpu"))
    truth = [GroundTruth(r.boxes, r.labels, r.difficult) for r in records]
    return evaluate(truth, found, voc_data.class_names()).ap50


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """seed -> (AP50 at iteration 0, AP50 after the tiny schedule, AP50 of the zero-lr mutant)."""
    root = tmp_path_factory.mktemp("detect-learning")
    out = {}
    for seed in SEEDS:
        cfg = _cfg(root, seed)
        trained = detect.run(cfg, backbone=None, out=str(root / f"trained-{seed}"), progress=False)
        broken = detect.run(_cfg(root, seed, "detect.lr=1e-9"), backbone=None, out=str(root / f"zero-lr-{seed}"))
        out[seed] = (_ap50_at_iteration_0(cfg, root), trained.ap50, broken.ap50)
    return out


@pytest.mark.parametrize("seed", SEEDS)
def test_training_lifts_ap50_above_iteration_0(runs, seed):
    start, trained, broken = runs[seed]
    print(f"detection seed {seed}: AP50 {start:.1f} at iteration 0, {trained:.1f} trained, {broken:.1f} zero lr")
    assert trained - start >= AP50_GAIN
    assert broken - start < AP50_GAIN, "a detector that cannot learn must fail the learning check"
