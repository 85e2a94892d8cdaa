"""Few-shot study on the tiny profile: more real shots tune a better head, and synthetic images keep up.

The stages run in process, as ``synk8s stage`` runs them, on the README's few-shot dataset (stand-in
EuroSAT, 10 classes, 80 test images, chance 0.1) with the tiny profile: real guidance (RG) by the
``standin-drawn`` painter, the mean-pooled tiny CLIP, the last epoch of the fixed schedule.

Margins, over split seeds 1, 2, 3 (measured; the constants keep room on both sides):
- CT w. init (real shots only), 4 shots minus 1 shot: 0.23, 0.26, 0.26 (0.21-0.23 -> 0.45-0.48);
  SHOTS_MARGIN = 0.1. Zero-learning-rate mutant (``fewshot.lr=1e-9``): 0, both heads stay the text head.
- CT w. Syn minus CT w. init at 4 shots: +0.41, +0.38, +0.40; it may not fall below -NOISE = -0.1.
  Mutant: a painter that paints class c + 1 when asked for c, at an RG strength of 1 (nothing of the
  real shot left) and with the synthetic loss weighted 4x (``fewshot.w_syn=4``): -0.20, -0.20, -0.26.
  (At the 4-shot strength of 0.35 and equal weights the wrong-class images leave CT w. Syn at
  0.57-0.69, still above CT w. init: the RG images stay 65 % real shot, and the mix schedule gives
  the real shots more steps than CT w. init takes.)
"""

import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from synk8s import config
from synk8s.cli.main import app
from synk8s.models import painted
from synk8s.stages.table import run_dir, stage_dir

pytestmark = pytest.mark.timeout(600)

SPLITS = (1, 2, 3)
SHOTS_MARGIN = 0.1
NOISE = 0.1
SETS = ("dataset.name=eurosat", "generate.num_shards=1")
CHAIN = (
    ("prompts",),
    ("split",),
    ("guided",),
    ("collect_guided",),
    ("filter_guided",),
    ("test_features",),
    ("features_guided",),
    ("fewshot_tune",),
    ("fewshot_evaluate",),
)


def _sets(split: int, shots: int, *extra: str) -> tuple[str, ...]:
    return (*SETS, f"fewshot.split_seed={split}", f"fewshot.shots_per_class={shots}", *extra)


def _run(root: Path, sets: tuple[str, ...], stages=CHAIN) -> dict:
    """Run ``stages`` with the tiny profile in ``root``; the top-1 of the few-shot report."""
    before = Path.cwd()
    root.mkdir(parents=True, exist_ok=True)
    os.chdir(root)  # the stand-in data and the store go to ./data and ./synk8s-store
    try:
        for args in stages:
            flags = [a for s in sets for a in ("--set", s)]
            result = CliRunner().invoke(app, ["stage", *args, "--profile", "tiny", *flags])
            assert result.exit_code == 0, f"stage {args}: {result.output[-2000:]}"
        cfg = config.load("tiny", list(sets))
        return json.loads((Path(stage_dir(run_dir(cfg), "fewshot_evaluate", cfg)) / "report.json").read_text())["top1"]
    finally:
        os.chdir(before)


class _ClassBlindPainter(painted.PaintingPipeline):
    """The mutant generator: paints class ``c + 1`` when asked for class ``c``."""

    def __call__(self, prompt, *, class_labels, **kwargs):
        return super().__call__(prompt, class_labels=[(c + 1) % 10 for c in class_labels], **kwargs)


@pytest.fixture(scope="module")
def scores(tmp_path_factory, monkeypatch_module):
    """(variant, split, shots) -> top-1 of ``zeroshot``, ``ct_init`` and ``ct_syn``."""
    root = tmp_path_factory.mktemp("fewshot-learning")
    out = {}
    for split in SPLITS:
        for shots in (1, 4):
            out["tiny", split, shots] = _run(root / "tiny", _sets(split, shots))
            lr0 = _sets(split, shots, "fewshot.lr=1e-9")
            out["zero-lr", split, shots] = _run(root / "tiny", lr0, stages=CHAIN[-2:])  # reuses the images
    monkeypatch_module.setattr(painted, "PaintingPipeline", _ClassBlindPainter)
    for split in SPLITS:
        blind = _sets(split, 4, "fewshot.guidance_strength={4: 1.0}", "fewshot.w_syn=4")
        out["class-blind", split, 4] = _run(root / "class-blind", blind)
    return out


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as patch:
        yield patch


@pytest.mark.parametrize("split", SPLITS)
def test_ct_init_rises_with_shots(scores, split):
    one, four = scores["tiny", split, 1], scores["tiny", split, 4]
    print(f"split {split}: 1 shot {one}, 4 shots {four}")
    assert four["ct_init"] - one["ct_init"] >= SHOTS_MARGIN
    broken = scores["zero-lr", split, 4]["ct_init"] - scores["zero-lr", split, 1]["ct_init"]
    assert broken < SHOTS_MARGIN, "a head that cannot learn must fail the learning check"


@pytest.mark.parametrize("split", SPLITS)
def test_ct_syn_keeps_up_with_ct_init(scores, split):
    four, blind = scores["tiny", split, 4], scores["class-blind", split, 4]
    print(f"split {split}: 4 shots {four}, class-blind painter {blind}")
    assert four["ct_syn"] >= four["ct_init"] - NOISE
    assert blind["ct_init"] == four["ct_init"]  # CT w. init reads real images only
    assert blind["ct_syn"] < blind["ct_init"] - NOISE, "images of the wrong class must fail the check"
