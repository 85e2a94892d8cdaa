"""Run-folder names are pinned: a refactor that changes a digest would orphan every existing run.

The literals below were computed before the stage table existed (from the hand-written layout of
commit cc48685). If one changes on purpose (a stage's output now depends on a new field), say so in
the commit: runs made before it are no longer found. The tiny profile's downstream folders moved
once on purpose, when its stand-in data moved to its own root (``dataset.root``, which the filter
and features read).
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
            "filter": "filter-1f0767454ac03f0f",
            "features": "features-9e0fd734389d7f74",
            "tune": "tune-23465594e5f06422",
            "evaluate": "evaluate-23465594e5f06422",
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
    assert {name: stage_dir("/run", name, cfg) for name in TABLE.names} == {
        name: f"/run/{folder}" for name, folder in folders.items()
    }


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
    assert same == ["prompts", "generate", "filter", "features"]


def test_an_explicit_run_id_names_the_run_folder():
    cfg = config.load("tiny", ["store.root=/store"])
    assert run_dir(cfg, "mine") == "/store/runs/mine"


def test_an_unknown_stage_is_a_usage_error():
    with pytest.raises(UsageError, match="unknown stage 'detect'; stages: prompts, generate"):
        stage_dir("r", "detect", config.load("tiny"))
