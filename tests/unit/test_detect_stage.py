"""The detect stage on the shapes stand-in: it learns, writes what it says, resumes after a kill, lays out tables."""

import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file

from synk8s import config, datasets, distributed, storage
from synk8s.detection import voc_data
from synk8s.detection.model import build_detector
from synk8s.detection.tables import detection_tables
from synk8s.detection.train import predict
from synk8s.detection.trunk import Trunk, build_trunk
from synk8s.detection.voc_eval import GroundTruth, evaluate
from synk8s.errors import MissingDataError
from synk8s.runs import read_manifest
from synk8s.seeds import derive_seed
from synk8s.stages.pretraining import detect


def _cfg(tmp, *overrides):
    return config.load("tiny", [f"detect.root={tmp}/voc", f"store.root={tmp}/store", *overrides])


#: 200 iterations: long enough to learn the stand-in's shapes (the tiny profile runs 60, for speed).
LEARNING = ("detect.iterations=200", "detect.lr_steps=[160]", "detect.warmup_iters=20", "detect.checkpoint_every=100")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny-profile run of 200 iterations from scratch on 128 stand-in images, and its config."""
    tmp = tmp_path_factory.mktemp("detect")
    cfg = _cfg(tmp, *LEARNING)
    result = detect.run(cfg, backbone=None, out=str(tmp / "out"), progress=False)
    return cfg, result, tmp


@pytest.mark.timeout(240)
def test_a_trained_tiny_detector_finds_the_shapes_and_an_untrained_one_does_not(trained):
    cfg, result, tmp = trained
    records = voc_data.evaluation_records(tmp / "voc")
    torch.manual_seed(derive_seed(cfg.seed, "detect", "init"))  # the trained run's starting weights
    untrained = build_detector(cfg.detect, build_trunk(Trunk("tiny-resnet", {}, "scratch")), num_classes=20)
    found = predict(untrained, records, cfg.detect, distributed.current("cpu"))
    before = evaluate([GroundTruth(r.boxes, r.labels, r.difficult) for r in records], found, voc_data.class_names())
    assert result.standin and result.test_images == 64 and result.train_images == 128
    assert before.ap50 < 10.0
    assert result.ap50 > 80.0 and result.ap > 40.0 and result.ap75 > 30.0


@pytest.mark.timeout(60)
def test_the_stage_writes_metrics_weights_curve_and_manifest(trained):
    cfg, result, tmp = trained
    out = str(tmp / "out")
    metrics = detect.load_metrics(out)
    assert metrics["ap50"] == result.ap50 and metrics["metric"] == "VOC2007 11-point AP, percent"
    drawn = {"car", "dog", "person"}
    assert {n for n, c in metrics["per_class"].items() if c["positives"]} == drawn
    assert all(metrics["per_class"][n]["ap50"] is None for n in set(metrics["per_class"]) - drawn)
    assert metrics["pretraining"] == {
        "method": None,
        "data": "(None)",
        "in1k_init": False,
        "images": 0,
        "backbone": None,
    }
    manifest = read_manifest(out, "detect")
    assert manifest["counts"] == {"train_images": 128, "test_images": 64, "iterations": 200}
    assert manifest["resumed_from"] is None and manifest["trunk"] == "scratch" and manifest["processes"] == 1
    curve = storage.get_json(result.curve)["entries"]
    assert [e["iteration"] for e in curve] == list(range(20, 201, 20))
    assert curve[-1]["loss"] < 0.5 * curve[0]["loss"] and curve[-1]["lr"] == pytest.approx(0.002)
    kept = storage.get_json(storage.join(out, "checkpoints", "checkpoint.json"))["checkpoints"]
    assert [(c["file"], c["step"]) for c in kept] == [("checkpoint.0000200.pt", 200), ("checkpoint.0000100.pt", 100)]
    assert [o.uri.rsplit("/", 1)[1] for o in storage.list(storage.join(out, "checkpoints"))] == [
        "checkpoint.0000100.pt",
        "checkpoint.0000200.pt",
        "checkpoint.json",
    ]
    # the saved detector rebuilds from its own metadata and reproduces the reported AP
    model = detect.load_detector(out)
    records = voc_data.evaluation_records(tmp / "voc")
    found = predict(model, records, cfg.detect, distributed.current("cpu"))
    again = evaluate([GroundTruth(r.boxes, r.labels, r.difficult) for r in records], found, voc_data.class_names())
    assert again.ap50 == pytest.approx(result.ap50) and again.ap == pytest.approx(result.ap)
    with pytest.raises(MissingDataError, match="run `synk8s stage detect` first"):
        detect.load_metrics(str(tmp / "nothing"))


@pytest.mark.timeout(60)
def test_a_rerun_resumes_the_finished_run_and_gives_the_same_result(trained):
    cfg, result, tmp = trained
    first = load_file(result.model)
    again = detect.run(cfg, backbone=None, out=str(tmp / "out"), progress=False)
    assert again.resumed_from == 200
    assert (again.ap50, again.ap, again.ap75) == (result.ap50, result.ap, result.ap75)
    second = load_file(again.model)
    assert first.keys() == second.keys() and all(torch.equal(first[k], second[k]) for k in first)


_SHORT = [
    "detect.iterations=40",
    "detect.lr_steps=[30]",
    "detect.warmup_iters=5",
    "detect.checkpoint_every=5",
    "detect.log_every=5",
    "detect.precise_bn_iters=2",
    "detect.standin_images=8",
]
_CHILD = """
import sys, torch
torch.set_num_threads(1)
from synk8s import config
from synk8s.stages.pretraining import detect
detect.run(config.load("tiny", sys.argv[2:]), backbone=None, out=sys.argv[1], progress=False)
"""


def _child(out, overrides):
    """The stage in a process of its own (one torch thread, as in this one), to be killed."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        [sys.executable, "-c", _CHILD, out, *overrides], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )


@pytest.mark.timeout(180)
def test_a_killed_run_resumes_from_its_checkpoint_and_ends_with_the_same_weights(tmp_path):
    """SIGKILL a run once its first checkpoint is in place; the rerun ends where an unbroken run ends."""
    overrides = [f"detect.root={tmp_path}/voc", f"store.root={tmp_path}/store", *_SHORT]
    straight = detect.run(config.load("tiny", overrides), backbone=None, out=str(tmp_path / "straight"), progress=False)

    out = tmp_path / "killed"
    child = _child(str(out), overrides)
    pointer = out / "checkpoints" / "checkpoint.json"
    deadline = time.monotonic() + 120
    while not pointer.exists() and child.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    os.kill(child.pid, signal.SIGKILL)
    child.communicate()
    assert child.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    assert not (out / "metrics.json").exists() and not (out / "model.safetensors").exists()

    result = detect.run(config.load("tiny", overrides), backbone=None, out=str(out), progress=False)
    assert result.resumed_from is not None and 0 < result.resumed_from < 40 and result.resumed_from % 5 == 0
    a, b = load_file(straight.model), load_file(result.model)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert (result.ap50, result.ap) == (straight.ap50, straight.ap)
    assert storage.get_json(result.curve) == storage.get_json(straight.curve)


@pytest.mark.timeout(30)
def test_a_checkpoint_of_another_run_is_refused(tmp_path):
    from synk8s.errors import UsageError

    overrides = [
        f"detect.root={tmp_path}/voc",
        *_SHORT,
        "detect.iterations=5",
        "detect.lr_steps=[4]",
        "detect.warmup_iters=1",
    ]
    detect.run(config.load("tiny", overrides), backbone=None, out=str(tmp_path / "out"), progress=False)
    with pytest.raises(UsageError, match="belong to another run"):
        detect.run(
            config.load("tiny", [*overrides, "detect.lr=0.01"]),
            backbone=None,
            out=str(tmp_path / "out"),
            progress=False,
        )
    assert datasets.is_standin(tmp_path / "voc")


def test_runs_are_laid_out_as_tables_9_and_10(trained):
    _, result, _ = trained
    ours = detect.load_metrics(str(trained[2] / "out"))
    synthetic = {
        "ap50": 79.5,
        "ap": 50.0,
        "ap75": 55.0,
        "pretraining": {"method": "supervised", "data": "IN-1K Syn", "in1k_init": False, "images": 1_200_000},
    }
    moco = [
        {
            "ap50": v,
            "ap": 0.0,
            "ap75": 0.0,
            "pretraining": {"method": "mocov2", "data": "IN-2K Syn", "in1k_init": True, "images": 4_000_000},
        }
        for v in (82.0, 83.0)
    ]
    tables = detection_tables([ours, synthetic, *moco])
    supervised, mocov2 = tables["tables"]
    assert (supervised["method"], mocov2["method"]) == ("supervised", "mocov2")
    assert supervised["columns"] == ["0", "1200000", "2400000", "4000000"]
    scratch = supervised["rows"][0]
    assert (scratch["data"], scratch["in1k_init"]) == ("(None)", False)
    assert scratch["cells"] == {"0": result.ap50} and scratch["paper"] == {"0": 66.08}
    assert mocov2["rows"][0]["cells"] == {"0": result.ap50}  # the from-scratch row belongs to both tables
    in1k = next(r for r in supervised["rows"] if r["data"] == "IN-1K Syn" and not r["in1k_init"])
    assert in1k["cells"] == {"1200000": 79.5} and in1k["paper"] == {"1200000": 79.0, "2400000": 80.0}
    both = next(r for r in mocov2["rows"] if r["data"] == "IN-2K Syn" and r["in1k_init"])
    assert both["cells"] == {"4000000": 82.5} and both["runs"] == {"4000000": 2} and both["paper"] == {}
    assert [r["in1k_init"] for r in supervised["rows"]] == sorted(r["in1k_init"] for r in supervised["rows"])
    assert detection_tables([synthetic], metric="ap75")["tables"][0]["rows"][0]["paper"] == {}
