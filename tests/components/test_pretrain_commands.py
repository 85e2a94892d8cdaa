"""The README's pre-training commands, run in-process through kfp.local on the tiny profile.

Two of the three run here (MoCo with the CIFAR-100 transfer, and the VOC transfer from an
ImageNet-1K label space); the supervised CIFAR-100 command differs from the first only in
``--method``, which the stage tests cover. Each reads back the report it printed.

Both are marked ``slow`` (opt-in: ``python -m pytest -m slow``): on 2 CPU cores the tiny profile
still writes LE prompts for every class one class at a time and generates at least one image per
class (1000 for ImageNet-1K), 13 to 30 minutes per command.
"""

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from synk8s.cli.main import app


def _submit(tmp_path, monkeypatch, *args: str) -> dict:
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["submit", "pretrain", *args, "--local", "--profile", "tiny"])
    assert result.exit_code == 0, result.output[-3000:]
    path = Path(result.stdout.strip().splitlines()[-1])  # under the profile's store.root, ./synk8s-store
    assert path.name == "report.json" and path.parts[:2] == ("synk8s-store", "runs")
    return json.loads((tmp_path / path).read_text())


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_moco_pretraining_on_cifar100_is_reported_beside_training_from_scratch(tmp_path, monkeypatch):
    report = _submit(tmp_path, monkeypatch, "--label-space", "cifar100", "--method", "moco", "--transfer", "cifar100")
    assert (report["method"], report["label_space"], report["transfer"]) == ("moco", "cifar100", "cifar100")
    assert report["images"] >= 100 and report["images_trained"] < report["images"]  # monitor images held out
    assert report["pretrained"]["init"] == "pretrained" and report["scratch"]["init"] == "scratch"
    assert report["pretrained"]["folder"] != report["scratch"]["folder"]
    for side in ("pretrained", "scratch"):
        assert 0.0 <= report[side]["top1"] <= 1.0
        assert [e["epoch"] for e in report["curves"][side]] == [1, 2]
    pretraining = report["curves"]["pretrain"]
    assert [e["epoch"] for e in pretraining] == [1, 2] and "knn_top1" in pretraining[0]
    assert report["notice"].startswith("stand-in data:")


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_moco_pretraining_on_imagenet_1k_transfers_to_voc_as_tables_9_and_10(tmp_path, monkeypatch):
    report = _submit(tmp_path, monkeypatch, "--label-space", "imagenet-1k", "--method", "moco", "--transfer", "voc")
    assert (report["method"], report["label_space"], report["metric"]) == ("moco", "imagenet-1k", "ap50")
    assert report["images"] >= 1000  # at least one image of each class
    for side in ("pretrained", "scratch"):
        assert set(report[side]) >= {"ap50", "ap", "ap75"} and 0.0 <= report[side]["ap50"] <= 100.0
        assert report["curves"][side]
    table10 = next(t for t in report["tables"]["ap50"]["tables"] if t["method"] == "mocov2")
    ours = {row["data"]: row for row in table10["rows"] if row["runs"]}
    assert ours["(None)"]["cells"]["0"] == report["scratch"]["ap50"]
    assert ours["IN-1K Syn"]["cells"][str(report["images"])] == report["pretrained"]["ap50"]
    assert set(report["tables"]) == {"ap50", "ap", "ap75"}
