"""The pre-training rows of the stage table end to end, in-process: images -> MoCo trunk -> VOC detection from
the trunk and from scratch -> the run report, laid out as Tables 9-10."""

import json

import pytest

from synk8s import config, labelspace, storage
from synk8s.reports.transfer import write_transfer_report
from synk8s.stages.synth import prompts
from synk8s.stages.table import TABLE, run_dir

SMALL = [
    "prompts.mode=B",
    "pretrain.label_space=cifar100",
    "pretrain.images=200",
    "pretrain.classes=10",
    "pretrain.method=moco",
    "pretrain.moco.epochs=1",
    "generate.num_shards=1",
    "detect.standin_images=8",
    "detect.iterations=4",
    "detect.lr_steps=[3]",
    "detect.warmup_iters=1",
    "detect.checkpoint_every=4",
    "detect.precise_bn_iters=0",
]


@pytest.mark.timeout(300)
def test_the_table_runs_pretraining_and_both_detection_transfers_into_one_report(tmp_path):
    cfg = config.load("tiny", [f"store.root={tmp_path}/store", f"detect.root={tmp_path}/voc", *SMALL])
    run = run_dir(cfg)
    TABLE.execute("prompts", cfg, run)
    TABLE.execute("generate", cfg, run, shard=0)
    TABLE.execute("generate", cfg, run, collect=True)
    trunk = TABLE.execute("pretrain", cfg, run).out
    sides = {
        side: TABLE.execute("detect", config.with_overrides(cfg, [f"detect.init={side}"]), run).out
        for side in ("pretrained", "scratch")
    }
    assert sides["pretrained"] != sides["scratch"]  # detect.init is part of the folder digest
    uri = write_transfer_report(cfg, run, transfer="voc", pretrain=trunk, **sides)

    report = json.loads(storage.get_bytes(uri))
    assert uri == storage.join(sides["pretrained"], "report.json")
    assert (report["method"], report["label_space"], report["images"]) == ("moco", "cifar100", 200)
    # a 10-class slice of CIFAR-100: every tenth class, 20 images each
    assert (report["classes"], report["label_space_classes"]) == (10, 100)
    assert (report["pretrain_init"], report["profile"]) == ("scratch", "tiny")  # what results --check selects by
    generated = json.loads(storage.get_bytes(storage.join(run, "images", "manifest.json")))
    assert generated["per_class"] == [20] * 10
    written = {r["class_index"]: r["class_name"] for r in prompts.read_prompts(storage.join(run, "prompts"))}
    assert [written[c] for c in range(10)] == list(labelspace.names("cifar100")[::10])
    assert report["images_trained"] < 200  # the monitor's images are held out
    pretrained = json.loads(storage.get_bytes(storage.join(sides["pretrained"], "metrics.json")))
    assert pretrained["pretraining"] == {
        "method": "mocov2",
        "data": "CIFAR-100 Syn",
        "in1k_init": False,
        "images": 200,
        "backbone": trunk,
    }
    for side in ("pretrained", "scratch"):
        assert {k: report[side][k] for k in ("ap50", "ap", "ap75")} == {
            k: json.loads(storage.get_bytes(storage.join(sides[side], "metrics.json")))[k] for k in ("ap50", "ap", "ap75")
        }
    table10 = next(t for t in report["tables"]["ap75"]["tables"] if t["method"] == "mocov2")
    cells = {row["data"]: row["cells"] for row in table10["rows"] if row["runs"]}
    assert cells == {"(None)": {"0": report["scratch"]["ap75"]}, "CIFAR-100 Syn": {"200": report["pretrained"]["ap75"]}}
    assert [e["epoch"] for e in report["curves"]["pretrain"]] == [0, 1] and report["curves"]["scratch"]
    assert report["notice"].startswith("stand-in data:")
