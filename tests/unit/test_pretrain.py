"""Pre-training on drawn images: supervised and MoCo v2 learn, the trunk output, kill and resume."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from synk8s import config, stream, training
from synk8s.datasets.drawn_images import write_drawn_images
from synk8s.errors import MissingDataError, UsageError
from synk8s.models import build_backbone
from synk8s.models.checkpoints import load_into, load_trunk
from synk8s.shards import manifest_tars
from synk8s.stages.pretraining import pretrain

CLASSES = 10


@pytest.fixture(scope="module")
def drawn(tmp_path_factory) -> str:
    """240 drawn 32 px images of 10 classes in 3 tars, as a generate output."""
    out = tmp_path_factory.mktemp("drawn") / "images"
    assert write_drawn_images(str(out), classes=CLASSES, per_class=24, seed=0) == 240
    return str(out)


def _cfg(tmp_path, *overrides):
    sets = ["pretrain.epochs=2", "pretrain.moco.epochs=2", "pretrain.lr=0.4", "pretrain.moco.lr=0.4"]
    return config.load("tiny", [f"store.root={tmp_path}", *sets, *overrides])


@pytest.mark.timeout(60)
def test_supervised_pretraining_beats_chance_and_writes_a_torchvision_trunk(drawn, tmp_path):
    result = pretrain.run(_cfg(tmp_path), images=drawn, out=str(tmp_path / "sup"))

    curve = json.loads((tmp_path / "sup" / "curve.json").read_text())["epochs"]
    assert [e["epoch"] for e in curve] == [0, 1, 2]  # epoch 0: the untrained backbone
    assert curve[0]["step"] == 0 and curve[0]["loss"] is None
    assert curve[-1]["top1"] > 3 / CLASSES  # the head on held-out drawn images; chance is 1/10
    assert result.world_size == 1 and result.method == "supervised" and result.steps == 2 * (result.images // 32)

    state, meta = load_trunk(str(tmp_path / "sup"))
    assert not any(k.startswith("fc.") for k in state) and "layer4.0.conv1.weight" in state
    assert meta["backbone"] == "tiny-resnet" and meta["label_space"] == "drawn" and meta["world_size"] == 1
    assert meta["images"] + json.loads((tmp_path / "sup" / "manifest.json").read_text())["counts"]["monitor"] == 240
    model = build_backbone("tiny-resnet", num_classes=7)
    load_into(model, state)
    assert torch.equal(model.conv1.weight, state["conv1.weight"])


@pytest.mark.timeout(60)
def test_moco_knn_monitor_beats_chance(drawn, tmp_path):
    result = pretrain.run(_cfg(tmp_path, "pretrain.method=moco"), images=drawn, out=str(tmp_path / "moco"))

    curve = json.loads((tmp_path / "moco" / "curve.json").read_text())["epochs"]
    assert all(e["knn_top1"] > 2 / CLASSES and e["top1"] is None for e in curve[1:])
    assert result.knn_top1 == curve[-1]["knn_top1"]
    state, meta = load_trunk(str(tmp_path / "moco"))
    assert meta["method"] == "moco"
    assert set(state) == set(build_backbone("tiny-resnet", num_classes=3).state_dict()) - {"fc.weight", "fc.bias"}


@pytest.mark.timeout(90)
def test_a_killed_training_resumes_to_the_same_weights(drawn, tmp_path):
    cfg = _cfg(tmp_path, "pretrain.checkpoint_every=4")  # 6 steps an epoch: checkpoints at 4, 6, 8, 12
    whole = tmp_path / "whole"
    pretrain.run(cfg, images=drawn, out=str(whole))

    # A separate process trains until the checkpoint of step 8 (in epoch 2), then dies without clean-up.
    killed = tmp_path / "killed"
    config_file = tmp_path / "config.json"
    config_file.write_text(cfg.model_dump_json())
    command = [
        sys.executable,
        "-m",
        "synk8s.distributed",
        pretrain.TARGET,
        "--config",
        str(config_file),
        "--kw",
        f"images={drawn}",
        "--kw",
        f"out={killed}",
    ]
    env = {**os.environ, training.EXIT_ENV: "8", "OMP_NUM_THREADS": "1"}
    died = subprocess.run(command, env=env, capture_output=True, text=True, timeout=80)
    assert died.returncode == training.EXIT_CODE, died.stderr[-2000:]
    assert not (killed / "backbone.safetensors").exists()
    assert training.load_checkpoint(str(killed))["step"] == 8

    pretrain.run(cfg, images=drawn, out=str(killed))
    assert json.loads((killed / "manifest.json").read_text())["resumed_from"] == 8
    resumed, uninterrupted = load_file(killed / "backbone.safetensors"), load_file(whole / "backbone.safetensors")
    assert resumed.keys() == uninterrupted.keys()
    assert all(torch.equal(resumed[k], uninterrupted[k]) for k in resumed)
    assert (killed / "curve.json").read_bytes() == (whole / "curve.json").read_bytes()


@pytest.mark.timeout(30)
def test_bad_settings_and_a_checkpoint_of_another_run_are_refused(drawn, tmp_path):
    out = tmp_path / "sup"
    pretrain.run(_cfg(tmp_path, "pretrain.epochs=1"), images=drawn, out=str(out))
    with pytest.raises(UsageError, match="queue 100 must be a multiple of pretrain.batch_size 32"):
        pretrain.run(_cfg(tmp_path, "pretrain.method=moco", "pretrain.moco.queue=100"), images=drawn, out=str(out))
    with pytest.raises(UsageError, match="bn_splits 5 must divide pretrain.batch_size 32 .*or 1 for plain BN"):
        pretrain.run(_cfg(tmp_path, "pretrain.method=moco", "pretrain.moco.bn_splits=5"), images=drawn, out=str(out))
    with pytest.raises(UsageError, match="checkpoint of another pre-training run"):
        pretrain.run(_cfg(tmp_path, "pretrain.epochs=1", "pretrain.lr=0.1"), images=drawn, out=str(out))


@pytest.mark.timeout(30)
def test_imagenet_init_reads_the_model_cache_or_says_how_to_fill_it(drawn, tmp_path):
    with pytest.raises(MissingDataError, match="models.cache is not set.*torch.save"):
        pretrain.run(_cfg(tmp_path, "pretrain.init=imagenet"), images=drawn, out=str(tmp_path / "a"))
    cache = tmp_path / "cache"
    with pytest.raises(MissingDataError, match="backbones/tiny-resnet-imagenet1k.pth"):
        pretrain.run(
            _cfg(tmp_path, "pretrain.init=imagenet", f"models.cache={cache}"), images=drawn, out=str(tmp_path / "b")
        )

    torch.manual_seed(5)
    start = build_backbone("tiny-resnet", num_classes=1000).state_dict()
    (cache / "backbones").mkdir(parents=True)
    torch.save(start, cache / "backbones" / "tiny-resnet-imagenet1k.pth")
    cfg = _cfg(tmp_path, "pretrain.init=imagenet", f"models.cache={cache}", "pretrain.epochs=1")
    model = pretrain.build_model(cfg, num_classes=CLASSES)
    assert (
        torch.equal(model.layer1[0].conv1.weight, start["layer1.0.conv1.weight"]) and model.fc.out_features == CLASSES
    )
    moco = pretrain.build_model(config.with_overrides(cfg, ["pretrain.method=moco"]), num_classes=CLASSES)
    assert torch.equal(moco.encoder_k.conv1.weight, start["conv1.weight"])
    assert (
        json.loads(Path(pretrain.run(cfg, images=drawn, out=str(tmp_path / "c")).meta).read_text())["init"]
        == "imagenet"
    )


@pytest.mark.timeout(120)
def test_two_processes_under_torchrun_record_the_world_size(drawn, tmp_path):
    out = tmp_path / "ddp"
    result = pretrain.run(_cfg(tmp_path, "pretrain.nproc=2", "pretrain.epochs=1"), images=drawn, out=str(out))
    manifest = json.loads((out / "manifest.json").read_text())
    assert result.world_size == manifest["world_size"] == manifest["counts"]["world_size"] == 2
    state, meta = load_trunk(str(out))
    assert meta["world_size"] == 2 and "layer4.0.conv1.weight" in state


def test_ranks_and_workers_read_disjoint_shares_that_cover_every_sample(drawn):
    tars = manifest_tars(drawn)
    every = sorted(s.key for tar in tars for s in stream.raw_samples(tar))
    for slots in (2, 5):  # 3 tars: split by tar, then by sample position
        shares = [[s.key for _, s in stream.slot_share(tars, slot, slots)] for slot in range(slots)]
        assert sorted(k for share in shares for k in share) == every
        assert all(len(share) > 0 for share in shares)
    assert {tar for tar, _ in stream.slot_share(tars, 1, 2)} == {tars[1]}
