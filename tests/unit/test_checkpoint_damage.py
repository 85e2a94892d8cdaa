"""Damaged checkpoints are set aside and training goes on from a good one; a copied store resumes."""

import json
import logging
import os
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from synk8s import config, storage, training
from synk8s.cli.main import app
from synk8s.datasets.drawn_images import write_drawn_images
from synk8s.stages.pretraining import detect, pretrain


def _flip(path: Path) -> None:
    """Flip one byte in the middle, keeping size and modification time."""
    stat = path.stat()
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 3])


def _garbage(path: Path) -> None:
    path.write_bytes(b"not a checkpoint at all\n" * 40)


DAMAGE = {"flipped": _flip, "truncated": _truncate, "garbage": _garbage}


def _same_weights(a: Path, b: Path) -> bool:
    x, y = load_file(a), load_file(b)
    return x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x)


def _warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and "checkpoint" in r.getMessage()]


# ----------------------------------------------------------------------------- the files alone


def test_a_save_keeps_two_verified_files_and_a_load_skips_a_damaged_one(tmp_path, caplog):
    for step in (1, 2, 3):
        training.save_checkpoint(str(tmp_path), {"w": torch.full((4,), float(step))}, step)
    assert sorted(p.name for p in tmp_path.glob("[!.]*")) == [
        "checkpoint.0000002.pt",
        "checkpoint.0000003.pt",
        "checkpoint.json",
    ]
    assert training.load_checkpoint(str(tmp_path))["step"] == 3

    _flip(tmp_path / "checkpoint.0000003.pt")
    (tmp_path / "checkpoint.0000009.pt").write_bytes(b"left behind by a killed writer")
    assert training.load_checkpoint(str(tmp_path), writer=False)["step"] == 2  # other ranks only skip
    assert (tmp_path / "checkpoint.0000003.pt").exists() and not _warnings(caplog)
    with caplog.at_level(logging.WARNING):
        assert training.load_checkpoint(str(tmp_path))["step"] == 2
    assert any("checkpoint.0000003.pt does not match its recorded SHA-256; set aside" in m for m in _warnings(caplog))
    assert any("checkpoint.0000009.pt is not listed in checkpoint.json" in m for m in _warnings(caplog))
    assert (tmp_path / "checkpoint.0000003.pt.damaged").exists() and not (tmp_path / "checkpoint.0000003.pt").exists()
    assert [c["step"] for c in json.loads((tmp_path / "checkpoint.json").read_text())["checkpoints"]] == [2]

    (tmp_path / "checkpoint.json").write_text("{garbage")
    with caplog.at_level(logging.WARNING):
        assert training.load_checkpoint(str(tmp_path)) is None
    assert (tmp_path / "checkpoint.json.damaged").exists() and (tmp_path / "checkpoint.0000002.pt.damaged").exists()


# ----------------------------------------------------------------------------- pre-training


@pytest.fixture(scope="module")
def drawn(tmp_path_factory) -> str:
    """240 drawn 32 px images of 10 classes in 3 tars, as a generate output."""
    out = tmp_path_factory.mktemp("drawn") / "images"
    assert write_drawn_images(str(out), classes=10, per_class=24, seed=0) == 240
    return str(out)


def _cfg(tmp_path):
    sets = ["pretrain.epochs=2", "pretrain.lr=0.4", "pretrain.checkpoint_every=4"]  # checkpoints at 4, 6, 8, 12
    return config.load("tiny", [f"store.root={tmp_path}", *sets])


@pytest.fixture(scope="module")
def whole(drawn, tmp_path_factory) -> Path:
    """An uninterrupted pre-training run (its last two checkpoints: steps 8 and 12)."""
    tmp = tmp_path_factory.mktemp("whole")
    pretrain.run(_cfg(tmp), images=drawn, out=str(tmp / "out"))
    return tmp / "out"


@pytest.mark.timeout(120)
@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_a_damaged_pretrain_checkpoint_is_set_aside_and_the_previous_one_resumed(
    drawn, whole, tmp_path, caplog, damage
):
    out = tmp_path / "out"
    shutil.copytree(whole, out)
    (out / "backbone.safetensors").unlink()
    DAMAGE[damage](out / "checkpoint.0000012.pt")
    with caplog.at_level(logging.WARNING):
        pretrain.run(_cfg(tmp_path), images=drawn, out=str(out))
    (line,) = _warnings(caplog)
    assert "checkpoint.0000012.pt" in line and "set aside" in line
    assert (out / "checkpoint.0000012.pt.damaged").exists()
    assert json.loads((out / "manifest.json").read_text())["resumed_from"] == 8
    assert _same_weights(out / "backbone.safetensors", whole / "backbone.safetensors")
    assert training.load_checkpoint(str(out))["step"] == 12


@pytest.mark.timeout(120)
def test_with_both_checkpoints_damaged_pretraining_starts_again_and_ends_the_same(drawn, whole, tmp_path, caplog):
    out = tmp_path / "out"
    shutil.copytree(whole, out)
    _garbage(out / "checkpoint.0000012.pt")
    _truncate(out / "checkpoint.0000008.pt")
    with caplog.at_level(logging.WARNING):
        pretrain.run(_cfg(tmp_path), images=drawn, out=str(out))
    assert len(_warnings(caplog)) == 2
    assert json.loads((out / "manifest.json").read_text())["resumed_from"] is None
    assert _same_weights(out / "backbone.safetensors", whole / "backbone.safetensors")


@pytest.mark.timeout(120)
def test_a_copied_store_resumes_pretraining_from_its_checkpoint(drawn, whole, tmp_path):
    moved = tmp_path / "elsewhere"
    shutil.copytree(Path(drawn), moved / "images")
    shutil.copytree(whole, moved / "out")
    pretrain.run(_cfg(tmp_path), images=str(moved / "images"), out=str(moved / "out"))
    assert json.loads((moved / "out" / "manifest.json").read_text())["resumed_from"] == 12
    assert _same_weights(moved / "out" / "backbone.safetensors", whole / "backbone.safetensors")


# ----------------------------------------------------------------------------- detection

_SHORT = [
    "detect.iterations=20",
    "detect.lr_steps=[15]",
    "detect.warmup_iters=5",
    "detect.checkpoint_every=5",
    "detect.log_every=5",
    "detect.precise_bn_iters=2",
    "detect.standin_images=8",
]


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    """An uninterrupted detection run of 20 iterations (last two checkpoints: 15 and 20) and its folder."""
    tmp = tmp_path_factory.mktemp("detect")
    overrides = [f"detect.root={tmp}/voc", *_SHORT]
    return detect.run(config.load("tiny", overrides), backbone=None, out=str(tmp / "out"), progress=False), tmp


@pytest.mark.timeout(120)
@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_a_damaged_detection_checkpoint_is_set_aside_and_the_previous_one_resumed(straight, tmp_path, caplog, damage):
    result, tmp = straight
    out = tmp_path / "out"
    shutil.copytree(tmp / "out", out)
    DAMAGE[damage](out / "checkpoints" / "checkpoint.0000020.pt")
    with caplog.at_level(logging.WARNING):
        again = detect.run(
            config.load("tiny", [f"detect.root={tmp}/voc", *_SHORT]), backbone=None, out=str(out), progress=False
        )
    (line,) = _warnings(caplog)
    assert "checkpoint.0000020.pt" in line and "set aside" in line
    assert (out / "checkpoints" / "checkpoint.0000020.pt.damaged").exists()
    assert again.resumed_from == 15
    assert _same_weights(Path(again.model), Path(result.model))
    assert storage.get_json(again.curve) == storage.get_json(result.curve)


@pytest.mark.timeout(120)
def test_a_copied_store_resumes_detection_from_its_checkpoint(straight, tmp_path):
    result, tmp = straight
    shutil.copytree(tmp, tmp_path / "moved")
    overrides = [f"detect.root={tmp_path}/moved/voc", *_SHORT]
    again = detect.run(config.load("tiny", overrides), backbone=None, out=str(tmp_path / "moved" / "out"))
    assert again.resumed_from == 20
    assert _same_weights(Path(again.model), Path(result.model))


# ----------------------------------------------------------------------------- the command line


@pytest.mark.timeout(240)
def test_synk8s_stage_pretrain_with_a_damaged_checkpoint_warns_and_finishes(tmp_path):
    common = ["--store", str(tmp_path / "store"), "--dataset", "cifar10", "--set", "generate.images_per_class=4",
              "--set", "generate.num_shards=1", "--set", f"dataset.root={tmp_path}/data/{{name}}",
              "--set", "pretrain.batch_size=8", "--set", "pretrain.epochs=1"]  # fmt: skip
    runner = CliRunner()
    for stage in ("prompts", "generate", "collect", "pretrain"):
        result = runner.invoke(app, ["stage", stage, *common])
        assert result.exit_code == 0, result.output
    (manifest,) = (tmp_path / "store").rglob("pretrain*/manifest.json")
    manifest.unlink()  # the folder is unfinished again
    (newest, *_) = sorted(manifest.parent.glob("checkpoint.*.pt"), reverse=True)
    _garbage(newest)
    result = runner.invoke(app, ["stage", "pretrain", *common])
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output + result.stderr
    (line,) = [line for line in result.stderr.splitlines() if "WARNING" in line]
    assert f"{newest.name} has 960 bytes" in line and "set aside" in line
    assert Path(f"{newest}.damaged").exists() and manifest.exists()
