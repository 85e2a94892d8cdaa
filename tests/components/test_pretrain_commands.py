"""The README's three pre-training commands, run in-process through kfp.local on the tiny profile.

They share one working folder (store, stand-in data), as commands typed one after another would:
the two CIFAR-100 commands differ only in ``--method``, so the second finds the first one's prompts
and images in the run folder (its digest does not cover the method) and renders nothing. Each reads
back the report it printed. The tiny profile paints 1000 images for a 100-class slice of the label
space (``pretrain.classes``: all of CIFAR-100, a tenth of ImageNet-1K) and trains detection for 150
iterations, so each command takes about a minute on 2 CPU cores.

The supervised command must show transfer: fine-tuning from its trunk beats training from scratch by
TRANSFER_MARGIN (measured: 0.39 against 0.04 top-1 on the stand-in CIFAR-100, seed 0; seeds 0-2 of the
same recipe in tests/learning/test_pretrain_learning.py, with their zero-learning-rate mutants).
"""

import json
import tarfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from synk8s.cli.main import app

TRANSFER_MARGIN = 0.2  # top-1, pre-trained minus scratch, of the supervised command


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    """The folder the commands run in: ``./synk8s-store`` and ``./data`` go there."""
    return tmp_path_factory.mktemp("pretrain-commands")


def _submit(workdir: Path, *args: str) -> dict:
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(workdir)
        result = CliRunner().invoke(app, ["submit", "pretrain", *args, "--local", "--profile", "tiny"])
    assert result.exit_code == 0, result.output[-3000:]
    path = Path(result.stdout.strip().splitlines()[-1])  # under the profile's store.root, ./synk8s-store
    assert path.name == "report.json" and path.parts[:2] == ("synk8s-store", "runs")
    return json.loads((workdir / path).read_text())


def _rendered(workdir: Path, space: str) -> dict[str, tuple[int, int, int]]:
    """Every image tar of the label space's runs: (bytes, modification time in ns, image members)."""
    found = {}
    for tar in sorted((workdir / "synk8s-store" / "runs").glob(f"{space}-*/images/*/*.tar")):
        with tarfile.open(tar) as archive:
            members = sum(1 for m in archive.getmembers() if m.name.endswith(".png"))
        stat = tar.stat()
        found[str(tar.relative_to(workdir))] = (stat.st_size, stat.st_mtime_ns, members)
    return found


def _check_cifar100_report(report: dict, method: str) -> None:
    assert (report["method"], report["label_space"], report["transfer"]) == (method, "cifar100", "cifar100")
    assert (report["classes"], report["label_space_classes"]) == (100, 100)  # the tiny profile's slice
    assert report["images"] == 1000 and report["images_trained"] < 1000  # the monitor's images are held out
    assert report["pretrained"]["init"] == "pretrained" and report["scratch"]["init"] == "scratch"
    assert report["pretrained"]["folder"] != report["scratch"]["folder"]
    for side in ("pretrained", "scratch"):
        assert 0.0 <= report[side]["top1"] <= 1.0 and report[side]["train"] == 800  # the CIFAR-100 stand-in
        assert [e["epoch"] for e in report["curves"][side]] == [1, 2]
    epochs = 6 if method == "supervised" else 2
    assert [e["epoch"] for e in report["curves"]["pretrain"]] == list(range(epochs + 1))  # 0: untrained
    assert report["notice"].startswith("stand-in data:")


@pytest.fixture(scope="module")
def supervised(workdir) -> tuple[dict, dict]:
    """The first README command's report, and the image tars present after it."""
    report = _submit(workdir, "--label-space", "cifar100", "--method", "supervised", "--transfer", "cifar100")
    return report, _rendered(workdir, "cifar100")


@pytest.mark.timeout(600)
def test_supervised_pretraining_on_cifar100_is_reported_beside_training_from_scratch(supervised):
    report, rendered = supervised
    _check_cifar100_report(report, "supervised")
    assert report["curves"]["pretrain"][-1]["top1"] is not None  # the head's own monitor score
    assert sum(members for _, _, members in rendered.values()) == 1000
    assert len({Path(tar).parent.name for tar in rendered}) == 2  # two shards
    gain = report["pretrained"]["top1"] - report["scratch"]["top1"]
    assert gain >= TRANSFER_MARGIN, f"pre-trained {report['pretrained']['top1']}, scratch {report['scratch']['top1']}"


@pytest.mark.timeout(600)
def test_moco_pretraining_on_cifar100_reuses_the_images_and_is_reported_beside_scratch(workdir, supervised):
    first, rendered = supervised
    report = _submit(workdir, "--label-space", "cifar100", "--method", "moco", "--transfer", "cifar100")
    _check_cifar100_report(report, "moco")
    last = report["curves"]["pretrain"][-1]
    assert last["knn_top1"] is not None and last["top1"] is None  # MoCo has no head to score
    assert report["run_dir"] == first["run_dir"]  # one run folder: the same prompts and images
    assert _rendered(workdir, "cifar100") == rendered  # no tar written again, none added
    assert report["pretrained"]["folder"] != first["pretrained"]["folder"]  # its own trunk, its own transfer


@pytest.mark.timeout(600)
def test_moco_pretraining_on_imagenet_1k_transfers_to_voc_as_tables_9_and_10(workdir):
    report = _submit(workdir, "--label-space", "imagenet-1k", "--method", "moco", "--transfer", "voc")
    assert (report["method"], report["label_space"], report["metric"]) == ("moco", "imagenet-1k", "ap50")
    assert (report["classes"], report["label_space_classes"], report["images"]) == (100, 1000, 1000)
    assert sum(members for _, _, members in _rendered(workdir, "imagenet").values()) == 1000
    for side in ("pretrained", "scratch"):
        assert set(report[side]) >= {"ap50", "ap", "ap75"} and 0.0 <= report[side]["ap50"] <= 100.0
        assert report[side]["iterations"] == 150
        assert [e["iteration"] for e in report["curves"][side]][-1] == 150
    table10 = next(t for t in report["tables"]["ap50"]["tables"] if t["method"] == "mocov2")
    ours = {row["data"]: row for row in table10["rows"] if row["runs"]}
    assert ours["(None)"]["cells"]["0"] == report["scratch"]["ap50"]
    assert ours["IN-1K Syn"]["cells"][str(report["images"])] == report["pretrained"]["ap50"]
    assert set(report["tables"]) == {"ap50", "ap", "ap75"}
