"""The few-shot rows of the stage table, run end to end through TABLE.execute on the tiny profile.

Every strategy (B, RF, RG) and every schedule (mix, syn-then-real, real-then-syn) runs from the
split to the report, each stage reading the folders the table picks for the config.
"""

import inspect

import pytest

from synk8s import config, storage
from synk8s.errors import UsageError
from synk8s.runs import read_manifest
from synk8s.stages.fewshot.split import load_split
from synk8s.stages.table import TABLE

pytestmark = pytest.mark.timeout(300)

PER_CLASS = 3


def _config(root, *overrides):
    return config.load(
        "tiny",
        [
            "dataset.name=cifar10", f"dataset.root={root}/data/{{name}}", "dataset.standin_per_class=2",
            "prompts.mode=B", f"generate.images_per_class={PER_CLASS}", "generate.num_shards=1",
            f"fewshot.images_per_class={PER_CLASS}", "filter.enabled=false", "tune.val_fraction=0.34",
            f"store.root={root}/store", *overrides,
        ],
    )  # fmt: skip


def _run(cfg, *stages):
    """Execute ``stages`` in order (sharded ones: shard 0, then their collect step); the last one's Done."""
    run = TABLE.run_dir(cfg)
    done = None
    for stage in stages:
        if TABLE.get(stage).shards:
            TABLE.execute(stage, cfg, run, shard=0)
            TABLE.execute(stage, cfg, run, collect=True)
        else:
            quiet = {"progress": False} if "progress" in inspect.signature(TABLE.get(stage).run).parameters else {}
            done = TABLE.execute(stage, cfg, run, **quiet)
    return done


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    """A run folder with the B images, CF and features done (shared by every strategy and schedule)."""
    root = tmp_path_factory.mktemp("fewshot-table")
    _run(_config(root, "fewshot.strategy=B"), "prompts", "generate", "filter", "test_features", "features", "split")
    return root


@pytest.mark.parametrize(
    ("strategy", "stages", "images", "selection"),
    [
        ("B", (), "generate", "filter"),
        ("RF", ("realfilter",), "generate", "realfilter"),
        ("RG", ("guided", "filter_guided", "features_guided"), "guided", "filter_guided"),
    ],
)
def test_each_strategy_runs_from_the_split_to_the_report(root, strategy, stages, images, selection):
    cfg = _config(root, f"fewshot.strategy={strategy}")
    run = TABLE.run_dir(cfg)
    done = _run(cfg, *stages, "fewshot_tune", "fewshot_evaluate")
    report = storage.get_json(done.uri)
    assert done.uri == storage.join(TABLE.stage_dir(run, "fewshot_evaluate", cfg), "report.json")
    assert (report["strategy"], report["schedule"], report["shots"]) == (strategy, "mix", 1)
    assert report["split_digest"] == load_split(TABLE.stage_dir(run, "split", cfg)).digest
    assert set(report["top1"]) == {"zeroshot", "ct_init", "ct_syn"}
    assert report["counts"]["real"] == 10 and report["notice"].startswith("stand-in data")
    # Tuning read the images and selection this strategy names, which hold what was generated for it.
    tuned = read_manifest(TABLE.stage_dir(run, "fewshot_tune", cfg), "fewshot_tune")
    assert tuned["inputs"]["images"] == TABLE.stage_dir(run, images, cfg)
    assert tuned["inputs"]["selection"] == TABLE.stage_dir(run, selection, cfg)
    assert read_manifest(tuned["inputs"]["images"], images)["stage"] == images
    kept = report["counts"]["synthetic_train"] + report["counts"]["synthetic_val"]
    if strategy == "RF":
        assert kept == read_manifest(TABLE.stage_dir(run, "realfilter", cfg), "realfilter")["counts"]["kept"]
    else:
        assert kept == 10 * PER_CLASS  # CF is off: every generated image is kept


@pytest.mark.parametrize("schedule", ["mix", "syn-then-real", "real-then-syn"])
def test_each_schedule_tunes_and_reports_into_its_own_folder(root, schedule):
    cfg = _config(root, "fewshot.strategy=B", f"fewshot.schedule={schedule}")
    done = _run(cfg, "fewshot_tune", "fewshot_evaluate")
    report = storage.get_json(done.uri)
    assert report["schedule"] == schedule
    curve = storage.get_json(storage.join(TABLE.stage_dir(TABLE.run_dir(cfg), "fewshot_tune", cfg), "curve.json"))
    phases = {point.get("phase") for point in curve["ct_syn"]["epochs"]}
    assert len(phases) == (1 if schedule == "mix" else 2), phases
    mix = _config(root, "fewshot.strategy=B")
    assert (TABLE.stage_dir("r", "fewshot_tune", cfg) == TABLE.stage_dir("r", "fewshot_tune", mix)) == (
        schedule == "mix"
    )


def test_a_folder_of_another_strategy_is_refused(root):
    cfg = _config(root, "fewshot.strategy=RF")
    run = TABLE.run_dir(cfg)
    inputs = TABLE.input_dirs("fewshot_tune", run, cfg)
    inputs["selection"] = TABLE.stage_dir(run, "filter", cfg)  # B's selection under an RF config
    with pytest.raises(UsageError, match="fewshot.strategy='RF' reads selection from"):
        TABLE.execute("fewshot_tune", cfg, run, inputs=inputs, progress=False)


def test_the_sweep_gathers_every_shot_count_of_the_run(root):
    from synk8s.stages.fewshot.sweep import write_sweep

    cfg = _config(root, "fewshot.strategy=B")
    assert cfg.fewshot.shots == (1, 2)
    _run(config.with_overrides(cfg, ["fewshot.shots_per_class=2"]), "split", "fewshot_tune", "fewshot_evaluate")
    _run(cfg, "fewshot_tune", "fewshot_evaluate")  # M=1 (the split is the fixture's)
    sweep = storage.get_json(write_sweep(cfg, TABLE.run_dir(cfg)))
    assert sweep["shots"] == [1, 2]
    assert [storage.get_json(row["report"])["shots"] for row in sweep["runs"]] == [1, 2]
    assert sweep["ct_syn_top1"] == [row["top1"]["ct_syn"] for row in sweep["runs"]]
    assert [row["counts"]["real"] for row in sweep["runs"]] == [10, 20]
