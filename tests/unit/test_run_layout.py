"""Run-folder names are pinned: a refactor that changes a digest would orphan every existing run.

The literals below were computed before the stage table existed (from the hand-written layout of
commit cc48685). If one changes on purpose (a stage's output now depends on a new field), say so in
the commit: runs made before it are no longer found. The tiny profile's downstream folders moved
once on purpose, when its stand-in data moved to its own root (``dataset.root``, which the filter
and features read).

Moved on purpose: the paper's LE and B inputs and CF keep rule (prompts.le_prefix, b_templates,
dataset_prefix; filter.strict, keep_mode fill; top_p 1.0, other-class sentences kept) add fields
to the prompts and filter sections, so both profiles' digests moved (tiny's too: the new fields
are in the sections its run folder is named by). Then features.templates (the text head's template
set) moved the features folder and everything that reads it (filter, tune, evaluate, leakage) in
both profiles; the run folder and the prompts and images folders kept their names. The few-shot rows
read the same prompts, filter and features sections and moved with them.

Moved on purpose: the leakage folder (both profiles) when ``leakage.drop`` joined the leakage section.
That switch belongs to tune (tune reads the leakage flags while it is on), so the leakage stage now
depends on the section's three check fields by name instead of the whole section: flipping the switch
reuses the same flags. Tune's folder keeps its name while the switch is off; with it on, the switch and
the leakage stage's fields join tune's digest (``test_leakage_drop_moves_only_tune_and_what_reads_it``).

Moved on purpose, the tiny profile's pre-training folders only: its run now generates 100 images
for a 10-class slice of the label space (``pretrain.classes``, a field that enters the prompts and
images digests only when set, so the paper profile's pins, over the whole label space, stay) and
trains detection for 60 iterations instead of 200, so the tiny run folder and its pretrain,
finetune, scratch and detect folders moved.

Moved on purpose, the tiny profile only: it now paints its images (``models.generator=standin-drawn``),
encodes them with a mean-pooled tiny ViT CLIP, draws 8 stand-in images per class and trains on
budgets that show learning (tune, few-shot, pre-training and detection schedules), so every tiny
folder moved: its runs before this change measured nothing. The paper profile's pins stay.
"""

import pytest

from synk8s import config
from synk8s.errors import UsageError
from synk8s.stages.table import TABLE, default_run_id, run_dir, stage_dir

pytestmark = pytest.mark.timeout(30)

PINNED = {
    "tiny": (
        "cifar10-30efda9b3da979fe",
        {
            "prompts": "prompts",
            "generate": "images",
            "filter": "filter-a0a74ed64df72798",
            "features": "features-361569e8105d53e8",
            "tune": "tune-ac50287e7ae7abc2",
            "evaluate": "evaluate-ac50287e7ae7abc2",
            # few-shot rows, pinned when they joined the table; the RG and tuning rows moved when
            # fewshot.select, fewshot.rg_prompts and fewshot.rg_filter changed their outputs
            "split": "split-281a94f98c86ba75",
            "guided": "images-rg-6aa0ccdbcc911893",
            "filter_guided": "filter-rg-2a0a5de263f0a5ad",
            "features_guided": "features-rg-9092d9ce20354da2",
            "realfilter": "realfilter-45ba3892f91319f7",
            "fewshot_tune": "fewshot-tune-f077afedda658a31",
            "fewshot_evaluate": "fewshot-evaluate-f077afedda658a31",
            "leakage": "leakage-4727e917182d8257",
            "export": "export-ac50287e7ae7abc2",  # pinned when it joined the table: tune's fields, so tune's digest
            "fewshot_export": "fewshot-export-f077afedda658a31",  # pinned when it joined: fewshot_tune's digest
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
            "split": "split-a002b8d79e0ecaf6",
            "guided": "images-rg-2a2375e62238325d",
            "filter_guided": "filter-rg-074d957ced176550",
            "features_guided": "features-rg-8bbbd80ca46fede5",
            "realfilter": "realfilter-5cf49ca0300ce0fa",
            "fewshot_tune": "fewshot-tune-293dc9057c24cc0e",
            "fewshot_evaluate": "fewshot-evaluate-293dc9057c24cc0e",
            "leakage": "leakage-d5a3ca0d31a9693a",
            "export": "export-14f0e354a444097e",
            "fewshot_export": "fewshot-export-293dc9057c24cc0e",
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


# A pre-training run: prompts and images also depend on the label space (its pins moved with the
# paper's prompt fields above)
# and the image total (synk8s.labelspace.digest_fields), the zero-shot folders above do not.
# The trunk and transfer pins moved when pretrain.moco.bn_splits (split-batch BN) joined the profiles;
# bn_splits=1, plain BN as before, keeps the earlier names (checked below).
PRETRAINING = {
    "tiny": (
        "cifar100-5df8f427c725fe32",
        {
            "pretrain": "pretrain-57999d84c6835bda",
            "finetune": "finetune-9d8eba3834f5b0ed",
            "scratch": "scratch-23f2ccbd9bb28e13",
            "detect": "detect-8a3cefdaff4e35c0",
            "scratch_real": "scratch-real-5c2b626cb3561852",  # pinned when it joined the table
        },
    ),
    "paper": (
        "cifar100-913e3554566911cb",
        {
            "pretrain": "pretrain-78ca76226b1b0f35",
            "finetune": "finetune-5b8e7fdd574e443f",
            "scratch": "scratch-2b204bb1adba0bce",
            "detect": "detect-7581065d8100ee60",
            "scratch_real": "scratch-real-509c4ac223ad10ff",
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


def test_plain_batch_norm_moco_keeps_the_folder_names_from_before_split_batch_norm():
    cfg = config.load("paper", ["pretrain.label_space=cifar100", "pretrain.moco.bn_splits=1"])
    assert [stage_dir("/run", n, cfg) for n in ("pretrain", "finetune", "detect")] == [
        "/run/pretrain-54ae79980c14c6fe",
        "/run/finetune-6aceb0aa86b9a953",
        "/run/detect-eade5fb3e8e73936",
    ]


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
    names = [stage_dir("r", n, base).rsplit("/", 1)[-1] for n in TABLE.names]  # shared folders sit under the root
    assert [stage_dir("r", n, moved).rsplit("/", 1)[-1] for n in TABLE.names] == names


def test_a_downstream_switch_keeps_the_images_and_renames_only_what_reads_it():
    base = config.load("tiny", ["dataset.name=cifar10"])
    sce = config.with_overrides(base, ["tune.loss=ce"])
    assert default_run_id(sce) == default_run_id(base)
    same = [n for n in TABLE.names if stage_dir("r", n, sce) == stage_dir("r", n, base)]
    assert same == ["prompts", "generate", "filter", "test_features", "features", "leakage", "split", "guided",
                    "filter_guided", "features_guided", "realfilter", "pretrain", "finetune", "scratch", "detect",
                    "scratch_real"]


def test_the_split_moves_with_the_shot_count_and_the_b_images_do_not():
    base = config.load("tiny", ["dataset.name=eurosat"])
    four = config.with_overrides(base, ["fewshot.shots_per_class=4"])
    moved = [n for n in TABLE.names if stage_dir("r", n, four) != stage_dir("r", n, base)]
    assert moved == ["split", "guided", "filter_guided", "features_guided", "realfilter", "fewshot_tune",
                     "fewshot_evaluate", "fewshot_export"]


def test_a_pinned_le_revision_moves_the_prompts_and_the_default_keeps_every_folder():
    base = config.load("paper", ["dataset.name=cifar10", "store.root=/store"])
    main = config.with_overrides(base, ["models.le_revision=main"])
    pinned = config.with_overrides(base, ["models.le_revision=0123456789abcdef0123456789abcdef01234567"])
    assert base.models.le_revision == "main" and run_dir(main) == run_dir(base)
    assert base.digest(*TABLE.fields("prompts")) == main.digest(*TABLE.fields("prompts"))
    assert pinned.digest(*TABLE.fields("prompts")) != base.digest(*TABLE.fields("prompts"))
    assert run_dir(pinned) != run_dir(base)  # the prompts folder sits in the run folder


def test_an_explicit_run_id_names_the_run_folder():
    cfg = config.load("tiny", ["store.root=/store"])
    assert run_dir(cfg, "mine") == "/store/runs/mine"


def test_an_unknown_stage_is_a_usage_error():
    with pytest.raises(UsageError, match="unknown stage 'segment'; stages: prompts, generate"):
        stage_dir("r", "segment", config.load("tiny"))


def test_leakage_drop_moves_only_tune_and_what_reads_it():
    off = config.load("paper", ["dataset.name=cifar10", "store.root=/store"])
    on = config.with_overrides(off, ["leakage.drop=true"])
    moved = {name for name in TABLE.names if stage_dir("/run", name, off) != stage_dir("/run", name, on)}
    assert moved == {"tune", "evaluate", "export"}
    assert default_run_id(off) == default_run_id(on)


SHARED = {"tiny": "test-features-415f95e7e97698f9", "paper": "test-features-1b2810a41507c9c9"}


@pytest.mark.parametrize("profile", sorted(SHARED))
def test_the_seed_free_test_features_have_one_folder_for_every_seed(profile):
    """Pinned when the stage joined the table: no seed among its fields, so outside the run folders."""
    seeds = [config.load(profile, ["dataset.name=cifar10", "store.root=/store", f"seed={s}"]) for s in (0, 1, 2)]
    runs = {run_dir(cfg) for cfg in seeds}
    assert len(runs) == 3
    assert {stage_dir(run_dir(cfg), "test_features", cfg) for cfg in seeds} == {
        f"/store/shared/cifar10/{SHARED[profile]}"
    }
    assert len({stage_dir(run_dir(cfg), "features", cfg) for cfg in seeds}) == 3
    # Every other stage of the table depends on the seed (through the prompts or the split).
    assert [n for n in TABLE.names if "seed" not in TABLE.fields(n, seeds[0])] == ["test_features"]
