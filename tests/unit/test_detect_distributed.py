"""The detect stage as the table runs it: two gloo processes under torchrun, rank 0 the only writer."""

import pytest

from synk8s import config, storage
from synk8s.runs import read_manifest
from synk8s.stages.pretraining import detect

# Tiny and short: 8 iterations of 2 images per process on the drawn stand-in, no precise BN.
SHORT = [
    "detect.standin_images=8",
    "detect.iterations=8",
    "detect.lr_steps=[6]",
    "detect.warmup_iters=2",
    "detect.checkpoint_every=8",
    "detect.precise_bn_iters=0",
    "detect.init=scratch",
]


@pytest.mark.timeout(150)
def test_two_torchrun_processes_train_the_detector_and_only_rank_0_writes(tmp_path):
    cfg = config.load(
        "tiny", [f"detect.root={tmp_path}/voc", f"store.root={tmp_path}/store", "pretrain.nproc=2", *SHORT]
    )
    out = str(tmp_path / "detect")
    result = detect.transfer(cfg, backbone=str(tmp_path / "no-pretraining-read"), out=out, progress=False)

    manifest = read_manifest(out, "detect")
    assert manifest["world_size"] == 2 and manifest["processes"] == 2
    assert result.iterations == 8 and 0.0 <= result.ap50 <= 100.0
    # One set of outputs and one checkpoint: rank 1 wrote nothing of its own (.synk8s-meta: the store's hashes).
    assert sorted(p.name for p in (tmp_path / "detect").iterdir() if p.name != ".synk8s-meta") == [
        "checkpoints",
        "curve.json",
        "manifest.json",
        "metrics.json",
        "model.safetensors",
    ]
    assert len(list((tmp_path / "detect" / "checkpoints").glob("checkpoint.*.pt"))) == 1
    assert storage.get_json(storage.join(out, "metrics.json"))["pretraining"]["data"] == "(None)"
