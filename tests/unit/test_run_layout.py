"""Run-folder names are pinned: a refactor that changes a digest would orphan every existing run.

The literals below were computed before the stage table existed (from the hand-written layout of
commit cc48685). If one changes on purpose (a stage's output now depends on a new field), say so in
the commit: runs made before it are no longer found. The tune and evaluate names moved once, when
``tune.trainable`` (few-shot tuning) joined the ``tune`` section that tune's folder digest covers.
"""

import pytest

from synk8s import config
from synk8s.errors import UsageError
from synk8s.stages.table import TABLE, default_run_id, run_dir, stage_dir

pytestmark = pytest.mark.timeout(30)

PINNED = {
    "tiny": (
        "cifar10-11e00ff2062482c4",
        {
            "prompts": "prompts",
            "generate": "images",
            "filter": "filter-3e26236ce1c0ddc0",
            "features": "features-1852f160d3da0186",
            "tune": "tune-bc5bab640a33c655",
            "evaluate": "evaluate-bc5bab640a33c655",
        },
    ),
    "paper": (
        "cifar10-83518cddeaa02609",
        {
            "prompts": "prompts",
            "generate": "images",
            "filter": "filter-86c4d3d41be3a3ce",
            "features": "features-0ce91bf201fa396d",
            "tune": "tune-2e94e5c1ec857847",
            "evaluate": "evaluate-2e94e5c1ec857847",
        },
    ),
}


@pytest.mark.parametrize("profile", sorted(PINNED))
def test_run_and_stage_folder_names_do_not_move(profile):
    cfg = config.load(profile, ["dataset.name=cifar10", "store.root=/store"])
    run_id, folders = PINNED[profile]
    assert default_run_id(cfg) == run_id
    assert run_dir(cfg) == f"/store/runs/{run_id}"
    assert {name: stage_dir("/run", name, cfg) for name in folders} == {
        name: f"/run/{folder}" for name, folder in folders.items()
    }


# A pre-training run: prompts and images also depend on the label space
# and the image total (synk8s.labelspace.digest_fields), the zero-shot folders above do not.
PRETRAINING = {
    "tiny": (
        "cifar100-b02683525e3e92e9",
        {
            "pretrain": "pretrain-6ddfcc5f31bb1c8e",
            "finetune": "finetune-7855e26acd1cdc80",
            "scratch": "scratch-f30467f8d2ba3e55",
            "detect": "detect-5b2245f220c3569b",
        },
    ),
    "paper": (
        "cifar100-94a9e38fbea1866e",
        {
            "pretrain": "pretrain-6794a16da350d499",
            "finetune": "finetune-8490fd877371190a",
            "scratch": "scratch-1443299672ed31cd",
            "detect": "detect-c22ec9d094e91df0",
        },
    ),
}


@pytest.mark.parametrize("profile", sorted(PRETRAINING))
def test_pretraining_folder_names_do_not_move(profile):
    cfg = config.load(profile, ["pretrain.label_space=cifar100", "store.root=/store"])
    run_id, folders = PRETRAINING[profile]
    assert default_run_id(cfg) == run_id
    assert {name: stage_dir("/run", name, cfg) for name in folders} == {
        name: f"/run/{folder}" for name, folder in folders.items()
    }


def test_a_pretraining_runs_images_depend_on_its_label_space_and_image_total():
    base = config.load("tiny", ["pretrain.label_space=cifar100"])
    more = config.with_overrides(base, ["pretrain.images=2000"])
    wider = config.with_overrides(base, ["pretrain.label_space=imagenet-1k"])
    assert len({default_run_id(base), default_run_id(more), default_run_id(wider)}) == 3
    # The transfer and its start weights rename only the transfer folders, never the trunk.
    voc = config.with_overrides(
        base, ["pretrain.transfer=voc", "pretrain.finetune.init=scratch", "detect.init=pretrained"]
    )
    assert default_run_id(voc) == default_run_id(base)
    assert stage_dir("r", "pretrain", voc) == stage_dir("r", "pretrain", base)
    assert stage_dir("r", "finetune", voc) != stage_dir("r", "finetune", base)
    assert stage_dir("r", "detect", voc) != stage_dir("r", "detect", base)


def test_store_and_cluster_settings_do_not_rename_folders():
    base = config.load("tiny", ["dataset.name=cifar10"])
    moved = config.load("tiny", ["dataset.name=cifar10", "store.root=s3://bkt/p", "cluster.namespace=other"])
    assert default_run_id(moved) == default_run_id(base)
    assert [stage_dir("r", n, moved) for n in TABLE.names] == [stage_dir("r", n, base) for n in TABLE.names]


def test_a_downstream_switch_keeps_the_images_and_renames_only_what_reads_it():
    base = config.load("tiny", ["dataset.name=cifar10"])
    sce = config.with_overrides(base, ["tune.loss=ce"])
    assert default_run_id(sce) == default_run_id(base)
    same = [n for n in TABLE.names if stage_dir("r", n, sce) == stage_dir("r", n, base)]
    assert same == ["prompts", "generate", "filter", "features", "pretrain", "finetune", "scratch", "detect"]


def test_an_explicit_run_id_names_the_run_folder():
    cfg = config.load("tiny", ["store.root=/store"])
    assert run_dir(cfg, "mine") == "/store/runs/mine"


def test_an_unknown_stage_is_a_usage_error():
    with pytest.raises(UsageError, match="unknown stage 'segment'; stages: prompts, generate"):
        stage_dir("r", "segment", config.load("tiny"))
