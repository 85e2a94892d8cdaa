"""Run-folder names are pinned: a refactor that changes a digest would orphan every existing run.

The literals below were computed before the stage table existed (from the hand-written layout of
commit cc48685). If one changes on purpose (a stage's output now depends on a new field), say so in
the commit: runs made before it are no longer found.

Moved on purpose: the paper's LE and B inputs and CF keep rule (prompts.le_prefix, b_templates,
dataset_prefix; filter.strict, keep_mode fill; top_p 1.0, other-class sentences kept) add fields
to the prompts and filter sections, so both profiles' digests moved (tiny's too: the new fields
are in the sections its run folder is named by). Then features.templates (the text head's template
set) moved the features folder and everything that reads it (filter, tune, evaluate, leakage) in
both profiles; the run folder and the prompts and images folders kept their names.
"""

import pytest

from synk8s import config
from synk8s.errors import UsageError
from synk8s.stages.table import TABLE, default_run_id, run_dir, stage_dir

pytestmark = pytest.mark.timeout(30)

PINNED = {
    "tiny": (
        "cifar10-c0f94fe1ff16f5d5",
        {
            "prompts": "prompts",
            "generate": "images",
            "filter": "filter-dc617ee6fc79a817",
            "features": "features-9e5c97bd465fa1c4",
            "tune": "tune-b16292e9b6540e93",
            "evaluate": "evaluate-b16292e9b6540e93",
            "leakage": "leakage-8e656e1b80cd20d1",
        },
    ),
    "paper": (
        "cifar10-b318c5df54f9e646",
        {
            "prompts": "prompts",
            "generate": "images",
            "filter": "filter-c452bf4e57f2d57f",
            "features": "features-98a51ee7543b6937",
            "tune": "tune-14f0e354a444097e",
            "evaluate": "evaluate-14f0e354a444097e",
            "leakage": "leakage-1ca85e1769f271b5",
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
    assert same == ["prompts", "generate", "filter", "features", "leakage"]


def test_an_explicit_run_id_names_the_run_folder():
    cfg = config.load("tiny", ["store.root=/store"])
    assert run_dir(cfg, "mine") == "/store/runs/mine"


def test_an_unknown_stage_is_a_usage_error():
    with pytest.raises(UsageError, match="unknown stage 'detect'; stages: prompts, generate"):
        stage_dir("r", "detect", config.load("tiny"))
