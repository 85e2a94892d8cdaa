"""Every read of a recorded output is checked against the SHA-256 recorded when it was written.

Each output is damaged three ways: one byte flipped in place with size and mtime kept (the store's
size/mtime/inode shortcut still matches), truncated, and deleted. A rerun says so in one line and
writes the output again, byte for byte; a reader downstream refuses the damaged file.
"""

import json
import logging
import os
from pathlib import Path

import pytest
from pydantic import BaseModel
from typer.testing import CliRunner

from synk8s import config, storage
from synk8s.cli.main import app
from synk8s.datasets.drawn_images import write_drawn_images
from synk8s.errors import IntegrityError
from synk8s.stages.pretraining import pretrain
from synk8s.stages.table import TABLE
from synk8s.stages.zeroshot import features, tune
from synk8s.stagetable import resume

pytestmark = pytest.mark.timeout(120)

DAMAGES = ["flip", "truncate", "delete"]


class _Done(BaseModel):
    """A stand-in stage result (only recorded, never read back here)."""

    out: str


def _damage(path: Path, how: str) -> None:
    """Flip one byte in place (size, mtime and inode kept), cut the file in half, or delete it."""
    if how == "delete":
        path.unlink()
        return
    st = path.stat()
    if how == "flip":
        with open(path, "r+b") as f:
            f.seek(st.st_size // 2)
            byte = f.read(1)
            f.seek(st.st_size // 2)
            f.write(bytes([byte[0] ^ 0x01]))
    else:
        with open(path, "r+b") as f:
            f.truncate(st.st_size // 2)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def _warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


def test_a_byte_flipped_in_place_is_refused_by_every_whole_read(tmp_path):
    uri = str(tmp_path / "x.bin")
    storage.put_bytes(uri, bytes(range(256)) * 64)
    _damage(Path(uri), "flip")
    assert storage.stat(uri).sha256  # the shortcut still vouches for the file...
    for read in (storage.get_bytes, storage.verify):
        with pytest.raises(IntegrityError) as err:  # ...but reading hashes the content
            read(uri)
        assert str(err.value).startswith(f"{uri} is damaged") and "\n" not in str(err.value)


@pytest.mark.parametrize("how", DAMAGES)
def test_a_damaged_feature_cache_entry_is_encoded_again_byte_for_byte(tmp_path, tiny_config, caplog, how):
    images = str(tmp_path / "images")
    write_drawn_images(images, classes=3, per_class=4, seed=0, size=32, samples_per_tar=6)
    cfg = tiny_config(tmp_path, 1)
    first = features.synthetic_features(cfg, images, progress=False)
    entry = Path(first.uri)
    original = entry.read_bytes()
    assert json.loads(entry.with_suffix(".json").read_text())["sha256"] == storage.stat(first.uri).sha256

    _damage(entry, how)
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        again = features.synthetic_features(cfg, images, progress=False)
    assert not again.from_cache and entry.read_bytes() == original
    if how != "delete":
        (line,) = _warnings(caplog)
        assert "feature cache entry discarded" in line and first.uri in line and "\n" not in line
    assert features.synthetic_features(cfg, images, progress=False).from_cache


SETS = ["prompts.mode=B", "generate.images_per_class=2", "generate.num_shards=1"]


def _stage(root: Path, *args: str) -> dict:
    flags = [a for s in [*SETS, f"dataset.root={root}/data"] for a in ("--set", s)]
    result = CliRunner().invoke(app, ["stage", *args, "--profile", "tiny", "--dataset", "cifar10",
                                      "--store", str(root / "store"), *flags])
    assert result.exit_code == 0, result.output[-2000:]
    return json.loads(result.stdout)


@pytest.mark.parametrize("how", DAMAGES)
def test_a_damaged_test_features_entry_is_found_by_the_resume_and_encoded_again(tmp_path, caplog, how):
    _stage(tmp_path, "test_features")
    cfg = config.load("tiny", [*SETS, "dataset.name=cifar10", f"store.root={tmp_path / 'store'}",
                               f"dataset.root={tmp_path}/data"])
    out = TABLE.stage_dir(TABLE.run_dir(cfg), "test_features", cfg)
    entry = Path(storage.get_json(storage.join(out, "features.json"))["test"])
    original = entry.read_bytes()

    _damage(entry, how)
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        result = _stage(tmp_path, "test_features")
    assert result["cache_hits"] == 0 and entry.read_bytes() == original
    if how == "flip":  # the resume names the damaged entry, and the cache discards it
        lines = _warnings(caplog)
        assert any(str(entry) in line and "running the stage again" in line for line in lines), lines
    assert _stage(tmp_path, "test_features") == result  # repaired: complete, not run again


def _recorded_pretrain(tmp_path: Path) -> tuple[str, str]:
    images = str(tmp_path / "images")
    write_drawn_images(images, classes=4, per_class=12, seed=0, samples_per_tar=24)
    cfg = config.load("tiny", [f"store.root={tmp_path}", "pretrain.epochs=1", "pretrain.batch_size=8"])
    out = str(tmp_path / "pretrain")
    resume.record(pretrain.STAGE, out, "d", pretrain.run(cfg, images=images, out=out))
    return out, images


@pytest.mark.parametrize("how", DAMAGES)
def test_a_damaged_backbone_is_refused_and_its_stage_writes_it_again(tmp_path, caplog, how):
    out, images = _recorded_pretrain(tmp_path)
    weights = Path(out) / "backbone.safetensors"
    original = weights.read_bytes()

    _damage(weights, how)
    if how != "delete":
        with pytest.raises(IntegrityError) as err:  # what finetune and detect call
            pretrain.load_backbone(out)
        message = str(err.value)
        assert message.startswith(f"{weights} is damaged") and "\n" not in message and "stage pretrain" in message
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        assert resume.recorded(pretrain.STAGE, out, "d", pretrain.run) is None
    if how == "flip":
        (line,) = _warnings(caplog)
        assert str(weights) in line and "running the stage again" in line

    cfg = config.load("tiny", [f"store.root={tmp_path}", "pretrain.epochs=1", "pretrain.batch_size=8"])
    resume.record(pretrain.STAGE, out, "d", pretrain.run(cfg, images=images, out=out))
    assert weights.read_bytes() == original
    assert resume.recorded(pretrain.STAGE, out, "d", pretrain.run) is not None


@pytest.mark.parametrize("how", ["flip", "truncate"])
def test_a_damaged_head_is_refused_by_its_readers(tmp_path, caplog, how):
    import torch
    from safetensors.torch import save

    out = str(tmp_path / "tune")
    head = {"weight": torch.arange(12.0).reshape(3, 4), "bias": torch.zeros(3)}
    storage.put_bytes(storage.join(out, "head.safetensors"),
                      save(head, metadata={tune.HEAD_METADATA_KEY: json.dumps({"best_epoch": 1})}))
    storage.put_json(storage.join(out, "manifest.json"), {"stage": "tune"})
    for name in ("curve.json", "split.json"):
        storage.put_json(storage.join(out, name), {})
    resume.record(tune.STAGE, out, "d", _Done(out=out))
    assert tune.load_head(out)[1] == {"best_epoch": 1}

    _damage(Path(out) / "head.safetensors", how)
    with pytest.raises(IntegrityError) as err:
        tune.load_head(out)
    assert "head.safetensors is damaged" in str(err.value) and "stage tune" in str(err.value)
    with caplog.at_level(logging.WARNING):
        assert resume.recorded(tune.STAGE, out, "d", tune.run) is None
    assert any("head.safetensors is damaged" in line for line in _warnings(caplog))

